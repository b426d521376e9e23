"""Data-signal feeds: stream a CSV or JSON Lines file of life or death events into RecordSignals.

Promises:

- Streaming: the file is read line by line, never loaded; memory stays flat for any size.
- Every row either becomes one DataSignal or is rejected with its line number and a reason that
  names the column and never repeats a cell's value (cells hold identity numbers).
- Exactly once: the idempotency key is (source, source_record_id). The record id comes from the
  mapping's record id column; a feed without one gets a content key, the SHA-256 of the signal's
  content (kind, identity type, normalised number, observed_at), so rerunning the same file, or
  the same rows in another file, records nothing twice. Repeats inside one batch are counted as
  duplicates here; across batches and runs the node answers DUPLICATE.
- A rejected row never stops the others; a file that cannot be read at all (empty, no header, a
  mapped column absent) stops before anything is sent.

The reader of each format sits behind `FeedReader`; where signals go sits behind
`SignalRecorder` (the node's DeskService in production, called with a feed account's token: the
node applies alive signals only from a feed account bound to their source, and holds a person's
for a second person's approval).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from adapters.csv_records import DecodedLines, csv_records
from adapters.desk_batches import send_batch
from adapters.errors import FeedFileError
from adapters.feed_mappings import FeedMapping, require_source
from certfed.v1 import common_pb2, desk_pb2
from federation.desk_client import DeskClient
from federation.errors import CertfedError, UnavailableError
from federation.limits import Limits
from federation.timestamps import to_timestamp
from signing.errors import InvalidIdentityNumberError
from signing.identity import IdentityKind, validate_identity_number

# Rows per RecordSignals call: the node records a batch set-based, so larger batches pay.
DEFAULT_BATCH_SIZE = 5000
# Batches under way at the node at once. Each is its own transaction, and the node works on one
# while another waits on the database or its signing workers, so two keep both cores busy.
IN_FLIGHT = 2
# The node refuses longer record ids (RecordSignals); refusing them here rejects only the row.
MAX_RECORD_ID_LENGTH = 128
FORMATS = ("csv", "jsonl")
_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_IDENTITY_KINDS: dict[int, IdentityKind] = {
    common_pb2.IDENTITY_TYPE_RESIDENT_ID: IdentityKind.RESIDENT_ID,
    common_pb2.IDENTITY_TYPE_HKID: IdentityKind.HKID,
    common_pb2.IDENTITY_TYPE_MACAU_BIR: IdentityKind.MACAU_BIR,
    common_pb2.IDENTITY_TYPE_PASSPORT: IdentityKind.PASSPORT,
}


class RowError(ValueError):
    """A row that cannot become a signal; the message is the reason shown to the clerk."""


@dataclass(frozen=True)
class FeedRow:
    """One record of a feed: where it starts, and its cells by column name (or why unreadable)."""

    line: int
    values: Mapping[str, object]
    problem: str = ""


class FeedReader(Protocol):
    """Reads one file format into rows; raises FeedFileError when the file is unusable."""

    def rows(
        self, lines: DecodedLines, columns: Sequence[str], file_name: str
    ) -> Iterator[FeedRow]: ...


class CsvFeedReader:
    """RFC 4180 CSV with a header line naming the columns (quoted fields may span lines)."""

    def rows(
        self, lines: DecodedLines, columns: Sequence[str], file_name: str
    ) -> Iterator[FeedRow]:
        def check_header(header: list[str]) -> None:
            missing = [column for column in columns if column not in header]
            if missing:
                raise FeedFileError(
                    file_name,
                    f"the header has no column {missing[0]!r}, which the mapping reads "
                    f"(the header has: {', '.join(header)})",
                )

        for record in csv_records(lines, file_name, "feed", FeedFileError, check_header):
            yield FeedRow(record.line, record.values, record.problem)


class JsonLinesFeedReader:
    """One JSON object per line (JSON Lines); blank lines are skipped."""

    def rows(
        self, lines: DecodedLines, columns: Sequence[str], file_name: str
    ) -> Iterator[FeedRow]:
        for text in lines:
            number = lines.count
            if not text.strip():
                continue
            if number in lines.undecodable:
                yield FeedRow(number, {}, "is not valid text in the feed's encoding")
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                # The decoder's message names a position, never the content.
                yield FeedRow(
                    number, {}, f"is not valid JSON ({error.msg} at column {error.colno})"
                )
                continue
            if not isinstance(value, dict):
                yield FeedRow(number, {}, "is not a JSON object")
                continue
            yield FeedRow(number, value)


READERS: dict[str, FeedReader] = {"csv": CsvFeedReader(), "jsonl": JsonLinesFeedReader()}


def feed_format(path: Path, given: str | None) -> str:
    """The format named on the command line, else the one the file's suffix says."""
    if given:
        if given not in FORMATS:
            raise FeedFileError("format", f"must be one of {', '.join(FORMATS)}")
        return given
    detected = _SUFFIX_FORMATS.get(path.suffix.lower())
    if detected is None:
        raise FeedFileError(
            path.name, "has no .csv, .jsonl or .ndjson suffix; say which with --format"
        )
    return detected


