"""Bank files: the documented layout, yuan from fen, byte-identical reruns, no silent overwrite."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.bank_files import (
    HEADER,
    CsvBankFile,
    ExportOutcome,
    export_bank_file,
    require_month,
    yuan,
)
from adapters.errors import BankFileConflictError
from certfed.v1 import desk_pb2
from federation.errors import CertfedError, InvalidInputError


class FixedInstructions:
    def __init__(self, instructions: Sequence[desk_pb2.PaymentInstruction]) -> None:
        self.items = list(instructions)
        self.months: list[str] = []

    def instructions(self, month: str) -> Sequence[desk_pb2.PaymentInstruction]:
        self.months.append(month)
        return self.items


def instruction(number: int, action: int, **amounts: int) -> desk_pb2.PaymentInstruction:
    return desk_pb2.PaymentInstruction(
        instruction_id=f"0199-{number:04d}",
        beneficiary_id=f"b-{number:04d}",
        masked_identity_number="44**************1X",
        action=action,  # type: ignore[arg-type]
        effective_month="2025-09",
        **amounts,
    )


JULY = [
    instruction(3, desk_pb2.PAYMENT_ACTION_TERMINATE, overpayment_fen=612_350),
    instruction(1, desk_pb2.PAYMENT_ACTION_RESUME, back_pay_fen=640_000, back_pay_months=2),
    instruction(2, desk_pb2.PAYMENT_ACTION_SUSPEND),
]


def test_the_csv_layout_has_the_fixed_header_and_yuan_with_two_decimals() -> None:
    content = CsvBankFile().render(JULY)
    assert content.startswith(b"instruction_id,beneficiary_id,masked_identity_number,action,")
    assert b"\r\n" in content
    assert not content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
    assert tuple(rows[0]) == HEADER
    assert rows[1:] == [
        ["0199-0002", "b-0002", "44**************1X", "suspend", "2025-09", "0", "0.00", "0.00"],
        ["0199-0001", "b-0001", "44**************1X", "resume", "2025-09", "2", "6400.00", "0.00"],
        ["0199-0003", "b-0003", "44**************1X", "terminate", "2025-09", "0", "0.00",
         "6123.50"],
    ]  # fmt: skip


def test_rendering_does_not_depend_on_the_order_the_node_answers_in() -> None:
    assert CsvBankFile().render(JULY) == CsvBankFile().render(list(reversed(JULY)))


@pytest.mark.parametrize(
    ("fen", "text"), [(0, "0.00"), (5, "0.05"), (100, "1.00"), (123_456, "1234.56")]
)
def test_fen_become_yuan_without_floats(fen: int, text: str) -> None:
    assert yuan(fen, "x") == text


def test_a_negative_amount_or_unknown_action_is_refused() -> None:
    with pytest.raises(CertfedError, match="negative back pay"):
        CsvBankFile().render([instruction(1, desk_pb2.PAYMENT_ACTION_RESUME, back_pay_fen=-1)])
    with pytest.raises(CertfedError, match="unknown action"):
        CsvBankFile().render([instruction(1, desk_pb2.PAYMENT_ACTION_UNSPECIFIED)])


def test_exporting_the_same_month_twice_leaves_the_file_byte_identical(tmp_path: Path) -> None:
    source = FixedInstructions(JULY)
    first = export_bank_file(source, bank="ICBC-4406", month="2025-09", directory=tmp_path)
    assert first.outcome is ExportOutcome.WRITTEN
    assert first.path == tmp_path / "payments-ICBC-4406-2025-09.csv"
    assert first.instructions == 3
    written = first.path.read_bytes()
    stamp = first.path.stat().st_mtime_ns
    source.items.reverse()
    second = export_bank_file(source, bank="ICBC-4406", month="2025-09", directory=tmp_path)
    assert second.outcome is ExportOutcome.UNCHANGED
    assert second.path.read_bytes() == written
    assert second.path.stat().st_mtime_ns == stamp
    assert source.months == ["2025-09", "2025-09"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["payments-ICBC-4406-2025-09.csv"]


def test_a_different_file_for_the_month_is_kept_unless_forced(tmp_path: Path) -> None:
    export_bank_file(FixedInstructions(JULY), bank="ICBC", month="2025-09", directory=tmp_path)
    before = (tmp_path / "payments-ICBC-2025-09.csv").read_bytes()
    changed = FixedInstructions(JULY[:2])
    with pytest.raises(BankFileConflictError, match="--force"):
        export_bank_file(changed, bank="ICBC", month="2025-09", directory=tmp_path)
    assert (tmp_path / "payments-ICBC-2025-09.csv").read_bytes() == before
    forced = export_bank_file(changed, bank="ICBC", month="2025-09", directory=tmp_path, force=True)
    assert forced.outcome is ExportOutcome.REPLACED
    assert forced.path.read_bytes() == CsvBankFile().render(JULY[:2])
    assert [p.name for p in tmp_path.iterdir()] == ["payments-ICBC-2025-09.csv"]
    assert os.stat(forced.path).st_mode & 0o077 == 0o040


def test_a_month_without_instructions_still_gets_its_file_with_the_header(tmp_path: Path) -> None:
    result = export_bank_file(
        FixedInstructions([]), bank="BOC", month="2025-10", directory=tmp_path
    )
    assert result.path.read_bytes() == (",".join(HEADER) + "\r\n").encode()


@pytest.mark.parametrize("month", ["2025-13", "2025-7", "25-07", "2025/07", ""])
def test_a_malformed_month_is_refused(month: str) -> None:
    with pytest.raises(InvalidInputError, match="month"):
        require_month(month)


@pytest.mark.parametrize("bank", ["", "../etc", "a b", "x" * 33])
def test_a_bank_code_that_cannot_be_a_file_name_is_refused(bank: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="bank"):
        export_bank_file(FixedInstructions([]), bank=bank, month="2025-10", directory=tmp_path)
