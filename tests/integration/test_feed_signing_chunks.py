"""The set-based feed path hands its findings to the signing workers in chunks, and stores each
chunk as soon as it is signed: cut into chunks of one, between which the one-row path builds
attestations of its own, a batch still gives exactly what the one-at-a-time path gives, the log
in the batch's order included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from federation_node.offices import data_signals, signing_pool
from tests.helpers.feed_office import EnrolledOffice
from tests.integration.test_feed_paths import (
    OFFICES,
    ON_BOTH_ENGINES,
    assert_paths_agree,
    history,
    office,
)

__all__ = ["office"]


@ON_BOTH_ENGINES
@settings(OFFICES, max_examples=6)
@given(drawn=history)
def test_bulk_feed_path_signing_in_small_chunks_gives_what_the_one_at_a_time_path_gives(
    engine: str,
    office: EnrolledOffice,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    drawn: dict[str, Any],
) -> None:
    monkeypatch.setattr(data_signals, "SIGNING_CHUNK", 1)
    # Chunks of one go to the workers too, as large ones do.
    monkeypatch.setattr(signing_pool, "SHIP_MIN", 1)
    assert_paths_agree(engine, office, request, tmp_path, drawn)
