"""Overpayment recovery on real node processes over mutual TLS, on SQLite and PostgreSQL: what a
person owes after a confirmed death (the overpayment) or a fraud (with the policy's fine), the
recoveries a clerk records against it, the balance, and a correction that reverses the death.
And the report windows: a death the family reported after 7 days, or the unit or village after
3, is listed late.

Bad input is refused with the status a clerk can act on, and leaves the debt as it was.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation, wait_until
from cli.main import main
from federation.timestamps import to_timestamp
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU, database_url_for, offices_with_policy

MONTHLY_FEN = 300_000
FINE_MULTIPLE = 3
POLICY = f"[recovery]\nfraud_fine_multiple = {FINE_MULTIPLE}\n"
# A source the launcher's feed account is bound to.
SOURCE = "hospital-admissions"
UNKNOWN_ID = "00000000-0000-7000-8000-000000000000"


def months_paid_after(ended: datetime, now: datetime) -> int:
    """Months after the month `ended` up to the one before `now`'s: paid, and to recover."""
    return max(0, (now.year * 12 + now.month) - (ended.year * 12 + ended.month) - 1)


class Office:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0

    def number(self) -> str:
        self.serial += 1
        return resident_id("620102", date(1947, 3, 1), self.serial)

    def register(self, number: str) -> str:
        request = desk_pb2.RegisterBeneficiaryRequest(
            identity=resident(number),
            residence_region="620102",
            monthly_amount_fen=MONTHLY_FEN,
            valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=200)),
        )
        with self.local.desk("lanzhou", "clerk") as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(request).beneficiary.beneficiary_id
        return beneficiary_id

    def deceased(self, number: str, beneficiary_id: str, died: datetime) -> None:
        """A death registration from a feed, confirmed by a reviewer."""
        self.serial += 1
        signal = desk_pb2.DataSignal(
            source=SOURCE,
            source_record_id=f"death-{self.serial}",
            kind=desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION,
            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
            identity_number=number,
            observed_at=to_timestamp(died),
        )
        with self.local.desk("lanzhou", "feed") as desk:
            desk.stub.RecordSignals(desk_pb2.RecordSignalsRequest(signals=[signal]))
        with self.local.desk("lanzhou", "reviewer") as desk:
            desk.stub.ReviewTermination(
                desk_pb2.ReviewTerminationRequest(beneficiary_id=beneficiary_id, confirm=True)
            )

    def certify(
        self, request: desk_pb2.RecordCertificationRequest, outcome: int
    ) -> desk_pb2.Certification:
        """Recorded by a clerk with evidence, approved by a reviewer."""
        request.method = common_pb2.CERTIFICATION_METHOD_ON_SITE
        request.outcome = outcome  # type: ignore[assignment]
        if not request.HasField("observed_at"):
            request.observed_at.CopyFrom(to_timestamp(datetime.now(UTC) - timedelta(minutes=1)))
        with self.local.desk("lanzhou", "clerk") as desk:
            self.serial += 1
            request.evidence_digests.append(upload_capture(desk, self.serial))
            recorded = desk.stub.RecordCertification(request).certification
        with self.local.desk("lanzhou", "reviewer") as desk:
            approved = desk.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=recorded.certification_id)
            )
        certification: desk_pb2.Certification = approved.certification
        return certification

    def debt(self, beneficiary_id: str) -> desk_pb2.GetDebtResponse:
        with self.local.desk("lanzhou", "admin") as desk:
            response: desk_pb2.GetDebtResponse = desk.stub.GetDebt(
                desk_pb2.GetDebtRequest(beneficiary_id=beneficiary_id)
            )
        return response

    def recover(
        self, beneficiary_id: str, amount_fen: int, **fields: object
    ) -> desk_pb2.RecordRecoveryResponse:
        """A clerk's recovery; `fields` override the request's (None clears one)."""
        request = desk_pb2.RecordRecoveryRequest(
            beneficiary_id=beneficiary_id,
            amount_fen=amount_fen,
            received_at=to_timestamp(datetime.now(UTC) - timedelta(days=1)),
            method=desk_pb2.RECOVERY_METHOD_BANK_RETURN,
            reference="BANK-0001",
        )
        for name, value in fields.items():
            if value is None:
                request.ClearField(name)  # type: ignore[arg-type]
            else:
                setattr(request, name, value)
        with self.local.desk("lanzhou", "clerk") as desk:
            response: desk_pb2.RecordRecoveryResponse = desk.stub.RecordRecovery(request)
        return response

    def listed(self) -> dict[str, desk_pb2.Debt]:
        found: dict[str, desk_pb2.Debt] = {}
        token = ""
        with self.local.desk("lanzhou", "clerk") as desk:
            while True:
                response = desk.stub.ListDebts(
                    desk_pb2.ListDebtsRequest(page_size=1, page_token=token)
                )
                assert len(response.debts) <= 1
                found.update((debt.beneficiary_id, debt) for debt in response.debts)
                token = response.next_page_token
                if not token:
                    return found


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def office(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Office]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp("recoveries")
    with offices_with_policy(workdir, urls, LANZHOU, POLICY) as local:
        yield Office(local)


