"""Life events across offices on real node processes over mutual TLS, on PostgreSQL: a death one
office confirms reaches every other office paying the same person as a signed attestation, and
each puts it before its own reviewer instead of stopping payment by itself.

Three paying offices (Foshan, Lanzhou, Chengdu) pay the same person; the registry's locator index
knows all three. Foshan's civil-register entry and its reviewer's confirmation end the person's
entitlement at Foshan and send the death to the other two.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.launcher import LocalFederation, NodeSpec, wait_until
from federation.desk_client import DeskClient
from federation.timestamps import to_timestamp
from tests.helpers.commands import certfed
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import FOSHAN, LANZHOU, database_url_for, offices_with_policy

pytestmark = pytest.mark.postgres

CHENGDU = NodeSpec("chengdu", "Chengdu office", ("510100",), ("paying_office",))
PAYERS = ("foshan", "lanzhou", "chengdu")
DECEASED = common_pb2.CERTIFICATION_OUTCOME_DECEASED


class Offices:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0

    def person(self) -> attestation_pb2.IdentityBundle:
        self.serial += 1
        return resident(resident_id("440604", date(1944, 8, 1), self.serial))

    def register_everywhere(self, person: attestation_pb2.IdentityBundle) -> dict[str, str]:
        """The person on every office's roll, and the registry told (its locator index)."""
        ids = {}
        for node_id in PAYERS:
            with self.local.desk(node_id, "clerk") as desk:
                ids[node_id] = desk.stub.RegisterBeneficiary(
                    desk_pb2.RegisterBeneficiaryRequest(
                        identity=person,
                        residence_region="440604",
                        monthly_amount_fen=300_000,
                        valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=200)),
                    )
                ).beneficiary.beneficiary_id
        for node_id in PAYERS:
            self.local.await_outbox_drained(node_id)
        return ids

    def overview(
        self, node_id: str, beneficiary_id: str
    ) -> desk_pb2.GetBeneficiaryOverviewResponse:
        with self.local.desk(node_id, "admin") as desk:
            overview: desk_pb2.GetBeneficiaryOverviewResponse = desk.stub.GetBeneficiaryOverview(
                desk_pb2.GetBeneficiaryOverviewRequest(beneficiary_id=beneficiary_id)
            )
        return overview

    def second_reviewer(self, node_id: str) -> DeskClient:
        """Another reviewer than the one who applied the held death (separation of duties)."""
        handle = self.local.nodes[node_id]
        added = certfed(
            "node", "add-operator", "--config", str(handle.config_path), "--label",
            "second reviewer", "--role", "reviewer",
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        return DeskClient(
            f"127.0.0.1:{handle.desk_port}",
            node_id,
            handle.config.ca_certificate.read_bytes(),
            added.stdout.strip().splitlines()[-1],
            self.local.limits,
        )

    def held_about(self, node_id: str, beneficiary_id: str) -> list[desk_pb2.HeldAttestation]:
        with self.local.desk(node_id, "reviewer") as desk:
            listed = desk.stub.ListHeldAttestations(
                desk_pb2.ListHeldAttestationsRequest(pending_only=True)
            ).attestations
        return [h for h in listed if h.beneficiary_id == beneficiary_id]


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def offices(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Offices]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp("life-events")
    with offices_with_policy(workdir, urls, FOSHAN, "", LANZHOU, CHENGDU) as local:
        yield Offices(local)


def test_a_death_confirmed_at_one_office_is_held_for_review_at_every_other_paying_office(
    offices: Offices,
) -> None:
    person = offices.person()
    ids = offices.register_everywhere(person)
    died = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    with offices.local.desk("foshan", "clerk") as desk:
        [result] = desk.stub.RecordSignals(
            desk_pb2.RecordSignalsRequest(
                signals=[
                    desk_pb2.DataSignal(
                        source="civil-register-desk",
                        source_record_id="death-1",
                        kind=desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION,
                        identity_type=person.identity_type,
                        identity_number=person.identity_number,
                        observed_at=to_timestamp(died),
                    )
                ]
            )
        ).results
    assert result.outcome == desk_pb2.SIGNAL_OUTCOME_APPLIED
    # Nothing leaves Foshan before its own reviewer confirms the death.
    offices.local.await_outbox_drained("foshan")
    for node_id in ("lanzhou", "chengdu"):
        assert offices.held_about(node_id, ids[node_id]) == []

    with offices.local.desk("foshan", "reviewer") as desk:
        desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(
                beneficiary_id=ids["foshan"], confirm=True, reason="death certificate seen"
            )
        )

    foshan = offices.overview("foshan", ids["foshan"])
    assert foshan.entitlement.state == desk_pb2.ENTITLEMENT_STATE_TERMINATED
    # In Foshan's log: its own record of the death and one attestation for each other office.
    deaths = [a for a in foshan.attestations if a.outcome == DECEASED]
    assert sorted(a.paying_node_id for a in deaths) == sorted(PAYERS)
    for node_id in ("lanzhou", "chengdu"):
        [held] = wait_until(
            lambda node_id=node_id: offices.held_about(node_id, ids[node_id]) or None,  # type: ignore[misc]
            30,
            f"the death held at {node_id}",
        )
        assert held.issuing_node_id == "foshan"
        assert held.reason == desk_pb2.HOLD_REASON_NEGATIVE_WITHOUT_REQUEST
        assert held.outcome == DECEASED
        # Never terminated by itself: paid as before until its own reviewer decides.
        entitlement = offices.overview(node_id, ids[node_id]).entitlement
        assert entitlement.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
        assert not entitlement.termination_pending_review

    # Lanzhou's reviewer applies it: payment suspended, the termination proposed to a second
    # reviewer, who confirms; Foshan, which reported it, is not told again.
    with offices.local.desk("lanzhou", "reviewer") as desk:
        desk.stub.DecideHeldAttestation(
            desk_pb2.DecideHeldAttestationRequest(
                attestation_id=offices.held_about("lanzhou", ids["lanzhou"])[0].attestation_id,
                apply=True,
                reason="Foshan's civil register",
            )
        )
    proposed = offices.overview("lanzhou", ids["lanzhou"]).entitlement
    assert proposed.termination_pending_review
    assert proposed.state == desk_pb2.ENTITLEMENT_STATE_SUSPENDED
    with offices.second_reviewer("lanzhou") as desk:
        desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(
                beneficiary_id=ids["lanzhou"], confirm=True, reason="confirmed"
            )
        )
    lanzhou = offices.overview("lanzhou", ids["lanzhou"])
    assert lanzhou.entitlement.state == desk_pb2.ENTITLEMENT_STATE_TERMINATED
    announced = {
        a.paying_node_id
        for a in lanzhou.attestations
        if a.outcome == DECEASED and a.issuing_node_id == "lanzhou"
    }
    assert announced == {"lanzhou", "chengdu"}


