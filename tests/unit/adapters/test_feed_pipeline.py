"""The feed importer reads the next batch while one is at the node, yet the node still gets the
batches one at a time, in the file's order, and every answer is counted once, in that order."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.feed_mappings import load_mapping
from adapters.feeds import FeedImporter, SignalMapper, SignalsRefusedError, feed_format
from certfed.v1 import desk_pb2
from federation.errors import UnavailableError
from tests.unit.adapters.test_feeds import HEADER, NOW, resident, write_csv


class OneAtATimeRecorder:
    """Keeps the record ids of each batch it answers; notes any batch that arrives while
    another is still being answered. Refuses a batch of several holding `refuse` (and
    answers IGNORED for it alone); fails as unreachable at batch number `fail_at_batch`."""

    def __init__(self, *, refuse: str = "", fail_at_batch: int = -1) -> None:
        self.batches: list[list[str]] = []
        self.overlapped = False
        self._busy = threading.Lock()
        self._refuse = refuse
        self._fail_at_batch = fail_at_batch

    def record(self, signals: Sequence[desk_pb2.DataSignal]) -> Sequence[desk_pb2.SignalResult]:
        if not self._busy.acquire(blocking=False):
            self.overlapped = True
            self._busy.acquire()
        try:
            ids = [signal.source_record_id for signal in signals]
            if len(self.batches) == self._fail_at_batch:
                raise UnavailableError("the node is restarting")
            if self._refuse in ids and len(ids) > 1:
                raise SignalsRefusedError("signals[0]: refused")
            self.batches.append(ids)
            outcome = (
                desk_pb2.SIGNAL_OUTCOME_IGNORED
                if self._refuse in ids
                else desk_pb2.SIGNAL_OUTCOME_APPLIED
            )
            return [desk_pb2.SignalResult(outcome=outcome) for _ in signals]
        finally:
            self._busy.release()


def _importer(
    recorder: OneAtATimeRecorder, rejects: list[tuple[int, str]], batch_size: int
) -> FeedImporter:
    mapping = load_mapping("hospital_admissions")
    return FeedImporter(
        recorder,
        SignalMapper(mapping, mapping.source, NOW),
        reject=lambda line, reason: rejects.append((line, reason)),
        batch_size=batch_size,
    )


def test_batches_reach_the_node_one_at_a_time_in_file_order(tmp_path: Path) -> None:
    rows = [(f"A{i}", resident(i), "Name", "2024-06-23") for i in range(1, 48)]
    rows[10] = ("A11", "not a number", "Name", "2024-06-23")
    rows[20] = ("A1", resident(1), "Name", "2024-06-23")  # a repeat of the first row
    path = write_csv(tmp_path / "admissions.csv", HEADER, rows)
    recorder = OneAtATimeRecorder(refuse="A30")
    rejects: list[tuple[int, str]] = []
    summary = _importer(recorder, rejects, batch_size=5).run(path, feed_format(path, None))

    assert not recorder.overlapped
    sent = [record_id for batch in recorder.batches for record_id in batch]
    # Row 11 is rejected here; row 21 repeats A1 in a later batch (the node's to call DUPLICATE).
    expected = [f"A{i}" if i != 21 else "A1" for i in range(1, 48) if i != 11]
    assert sent == expected
    assert summary.rows == 47
    assert summary.rejected == 1
    assert [line for line, _ in rejects] == [12]
    # The batch holding A30 was refused whole and sent again one by one: A30 answered alone.
    assert ["A30"] in recorder.batches
    assert summary.ignored == 1
    assert summary.applied == len(expected) - 1
    assert summary.duplicates == 0


def test_a_node_that_stops_answering_stops_the_import_at_its_batch(tmp_path: Path) -> None:
    rows = [(f"A{i}", resident(i), "Name", "2024-06-23") for i in range(1, 31)]
    path = write_csv(tmp_path / "admissions.csv", HEADER, rows)
    recorder = OneAtATimeRecorder(fail_at_batch=2)
    rejects: list[tuple[int, str]] = []
    with pytest.raises(UnavailableError, match="stopped at the batch starting on line 12"):
        _importer(recorder, rejects, batch_size=5).run(path, feed_format(path, None))
    assert recorder.batches == [[f"A{i}" for i in range(1, 6)], [f"A{i}" for i in range(6, 11)]]