def test_a_confirmed_death_is_owed_and_recoveries_settle_it_never_beyond_the_balance(
    office: Office,
) -> None:
    number = office.number()
    beneficiary_id = office.register(number)
    now = datetime.now(UTC)
    died = datetime(now.year, now.month, 1, tzinfo=UTC) - timedelta(days=80)
    office.deceased(number, beneficiary_id, died)
    owed = months_paid_after(died, now) * MONTHLY_FEN
    assert owed > 0

    debt = office.listed()[beneficiary_id]
    assert (debt.overpayment_fen, debt.fraud_fen, debt.recovered_fen) == (owed, 0, 0)
    assert debt.balance_fen == owed
    assert "*" in debt.masked_identity_number

    first = office.recover(beneficiary_id, MONTHLY_FEN, reference="BANK-2026-1")
    assert first.debt.recovered_fen == MONTHLY_FEN
    assert first.debt.balance_fen == owed - MONTHLY_FEN
    assert first.entry.kind == desk_pb2.DEBT_ENTRY_KIND_RECOVERY
    assert first.entry.method == desk_pb2.RECOVERY_METHOD_BANK_RETURN
    clerk_id = office.local.nodes["lanzhou"].operator_ids["clerk"]
    assert first.entry.recorded_by == f"operator:{clerk_id}"

    with pytest.raises(grpc.RpcError) as too_much:
        office.recover(beneficiary_id, owed)
    assert too_much.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert str(owed - MONTHLY_FEN) in (too_much.value.details() or "")
    assert office.debt(beneficiary_id).debt.balance_fen == owed - MONTHLY_FEN

    settled = office.recover(
        beneficiary_id, owed - MONTHLY_FEN, method=desk_pb2.RECOVERY_METHOD_REPAYMENT
    )
    assert settled.debt.balance_fen == 0
    with pytest.raises(grpc.RpcError) as nothing_due:
        office.recover(beneficiary_id, 1)
    assert nothing_due.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    shown = office.debt(beneficiary_id)
    assert [entry.amount_fen for entry in shown.entries] == [MONTHLY_FEN, owed - MONTHLY_FEN]
    assert shown.entries[0].reference == "BANK-2026-1"


