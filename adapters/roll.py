"""The office's roll: stream a CSV or XLSX roll export into UpsertBeneficiaries, in batches.

Promises:

- Streaming: a CSV roll is read line by line and an XLSX roll row by row (openpyxl's read-only
  mode), never loaded whole; an XLSX file is refused before parsing when it is larger, unpacks to
  more, or claims more rows than a roll can have (a zip bomb stays a refusal).
- Every row either becomes one registration or is rejected with its line (CSV) or row (XLSX)
  number, the column, and a reason that never repeats the cell's value (cells hold identity
  numbers, names and phone numbers).
- Idempotent: the node keys each row by the person's identity (the locator), so a re-import
  registers nobody twice and changes only what changed; a changed monthly amount is proposed
  for a reviewer, never applied by the import. A person listed twice in one file is rejected
  the second time.
- A rejected row never stops the others; a file that cannot be read at all (empty, no header, a
  mapped column absent, too large) stops before anything is sent.

Where rows go sits behind `RollRecorder` (the node's DeskService in production).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Protocol

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from adapters.csv_records import DecodedLines, csv_records
from adapters.desk_batches import send_batch
from adapters.errors import RollFileError
from adapters.roll_mappings import DayFormat, RollMapping
from adapters.spreadsheet import check_xlsx_size
from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation.desk_client import DeskClient
from federation.errors import CertfedError, InvalidInputError, UnavailableError
from federation.limits import Limits
from federation.regions import validate_region_code
from federation.timestamps import to_timestamp
from signing.errors import InvalidIdentityNumberError
from signing.identity import IdentityKind, validate_identity_number

# A few thousand rows per call: large enough that per-call costs vanish, small enough that a
# batch is far inside the node's message size and call deadline.
DEFAULT_BATCH_SIZE = 5000
# Batches on their way to the node at once: one being saved while the next is checked there.
IN_FLIGHT = 2
FORMATS = ("csv", "xlsx")
_SUFFIX_FORMATS = {".csv": "csv", ".xlsx": "xlsx"}
# An XLSX roll is refused before parsing above these (a 1,000,000-row roll is ~60 MiB packed).
MAX_XLSX_BYTES = 256 * 1024 * 1024
MAX_XLSX_UNPACKED_BYTES = 2 * 1024 * 1024 * 1024
# Excel's own limit: no sheet has more rows.
MAX_XLSX_ROWS = 1_048_576
MAX_PHONE_LENGTH = 32
_PHONE = re.compile(r"^[0-9+\-() ]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_IDENTITY_KINDS: dict[int, IdentityKind] = {
    common_pb2.IDENTITY_TYPE_RESIDENT_ID: IdentityKind.RESIDENT_ID,
    common_pb2.IDENTITY_TYPE_HKID: IdentityKind.HKID,
    common_pb2.IDENTITY_TYPE_MACAU_BIR: IdentityKind.MACAU_BIR,
    common_pb2.IDENTITY_TYPE_PASSPORT: IdentityKind.PASSPORT,
}
# The request field each mapped field fills, to name the column of a node's refusal.
_REQUEST_FIELDS = {
    "identity.full_name": "full_name",
    "identity.identity_number": "identity_number",
    "identity.identity_type": "identity_type",
    "identity.phone": "phone",
    "identity": "identity_number",
    "residence_region": "residence_region",
    "paying_region": "paying_region",
    "monthly_amount_fen": "monthly_amount",
    "scheme": "scheme",
    "payment_start_month": "payment_start",
    "valid_until": "valid_until",
}
_NODE_FIELD = re.compile(r"^beneficiaries\[\d+\]\.([a-z_.]+): ")

Cell = str | int | float | datetime | date | bool | None


class RollRowError(ValueError):
    """A row that cannot become a registration: the column and the reason shown to the clerk."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column!r} {reason}" if column else reason)
        self.column = column
        self.reason = reason


@dataclass(frozen=True)
class RollRow:
    """One row of a roll: where it is (line or row number), its cells by column name."""

    number: int
    values: Mapping[str, Cell]
    problem: str = ""


def roll_format(path: Path, given: str | None) -> str:
    """The format named on the command line, else the one the file's suffix says."""
    if given:
        if given not in FORMATS:
            raise RollFileError("format", f"must be one of {', '.join(FORMATS)}")
        return given
    detected = _SUFFIX_FORMATS.get(path.suffix.lower())
    if detected is None:
        raise RollFileError(path.name, "has no .csv or .xlsx suffix; say which with --format")
    return detected


