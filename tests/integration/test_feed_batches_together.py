"""A feed imported with two batches at the node at once gives what importing it one batch after
the other gives, on SQLite and on PostgreSQL.

The importer sends a batch while another is being recorded only when the two have no person and
no record id in common. Hypothesis draws feed files over a few people (repeats of a person and of
a record id, people the office does not pay, signals older than the person's validity) and a
batch size; the same office, composed twice on fresh databases of one engine, imports the file
once as the importer does and once with one batch at a time. The summaries, the people,
entitlements, payment instructions, recorded signals and attestations are the same, and so is
the log apart from its order: batches recorded together append in the order they commit.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters import feeds
from adapters.feed_mappings import load_mapping
from adapters.feeds import FeedImporter, FeedImportSummary, SignalMapper
from certfed.v1 import desk_pb2
from cli.bench.feed import person_number
from federation_node.offices.node import Node
from tests.helpers.feed_office import (
    EnrolledOffice,
    add_feed_account,
    compose_office,
)
from tests.integration.test_feed_paths import (
    FEED,
    NOW,
    OFFICES,
    ON_BOTH_ENGINES,
    PEOPLE,
    _holdings,
    fresh_databases,
    office,
    register_people,
)

__all__ = ["office"]

MAPPING = load_mapping("hospital_admissions")
HEADER = ("admission_no", "id_number", "name", "admission_date")


feed_files = st.fixed_dictionaries(
    {
        "validity": st.lists(st.integers(-200, 300), min_size=PEOPLE, max_size=PEOPLE),
        "rows": st.lists(
            st.tuples(
                st.integers(0, 2 * PEOPLE - 1),  # who: the second half are not the office's
                st.integers(1, 400),  # days ago
                st.integers(0, 40),  # record id: a repeated one is a duplicate
            ),
            min_size=1,
            max_size=40,
        ),
        "batch_size": st.integers(1, 6),
    }
)


class _NodeRecorder:
    """RecordSignals on the office in this process, as the feed account; each batch waits a
    moment first, so that a batch allowed to go alongside it is recorded at the same time."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def record(self, signals: Sequence[desk_pb2.DataSignal]) -> Sequence[desk_pb2.SignalResult]:
        time.sleep(0.01)
        return self._node.data_signals.record_signals(FEED, list(signals), feed_account=True)


def _imported(node: Node, drawn: dict[str, Any], path: Path) -> FeedImportSummary:
    register_people(node, drawn["validity"])
    add_feed_account(node, FEED.name, MAPPING.source, NOW)
    importer = FeedImporter(
        _NodeRecorder(node),
        SignalMapper(MAPPING, MAPPING.source, NOW),
        reject=lambda line, reason: pytest.fail(f"line {line} rejected: {reason}"),
        batch_size=drawn["batch_size"],
    )
    return importer.run(path, "csv")


def _write(path: Path, rows: list[tuple[int, int, int]]) -> Path:
    lines = [",".join(HEADER)]
    for who, days_ago, record in rows:
        day = (NOW - timedelta(days=days_ago)).date().isoformat()
        lines.append(f"R{record},{person_number(who)},Feed Person,{day}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@ON_BOTH_ENGINES
@settings(OFFICES, max_examples=10)
@given(drawn=feed_files)
# One person seen 5 and then 10 days ago, a batch each: the second signal moves nothing once the
# first has been recorded, so it must not be decided before the first is.
@example(drawn={"validity": [-200] * PEOPLE, "rows": [(0, 5, 1), (0, 10, 2)], "batch_size": 1})
# One record id about two people in two batches: the second is a duplicate.
@example(drawn={"validity": [-200] * PEOPLE, "rows": [(0, 5, 1), (1, 5, 1)], "batch_size": 1})
def test_batches_recorded_together_give_what_one_batch_at_a_time_gives(
    engine: str,
    office: EnrolledOffice,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    drawn: dict[str, Any],
) -> None:
    fresh_url = fresh_databases(engine, request, tmp_path)
    path = _write(tmp_path / f"{uuid.uuid4().hex}.csv", drawn["rows"])
    together, one_by_one = (
        compose_office(office, fresh_url(), bulk_feed=True, clock=lambda: NOW) for _ in range(2)
    )
    try:
        summaries = [_imported(together, drawn, path)]
        with monkeypatch.context() as patched:
            patched.setattr(feeds, "IN_FLIGHT", 1)
            summaries.append(_imported(one_by_one, drawn, path))
        assert summaries[0] == summaries[1]
        held = [_holdings(node) for node in (together, one_by_one)]
        for holdings in held:
            holdings["log"] = sorted(holdings["log"])  # type: ignore[type-var]
        for name in held[0]:
            assert held[0][name] == held[1][name], name
    finally:
        for node in (together, one_by_one):
            node.context.engine.dispose()