@dataclass(frozen=True)
class SignalMapper:
    """Turns one row into a DataSignal by a mapping, or raises RowError saying why not."""

    mapping: FeedMapping
    source: str
    now: datetime
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        require_source(self.source)

    def signal(self, row: FeedRow) -> desk_pb2.DataSignal:
        if row.problem:
            raise RowError(row.problem)
        mapping = self.mapping
        kind = self._translated(row, mapping.kind, mapping.kind_column, mapping.kind_values)
        identity_type = self._translated(
            row, mapping.identity_type, mapping.identity_type_column, mapping.identity_type_values
        )
        number_column = mapping.identity_number_column
        try:
            number = validate_identity_number(
                _IDENTITY_KINDS[identity_type], self._cell(row, number_column)
            )
        except InvalidIdentityNumberError as error:
            # The error's reason never contains the number itself.
            raise RowError(f"column {number_column!r}: {error.reason}") from None
        observed_at = self._observed_at(row)
        if mapping.record_id_column is not None:
            record_id = self._cell(row, mapping.record_id_column)
            if len(record_id) > MAX_RECORD_ID_LENGTH:
                raise RowError(
                    f"column {mapping.record_id_column!r} is longer than "
                    f"{MAX_RECORD_ID_LENGTH} characters"
                )
        else:
            record_id = content_key(kind, identity_type, number, observed_at)
        return desk_pb2.DataSignal(
            source=self.source,
            source_record_id=record_id,
            kind=kind,  # type: ignore[arg-type]
            identity_type=identity_type,  # type: ignore[arg-type]
            identity_number=number,
            observed_at=to_timestamp(observed_at),
        )

    @staticmethod
    def _cell(row: FeedRow, column: str) -> str:
        if column not in row.values:
            raise RowError(f"column {column!r} is missing")
        value = row.values[column]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RowError(f"column {column!r} must be text")
        text = str(value).strip()
        if not text:
            raise RowError(f"column {column!r} is empty")
        return text

    def _translated(
        self, row: FeedRow, constant: int | None, column: str | None, table: Mapping[str, int]
    ) -> int:
        if constant is not None:
            return constant
        assert column is not None
        cell = self._cell(row, column)
        if cell not in table:
            raise RowError(
                f"column {column!r} has a value the mapping does not know "
                f"(known: {', '.join(table)})"
            )
        return table[cell]

    def _observed_at(self, row: FeedRow) -> datetime:
        column = self.mapping.observed_at_column
        date_format = self.mapping.observed_at
        cell = self._cell(row, column)
        try:
            moment = date_format.parse(cell)
        except ValueError:
            raise RowError(f"column {column!r} is not a date in {date_format.describe()}") from None
        if moment > self.now + timedelta(seconds=self.limits.max_clock_skew_s):
            raise RowError(f"column {column!r} is a date in the future")
        return moment