def test_a_death_recorded_at_the_desk_goes_to_every_other_paying_office_on_approval(
    offices: Offices,
) -> None:
    ids = offices.register_everywhere(offices.person())
    with offices.local.desk("lanzhou", "clerk") as desk:
        recorded = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=ids["lanzhou"],
                method=common_pb2.CERTIFICATION_METHOD_HOME_VISIT,
                outcome=DECEASED,
                observed_at=to_timestamp(datetime.now(UTC) - timedelta(days=1)),
            )
        ).certification
    assert sorted(recorded.paying_node_ids) == ["chengdu", "foshan", "lanzhou"]
    with offices.local.desk("lanzhou", "reviewer") as desk:
        desk.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=recorded.certification_id)
        )
    assert offices.overview("lanzhou", ids["lanzhou"]).entitlement.state == (
        desk_pb2.ENTITLEMENT_STATE_TERMINATED
    )
    for node_id in ("foshan", "chengdu"):
        [held] = wait_until(
            lambda node_id=node_id: offices.held_about(node_id, ids[node_id]) or None,  # type: ignore[misc]
            30,
            f"the death held at {node_id}",
        )
        assert held.issuing_node_id == "lanzhou"
        assert offices.overview(node_id, ids[node_id]).entitlement.state == (
            desk_pb2.ENTITLEMENT_STATE_ACTIVE
        )


@pytest.mark.parametrize(
    ("signal_kind", "status", "back_pay_months"),
    [
        # Released from prison: paid from the month after, the months inside not paid back.
        (
            desk_pb2.SIGNAL_KIND_CRIMINAL_SENTENCE,
            desk_pb2.BENEFICIARY_STATUS_IMPRISONED,
            0,
        ),
        # Reappeared: paid from the month after, every month since payment stopped paid back.
        (
            desk_pb2.SIGNAL_KIND_COURT_DECLARATION_MISSING,
            desk_pb2.BENEFICIARY_STATUS_DECLARED_MISSING,
            1,
        ),
    ],
    ids=["release", "reappearance"],
)
def test_release_and_reappearance_restore_the_entitlement_by_the_policy(
    offices: Offices, signal_kind: int, status: int, back_pay_months: int
) -> None:
    person = offices.person()
    with offices.local.desk("lanzhou", "clerk") as desk:
        beneficiary_id = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=person,
                residence_region="620102",
                monthly_amount_fen=300_000,
                valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=200)),
            )
        ).beneficiary.beneficiary_id
        desk.stub.RecordSignals(
            desk_pb2.RecordSignalsRequest(
                signals=[
                    desk_pb2.DataSignal(
                        source="court-desk",
                        source_record_id=f"court-{offices.serial}",
                        kind=desk_pb2.SignalKind.ValueType(signal_kind),
                        identity_type=person.identity_type,
                        identity_number=person.identity_number,
                        observed_at=to_timestamp(datetime.now(UTC) - timedelta(days=3)),
                    )
                ]
            )
        )
    with offices.local.desk("lanzhou", "reviewer") as desk:
        desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(
                beneficiary_id=beneficiary_id, confirm=True, reason="court judgment"
            )
        )
    ended = offices.overview("lanzhou", beneficiary_id)
    assert ended.beneficiary.status == status
    assert ended.entitlement.state == desk_pb2.ENTITLEMENT_STATE_TERMINATED

    # The person comes to the counter; a clerk records it, another reviewer approves.
    with offices.local.desk("lanzhou", "clerk") as desk:
        recorded = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=beneficiary_id,
                method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC) - timedelta(minutes=1)),
            )
        ).certification
    with offices.local.desk("lanzhou", "reviewer") as desk:
        desk.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=recorded.certification_id)
        )

    restored = offices.overview("lanzhou", beneficiary_id)
    assert restored.beneficiary.status == desk_pb2.BENEFICIARY_STATUS_ACTIVE
    assert restored.entitlement.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
    [stopped] = [
        i for i in restored.payment_instructions if i.action == desk_pb2.PAYMENT_ACTION_SUSPEND
    ]
    [resumed] = [
        i for i in restored.payment_instructions if i.action == desk_pb2.PAYMENT_ACTION_RESUME
    ]
    # The month after the person returned (this month, since they returned today).
    today = datetime.now(UTC).date()
    next_month = date(today.year + today.month // 12, today.month % 12 + 1, 1)
    assert resumed.effective_month == f"{next_month.year:04d}-{next_month.month:02d}"
    assert stopped.effective_month < resumed.effective_month
    assert resumed.back_pay_months == back_pay_months
    assert resumed.back_pay_fen == back_pay_months * 300_000