def _check_header(header: list[str], mapping: RollMapping, file_name: str) -> None:
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise RollFileError(file_name, f"the header names column {duplicates[0]!r} twice")
    missing = [column for column in mapping.required_columns if column not in header]
    if missing:
        raise RollFileError(
            file_name,
            f"the header has no column {missing[0]!r}, which the mapping {mapping.name} reads "
            f"(the header has: {', '.join(name for name in header if name)})",
        )


class CsvRoll:
    """An RFC 4180 CSV roll with a header line naming the columns, decoded line by line."""

    def __init__(self, path: Path, mapping: RollMapping) -> None:
        self._path = path
        self._mapping = mapping
        self._lines: DecodedLines | None = None
        self.total = path.stat().st_size

    def rows(self) -> Iterator[RollRow]:
        try:
            stream = self._path.open("rb")
        except OSError as error:
            raise RollFileError(self._path.name, f"cannot be opened ({error.strerror})") from None
        with stream:
            self._lines = DecodedLines(stream, self._mapping.encoding)
            records = csv_records(
                self._lines,
                self._path.name,
                "roll",
                RollFileError,
                lambda header: _check_header(header, self._mapping, self._path.name),
            )
            for record in records:
                yield RollRow(record.line, record.values, record.problem)

    @property
    def bytes_read(self) -> int:
        return self._lines.bytes_read if self._lines is not None else 0


def _xlsx_value(cell: object) -> Cell:
    """A cell as text, a number, a date or None; anything else (rich text, a time) as text."""
    if cell is None or isinstance(cell, str | int | float | datetime | date):
        return cell
    return str(cell)


class XlsxRoll:
    """An XLSX roll: the mapping's sheet (or the only one), header in its first row, read in
    openpyxl's read-only mode one row at a time."""

    def __init__(self, path: Path, mapping: RollMapping, sheet: str | None) -> None:
        self._path = path
        self._mapping = mapping
        self._sheet = sheet or mapping.sheet
        check_xlsx_size(path, max_bytes=MAX_XLSX_BYTES, max_unpacked_bytes=MAX_XLSX_UNPACKED_BYTES)
        self.bytes_read = 0
        self.total = 0

    def rows(self) -> Iterator[RollRow]:
        name = self._path.name
        try:
            workbook = load_workbook(self._path, read_only=True, data_only=True)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, InvalidFileException):
            raise RollFileError(name, "is not an .xlsx workbook") from None
        try:
            sheet = self._choose(workbook.sheetnames)
            worksheet = workbook[sheet]
            claimed = worksheet.max_row or 0
            if claimed > MAX_XLSX_ROWS:
                raise RollFileError(
                    name, f"sheet {sheet!r} claims {claimed:,} rows; at most {MAX_XLSX_ROWS:,}"
                )
            self.total = claimed
            rows = worksheet.iter_rows(values_only=True)
            first = next(rows, None)
            if first is None:
                raise RollFileError(name, f"sheet {sheet!r} is empty: a roll starts with a header")
            header = [str(cell).strip() if cell is not None else "" for cell in first]
            _check_header(header, self._mapping, name)
            width = len(header)
            for number, cells in enumerate(rows, start=2):
                self.bytes_read = number
                if number > MAX_XLSX_ROWS:
                    raise RollFileError(name, f"has more than {MAX_XLSX_ROWS:,} rows")
                if all(cell is None or cell == "" for cell in cells):
                    continue
                if len(cells) > width and any(c not in (None, "") for c in cells[width:]):
                    yield RollRow(number, {}, "has cells to the right of the header's last column")
                    continue
                values = [_xlsx_value(cell) for cell in cells[:width]]
                yield RollRow(number, dict(zip(header, values, strict=False)))
        finally:
            workbook.close()

    def _choose(self, names: list[str]) -> str:
        if self._sheet is not None:
            if self._sheet not in names:
                raise RollFileError(
                    self._path.name,
                    f"has no sheet {self._sheet!r} (it has: {', '.join(names)})",
                )
            return self._sheet
        if len(names) != 1:
            raise RollFileError(
                self._path.name,
                f"has several sheets ({', '.join(names)}); name the roll's with --sheet",
            )
        return names[0]


