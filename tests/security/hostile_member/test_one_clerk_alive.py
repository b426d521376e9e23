"""One person alone cannot make a retiree "alive": a clerk's alive signal waits for a second
person, and a feed account records only the sources it is bound to.

A real registry and a real Lanzhou node process on PostgreSQL. A retiree's validity ran out long
ago and the daily cycle has suspended their payment. The attackers hold valid credentials of
their own: the node's clerk, a senior operator who is both clerk and reviewer, and a feed account
bound to another source. Each test performs its exploit over the desk and asserts the refusal
and that nothing changed for the retiree: validity, entitlement, payment instructions, stored
attestations. A second person's approval then applies the held signal, naming both people.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.launcher import LocalFederation
from federation.desk_client import DeskClient
from federation.timestamps import to_datetime, to_timestamp
from signing import dsse
from tests.helpers.commands import certfed
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU, database_url_for

BORN = date(1949, 3, 4)
MONTHLY_FEN = 310_000
# One suspended retiree for each test.
PEOPLE = 5
# A source the launcher's feed account is bound to (the shipped hospital admissions mapping).
FED_SOURCE = "hospital-admissions"
# A source no feed account has: what a person types in at the counter.
COUNTER_SOURCE = "lanzhou-counter"


@dataclass(frozen=True)
class Snapshot:
    """Everything an alive signal could change about one beneficiary."""

    valid_until: datetime
    state: int
    instructions: tuple[tuple[int, str, int], ...]
    attestations: tuple[str, ...]


class Office:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0
        self.records = 0
        self.handle = local.nodes[LANZHOU.node_id]
        self.people: list[tuple[str, str]] = []
        self.senior = self.add_operator("senior counter", "--role", "clerk", "--role", "reviewer")
        self.stranger_feed = self.add_operator(
            "bank feed", "--role", "feed", "--source", "lanzhou-bank"
        )

    def add_operator(self, label: str, *arguments: str) -> str:
        added = certfed(
            "node", "add-operator", "--config", str(self.handle.config_path), "--label", label,
            *arguments,
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        return added.stdout.strip().splitlines()[-1]

    def desk(self, operator: str) -> DeskClient:
        return self.local.desk(LANZHOU.node_id, operator)

    def desk_with(self, token: str) -> DeskClient:
        return DeskClient(
            f"127.0.0.1:{self.handle.desk_port}",
            LANZHOU.node_id,
            self.handle.config.ca_certificate.read_bytes(),
            token,
            self.local.limits,
        )

    def register_suspended(self, count: int) -> None:
        """Retirees whose validity ended half a year ago, suspended by today's cycle (which
        runs once a day: all of them before it)."""
        with self.desk("clerk") as desk:
            for _ in range(count):
                self.serial += 1
                number = resident_id("620102", BORN, self.serial)
                beneficiary_id: str = desk.stub.RegisterBeneficiary(
                    desk_pb2.RegisterBeneficiaryRequest(
                        identity=resident(number),
                        residence_region="620102",
                        monthly_amount_fen=MONTHLY_FEN,
                        valid_until=to_timestamp(datetime.now(UTC) - timedelta(days=180)),
                    )
                ).beneficiary.beneficiary_id
                self.people.append((beneficiary_id, number))
        with self.desk("admin") as desk:
            assert desk.stub.RunCycle(
                desk_pb2.RunCycleRequest(day=to_timestamp(datetime.now(UTC)))
            ).ran

    def suspended_person(self) -> tuple[str, str]:
        """A retiree the cycle suspended, not used by another test."""
        beneficiary_id, number = self.people.pop()
        assert self.snapshot(beneficiary_id).state == desk_pb2.ENTITLEMENT_STATE_SUSPENDED
        return beneficiary_id, number

    def alive(self, number: str, source: str) -> desk_pb2.DataSignal:
        self.records += 1
        return desk_pb2.DataSignal(
            source=source,
            source_record_id=f"seen-{self.records}",
            kind=desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION,
            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
            identity_number=number,
            observed_at=to_timestamp(datetime.now(UTC) - timedelta(days=1)),
        )

    def snapshot(self, beneficiary_id: str) -> Snapshot:
        with self.desk("admin") as desk:
            overview = desk.stub.GetBeneficiaryOverview(
                desk_pb2.GetBeneficiaryOverviewRequest(beneficiary_id=beneficiary_id)
            )
        return Snapshot(
            to_datetime(overview.beneficiary.valid_until),
            overview.entitlement.state,
            tuple(
                sorted(
                    (i.action, i.effective_month, i.back_pay_fen)
                    for i in overview.payment_instructions
                )
            ),
            tuple(sorted(a.attestation_id for a in overview.attestations)),
        )

    def pending(self, beneficiary_id: str) -> list[desk_pb2.PendingSignal]:
        with self.desk("reviewer") as desk:
            listed = desk.stub.ListPendingSignals(
                desk_pb2.ListPendingSignalsRequest(page_size=500, pending_only=True)
            ).signals
        return [signal for signal in listed if signal.beneficiary_id == beneficiary_id]


@pytest.fixture(scope="module", params=["postgres"])
def office(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Office]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp("one-clerk-alive")
    with pytest.MonkeyPatch.context() as patch:
        # The test runs the cycle itself; the node's own daily run must not.
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(workdir, database_url_for=urls) as local:
            local.start_registry()
            local.add_node(LANZHOU)
            office = Office(local)
            office.register_suspended(PEOPLE)
            yield office


def _refused(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call(request)  # type: ignore[operator]
    return refused.value


def test_a_clerk_alone_cannot_resume_a_suspended_persons_payment(office: Office) -> None:
    beneficiary_id, number = office.suspended_person()
    before = office.snapshot(beneficiary_id)
    entered = office.alive(number, COUNTER_SOURCE)
    with office.desk("clerk") as clerk:
        [result] = clerk.stub.RecordSignals(
            desk_pb2.RecordSignalsRequest(signals=[entered])
        ).results
        assert result.outcome == desk_pb2.SIGNAL_OUTCOME_AWAITING_APPROVAL
        assert not result.attestation_id
        [held] = office.pending(beneficiary_id)
        # A clerk may not decide at all; nor may a feed's source be typed in by hand.
        denied = _refused(
            clerk.stub.DecidePendingSignal,
            desk_pb2.DecidePendingSignalRequest(
                pending_signal_id=held.pending_signal_id, approve=True
            ),
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        posing = _refused(
            clerk.stub.RecordSignals,
            desk_pb2.RecordSignalsRequest(signals=[office.alive(number, FED_SOURCE)]),
        )
        assert posing.code() == grpc.StatusCode.PERMISSION_DENIED
        # The same entry again is a duplicate, not a second hold.
        [again] = clerk.stub.RecordSignals(desk_pb2.RecordSignalsRequest(signals=[entered])).results
        assert again.outcome == desk_pb2.SIGNAL_OUTCOME_DUPLICATE
    assert office.snapshot(beneficiary_id) == before
    assert len(office.pending(beneficiary_id)) == 1


def test_one_person_holding_both_roles_cannot_approve_their_own_alive_signal(
    office: Office,
) -> None:
    beneficiary_id, number = office.suspended_person()
    before = office.snapshot(beneficiary_id)
    with office.desk_with(office.senior) as senior:
        [result] = senior.stub.RecordSignals(
            desk_pb2.RecordSignalsRequest(signals=[office.alive(number, COUNTER_SOURCE)])
        ).results
        assert result.outcome == desk_pb2.SIGNAL_OUTCOME_AWAITING_APPROVAL
        [held] = office.pending(beneficiary_id)
        denied = _refused(
            senior.stub.DecidePendingSignal,
            desk_pb2.DecidePendingSignalRequest(
                pending_signal_id=held.pending_signal_id, approve=True
            ),
        )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "separation of duties" in (denied.details() or "")
    assert office.snapshot(beneficiary_id) == before
    # Another reviewer rejects it: still nothing changes, and it cannot be decided again.
    with office.desk("reviewer") as reviewer:
        rejected = reviewer.stub.DecidePendingSignal(
            desk_pb2.DecidePendingSignalRequest(
                pending_signal_id=held.pending_signal_id, approve=False, reason="no such visit"
            )
        ).signal
        assert rejected.decision == desk_pb2.PENDING_SIGNAL_DECISION_REJECTED
        twice = _refused(
            reviewer.stub.DecidePendingSignal,
            desk_pb2.DecidePendingSignalRequest(
                pending_signal_id=held.pending_signal_id, approve=True
            ),
        )
    assert twice.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert office.snapshot(beneficiary_id) == before


def test_a_feed_account_cannot_submit_for_a_source_it_is_not_bound_to(office: Office) -> None:
    beneficiary_id, number = office.suspended_person()
    before = office.snapshot(beneficiary_id)
    with office.desk_with(office.stranger_feed) as feed:
        denied = _refused(
            feed.stub.RecordSignals,
            desk_pb2.RecordSignalsRequest(signals=[office.alive(number, FED_SOURCE)]),
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "lanzhou-bank" in (denied.details() or "")
        # A feed account is no person: the desk's other calls are closed to it.
        other = _refused(
            feed.stub.ListPendingSignals, desk_pb2.ListPendingSignalsRequest(page_size=10)
        )
        assert other.code() == grpc.StatusCode.PERMISSION_DENIED
    assert office.snapshot(beneficiary_id) == before
    assert office.pending(beneficiary_id) == []
    # A feed account may not be given a password, nor exist without a source.
    for arguments in (("--role", "feed"), ("--role", "feed", "--role", "clerk", "--source", "x")):
        refused = certfed(
            "node", "add-operator", "--config", str(office.handle.config_path),
            "--label", "half a feed", *arguments,
        )  # fmt: skip
        assert refused.returncode != 0


def test_a_second_persons_approval_applies_it_naming_both(office: Office) -> None:
    beneficiary_id, number = office.suspended_person()
    before = office.snapshot(beneficiary_id)
    with office.desk("clerk") as clerk:
        clerk.stub.RecordSignals(
            desk_pb2.RecordSignalsRequest(signals=[office.alive(number, COUNTER_SOURCE)])
        )
    [held] = office.pending(beneficiary_id)
    with office.desk("reviewer") as reviewer:
        decided = reviewer.stub.DecidePendingSignal(
            desk_pb2.DecidePendingSignalRequest(
                pending_signal_id=held.pending_signal_id, approve=True, reason="checked the ward"
            )
        ).signal
        assert decided.decision == desk_pb2.PENDING_SIGNAL_DECISION_APPLIED
        assert decided.outcome == desk_pb2.SIGNAL_OUTCOME_APPLIED
        exported = reviewer.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=decided.attestation_id)
        )
    after = office.snapshot(beneficiary_id)
    assert after.state != desk_pb2.ENTITLEMENT_STATE_SUSPENDED
    assert after.valid_until > datetime.now(UTC) + timedelta(days=300) > before.valid_until
    assert desk_pb2.PAYMENT_ACTION_RESUME in [action for action, _, _ in after.instructions]
    assert decided.attestation_id in after.attestations
    statement = attestation_pb2.CertificationAttestation.FromString(
        dsse.Envelope.from_json(exported.dsse_json).payload
    )
    assert statement.method == common_pb2.CERTIFICATION_METHOD_DATA_MATCH
    assert statement.clerk_id == office.handle.operator_ids["clerk"]
    assert statement.reviewer_id == office.handle.operator_ids["reviewer"]
    assert office.pending(beneficiary_id) == []


def test_a_feed_accounts_alive_signal_for_its_own_source_applies_at_once(office: Office) -> None:
    beneficiary_id, number = office.suspended_person()
    with office.desk("feed") as feed:
        [result] = feed.stub.RecordSignals(
            desk_pb2.RecordSignalsRequest(signals=[office.alive(number, FED_SOURCE)])
        ).results
    assert result.outcome == desk_pb2.SIGNAL_OUTCOME_APPLIED
    assert office.snapshot(beneficiary_id).state != desk_pb2.ENTITLEMENT_STATE_SUSPENDED
