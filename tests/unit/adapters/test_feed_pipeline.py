"""The feed importer reads the next batch while earlier ones are at the node, and sends two
batches together only when they have no person and no record id in common: every person's
signals and every record id reach the node in the file's order, and every answer is counted
once, in that order."""

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


class WatchingRecorder:
    """Keeps the record ids of each batch as it arrives and, for each, the first record ids of
    the batches still being answered then. A batch whose first record id is in `hold` keeps
    its answer until another batch arrives (at most `hold_s`), so that a batch allowed to go
    alongside it does. Refuses a batch of several holding `refuse` (and answers IGNORED for it
    alone); fails as unreachable for a batch holding `fail`."""

    def __init__(
        self,
        *,
        hold: Sequence[str] = (),
        hold_s: float = 5.0,
        refuse: str = "",
        fail: str = "",
    ) -> None:
        self.batches: list[list[str]] = []
        self.alongside: list[list[str]] = []
        self._under_way: dict[int, str] = {}
        self._changed = threading.Condition()
        self._hold = set(hold)
        self._hold_s = hold_s
        self._refuse = refuse
        self._fail = fail

    def record(self, signals: Sequence[desk_pb2.DataSignal]) -> Sequence[desk_pb2.SignalResult]:
        ids = [signal.source_record_id for signal in signals]
        with self._changed:
            index = len(self.batches)
            self.batches.append(ids)
            self.alongside.append(sorted(self._under_way.values()))
            self._under_way[index] = ids[0]
            self._changed.notify_all()
            if ids[0] in self._hold:
                self._changed.wait_for(lambda: len(self.batches) > index + 1, self._hold_s)
        try:
            if self._fail in ids:
                raise UnavailableError("the node is restarting")
            if self._refuse in ids and len(ids) > 1:
                raise SignalsRefusedError("signals[0]: refused")
            outcome = (
                desk_pb2.SIGNAL_OUTCOME_IGNORED
                if self._refuse in ids
                else desk_pb2.SIGNAL_OUTCOME_APPLIED
            )
            return [desk_pb2.SignalResult(outcome=outcome) for _ in signals]
        finally:
            with self._changed:
                del self._under_way[index]

    def sent(self) -> list[str]:
        """Every record id sent, in the order of the batches' first record ids."""
        return [record_id for batch in sorted(self.batches, key=_position) for record_id in batch]


def _position(batch: list[str]) -> int:
    return int(batch[0].removeprefix("A"))


def _importer(
    recorder: WatchingRecorder, rejects: list[tuple[int, str]], batch_size: int
) -> FeedImporter:
    mapping = load_mapping("hospital_admissions")
    return FeedImporter(
        recorder,
        SignalMapper(mapping, mapping.source, NOW),
        reject=lambda line, reason: rejects.append((line, reason)),
        batch_size=batch_size,
    )


def _rows(count: int) -> list[tuple[str, str, str, str]]:
    return [(f"A{i}", resident(i), "Name", "2024-06-23") for i in range(1, count + 1)]


def test_batches_about_different_people_are_at_the_node_together(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "admissions.csv", HEADER, _rows(20))
    recorder = WatchingRecorder(hold=["A1", "A6"])
    rejects: list[tuple[int, str]] = []
    summary = _importer(recorder, rejects, batch_size=5).run(path, feed_format(path, None))

    # The second batch went while the first was being answered, the third while the second was.
    assert recorder.alongside[:3] == [[], ["A1"], ["A6"]]
    assert recorder.sent() == [f"A{i}" for i in range(1, 21)]
    assert summary.applied == 20
    assert rejects == []


@pytest.mark.parametrize(
    ("index", "row", "shares"),
    [
        # Row 7 is about the person of row 2, under a record id of its own.
        (6, ("A7", resident(2), "Name", "2024-06-24"), "a person"),
        # Row 8 repeats row 3's record id, about someone else.
        (7, ("A3", resident(8), "Name", "2024-06-24"), "a record id"),
    ],
)
def test_a_batch_sharing_something_with_one_at_the_node_waits_for_its_answers(
    tmp_path: Path, index: int, row: tuple[str, str, str, str], shares: str
) -> None:
    rows = _rows(15)
    rows[index] = row
    path = write_csv(tmp_path / "admissions.csv", HEADER, rows)
    # The first batch is held long enough for a batch sent alongside it to arrive meanwhile.
    recorder = WatchingRecorder(hold=["A1"], hold_s=0.5)
    rejects: list[tuple[int, str]] = []
    _importer(recorder, rejects, batch_size=5).run(path, feed_format(path, None))

    assert recorder.alongside[1] == [], f"a batch sharing {shares} went alongside"
    assert recorder.batches[:2] == [
        [f"A{i}" for i in range(1, 6)],
        [record_id for record_id, *_ in rows[5:10]],
    ]


def test_rejected_repeated_and_refused_rows_are_counted_once_in_file_order(
    tmp_path: Path,
) -> None:
    rows = _rows(47)
    rows[10] = ("A11", "not a number", "Name", "2024-06-23")
    rows[20] = ("A1", resident(1), "Name", "2024-06-23")  # a repeat of the first row
    path = write_csv(tmp_path / "admissions.csv", HEADER, rows)
    recorder = WatchingRecorder(refuse="A30")
    rejects: list[tuple[int, str]] = []
    summary = _importer(recorder, rejects, batch_size=5).run(path, feed_format(path, None))

    # Row 11 is rejected here; row 21 repeats A1 in a later batch (the node's to call DUPLICATE).
    expected = [f"A{i}" if i != 21 else "A1" for i in range(1, 48) if i != 11]
    refused_whole = next(batch for batch in recorder.batches if "A30" in batch and len(batch) > 1)
    recorder.batches.remove(refused_whole)
    assert recorder.sent() == expected
    assert summary.rows == 47
    assert summary.rejected == 1
    assert [line for line, _ in rejects] == [12]
    # The batch holding A30 was refused whole and sent again one by one: A30 answered alone.
    assert ["A30"] in recorder.batches
    assert summary.ignored == 1
    assert summary.applied == len(expected) - 1
    assert summary.duplicates == 0


def test_a_node_that_stops_answering_stops_the_import_at_its_batch(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "admissions.csv", HEADER, _rows(30))
    recorder = WatchingRecorder(fail="A11")
    rejects: list[tuple[int, str]] = []
    with pytest.raises(UnavailableError, match="stopped at the batch starting on line 12"):
        _importer(recorder, rejects, batch_size=5).run(path, feed_format(path, None))
    # The batches before it were answered; at most the one sent alongside it besides.
    assert recorder.batches[:2] == [[f"A{i}" for i in range(1, 6)], [f"A{i}" for i in range(6, 11)]]
    assert len(recorder.batches) <= 4