def test_a_fraud_is_owed_with_the_policys_fine_and_only_a_reviewer_records_it(
    office: Office,
) -> None:
    beneficiary_id = office.register(office.number())
    assert beneficiary_id not in office.listed()
    fraud = desk_pb2.RecordFraudRequest(
        beneficiary_id=beneficiary_id,
        obtained_fen=100_000,
        found_at=to_timestamp(datetime.now(UTC) - timedelta(days=3)),
        reference="CASE-17",
    )
    with office.local.desk("lanzhou", "clerk") as desk, pytest.raises(grpc.RpcError) as clerk:
        desk.stub.RecordFraud(fraud)
    assert clerk.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with office.local.desk("lanzhou", "reviewer") as desk:
        recorded = desk.stub.RecordFraud(fraud)
        with pytest.raises(grpc.RpcError) as reviewer:
            desk.stub.RecordRecovery(
                desk_pb2.RecordRecoveryRequest(beneficiary_id=beneficiary_id, amount_fen=1)
            )
    assert reviewer.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert recorded.entry.kind == desk_pb2.DEBT_ENTRY_KIND_FRAUD
    assert recorded.entry.fine_fen == 100_000 * FINE_MULTIPLE
    due = 100_000 * (1 + FINE_MULTIPLE)
    assert (recorded.debt.fraud_fen, recorded.debt.balance_fen) == (due, due)
    assert office.listed()[beneficiary_id].balance_fen == due
    assert office.recover(beneficiary_id, 50_000).debt.balance_fen == due - 50_000


@pytest.mark.parametrize(
    ("fields", "code", "named"),
    [
        ({"amount_fen": 0}, grpc.StatusCode.INVALID_ARGUMENT, "amount_fen"),
        ({"amount_fen": -5}, grpc.StatusCode.INVALID_ARGUMENT, "amount_fen"),
        ({"amount_fen": 10**15}, grpc.StatusCode.INVALID_ARGUMENT, "amount_fen"),
        ({"method": 0}, grpc.StatusCode.INVALID_ARGUMENT, "method"),
        ({"method": 42}, grpc.StatusCode.INVALID_ARGUMENT, "method"),
        ({"received_at": None}, grpc.StatusCode.INVALID_ARGUMENT, "received_at"),
        ({"reference": ""}, grpc.StatusCode.INVALID_ARGUMENT, "reference"),
        ({"reference": "R" * 65}, grpc.StatusCode.INVALID_ARGUMENT, "reference"),
        ({"reference": "a\x00b"}, grpc.StatusCode.INVALID_ARGUMENT, "reference"),
        ({"beneficiary_id": "no-such-person"}, grpc.StatusCode.INVALID_ARGUMENT, "beneficiary_id"),
        ({"beneficiary_id": UNKNOWN_ID}, grpc.StatusCode.NOT_FOUND, UNKNOWN_ID),
    ],
)
def test_a_bad_recovery_is_refused_naming_its_field_and_nothing_is_recorded(
    office: Office, fields: dict[str, object], code: grpc.StatusCode, named: str
) -> None:
    beneficiary_id = office.register(office.number())
    with office.local.desk("lanzhou", "reviewer") as desk:
        desk.stub.RecordFraud(
            desk_pb2.RecordFraudRequest(
                beneficiary_id=beneficiary_id,
                obtained_fen=10_000,
                found_at=to_timestamp(datetime.now(UTC) - timedelta(days=1)),
                reference="CASE-1",
            )
        )
    before = office.debt(beneficiary_id)
    changed = dict(fields)
    who = str(changed.pop("beneficiary_id", beneficiary_id))
    amount = changed.pop("amount_fen", 1_000)
    assert isinstance(amount, int)
    with pytest.raises(grpc.RpcError) as refused:
        office.recover(who, amount, **changed)
    assert refused.value.code() == code
    assert named in (refused.value.details() or "")
    assert office.debt(beneficiary_id) == before


def test_a_future_date_is_refused(office: Office) -> None:
    beneficiary_id = office.register(office.number())
    with office.local.desk("lanzhou", "reviewer") as desk, pytest.raises(grpc.RpcError) as future:
        desk.stub.RecordFraud(
            desk_pb2.RecordFraudRequest(
                beneficiary_id=beneficiary_id,
                obtained_fen=10_000,
                found_at=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
                reference="CASE-2",
            )
        )
    assert future.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "found_at" in (future.value.details() or "")
    assert not office.debt(beneficiary_id).entries


