"""The paying office's year through the desk API on real node processes: data signals, the
termination review, the daily cycle, payment instructions, reminders, the report, duplicates and
the desk views. The two examples of docs/domain.md hold literally, end to end."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from sqlmodel import col

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.launcher import LocalFederation, wait_until
from cli.main import main
from federation.timestamps import to_datetime, to_timestamp
from federation_node.store import db
from federation_node.store.models import Beneficiary
from tests.helpers.identities import resident_id
from tests.helpers.nodes import LANZHOU, QINGDAO

# A source the launcher's feed account is bound to: feeds come from feed accounts.
SOURCE = "hospital-admissions"


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


class Office:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0
        self.records = 0

    def number(self) -> str:
        self.serial += 1
        return resident_id("620102", date(1948, 1, 1), self.serial)

    def register(
        self,
        number: str,
        *,
        valid_until: datetime | None,
        residence: str = "620102",
        amount: int = 250_000,
        node: str = "lanzhou",
    ) -> str:
        request = desk_pb2.RegisterBeneficiaryRequest(
            identity=attestation_pb2.IdentityBundle(
                identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                identity_number=number,
                full_name="Test Person",
                phone="13800000000",
            ),
            residence_region=residence,
            monthly_amount_fen=amount,
        )
        if valid_until is not None:
            request.valid_until.CopyFrom(to_timestamp(valid_until))
        with self.local.desk(node) as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(request).beneficiary.beneficiary_id
        return beneficiary_id

    def signal(
        self, number: str, kind: int, observed_at: datetime, record_id: str | None = None
    ) -> desk_pb2.DataSignal:
        self.records += 1
        return desk_pb2.DataSignal(
            source=SOURCE,
            source_record_id=record_id or f"r{self.records}",
            kind=desk_pb2.SignalKind.ValueType(kind),
            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
            identity_number=number,
            observed_at=to_timestamp(observed_at),
        )

    def record(self, *signals: desk_pb2.DataSignal) -> list[desk_pb2.SignalResult]:
        with self.local.desk("lanzhou", "feed") as desk:
            response = desk.stub.RecordSignals(desk_pb2.RecordSignalsRequest(signals=signals))
        return list(response.results)

    def entitlement(self, beneficiary_id: str) -> desk_pb2.Entitlement:
        with self.local.desk("lanzhou", "reviewer") as desk:
            token = ""
            while True:
                response = desk.stub.ListEntitlements(
                    desk_pb2.ListEntitlementsRequest(page_token=token, page_size=500),
                )
                for entitlement in response.entitlements:
                    if entitlement.beneficiary.beneficiary_id == beneficiary_id:
                        found: desk_pb2.Entitlement = entitlement
                        return found
                token = response.next_page_token
                if not token:
                    raise AssertionError(f"no entitlement for {beneficiary_id}")

    def cycle(self, day: datetime) -> desk_pb2.RunCycleResponse:
        with self.local.desk("lanzhou", "admin") as desk:
            outcome: desk_pb2.RunCycleResponse = desk.stub.RunCycle(
                desk_pb2.RunCycleRequest(day=to_timestamp(day))
            )
        return outcome

    def instructions(self, month: str, beneficiary_id: str) -> list[desk_pb2.PaymentInstruction]:
        with self.local.desk("lanzhou", "admin") as desk:
            response = desk.stub.ListPaymentInstructions(
                desk_pb2.ListPaymentInstructionsRequest(month=month)
            )
        return [i for i in response.instructions if i.beneficiary_id == beneficiary_id]


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    # The days below are chosen by the tests; the server's own daily run must not interfere.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(tmp_path_factory.mktemp("lifecycle")) as local:
            local.start_registry()
            local.add_node(LANZHOU)
            local.add_node(QINGDAO)
            yield Office(local)


def test_a_hospital_stay_inside_validity_defers_certification_to_next_june(office: Office) -> None:
    number = office.number()
    beneficiary_id = office.register(number, valid_until=at(2025, 9, 30))
    [result] = office.record(
        office.signal(number, desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION, at(2025, 6, 23))
    )
    assert result.outcome == desk_pb2.SIGNAL_OUTCOME_APPLIED
    assert result.beneficiary_id == beneficiary_id
    entitlement = office.entitlement(beneficiary_id)
    assert to_datetime(entitlement.beneficiary.valid_until) == at(2026, 6, 23)
    assert entitlement.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
    with office.local.desk("lanzhou", "clerk") as desk:
        exported = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=result.attestation_id),
        ).attestation
    assert exported.method == common_pb2.CERTIFICATION_METHOD_DATA_MATCH
    assert exported.issuing_node_id == "lanzhou"


def test_signals_are_recorded_once_and_unknown_people_are_reported(office: Office) -> None:
    number = office.number()
    office.register(number, valid_until=at(2025, 9, 30))
    signal = office.signal(number, desk_pb2.SIGNAL_KIND_BANK_IN_PERSON, at(2025, 7, 1), "same")
    stranger = office.signal(office.number(), desk_pb2.SIGNAL_KIND_HEALTH_CHECK, at(2025, 7, 1))
    first = office.record(signal, signal, stranger)
    assert [r.outcome for r in first] == [
        desk_pb2.SIGNAL_OUTCOME_APPLIED,
        desk_pb2.SIGNAL_OUTCOME_DUPLICATE,
        desk_pb2.SIGNAL_OUTCOME_UNKNOWN_PERSON,
    ]
    again = office.record(signal)
    assert again[0].outcome == desk_pb2.SIGNAL_OUTCOME_DUPLICATE
    assert again[0].attestation_id == first[0].attestation_id
    # An older signal does not move validity back: recorded, nothing issued.
    older = office.record(office.signal(number, desk_pb2.SIGNAL_KIND_HEALTH_CHECK, at(2025, 1, 5)))
    assert older[0].outcome == desk_pb2.SIGNAL_OUTCOME_IGNORED
    assert not older[0].attestation_id


def test_a_malformed_signal_is_refused_naming_its_field_and_nothing_is_kept(
    office: Office,
) -> None:
    number = office.number()
    good = office.signal(number, desk_pb2.SIGNAL_KIND_HEALTH_CHECK, at(2025, 7, 1))
    bad = office.signal(number, desk_pb2.SIGNAL_KIND_HEALTH_CHECK, at(2025, 7, 1))
    bad.identity_number = number[:-1] + ("0" if number[-1] != "0" else "1")
    with pytest.raises(grpc.RpcError) as refused:
        office.record(good, bad)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "signals[1].identity_number" in (refused.value.details() or "")
    assert number not in (refused.value.details() or "")
    with pytest.raises(grpc.RpcError) as unknown_kind:
        office.record(office.signal(number, 99, at(2025, 7, 1)))
    assert "signals[0].kind" in (unknown_kind.value.details() or "")


def test_suspended_in_july_certified_in_august_resumes_in_september_with_back_pay(
    office: Office,
) -> None:
    number = office.number()
    beneficiary_id = office.register(number, valid_until=at(2025, 4, 1), amount=250_000)
    outcome = office.cycle(at(2025, 7, 1))
    assert outcome.ran
    assert outcome.suspended >= 1
    assert office.entitlement(beneficiary_id).state == desk_pb2.ENTITLEMENT_STATE_SUSPENDED
    [suspend] = office.instructions("2025-07", beneficiary_id)
    assert suspend.action == desk_pb2.PAYMENT_ACTION_SUSPEND
    assert not office.cycle(at(2025, 7, 1)).ran, "a second run of the same day changes nothing"

    office.record(
        office.signal(number, desk_pb2.SIGNAL_KIND_MEDICAL_INSURANCE_SETTLEMENT, at(2025, 8, 14))
    )
    entitlement = office.entitlement(beneficiary_id)
    assert entitlement.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
    [resume] = office.instructions("2025-09", beneficiary_id)
    assert resume.action == desk_pb2.PAYMENT_ACTION_RESUME
    assert (resume.back_pay_months, resume.back_pay_fen) == (2, 500_000)  # July and August


def test_a_death_suspends_at_once_and_a_reviewer_confirms_the_overpayment(
    office: Office,
) -> None:
    number = office.number()
    beneficiary_id = office.register(number, valid_until=at(2027, 3, 1), amount=300_000)
    died = at(2026, 8, 10)
    [result] = office.record(office.signal(number, desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION, died))
    assert result.outcome == desk_pb2.SIGNAL_OUTCOME_APPLIED
    pending = office.entitlement(beneficiary_id)
    assert pending.state == desk_pb2.ENTITLEMENT_STATE_SUSPENDED
    assert pending.termination_pending_review
    month = datetime.now(UTC).strftime("%Y-%m")
    assert [i.action for i in office.instructions(month, beneficiary_id)] == [
        desk_pb2.PAYMENT_ACTION_SUSPEND
    ]
    # An alive signal while the termination awaits review changes nothing.
    late = office.record(office.signal(number, desk_pb2.SIGNAL_KIND_HEALTH_CHECK, at(2026, 9, 1)))
    assert late[0].outcome == desk_pb2.SIGNAL_OUTCOME_IGNORED

    with office.local.desk("lanzhou", "reviewer") as desk:
        confirmed = desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(beneficiary_id=beneficiary_id, confirm=True),
        ).entitlement
    assert confirmed.state == desk_pb2.ENTITLEMENT_STATE_TERMINATED
    assert to_datetime(confirmed.state_since) == died
    assert confirmed.beneficiary.status == desk_pb2.BENEFICIARY_STATUS_DECEASED
    now = datetime.now(UTC)
    paid_after = (now.year - 2026) * 12 + now.month - 9  # September up to last month
    assert confirmed.overpayment_fen == paid_after * 300_000
    terminate = [
        i for i in office.instructions(month, beneficiary_id)
        if i.action == desk_pb2.PAYMENT_ACTION_TERMINATE
    ]  # fmt: skip
    assert terminate[0].overpayment_fen == confirmed.overpayment_fen
    with office.local.desk("lanzhou", "reviewer") as desk, pytest.raises(grpc.RpcError) as again:
        desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(beneficiary_id=beneficiary_id, confirm=True),
        )
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_an_overturned_termination_resumes_payment(office: Office) -> None:
    number = office.number()
    beneficiary_id = office.register(number, valid_until=at(2027, 3, 1))
    office.record(office.signal(number, desk_pb2.SIGNAL_KIND_CRIMINAL_SENTENCE, at(2026, 10, 1)))
    with office.local.desk("lanzhou", "reviewer") as desk:
        with pytest.raises(grpc.RpcError) as no_reason:
            desk.stub.ReviewTermination(
                desk_pb2.ReviewTerminationRequest(beneficiary_id=beneficiary_id, confirm=False),
            )
        assert "reason" in (no_reason.value.details() or "")
        overturned = desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(
                beneficiary_id=beneficiary_id, confirm=False, reason="namesake in the court record"
            ),
        ).entitlement
    assert overturned.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
    assert not overturned.termination_pending_review
    now = datetime.now(UTC)
    next_month = f"{now.year + now.month // 12}-{now.month % 12 + 1:02d}"
    [resume] = office.instructions(next_month, beneficiary_id)
    assert resume.back_pay_months == 1


def test_the_cycle_asks_the_residence_region_and_queues_reminders(office: Office) -> None:
    number = office.number()
    beneficiary_id = office.register(number, valid_until=at(2026, 12, 20), residence="370202")
    # 29 days before validity ends: due (60 days) and past the first reminder (30 days).
    outcome = office.cycle(at(2026, 11, 21))
    assert outcome.ran
    assert outcome.requests_sent >= 1
    assert office.entitlement(beneficiary_id).state == desk_pb2.ENTITLEMENT_STATE_DUE
    with office.local.desk("lanzhou", "clerk") as desk:
        sent = desk.stub.ListAssistanceRequests(
            desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_OUTBOUND),
        ).requests
    assert beneficiary_id in [r.beneficiary_id for r in sent]
    with office.local.desk("lanzhou", "admin") as desk:
        reminders = desk.stub.ListReminders(desk_pb2.ListRemindersRequest()).reminders
        mine = [r for r in reminders if r.beneficiary_id == beneficiary_id]
        assert [r.kind for r in mine] == [desk_pb2.REMINDER_KIND_DUE]
        assert mine[0].phone == "13800000000"
        acknowledged = desk.stub.AcknowledgeReminders(
            desk_pb2.AcknowledgeRemindersRequest(reminder_ids=[mine[0].reminder_id]),
        ).acknowledged
        assert acknowledged == 1
        left = desk.stub.ListReminders(desk_pb2.ListRemindersRequest()).reminders
    assert mine[0].reminder_id not in [r.reminder_id for r in left]
    with office.local.desk("lanzhou", "clerk") as desk, pytest.raises(grpc.RpcError) as denied:
        desk.stub.RunCycle(desk_pb2.RunCycleRequest())
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_record_whose_dates_break_the_cycle_is_skipped_and_reported(office: Office) -> None:
    # The desk refuses such a date now; a record from before that, or from a bad migration,
    # must not stop the cycle for everybody else.
    bad = office.register(office.number(), valid_until=at(2026, 12, 25))
    good = office.register(office.number(), valid_until=at(2026, 12, 25))
    engine = db.create_engine_for(office.local.nodes["lanzhou"].config.effective_database_url)
    try:
        with db.session_scope(engine) as session:
            session.execute(
                sa.update(Beneficiary)
                .where(col(Beneficiary.beneficiary_id) == bad)
                .values(valid_until=datetime(1, 1, 1, tzinfo=UTC))
            )
    finally:
        engine.dispose()
    outcome = office.cycle(at(2026, 11, 25))
    assert outcome.ran
    assert list(outcome.skipped_beneficiary_ids) == [bad]
    assert office.entitlement(good).state == desk_pb2.ENTITLEMENT_STATE_DUE
    assert office.entitlement(bad).state == desk_pb2.ENTITLEMENT_STATE_ACTIVE


def test_both_paying_offices_flag_a_duplicate_and_report_it(office: Office) -> None:
    number = office.number()
    here = office.register(number, valid_until=at(2027, 1, 1))
    there = office.register(number, valid_until=at(2027, 1, 1), node="qingdao")

    def flagged(node: str, beneficiary_id: str) -> bool:
        with office.local.desk(node, "clerk") as desk:
            person = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
            ).beneficiary
        return bool(person.possible_duplicate)

    wait_until(lambda: flagged("qingdao", there), 30, "qingdao to flag the duplicate")
    wait_until(lambda: flagged("lanzhou", here), 30, "lanzhou to flag the duplicate")
    for node in ("lanzhou", "qingdao"):
        with office.local.desk(node, "reviewer") as desk:
            report = desk.stub.GetReport(desk_pb2.GetReportRequest())
        assert report.possible_duplicates >= 1


def test_the_desk_views_print_tables_and_write_csv(
    office: Office, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = office.local.nodes["lanzhou"]
    os.environ["CERTFED_OPERATOR_TOKEN"] = handle.tokens["reviewer"]
    try:
        suspended_csv = tmp_path / "suspended.csv"
        assert (
            main(
                [
                    "desk",
                    "--config",
                    str(handle.config_path),
                    "suspended",
                    "--csv",
                    str(suspended_csv),
                ]
            )
            == 0
        )
        with suspended_csv.open(encoding="utf-8") as opened:
            rows = list(csv.DictReader(opened))
        assert rows
        assert all(row["state"] == "suspended" for row in rows)
        assert all("*" in row["masked_identity_number"] for row in rows)
        for view in ("due", "warning", "overpayments", "duplicates", "report"):
            assert main(["desk", "--config", str(handle.config_path), view]) == 0
        printed = capsys.readouterr().out
        assert "data_match" in printed
        os.environ["CERTFED_OPERATOR_TOKEN"] = handle.tokens["admin"]
        assert (
            main(["node", "cycle", "--config", str(handle.config_path), "--day", "2025-01-02"]) == 0
        )
        assert (
            main(["node", "cycle", "--config", str(handle.config_path), "--day", "2025-01-02"]) == 0
        )
        assert "already run" in capsys.readouterr().out
    finally:
        del os.environ["CERTFED_OPERATOR_TOKEN"]