def content_key(kind: int, identity_type: int, number: str, observed_at: datetime) -> str:
    """The record id of a row from a feed without one: SHA-256 of what the signal says.

    Stable across reruns, column order, CSV or JSON Lines, and re-exports that add columns.
    """
    text = f"{kind}\x1f{identity_type}\x1f{number}\x1f{observed_at.astimezone(UTC).isoformat()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SignalsRefusedError(CertfedError):
    """The node refused a whole batch as invalid (INVALID_ARGUMENT); the message is its reason."""


class SignalRecorder(Protocol):
    """Where signals go: one result per signal, in order."""

    def record(self, signals: Sequence[desk_pb2.DataSignal]) -> Sequence[desk_pb2.SignalResult]: ...


class DeskSignalRecorder:
    """RecordSignals on a node's DeskService, sending a batch again while the node is out of
    reach (adapters.desk_batches: about a minute); `waiting` is told each time."""

    def __init__(self, desk: DeskClient, *, waiting: Callable[[str], None] | None = None) -> None:
        self._desk = desk
        self._waiting = waiting

    def record(self, signals: Sequence[desk_pb2.DataSignal]) -> Sequence[desk_pb2.SignalResult]:
        response = send_batch(
            self._desk.stub.RecordSignals,
            desk_pb2.RecordSignalsRequest(signals=signals),
            name="RecordSignals",
            refused=SignalsRefusedError,
            waiting=self._waiting,
        )
        results: Sequence[desk_pb2.SignalResult] = response.results
        return results


@dataclass
class FeedImportSummary:
    rows: int = 0
    applied: int = 0
    duplicates: int = 0
    unknown_persons: int = 0
    ignored: int = 0
    rejected: int = 0
    # Alive signals a person (not a feed account) sent, held for a second person's approval.
    awaiting_approval: int = 0

    def count(self, outcome: int) -> None:
        if outcome == desk_pb2.SIGNAL_OUTCOME_APPLIED:
            self.applied += 1
        elif outcome == desk_pb2.SIGNAL_OUTCOME_DUPLICATE:
            self.duplicates += 1
        elif outcome == desk_pb2.SIGNAL_OUTCOME_UNKNOWN_PERSON:
            self.unknown_persons += 1
        elif outcome == desk_pb2.SIGNAL_OUTCOME_IGNORED:
            self.ignored += 1
        elif outcome == desk_pb2.SIGNAL_OUTCOME_AWAITING_APPROVAL:
            self.awaiting_approval += 1
        else:
            raise CertfedError(f"the node answered an unknown signal outcome ({outcome})")


class RejectsFile:
    """The rejected rows as CSV (line, reason), written as they happen."""

    HEADER = ("line", "reason")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.HEADER)

    def __call__(self, line: int, reason: str) -> None:
        self._writer.writerow((line, reason))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RejectsFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


Progress = Callable[[int, int], None]


@dataclass
class _Pending:
    signals: list[desk_pb2.DataSignal] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    # The batch's record ids, and its people (identity type, normalised number).
    keys: set[str] = field(default_factory=set)
    people: set[tuple[int, str]] = field(default_factory=set)

    def commutes_with(self, other: _Pending) -> bool:
        """Whether recording the two batches together gives what recording them one after the
        other does: the node decides a signal against its person's records and its record id
        alone, so batches with no person and no record id in common cannot see each other."""
        return self.keys.isdisjoint(other.keys) and self.people.isdisjoint(other.people)


# What the node answered for a batch: per signal, its result, or the node's refusal of it.
_Answers = list[tuple[int, desk_pb2.SignalResult | None, str]]


@dataclass(frozen=True)
class _InFlight:
    pending: _Pending
    answers: Future[_Answers]