class RollMapper:
    """Turns one row into a RegisterBeneficiaryRequest by a mapping, or raises RollRowError."""

    def __init__(self, mapping: RollMapping, limits: Limits | None = None) -> None:
        self.mapping = mapping
        self.limits = limits or Limits()
        # The column of each field, looked up once: a roll has a million rows.
        self._name_column = mapping.columns["full_name"]
        self._number_column = mapping.columns["identity_number"]
        self._amount_column = mapping.columns["monthly_amount"]
        self._region_column = mapping.columns["residence_region"]
        self._paying_column = mapping.column("paying_region")
        self._phone_column = mapping.column("phone")
        self._type_column = mapping.column("identity_type")
        self._scheme_column = mapping.column("scheme")
        self._start_column = mapping.column("payment_start")
        self._valid_column = mapping.column("valid_until")
        self._yuan = mapping.amount_unit == "yuan"

    def request(self, row: RollRow) -> desk_pb2.RegisterBeneficiaryRequest:
        if row.problem:
            raise RollRowError("", row.problem)
        values = row.values
        mapping = self.mapping
        identity_type = self._translated(
            values, self._type_column, mapping.identity_type, mapping.identity_type_values
        )
        number_cell = values.get(self._number_column)
        if isinstance(number_cell, int | float) and not isinstance(number_cell, bool):
            raise RollRowError(
                self._number_column,
                "is stored as a number, which spreadsheets round; format the column as text",
            )
        try:
            number = validate_identity_number(
                _IDENTITY_KINDS[identity_type], _text(values, self._number_column)
            )
        except InvalidIdentityNumberError as error:
            raise RollRowError(self._number_column, error.reason) from None
        request = desk_pb2.RegisterBeneficiaryRequest(
            identity=attestation_pb2.IdentityBundle(
                identity_type=identity_type,  # type: ignore[arg-type]
                identity_number=number,
                full_name=self._name(values),
                phone=self._phone(values),
            ),
            residence_region=self._region(values, self._region_column),
            monthly_amount_fen=self._amount(values),
        )
        if self._paying_column is not None:
            request.paying_region = self._region(values, self._paying_column, required=False)
        scheme = self._translated(
            values, self._scheme_column, mapping.scheme, mapping.scheme_values
        )
        if scheme:
            request.scheme = scheme  # type: ignore[assignment]
        if self._start_column is not None:
            start = _day(values, self._start_column, mapping.payment_start)
            if start is not None:
                request.payment_start_month = f"{start.year:04d}-{start.month:02d}"
        if self._valid_column is not None:
            valid_until = _day(values, self._valid_column, mapping.valid_until)
            if valid_until is not None:
                # A day names that calendar day, 00:00 UTC: the node counts validity in UTC days.
                moment = datetime(valid_until.year, valid_until.month, valid_until.day, tzinfo=UTC)
                request.valid_until.CopyFrom(to_timestamp(moment))
        return request

    def _name(self, values: Mapping[str, Cell]) -> str:
        name = _text(values, self._name_column)
        if len(name) > self.limits.max_text_length:
            raise RollRowError(
                self._name_column, f"is longer than {self.limits.max_text_length} characters"
            )
        if _CONTROL.search(name):
            raise RollRowError(self._name_column, "holds control characters")
        return name

    def _phone(self, values: Mapping[str, Cell]) -> str:
        if self._phone_column is None:
            return ""
        phone = _text(values, self._phone_column, required=False)
        if phone and (len(phone) > MAX_PHONE_LENGTH or not _PHONE.match(phone)):
            raise RollRowError(
                self._phone_column,
                f"is not a phone number (digits, spaces, + - ( ), at most {MAX_PHONE_LENGTH})",
            )
        return phone

    @staticmethod
    def _region(values: Mapping[str, Cell], column: str, *, required: bool = True) -> str:
        code = _text(values, column, required=required)
        if not code:
            return ""
        try:
            return validate_region_code(code, column)
        except InvalidInputError:
            raise RollRowError(
                column,
                "is not a region code: the 6-digit GB/T 2260 code (e.g. 370202), HK / MO, or "
                "the ISO 3166-1 code of a country abroad (e.g. CA)",
            ) from None

    def _amount(self, values: Mapping[str, Cell]) -> int:
        column = self._amount_column
        value = values.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise RollRowError(column, "is empty")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise RollRowError(column, "must be an amount")
        text = str(value).strip()
        if not self._yuan and text.isascii() and text.isdigit():
            fen = Decimal(int(text))
        else:
            try:
                amount = Decimal(text.replace(",", ""))
            except InvalidOperation:
                unit = "yuan" if self._yuan else "fen"
                raise RollRowError(column, f"is not an amount in {unit}") from None
            fen = amount * 100 if self._yuan else amount
            if not fen.is_finite() or fen != fen.to_integral_value():
                raise RollRowError(
                    column, "has more than two decimals" if self._yuan else "must be whole fen"
                )
        if not 0 <= fen <= self.limits.max_monthly_amount_fen:
            raise RollRowError(
                column,
                f"must be between 0 and {self.limits.max_monthly_amount_fen // 100:,} yuan",
            )
        return int(fen)

    @staticmethod
    def _translated(
        values: Mapping[str, Cell],
        column: str | None,
        constant: int | None,
        table: Mapping[str, int],
    ) -> int:
        if constant is not None:
            return constant
        if column is None:
            return 0
        cell = _text(values, column)
        found = table.get(cell)
        if found is None:
            raise RollRowError(
                column, f"has a value the mapping does not know (known: {', '.join(table)})"
            )
        return found


