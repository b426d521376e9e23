"""A feed import under an operator rate limit it exceeds waits as the node asks and finishes.

A real node whose operators (its feed account too) may each make one call a second (burst one)
gets a feed in more batches than that allows at once: each refused batch (RESOURCE_EXHAUSTED,
with the pause in its `retry-after-ms` trailer) is sent again after the pause, and every row is
recorded once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certfed.v1 import desk_pb2
from cli.bench.feed import OFFICE, write_admissions
from cli.bench.kit import call_within_limits
from cli.feed_import import import_feed_file
from cli.launcher import LocalFederation

BATCHES = 4


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[LocalFederation]:
    with LocalFederation(tmp_path / "federation", log_level="warning") as local:
        local.start_registry()
        local.add_node(
            OFFICE, settings={"limits": {"operator_calls_per_s": 1, "operator_burst": 1}}
        )
        yield local


def test_a_rate_limited_feed_import_waits_and_records_every_row(
    federation: LocalFederation, tmp_path: Path
) -> None:
    feed = tmp_path / "admissions.csv"
    write_admissions(feed, 40 * BATCHES, 20, datetime.now(UTC).date())
    with federation.desk(OFFICE.node_id) as desk:
        # The bench's own calls wait out the limit too: two calls at once exceed a burst of one.
        for _ in range(2):
            call_within_limits(desk.stub.WhoAmI, desk_pb2.WhoAmIRequest())
    # The feed runs under the node's feed account, with a bucket of its own: its four batches
    # exceed a burst of one by themselves.
    with federation.desk(OFFICE.node_id, "feed") as desk:
        summary = import_feed_file(
            desk,
            feed,
            mapping_name="hospital_admissions",
            source=None,
            fmt=None,
            batch_size=40,
            rejects_path=tmp_path / "rejects.csv",
            show_progress=False,
        )
    assert summary.rows == 40 * BATCHES
    assert summary.unknown_persons == 40 * BATCHES
    assert summary.duplicates == 0