def test_a_correction_reversing_a_death_clears_the_overpayment_and_shows_the_refund(
    office: Office,
) -> None:
    beneficiary_id = office.register(office.number())
    observed = datetime.now(UTC).replace(microsecond=0) - timedelta(days=80)
    death = desk_pb2.RecordCertificationRequest(beneficiary_id=beneficiary_id)
    death.observed_at.CopyFrom(to_timestamp(observed))
    death_id = office.certify(death, common_pb2.CERTIFICATION_OUTCOME_DECEASED).attestation_id
    owed = office.debt(beneficiary_id).debt.overpayment_fen
    assert owed == months_paid_after(observed, datetime.now(UTC)) * MONTHLY_FEN > 0
    office.recover(beneficiary_id, MONTHLY_FEN)

    office.certify(
        desk_pb2.RecordCertificationRequest(corrects_attestation_id=death_id),
        common_pb2.CERTIFICATION_OUTCOME_ALIVE,
    )

    reversed_debt = office.debt(beneficiary_id).debt
    assert reversed_debt.overpayment_fen == 0
    assert reversed_debt.recovered_fen == MONTHLY_FEN
    assert reversed_debt.balance_fen == -MONTHLY_FEN, "recovered beyond what is due: a refund"
    assert office.listed()[beneficiary_id].balance_fen == -MONTHLY_FEN
    with pytest.raises(grpc.RpcError) as nothing_due:
        office.recover(beneficiary_id, 1)
    assert nothing_due.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The reversal's audit record says what is to be refunded (sequenced shortly after).
    with office.local.desk("lanzhou", "admin") as desk:

        def reversal() -> desk_pb2.AuditRecordView | None:
            trail = desk.stub.ListAuditRecords(
                desk_pb2.ListAuditRecordsRequest(subject_id=beneficiary_id)
            ).records
            return next((r for r in trail if r.action == "entitlement.correction_reversed"), None)

        record = wait_until(reversal, 30, "the reversal in the audit trail")
    assert json.loads(record.details_json)["refund_due_fen"] == MONTHLY_FEN


