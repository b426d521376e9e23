"""A certification recorded late never rewrites a closed month (docs/policy.md, "Closed months").

Through the desk API of a real paying office, with the months counted back from today: two
people are suspended five months ago, the office's calendar moves on month by month, and their
alive signals (seen four months ago) are recorded only now. Payment resumes in the first open
month with back pay for every withheld month up to it; the months already closed, by the
calendar or by exporting their bank file, keep exactly their instructions and their files. A
death learnt of late is handled the same way: suspended and terminated in the first open month,
every month paid since the death an overpayment.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from dateutil.relativedelta import relativedelta

from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation
from cli.main import main
from federation.timestamps import to_timestamp
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU

AMOUNT = 250_000
TODAY = datetime.now(UTC).date()
THIS_MONTH = date(TODAY.year, TODAY.month, 1)


def month(offset: int) -> date:
    """The first day of the month `offset` months from this one."""
    return THIS_MONTH + relativedelta(months=offset)


def label(offset: int) -> str:
    return f"{month(offset):%Y-%m}"


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class Office:
    def __init__(self, local: LocalFederation, bank_dir: Path) -> None:
        self.local = local
        self.bank_dir = bank_dir
        self.handle = local.nodes["lanzhou"]
        self.records = 0

    def register(self, serial: int, valid_until: date) -> str:
        with self.local.desk("lanzhou") as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=resident(self.number(serial)),
                    residence_region="620102",
                    valid_until=to_timestamp(at(valid_until)),
                    monthly_amount_fen=AMOUNT,
                )
            ).beneficiary.beneficiary_id
        return beneficiary_id

    @staticmethod
    def number(serial: int) -> str:
        return resident_id("620102", date(1946, 5, 4), serial)

    def signal(self, serial: int, kind: int, observed: date) -> desk_pb2.SignalResult:
        self.records += 1
        # A feed's signal, from the node's feed account (bound to the shipped mappings' sources).
        with self.local.desk("lanzhou", "feed") as desk:
            [result] = desk.stub.RecordSignals(
                desk_pb2.RecordSignalsRequest(
                    signals=[
                        desk_pb2.DataSignal(
                            source="hospital-admissions",
                            source_record_id=f"late-{self.records}",
                            kind=desk_pb2.SignalKind.ValueType(kind),
                            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                            identity_number=self.number(serial),
                            observed_at=to_timestamp(at(observed)),
                        )
                    ]
                )
            ).results
        return result

    def cycle(self, day: date) -> None:
        with self.local.desk("lanzhou", "admin") as desk:
            assert desk.stub.RunCycle(desk_pb2.RunCycleRequest(day=to_timestamp(at(day)))).ran

    def instructions(self, offset: int) -> dict[str, list[desk_pb2.PaymentInstruction]]:
        found: dict[str, list[desk_pb2.PaymentInstruction]] = {}
        with self.local.desk("lanzhou", "admin") as desk:
            token = ""
            while True:
                response = desk.stub.ListPaymentInstructions(
                    desk_pb2.ListPaymentInstructionsRequest(
                        month=label(offset), page_size=1, page_token=token
                    )
                )
                for instruction in response.instructions:
                    found.setdefault(instruction.beneficiary_id, []).append(instruction)
                token = response.next_page_token
                if not token:
                    return found

    def export(self, offset: int, monkeypatch: pytest.MonkeyPatch) -> int:
        monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", self.handle.tokens["admin"])
        return main(
            ["bank", "export", "--config", str(self.handle.config_path), "--month", label(offset),
             "--bank", "ICBC-6201", "--out-dir", str(self.bank_dir)]
        )  # fmt: skip

    def bank_file(self, offset: int) -> Path:
        return self.bank_dir / f"payments-ICBC-6201-{label(offset)}.csv"

    def bank_rows(self, offset: int) -> list[dict[str, str]]:
        with self.bank_file(offset).open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    with pytest.MonkeyPatch.context() as patch:
        # The test moves the office's calendar itself; the node's own daily run must not.
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(tmp_path_factory.mktemp("late")) as local:
            local.start_registry()
            local.add_node(LANZHOU)
            yield Office(local, tmp_path_factory.mktemp("bank"))


def actions(found: dict[str, list[desk_pb2.PaymentInstruction]], beneficiary_id: str) -> list[int]:
    return sorted(i.action for i in found.get(beneficiary_id, []))


def test_late_certifications_resume_in_the_first_open_month_and_closed_months_never_change(
    office: Office, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Suspended on the cycle of the 1st five months ago: validity ended three months (the
    # warning period) and ten days before that.
    expired = month(-5) - relativedelta(months=3) - timedelta(days=10)
    first = office.register(1, expired)
    second = office.register(2, expired)
    dies = office.register(3, TODAY + timedelta(days=300))
    for offset in range(-5, 0):
        office.cycle(month(offset))
    office.cycle(TODAY)
    suspended = office.instructions(-5)
    assert actions(suspended, first) == [desk_pb2.PAYMENT_ACTION_SUSPEND]
    assert actions(suspended, second) == [desk_pb2.PAYMENT_ACTION_SUSPEND]

    # Seen alive in a hospital four months ago; the feed arrives only now. The calendar has
    # closed every month before this one: payment resumes this month, five months paid back.
    seen = month(-4) + timedelta(days=19)
    assert office.signal(1, desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION, seen).outcome == (
        desk_pb2.SIGNAL_OUTCOME_APPLIED
    )
    [resumed] = office.instructions(0)[first]
    assert resumed.action == desk_pb2.PAYMENT_ACTION_RESUME
    assert (resumed.back_pay_months, resumed.back_pay_fen) == (5, 5 * AMOUNT)
    for offset in (-4, -3, -2, -1, 1):
        assert first not in office.instructions(offset), label(offset)

    # The bank files of the closed months, and this month's: exporting closes this month too.
    for offset in range(-5, 1):
        assert office.export(offset, monkeypatch) == 0
    before = {offset: office.bank_file(offset).read_bytes() for offset in range(-5, 1)}
    assert [r["action"] for r in office.bank_rows(0) if r["beneficiary_id"] == first] == ["resume"]
    assert [r["back_pay_months"] for r in office.bank_rows(0)] == ["5"]
    assert [r["effective_month"] for r in office.bank_rows(-5)] == [label(-5), label(-5)]

    # The second person's signal, same day seen, recorded after this month's file went out:
    # payment resumes next month, with this month paid back too.
    office.signal(2, desk_pb2.SIGNAL_KIND_HEALTH_CHECK, seen)
    [later] = office.instructions(1)[second]
    assert later.action == desk_pb2.PAYMENT_ACTION_RESUME
    assert (later.back_pay_months, later.back_pay_fen) == (6, 6 * AMOUNT)
    for offset in range(-4, 1):
        assert second not in office.instructions(offset), label(offset)

    # A death two months ago, learnt of now: suspended and (once confirmed) terminated next
    # month, the last two months' pensions an overpayment.
    died = month(-2) + timedelta(days=4)
    office.signal(3, desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION, died)
    with office.local.desk("lanzhou", "reviewer") as desk:
        ended = desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(beneficiary_id=dies, confirm=True)
        ).entitlement
    assert ended.overpayment_fen == 2 * AMOUNT
    next_month = office.instructions(1)
    assert actions(next_month, dies) == [
        desk_pb2.PAYMENT_ACTION_SUSPEND,
        desk_pb2.PAYMENT_ACTION_TERMINATE,
    ]
    for offset in range(-5, 1):
        assert dies not in office.instructions(offset), label(offset)

    # Every closed month exports to the very same bytes; next month cannot be closed yet.
    for offset in range(-5, 1):
        assert office.export(offset, monkeypatch) == 0
        assert office.bank_file(offset).read_bytes() == before[offset], label(offset)
    assert office.export(1, monkeypatch) == 1
    assert not office.bank_file(1).exists()