def _text(values: Mapping[str, Cell], column: str, *, required: bool = True) -> str:
    value = values.get(column)
    if isinstance(value, str):
        text = value.strip()
        if text or not required:
            return text
        raise RollRowError(column, "is empty")
    if value is None:
        if required:
            raise RollRowError(column, "is empty")
        return ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RollRowError(column, "must be text")
    return str(value)


def _day(values: Mapping[str, Cell], column: str, day_format: DayFormat) -> date | None:
    value = values.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return day_format.parse(str(value))
    except ValueError:
        raise RollRowError(column, f"is not a date in the format {day_format.pattern}") from None


class RollRefusedError(CertfedError):
    """The node refused a whole batch as invalid (INVALID_ARGUMENT); the message is its reason."""


class RollRecorder(Protocol):
    """Where registrations go: one result per request, in order."""

    def upsert(
        self, requests: Sequence[desk_pb2.RegisterBeneficiaryRequest]
    ) -> Sequence[desk_pb2.UpsertResult]: ...


class DeskRollRecorder:
    """UpsertBeneficiaries on a node's DeskService, sending a batch again while the node is out of
    reach (adapters.desk_batches: about a minute); `waiting` is told each time."""

    def __init__(self, desk: DeskClient, *, waiting: Callable[[str], None] | None = None) -> None:
        self._desk = desk
        self._waiting = waiting

    def upsert(
        self, requests: Sequence[desk_pb2.RegisterBeneficiaryRequest]
    ) -> Sequence[desk_pb2.UpsertResult]:
        response = send_batch(
            self._desk.stub.UpsertBeneficiaries,
            desk_pb2.UpsertBeneficiariesRequest(beneficiaries=requests),
            name="UpsertBeneficiaries",
            refused=RollRefusedError,
            waiting=self._waiting,
        )
        results: Sequence[desk_pb2.UpsertResult] = response.results
        return results


@dataclass
class RollImportSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Rows whose monthly amount differs from the node's: proposed, awaiting a reviewer.
    amount_changes: int = 0
    rejected: int = 0

    def count(self, result: desk_pb2.UpsertResult) -> None:
        if result.outcome == desk_pb2.UPSERT_OUTCOME_CREATED:
            self.created += 1
        elif result.outcome == desk_pb2.UPSERT_OUTCOME_UPDATED:
            self.updated += 1
        elif result.outcome == desk_pb2.UPSERT_OUTCOME_UNCHANGED:
            self.unchanged += 1
        else:
            raise CertfedError(f"the node answered an unknown row outcome ({result.outcome})")
        if result.amount_change_id:
            self.amount_changes += 1


class RollRejects:
    """The rejected rows as CSV (line, column, reason), written as they happen."""

    HEADER = ("line", "column", "reason")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.HEADER)

    def __call__(self, line: int, column: str, reason: str) -> None:
        self._writer.writerow((line, column, reason))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RollRejects:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


Progress = Callable[[int, int, int], None]


@dataclass
class _Pending:
    requests: list[desk_pb2.RegisterBeneficiaryRequest] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _InFlight:
    """A batch sent to the node, and its answer to come."""

    pending: _Pending
    results: Future[Sequence[desk_pb2.UpsertResult]]