class FeedImporter:
    """Streams a feed through a mapping into a recorder, batch by batch.

    The next batch is read and mapped here while earlier ones are at the node (threads send
    them), up to `IN_FLIGHT` at once. A batch goes while an earlier one is under way only when
    the two have no person and no record id in common; otherwise it waits until every earlier
    batch has been answered. So every person's signals, and every record id, still reach the
    node in the file's order, and the outcomes are those of sending the batches one after the
    other. The answers are counted here in the file's order.
    """

    def __init__(
        self,
        recorder: SignalRecorder,
        mapper: SignalMapper,
        *,
        reject: Callable[[int, str], None],
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Progress | None = None,
    ) -> None:
        if not 1 <= batch_size <= mapper.limits.max_repeated:
            raise FeedFileError("batch_size", f"must be between 1 and {mapper.limits.max_repeated}")
        self._recorder = recorder
        self._mapper = mapper
        self._reject = reject
        self._batch_size = batch_size
        self._progress = progress
        self.summary = FeedImportSummary()

    def run(self, path: Path, fmt: str) -> FeedImportSummary:
        reader = READERS[fmt]
        mapping = self._mapper.mapping
        try:
            stream = path.open("rb")
        except OSError as error:
            raise FeedFileError(path.name, f"cannot be opened ({error.strerror})") from None
        with stream, ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="feed-send") as sender:
            lines = DecodedLines(stream, mapping.encoding)
            pending = _Pending()
            in_flight: deque[_InFlight] = deque()
            for row in reader.rows(lines, mapping.columns, path.name):
                self.summary.rows += 1
                try:
                    signal = self._mapper.signal(row)
                except RowError as error:
                    self._rejected(row.line, str(error))
                else:
                    self._add(pending, signal, row.line)
                if len(pending.signals) >= self._batch_size:
                    if not all(pending.commutes_with(earlier.pending) for earlier in in_flight):
                        self._settle(in_flight, 0)
                    self._settle(in_flight, IN_FLIGHT - 1)
                    in_flight.append(_InFlight(pending, sender.submit(self._send, pending)))
                    pending = _Pending()
                    if self._progress is not None:
                        self._progress(lines.bytes_read, self.summary.rows)
            self._settle(in_flight, 0)
            self._count(self._send(pending))
            if self._progress is not None:
                self._progress(lines.bytes_read, self.summary.rows)
        if self.summary.rows == 0:
            raise FeedFileError(path.name, "has no rows to import")
        return self.summary

    def _settle(self, in_flight: deque[_InFlight], keep: int) -> None:
        """Count the answers of the oldest batches under way until at most `keep` are left."""
        while len(in_flight) > keep:
            self._count(in_flight.popleft().answers.result())

    def _rejected(self, line: int, reason: str) -> None:
        self.summary.rejected += 1
        self._reject(line, reason)

    def _add(self, pending: _Pending, signal: desk_pb2.DataSignal, line: int) -> None:
        if signal.source_record_id in pending.keys:
            # The node sees one batch at once; a repeat inside it is a duplicate by definition.
            self.summary.duplicates += 1
            return
        pending.keys.add(signal.source_record_id)
        pending.people.add((signal.identity_type, signal.identity_number))
        pending.signals.append(signal)
        pending.lines.append(line)

    def _send(self, pending: _Pending) -> _Answers:
        """The node's answers to a batch (on the sending thread: counts nothing itself)."""
        if not pending.signals:
            return []
        try:
            results = self._recorder.record(pending.signals)
        except UnavailableError as error:
            raise UnavailableError(
                f"{error}; stopped at the batch starting on line {pending.lines[0]}. Import the "
                "same file again when the node answers: rows already recorded come back as "
                "duplicates"
            ) from None
        except SignalsRefusedError:
            # Something the mapper let through was refused: send the batch one by one so that
            # only the refused rows are rejected, each with the node's reason.
            answers: _Answers = []
            for signal, line in zip(pending.signals, pending.lines, strict=True):
                try:
                    (result,) = self._recorder.record([signal])
                except SignalsRefusedError as error:
                    answers.append((line, None, f"refused by the node: {error}"))
                else:
                    answers.append((line, result, ""))
            return answers
        if len(results) != len(pending.signals):
            raise CertfedError(
                f"the node answered {len(results)} results for {len(pending.signals)} signals"
            )
        return [(line, result, "") for line, result in zip(pending.lines, results, strict=True)]

    def _count(self, answers: _Answers) -> None:
        for line, result, refusal in answers:
            if result is None:
                self._rejected(line, refusal)
            else:
                self.summary.count(result.outcome)
