"""Logs never carry an identity: no frame locals in tracebacks, and nested values redacted."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import date

import pytest
import structlog

from federation.logs import configure_logging, redact_identity_numbers
from tests.helpers.identities import resident_id

NUMBER = resident_id("620102", date(1948, 3, 9), 17)
NAME = "陈大文"
PHONE = "13912345678"
HKID = "A123456(3)"


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Everything the process logs, as configure_logging writes it to stderr."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("test", "info")
    yield stream
    structlog.reset_defaults()
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)


def _fail_with_identity_in_locals() -> None:
    identity_number, full_name, phone = NUMBER, NAME, PHONE  # noqa: F841 - held as locals
    raise RuntimeError(f"lookup failed for {identity_number}")


def test_an_internal_error_logs_no_identity_name_or_phone(logged: io.StringIO) -> None:
    log = structlog.get_logger("certfed.test")
    try:
        _fail_with_identity_in_locals()
    except RuntimeError:
        log.exception("rpc.internal_error", detail={"holder": [NUMBER, {"hk": HKID}]})
        logging.getLogger("library").error("library saw %s", NUMBER, exc_info=True)
    lines = logged.getvalue().strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        event = json.loads(line)
        assert "exception" in event
        # As a reader sees it: JSON escapes non-ASCII text, so compare the decoded values.
        text = json.dumps(event, ensure_ascii=False)
        for secret in (NUMBER, NAME, PHONE, HKID):
            assert secret not in text
        assert "[redacted-id]" in text


def test_redaction_walks_nested_values_and_keeps_other_values() -> None:
    event = {"a": {"b": [NUMBER, ("x", PHONE)]}, "count": 12, "id": "0199aaaa-0000-7000-8000"}
    redacted = redact_identity_numbers(None, "info", event)
    assert redacted["a"] == {"b": ["[redacted-id]", ["x", "[redacted-id]"]]}
    assert redacted["count"] == 12
    assert redacted["id"] == "0199aaaa-0000-7000-8000"