def test_the_cli_lists_debts_and_writes_formula_safe_csv(
    office: Office, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    beneficiary_id = office.register(office.number())
    with office.local.desk("lanzhou", "reviewer") as desk:
        desk.stub.RecordFraud(
            desk_pb2.RecordFraudRequest(
                beneficiary_id=beneficiary_id,
                obtained_fen=20_000,
                found_at=to_timestamp(datetime.now(UTC) - timedelta(days=1)),
                reference="CASE-3",
            )
        )
    handle = office.local.nodes["lanzhou"]
    recoveries = ["desk", "--config", str(handle.config_path), "recoveries"]
    os.environ["CERTFED_OPERATOR_TOKEN"] = handle.tokens["clerk"]
    try:
        assert main([*recoveries, "record", beneficiary_id, "--amount-fen", "5000",
                     "--received", (date.today() - timedelta(days=2)).isoformat(),
                     "--method", "repayment", "--reference", "=HYPERLINK(1)"]) == 0  # fmt: skip
        debts_csv = tmp_path / "debts.csv"
        assert main([*recoveries, "list", "--csv", str(debts_csv)]) == 0
        lines_csv = tmp_path / "lines.csv"
        assert main([*recoveries, "show", beneficiary_id, "--csv", str(lines_csv)]) == 0
        assert main([*recoveries, "list"]) == 0
        assert "rows; no more" in capsys.readouterr().out
        with pytest.raises(SystemExit):
            main([*recoveries, "record", beneficiary_id, "--amount-fen", "10",
                  "--received", "2026-13-01", "--method", "repayment",
                  "--reference", "x"])  # fmt: skip
    finally:
        del os.environ["CERTFED_OPERATOR_TOKEN"]
    with debts_csv.open(encoding="utf-8") as opened:
        debts = {row["beneficiary_id"]: row for row in csv.DictReader(opened)}
    assert debts[beneficiary_id]["balance_fen"] == str(20_000 * (1 + FINE_MULTIPLE) - 5000)
    with lines_csv.open(encoding="utf-8") as opened:
        lines = list(csv.DictReader(opened))
    assert [(line["kind"], line["method"]) for line in lines] == [
        ("fraud", ""),
        ("recovery", "repayment"),
    ]
    assert lines[1]["reference"] == "'=HYPERLINK(1)", "a formula is written as text"


def _death(office: Office, days_ago: int, reporter: int) -> desk_pb2.RecordCertificationRequest:
    request = desk_pb2.RecordCertificationRequest(
        beneficiary_id=office.register(office.number()),
        death_reporter=reporter,  # type: ignore[arg-type]
    )
    request.observed_at.CopyFrom(to_timestamp(datetime.now(UTC) - timedelta(days=days_ago)))
    return request


def test_deaths_reported_after_their_window_are_listed_late(office: Office, tmp_path: Path) -> None:
    deceased = common_pb2.CERTIFICATION_OUTCOME_DECEASED
    family_late = office.certify(_death(office, 10, desk_pb2.DEATH_REPORTER_FAMILY), deceased)
    family_in_time = office.certify(_death(office, 6, desk_pb2.DEATH_REPORTER_FAMILY), deceased)
    unit_in_time = office.certify(_death(office, 2, desk_pb2.DEATH_REPORTER_UNIT), deceased)
    village_late = office.certify(_death(office, 5, desk_pb2.DEATH_REPORTER_VILLAGE), deceased)
    unreported = office.certify(_death(office, 30, 0), deceased)

    with office.local.desk("lanzhou", "clerk") as desk:
        listed = {
            report.certification_id: report
            for report in desk.stub.ListLateDeathReports(
                desk_pb2.ListLateDeathReportsRequest(page_size=500)
            ).reports
        }
    assert family_late.certification_id in listed
    assert village_late.certification_id in listed
    for on_time in (family_in_time, unit_in_time, unreported):
        assert on_time.certification_id not in listed
    late = listed[family_late.certification_id]
    assert late.reporter == desk_pb2.DEATH_REPORTER_FAMILY
    assert (late.days_taken, late.window_days) == (10, 7)
    assert late.beneficiary_id
    assert listed[village_late.certification_id].window_days == 3

    handle = office.local.nodes["lanzhou"]
    late_csv = tmp_path / "late.csv"
    os.environ["CERTFED_OPERATOR_TOKEN"] = handle.tokens["reviewer"]
    try:
        command = ["desk", "--config", str(handle.config_path), "recoveries", "late-reports"]
        assert main([*command, "--csv", str(late_csv)]) == 0
    finally:
        del os.environ["CERTFED_OPERATOR_TOKEN"]
    with late_csv.open(encoding="utf-8") as opened:
        rows = {row["certification_id"]: row for row in csv.DictReader(opened)}
    assert rows[family_late.certification_id]["reporter"] == "family"
    assert rows[family_late.certification_id]["days_taken"] == "10"


@pytest.mark.parametrize(
    ("outcome", "reporter"),
    [
        (common_pb2.CERTIFICATION_OUTCOME_ALIVE, desk_pb2.DEATH_REPORTER_FAMILY),
        (common_pb2.CERTIFICATION_OUTCOME_DECEASED, 9),
    ],
)
def test_a_reporter_is_refused_on_anything_but_a_death_and_must_be_known(
    office: Office, outcome: int, reporter: int
) -> None:
    request = _death(office, 1, reporter)
    request.method = common_pb2.CERTIFICATION_METHOD_ON_SITE
    request.outcome = outcome  # type: ignore[assignment]
    with office.local.desk("lanzhou", "clerk") as desk:
        request.evidence_digests.append(upload_capture(desk, 999))
        with pytest.raises(grpc.RpcError) as refused:
            desk.stub.RecordCertification(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "death_reporter" in (refused.value.details() or "")