class RollImporter:
    """Streams a roll through a mapping into a recorder, batch by batch."""

    def __init__(
        self,
        recorder: RollRecorder,
        mapper: RollMapper,
        *,
        reject: Callable[[int, str, str], None],
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Progress | None = None,
    ) -> None:
        if not 1 <= batch_size <= mapper.limits.max_repeated:
            raise RollFileError("batch_size", f"must be between 1 and {mapper.limits.max_repeated}")
        self._recorder = recorder
        self._mapper = mapper
        self._reject = reject
        self._batch_size = batch_size
        self._progress = progress
        # The people seen so far, as short keyed digests: a person listed twice is rejected the
        # second time, in memory that stays small for a million rows.
        self._seen: set[int] = set()
        self._seen_key = os.urandom(16)
        self.summary = RollImportSummary()

    def run(self, source: CsvRoll | XlsxRoll, file_name: str) -> RollImportSummary:
        # Batches travel to the node while the next is read and checked, so the node's work,
        # its database's and this process's overlap instead of taking turns.
        with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="roll-send") as sender:
            in_flight: deque[_InFlight] = deque()
            pending = _Pending()
            for row in source.rows():
                self.summary.rows += 1
                try:
                    request = self._mapper.request(row)
                except RollRowError as error:
                    self._rejected(row.number, error.column, error.reason)
                else:
                    if self._first_time(request.identity):
                        pending.requests.append(request)
                        pending.lines.append(row.number)
                    else:
                        self._rejected(
                            row.number,
                            self._mapper.mapping.column("identity_number") or "",
                            "lists a person an earlier row lists; each person once",
                        )
                if len(pending.requests) >= self._batch_size:
                    if len(in_flight) >= IN_FLIGHT:
                        self._settle(in_flight.popleft())
                    in_flight.append(
                        _InFlight(pending, sender.submit(self._recorder.upsert, pending.requests))
                    )
                    pending = _Pending()
                    if self._progress is not None:
                        self._progress(source.bytes_read, source.total, self.summary.rows)
            while in_flight:
                self._settle(in_flight.popleft())
            if pending.requests:
                self._settle(
                    _InFlight(pending, sender.submit(self._recorder.upsert, pending.requests))
                )
        if self._progress is not None:
            self._progress(source.total, source.total, self.summary.rows)
        if self.summary.rows == 0:
            raise RollFileError(file_name, "has no rows to import")
        return self.summary

    def _first_time(self, identity: attestation_pb2.IdentityBundle) -> bool:
        digest = hashlib.blake2b(
            f"{identity.identity_type}\x1f{identity.identity_number}".encode(),
            digest_size=8,
            key=self._seen_key,
        ).digest()
        key = int.from_bytes(digest, "big")
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def _rejected(self, line: int, column: str, reason: str) -> None:
        self.summary.rejected += 1
        self._reject(line, column, reason)

    def _settle(self, in_flight: _InFlight) -> None:
        """Wait for a batch sent to the node and count its rows."""
        pending = in_flight.pending
        try:
            results = in_flight.results.result()
        except UnavailableError as error:
            raise UnavailableError(
                f"{error}; stopped at the batch starting on line {pending.lines[0]}. Import the "
                "same file again when the node answers: rows already saved come back unchanged"
            ) from None
        except RollRefusedError:
            # Something the mapper let through was refused: send the batch one by one so that
            # only the refused rows are rejected, each with the node's reason.
            for request, line in zip(pending.requests, pending.lines, strict=True):
                try:
                    (result,) = self._recorder.upsert([request])
                except RollRefusedError as error:
                    self._rejected(
                        line, self._column_of(str(error)), f"refused by the node: {error}"
                    )
                else:
                    self.summary.count(result)
            return
        if len(results) != len(pending.requests):
            raise CertfedError(
                f"the node answered {len(results)} results for {len(pending.requests)} rows"
            )
        for result in results:
            self.summary.count(result)

    def _column_of(self, refusal: str) -> str:
        """The roll column a node's refusal ("beneficiaries[0].residence_region: ...") is about."""
        match = _NODE_FIELD.match(refusal)
        if match is None:
            return ""
        field_name = _REQUEST_FIELDS.get(match[1])
        return (self._mapper.mapping.column(field_name) or "") if field_name else ""


def open_roll(path: Path, fmt: str, mapping: RollMapping, sheet: str | None) -> CsvRoll | XlsxRoll:
    """The roll file as rows, by format; refuses an unusable file before any row is read."""
    if fmt == "xlsx":
        return XlsxRoll(path, mapping, sheet)
    try:
        return CsvRoll(path, mapping)
    except OSError as error:
        raise RollFileError(path.name, f"cannot be read ({error.strerror})") from None
