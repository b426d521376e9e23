"""structlog JSON logging for every certfed process: one JSON object per line on stderr.

Log events carry ids (request, attestation, node, operator), never an identity number or a name:
the code that logs passes ids only, and `redact_identity_numbers` is a last line of defence that
masks anything shaped like a resident ID or HKID number that slips into a log value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_IDENTITY_SHAPES = re.compile(r"\b(\d{17}[\dXx]|[A-Za-z]{1,2}\d{6}\(?[\dAa]\)?)\b")


def redact_identity_numbers(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and _IDENTITY_SHAPES.search(value):
            event[key] = _IDENTITY_SHAPES.sub("[redacted-id]", value)
    return event


def configure_logging(process: str, level: str = "info") -> None:
    """Configure structlog, and the stdlib logging that libraries use, to write JSON lines."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.dict_tracebacks,
        redact_identity_numbers,
    ]
    # Records from libraries (alembic, grpc) go through the same processors, so every line of a
    # process's log is one JSON object with the same redaction.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(sort_keys=True),
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer(sort_keys=True)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)
