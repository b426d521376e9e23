"""Bank files: the month's payment instructions (suspend, resume with back pay, terminate) for the
bank that pays this office's pensions, as a CSV file the bank loads.

Promises: the same month's instructions always render to the same bytes (rows in a fixed order,
fixed header, `\\r\\n` line ends, UTF-8 without BOM), so exporting a month twice writes nothing
the second time; a file is written atomically (temporary file, fsync, rename, fsync of the
folder), so a bank never picks up half a file; a different file already on disk for the same
month is never replaced without `force`, because the bank may already have loaded it. Amounts
travel from the node as integer fen and are written as yuan with two decimals, with no float
on the way. The layout is documented in docs/adapters.md.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from adapters.errors import BankFileConflictError
from certfed.v1 import desk_pb2
from federation.desk_client import DeskClient
from federation.errors import CertfedError, InvalidInputError

HEADER = (
    "instruction_id",
    "beneficiary_id",
    "masked_identity_number",
    "action",
    "effective_month",
    "back_pay_months",
    "back_pay_yuan",
    "overpayment_yuan",
)
ACTIONS = {
    desk_pb2.PAYMENT_ACTION_SUSPEND: "suspend",
    desk_pb2.PAYMENT_ACTION_RESUME: "resume",
    desk_pb2.PAYMENT_ACTION_TERMINATE: "terminate",
}
_ACTION_ORDER = {name: index for index, name in enumerate(ACTIONS.values())}
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_BANK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def require_month(month: str) -> str:
    if not _MONTH.match(month):
        raise InvalidInputError("month", "must be a month written YYYY-MM, e.g. 2025-07")
    return month


def require_bank(bank: str) -> str:
    if not _BANK.match(bank):
        raise InvalidInputError(
            "bank", "must be a bank code of 1-32 letters, digits, '_' or '-', e.g. ICBC-4406"
        )
    return bank


def yuan(fen: int, field_name: str) -> str:
    """Integer fen as yuan with two decimals: 123456 -> "1234.56"."""
    if fen < 0:
        raise CertfedError(f"the node sent a negative {field_name} ({fen} fen); refusing to write")
    return f"{fen // 100}.{fen % 100:02d}"


class PaymentInstructionSource(Protocol):
    """Where a month's instructions come from."""

    def instructions(self, month: str) -> Sequence[desk_pb2.PaymentInstruction]: ...


class DeskPaymentInstructions:
    """A month's instructions from a node's DeskService (an admin's token): the month is closed
    first (ClosePaymentMonth), so what the file holds is final; anything the node decides later
    goes into a month still open. Then every page of ListPaymentInstructions."""

    PAGE_SIZE = 500

    def __init__(self, desk: DeskClient) -> None:
        self._desk = desk

    def instructions(self, month: str) -> Sequence[desk_pb2.PaymentInstruction]:
        self._desk.stub.ClosePaymentMonth(desk_pb2.ClosePaymentMonthRequest(month=month))
        found: list[desk_pb2.PaymentInstruction] = []
        token = ""
        while True:
            response = self._desk.stub.ListPaymentInstructions(
                desk_pb2.ListPaymentInstructionsRequest(
                    month=month, page_size=self.PAGE_SIZE, page_token=token
                )
            )
            found.extend(response.instructions)
            token = response.next_page_token
            if not token:
                return found


class BankFileFormat(Protocol):
    """One layout a bank loads; `render` must be a pure function of its arguments."""

    suffix: str

    def render(self, instructions: Sequence[desk_pb2.PaymentInstruction]) -> bytes: ...


class CsvBankFile:
    """The documented CSV layout: HEADER, one row per instruction."""

    suffix = ".csv"

    def render(self, instructions: Sequence[desk_pb2.PaymentInstruction]) -> bytes:
        rows = sorted((self._row(item) for item in instructions), key=self._order)
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")

    @staticmethod
    def _row(item: desk_pb2.PaymentInstruction) -> tuple[str, ...]:
        action = ACTIONS.get(item.action)
        if action is None:
            raise CertfedError(
                f"instruction {item.instruction_id} has an unknown action ({item.action})"
            )
        return (
            item.instruction_id,
            item.beneficiary_id,
            item.masked_identity_number,
            action,
            item.effective_month,
            str(item.back_pay_months),
            yuan(item.back_pay_fen, "back pay"),
            yuan(item.overpayment_fen, "overpayment"),
        )

    @staticmethod
    def _order(row: tuple[str, ...]) -> tuple[object, ...]:
        return (row[4], _ACTION_ORDER[row[3]], row[1], row[0])


class ExportOutcome(StrEnum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    REPLACED = "replaced"


@dataclass(frozen=True)
class BankFileExport:
    path: Path
    outcome: ExportOutcome
    instructions: int


def bank_file_name(bank: str, month: str, layout: BankFileFormat) -> str:
    return f"payments-{require_bank(bank)}-{require_month(month)}{layout.suffix}"


def export_bank_file(
    source: PaymentInstructionSource,
    *,
    bank: str,
    month: str,
    directory: Path,
    layout: BankFileFormat | None = None,
    force: bool = False,
) -> BankFileExport:
    """Write the month's file into `directory`, or leave an identical one as it is."""
    layout = layout or CsvBankFile()
    target = directory / bank_file_name(bank, month, layout)
    instructions = source.instructions(month)
    content = layout.render(instructions)
    outcome = ExportOutcome.WRITTEN
    if target.exists():
        if target.read_bytes() == content:
            return BankFileExport(target, ExportOutcome.UNCHANGED, len(instructions))
        if not force:
            raise BankFileConflictError(
                f"{target.name} already exists with other content: the month's instructions "
                "changed since it was written, and the bank may have loaded the old file; check "
                "with the bank, then export again with --force to replace it"
            )
        outcome = ExportOutcome.REPLACED
    write_atomically(target, content)
    return BankFileExport(target, outcome, len(instructions))


def write_atomically(target: Path, content: bytes) -> None:
    """Replace `target` with `content` so that a reader sees the old file or the new, never half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o640)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    # The rename is durable only once the folder's entry is on disk.
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
