"""A rogue certifying member cannot end or extend another office's pensions.

Datong is a residence agency enrolled and approved in the federation like any other: it holds
its own signing key and TLS certificate and calls Lanzhou's FederationService with them. It signs
attestations about Lanzhou's beneficiaries and delivers them itself. Each test performs one
exploit against real node processes on PostgreSQL and asserts what Lanzhou refused or kept for
its reviewer, and that nothing changed for the person: validity, entitlement, payment
instructions, stored attestations. Issuing desks bound the observation date the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2, federation_pb2_grpc
from cli.launcher import LocalFederation, wait_until
from federation.desk_client import DeskClient
from federation.envelopes import envelope_to_proto
from federation.timestamps import to_datetime, to_timestamp
from federation.transport import TlsMaterial, node_tls_name, secure_channel
from federation_node.rules.entitlement import add_months, month_label
from signing import dsse
from signing.keys import SigningKey
from tests.helpers.commands import certfed
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.locators import member_locator
from tests.helpers.nodes import DATONG as ROGUE
from tests.helpers.nodes import LANZHOU as VICTIM
from tests.helpers.nodes import QINGDAO_AGENCY as HONEST
from tests.helpers.nodes import database_url_for
from tests.helpers.split_view import registry_witness, split_view

BORN = date(1950, 1, 1)
MONTHLY_FEN = 300_000


@dataclass(frozen=True)
class Snapshot:
    """Everything a delivered attestation could change about one beneficiary at Lanzhou."""

    valid_until: datetime | None
    status: int
    state: int
    pending_review: bool
    overpayment_fen: int
    instructions: tuple[tuple[int, str, int], ...]
    attestations: tuple[str, ...]


class Federation:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0
        rogue = local.nodes["datong"].config.data_dir / "keys"
        self.rogue_key = SigningKey.load(rogue / "signing.key")
        self.second_reviewer = self._add_reviewer()

    def desk(self, node_id: str, operator: str = "clerk") -> DeskClient:
        return self.local.desk(node_id, operator)

    def _add_reviewer(self) -> str:
        config = str(self.local.nodes["lanzhou"].config_path)
        added = certfed(
            "node", "add-operator", "--config", config, "--label", "second reviewer",
            "--role", "reviewer",
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        return added.stdout.strip().splitlines()[-1]

    def reviewer_desk(self, token: str) -> DeskClient:
        handle = self.local.nodes["lanzhou"]
        return DeskClient(
            f"127.0.0.1:{handle.desk_port}",
            "lanzhou",
            handle.config.ca_certificate.read_bytes(),
            token,
            self.local.limits,
        )

    def person(self, residence: str) -> tuple[str, str]:
        """A Lanzhou beneficiary living in `residence`: (beneficiary id, identity number)."""
        self.serial += 1
        number = resident_id("620102", BORN, self.serial)
        request = desk_pb2.RegisterBeneficiaryRequest(
            identity=resident(number),
            residence_region=residence,
            monthly_amount_fen=MONTHLY_FEN,
            valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
        )
        with self.desk("lanzhou") as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(request).beneficiary.beneficiary_id
        return beneficiary_id, number

    def request(self, beneficiary_id: str, to_node: str) -> str:
        with self.desk("lanzhou") as desk:
            request_id: str = desk.stub.RequestCertification(
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=beneficiary_id,
                    deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
                )
            ).request.request_id
        with self.desk(to_node) as desk:
            wait_until(
                lambda: any(
                    r.request_id == request_id
                    for r in desk.stub.ListAssistanceRequests(
                        desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
                    ).requests
                ),
                30,
                f"the request in {to_node}'s inbox",
            )
        return request_id

    def forge(
        self,
        number: str,
        *,
        outcome: common_pb2.CertificationOutcome.ValueType,
        observed_at: datetime,
        request_id: str = "",
        region: str = "140200",
        valid_until: datetime | None = None,
    ) -> dsse.Envelope:
        """An attestation the rogue signs with its own key, about a person Lanzhou pays."""
        now = datetime.now(UTC)
        attestation = attestation_pb2.CertificationAttestation(
            attestation_id=str(uuid.uuid4()),
            subject_locator=member_locator(self.local.nodes["datong"].config, number),
            paying_region="620102",
            paying_node_id="lanzhou",
            issuing_node_id="datong",
            certifying_region=region,
            certifying_agency="Datong centre",
            method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
            outcome=outcome,
            observed_at=to_timestamp(observed_at),
            valid_until=to_timestamp(valid_until or observed_at),
            evidence_digests=[bytes(32)],
            clerk_id="rogue-clerk",
            reviewer_id="rogue-reviewer",
            assistance_request_id=request_id,
            issued_at=to_timestamp(now),
        )
        return dsse.sign(
            attestation.SerializeToString(deterministic=True),
            dsse.ATTESTATION_PAYLOAD_TYPE,
            self.rogue_key,
        )

    def deliver(self, envelope: dsse.Envelope) -> federation_pb2.DeliverAttestationResponse:
        """Delivered by the rogue itself, over mutual TLS with its own certificate, with a proof
        that it is in Datong's log as the registry witness cosigned it (Lanzhou requires the
        registry's cosignature alone; tests/security/hostile_member/test_witnesses.py shows what
        requiring a second witness changes), so the inclusion gate lets it through."""
        inclusion = split_view("datong", self.rogue_key, envelope, [registry_witness(self.local)])
        caller = self.local.nodes["datong"].config
        tls = TlsMaterial.load(
            caller.data_dir / "keys" / "tls.pem",
            caller.data_dir / "keys" / "tls.key",
            caller.ca_certificate,
        )
        with secure_channel(
            f"127.0.0.1:{self.local.nodes['lanzhou'].federation_port}",
            node_tls_name("lanzhou"),
            tls.channel_credentials(),
            max_message_bytes=4 << 20,
        ) as channel:
            stub = federation_pb2_grpc.FederationServiceStub(channel)
            response: federation_pb2.DeliverAttestationResponse = stub.DeliverAttestation(
                federation_pb2.DeliverAttestationRequest(
                    envelope=envelope_to_proto(envelope), inclusion=inclusion
                ),
                timeout=10,
            )
        return response

    def snapshot(self, beneficiary_id: str) -> Snapshot:
        with self.desk("lanzhou", "admin") as desk:
            beneficiary = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
            ).beneficiary
            entitlement = self.entitlement(beneficiary_id)
            instructions = []
            today = datetime.now(UTC).date()
            for month in (today, add_months(today.replace(day=1), 1)):
                listed = desk.stub.ListPaymentInstructions(
                    desk_pb2.ListPaymentInstructionsRequest(month=month_label(month))
                ).instructions
                instructions += [
                    (i.action, i.effective_month, i.overpayment_fen)
                    for i in listed
                    if i.beneficiary_id == beneficiary_id
                ]
            attestations = desk.stub.ListAttestations(
                desk_pb2.ListAttestationsRequest(page_size=500)
            ).attestations
        return Snapshot(
            to_datetime(beneficiary.valid_until) if beneficiary.HasField("valid_until") else None,
            beneficiary.status,
            entitlement.state,
            entitlement.termination_pending_review,
            entitlement.overpayment_fen,
            tuple(sorted(instructions)),
            tuple(
                sorted(a.attestation_id for a in attestations if a.beneficiary_id == beneficiary_id)
            ),
        )

    def entitlement(self, beneficiary_id: str) -> desk_pb2.Entitlement:
        with self.desk("lanzhou", "reviewer") as desk:
            token = ""
            while True:
                page = desk.stub.ListEntitlements(
                    desk_pb2.ListEntitlementsRequest(page_size=500, page_token=token)
                )
                for entitlement in page.entitlements:
                    if entitlement.beneficiary.beneficiary_id == beneficiary_id:
                        found: desk_pb2.Entitlement = entitlement
                        return found
                token = page.next_page_token
                assert token, f"no entitlement for {beneficiary_id}"

    def held(self, attestation_id: str) -> desk_pb2.HeldAttestation:
        with self.desk("lanzhou", "reviewer") as desk:
            listed = desk.stub.ListHeldAttestations(
                desk_pb2.ListHeldAttestationsRequest(page_size=500)
            ).attestations
        [found] = [held for held in listed if held.attestation_id == attestation_id]
        return found


@pytest.fixture(scope="module", params=["postgres"])
def federation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp("rogue-certifier")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(workdir, database_url_for=urls, max_backoff_s=0.5) as local:
            local.start_registry()
            for spec in (VICTIM, HONEST, ROGUE):
                local.add_node(spec)
            yield Federation(local)


def just_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def test_an_unsolicited_death_report_is_kept_for_review_and_changes_nothing(
    federation: Federation,
) -> None:
    beneficiary_id, number = federation.person("370202")
    before = federation.snapshot(beneficiary_id)
    forged = federation.forge(
        number,
        outcome=common_pb2.CERTIFICATION_OUTCOME_DECEASED,
        observed_at=datetime.now(UTC) - timedelta(days=60),
    )
    federation.deliver(forged)
    after = federation.snapshot(beneficiary_id)
    attestation_id = attestation_pb2.CertificationAttestation.FromString(
        forged.payload
    ).attestation_id
    # Stored as evidence of what the member did, and nothing else moved.
    assert after.attestations == tuple(sorted((*before.attestations, attestation_id)))
    assert dataclass_without_attestations(after) == dataclass_without_attestations(before)
    assert after.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
    held = federation.held(attestation_id)
    assert held.reason == desk_pb2.HOLD_REASON_NEGATIVE_WITHOUT_REQUEST
    assert held.decision == desk_pb2.HOLD_DECISION_PENDING
    assert held.issuing_node_id == "datong"

    with federation.desk("lanzhou", "reviewer") as desk:
        dismissed = desk.stub.DecideHeldAttestation(
            desk_pb2.DecideHeldAttestationRequest(
                attestation_id=attestation_id, apply=False, reason="nobody asked Datong"
            )
        ).attestation
        assert dismissed.decision == desk_pb2.HOLD_DECISION_DISMISSED
        with pytest.raises(grpc.RpcError) as again:
            desk.stub.DecideHeldAttestation(
                desk_pb2.DecideHeldAttestationRequest(
                    attestation_id=attestation_id, apply=True, reason="changed my mind"
                )
            )
    assert again.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert dataclass_without_attestations(federation.snapshot(beneficiary_id)) == (
        dataclass_without_attestations(before)
    )


def dataclass_without_attestations(snapshot: Snapshot) -> tuple[object, ...]:
    return (
        snapshot.valid_until,
        snapshot.status,
        snapshot.state,
        snapshot.pending_review,
        snapshot.overpayment_fen,
        snapshot.instructions,
    )


def test_a_solicited_death_report_suspends_and_waits_for_the_reviewer(
    federation: Federation,
) -> None:
    beneficiary_id, number = federation.person("140202")
    request_id = federation.request(beneficiary_id, "datong")
    before = federation.snapshot(beneficiary_id)
    died = just_now() - timedelta(days=40)
    federation.deliver(
        federation.forge(
            number,
            outcome=common_pb2.CERTIFICATION_OUTCOME_DECEASED,
            observed_at=died,
            request_id=request_id,
        )
    )
    proposed = federation.entitlement(beneficiary_id)
    assert proposed.state == desk_pb2.ENTITLEMENT_STATE_SUSPENDED
    assert proposed.termination_pending_review
    assert to_datetime(proposed.pending_effective_at) == died
    # Not terminated, nothing counted as overpaid yet: only a reviewer here does that.
    assert proposed.overpayment_fen == 0
    assert proposed.beneficiary.status == desk_pb2.BENEFICIARY_STATUS_ACTIVE
    after = federation.snapshot(beneficiary_id)
    assert after.valid_until == before.valid_until
    assert [i[0] for i in after.instructions] == [desk_pb2.PAYMENT_ACTION_SUSPEND]

    with federation.desk("lanzhou", "reviewer") as desk:
        confirmed = desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(beneficiary_id=beneficiary_id, confirm=True)
        ).entitlement
    assert confirmed.state == desk_pb2.ENTITLEMENT_STATE_TERMINATED
    assert confirmed.beneficiary.status == desk_pb2.BENEFICIARY_STATUS_DECEASED
    assert to_datetime(confirmed.state_since) == died


def test_a_held_death_report_applied_by_one_reviewer_is_confirmed_only_by_another(
    federation: Federation,
) -> None:
    beneficiary_id, number = federation.person("370202")
    forged = federation.forge(
        number,
        outcome=common_pb2.CERTIFICATION_OUTCOME_IMPRISONED,
        observed_at=just_now() - timedelta(days=3),
    )
    federation.deliver(forged)
    attestation_id = attestation_pb2.CertificationAttestation.FromString(
        forged.payload
    ).attestation_id
    with federation.desk("lanzhou", "reviewer") as desk:
        desk.stub.DecideHeldAttestation(
            desk_pb2.DecideHeldAttestationRequest(
                attestation_id=attestation_id, apply=True, reason="court record seen"
            )
        )
        assert federation.entitlement(beneficiary_id).termination_pending_review
        with pytest.raises(grpc.RpcError) as same_person:
            desk.stub.ReviewTermination(
                desk_pb2.ReviewTerminationRequest(beneficiary_id=beneficiary_id, confirm=True)
            )
    assert same_person.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert federation.entitlement(beneficiary_id).state == desk_pb2.ENTITLEMENT_STATE_SUSPENDED
    with federation.reviewer_desk(federation.second_reviewer) as desk:
        confirmed = desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(beneficiary_id=beneficiary_id, confirm=True)
        ).entitlement
    assert confirmed.beneficiary.status == desk_pb2.BENEFICIARY_STATUS_IMPRISONED


def test_an_answer_to_a_request_sent_to_another_node_is_kept_for_review(
    federation: Federation,
) -> None:
    beneficiary_id, number = federation.person("370202")
    request_id = federation.request(beneficiary_id, "qingdao")
    before = federation.snapshot(beneficiary_id)
    forged = federation.forge(
        number,
        outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
        observed_at=just_now(),
        request_id=request_id,
        valid_until=datetime(9999, 12, 31, tzinfo=UTC),
    )
    federation.deliver(forged)
    attestation_id = attestation_pb2.CertificationAttestation.FromString(
        forged.payload
    ).attestation_id
    assert dataclass_without_attestations(federation.snapshot(beneficiary_id)) == (
        dataclass_without_attestations(before)
    )
    assert federation.held(attestation_id).reason == desk_pb2.HOLD_REASON_NOT_OUR_REQUEST
    with federation.desk("lanzhou") as desk:
        sent = desk.stub.GetAssistanceRequest(
            desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
        ).request
    assert sent.status != common_pb2.ASSISTANCE_STATUS_COMPLETED


def test_a_walk_in_certified_in_a_region_the_issuer_does_not_serve_is_kept_for_review(
    federation: Federation,
) -> None:
    beneficiary_id, number = federation.person("370202")
    before = federation.snapshot(beneficiary_id)
    forged = federation.forge(
        number,
        outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
        observed_at=just_now(),
        region="370200",
    )
    federation.deliver(forged)
    attestation_id = attestation_pb2.CertificationAttestation.FromString(
        forged.payload
    ).attestation_id
    assert dataclass_without_attestations(federation.snapshot(beneficiary_id)) == (
        dataclass_without_attestations(before)
    )
    assert federation.held(attestation_id).reason == desk_pb2.HOLD_REASON_WALK_IN_NOT_ALLOWED


def test_the_issuers_valid_until_is_ignored(federation: Federation) -> None:
    beneficiary_id, number = federation.person("140202")
    request_id = federation.request(beneficiary_id, "datong")
    observed = just_now()
    response = federation.deliver(
        federation.forge(
            number,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=observed,
            request_id=request_id,
            valid_until=datetime(9999, 12, 31, tzinfo=UTC),
        )
    )
    # Lanzhou's own default period of 12 months from the day the person was seen.
    assert to_datetime(response.valid_until) == add_months(observed, 12)
    assert federation.snapshot(beneficiary_id).valid_until == add_months(observed, 12)


def _implausible(federation: Federation) -> list[tuple[str, datetime]]:
    now = datetime.now(UTC)
    return [
        ("year 1", datetime(1, 1, 1, tzinfo=UTC)),
        ("1900", datetime(1900, 6, 1, tzinfo=UTC)),
        ("before birth", datetime(1949, 12, 31, tzinfo=UTC)),
        ("too old", now - timedelta(days=91)),
        ("future", now + timedelta(days=2)),
    ]


@pytest.mark.parametrize(
    "outcome",
    [common_pb2.CERTIFICATION_OUTCOME_DECEASED, common_pb2.CERTIFICATION_OUTCOME_ALIVE],
    ids=["deceased", "alive"],
)
def test_an_implausible_observation_date_is_refused_by_the_paying_office(
    federation: Federation, outcome: common_pb2.CertificationOutcome.ValueType
) -> None:
    beneficiary_id, number = federation.person("140202")
    request_id = federation.request(beneficiary_id, "datong")
    before = federation.snapshot(beneficiary_id)
    for label, observed in _implausible(federation):
        with pytest.raises(grpc.RpcError) as refused:
            federation.deliver(
                federation.forge(
                    number, outcome=outcome, observed_at=observed, request_id=request_id
                )
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, label
        assert "observed_at" in (refused.value.details() or ""), label
        assert federation.snapshot(beneficiary_id) == before, label


def test_an_observation_before_the_last_certification_is_refused(
    federation: Federation,
) -> None:
    beneficiary_id, number = federation.person("140202")
    request_id = federation.request(beneficiary_id, "datong")
    federation.deliver(
        federation.forge(
            number,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=just_now(),
            request_id=request_id,
        )
    )
    before = federation.snapshot(beneficiary_id)
    with pytest.raises(grpc.RpcError) as refused:
        federation.deliver(
            federation.forge(
                number,
                outcome=common_pb2.CERTIFICATION_OUTCOME_DECEASED,
                observed_at=just_now() - timedelta(days=5),
                request_id=request_id,
            )
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "last certification" in (refused.value.details() or "")
    assert federation.snapshot(beneficiary_id) == before


def _record(
    desk: DeskClient, request: desk_pb2.RecordCertificationRequest, observed: datetime
) -> desk_pb2.Certification:
    request.method = common_pb2.CERTIFICATION_METHOD_ON_SITE
    request.outcome = request.outcome or common_pb2.CERTIFICATION_OUTCOME_ALIVE
    request.observed_at.CopyFrom(to_timestamp(observed))
    request.evidence_digests.append(upload_capture(desk))
    certification: desk_pb2.Certification = desk.stub.RecordCertification(request).certification
    return certification


def test_an_issuing_desk_refuses_an_implausible_observation_date(
    federation: Federation,
) -> None:
    beneficiary_id, _ = federation.person("370202")
    request_id = federation.request(beneficiary_id, "qingdao")
    with federation.desk("qingdao") as desk:
        for label, observed in _implausible(federation):
            for outcome in (
                common_pb2.CERTIFICATION_OUTCOME_DECEASED,
                common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    _record(
                        desk,
                        desk_pb2.RecordCertificationRequest(request_id=request_id, outcome=outcome),
                        observed,
                    )
                assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, label
                assert "observed_at" in (refused.value.details() or ""), label
        listed = desk.stub.ListCertifications(desk_pb2.ListCertificationsRequest()).certifications
    assert not [c for c in listed if c.request_id == request_id]


def test_an_issuing_desk_refuses_an_observation_before_its_own_last_certification(
    federation: Federation,
) -> None:
    beneficiary_id, _ = federation.person("620102")
    with federation.desk("lanzhou") as desk:
        first = _record(
            desk, desk_pb2.RecordCertificationRequest(beneficiary_id=beneficiary_id), just_now()
        )
    with federation.desk("lanzhou", "reviewer") as desk:
        desk.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=first.certification_id)
        )
    before = federation.snapshot(beneficiary_id)
    with federation.desk("lanzhou") as desk, pytest.raises(grpc.RpcError) as refused:
        _record(
            desk,
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=beneficiary_id, outcome=common_pb2.CERTIFICATION_OUTCOME_DECEASED
            ),
            just_now() - timedelta(days=10),
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "last certification" in (refused.value.details() or "")
    assert federation.snapshot(beneficiary_id) == before
