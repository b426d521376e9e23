"""A member cannot squat another node's attestation id, nor rewrite one of its own.

Datong, an enrolled residence agency, reads the id of an attestation Qingdao has issued for
Lanzhou (from Qingdao's log, which Subscribe shows within a second) and delivers its own
attestation under that id to Lanzhou before Qingdao's arrives. Lanzhou keeps both, each under
its issuer: the genuine one is applied and closes Lanzhou's request, Datong's is held and changes
nothing. Datong delivering a different attestation under an id it already used is an incident
(refused, audited, counted); the same one again is an idempotent redelivery. Real node processes
on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.launcher import LocalFederation, wait_until
from federation.desk_client import DeskClient
from federation.timestamps import to_datetime, to_timestamp
from signing import dsse
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import DATONG as ROGUE
from tests.helpers.nodes import LANZHOU as VICTIM
from tests.helpers.nodes import QINGDAO_AGENCY as HONEST
from tests.helpers.nodes import database_url_for
from tests.helpers.rogue_member import RogueMember
from tests.helpers.sign_in import metric_sample, metrics_text

BORN = date(1952, 3, 4)


class Federation:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.rogue = RogueMember(local, "datong")
        self.serial = 0

    def desk(self, node_id: str, operator: str = "clerk") -> DeskClient:
        return self.local.desk(node_id, operator)

    def person(self, residence: str) -> tuple[str, str]:
        """A Lanzhou beneficiary living in `residence`: (beneficiary id, identity number)."""
        self.serial += 1
        number = resident_id("620102", BORN, self.serial)
        with self.desk("lanzhou") as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=resident(number),
                    residence_region=residence,
                    monthly_amount_fen=250_000,
                    valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
                )
            ).beneficiary.beneficiary_id
        return beneficiary_id, number

    def forge(
        self,
        number: str,
        attestation_id: str,
        *,
        outcome: common_pb2.CertificationOutcome.ValueType,
        observed_at: datetime,
        request_id: str = "",
    ) -> dsse.Envelope:
        """Datong's own attestation about a Lanzhou beneficiary, under the id it chose."""
        attestation = attestation_pb2.CertificationAttestation(
            attestation_id=attestation_id,
            subject_locator=self.rogue.locator(number),
            paying_region="620102",
            paying_node_id="lanzhou",
            issuing_node_id="datong",
            certifying_region="140200",
            certifying_agency="Datong centre",
            method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
            outcome=outcome,
            observed_at=to_timestamp(observed_at),
            valid_until=to_timestamp(observed_at),
            evidence_digests=[bytes(32)],
            clerk_id="rogue-clerk",
            reviewer_id="rogue-reviewer",
            assistance_request_id=request_id,
            issued_at=to_timestamp(datetime.now(UTC)),
        )
        return self.rogue.sign(attestation)

    def state(self, beneficiary_id: str) -> tuple[object, ...]:
        """What an attestation could change about the person at Lanzhou."""
        with self.desk("lanzhou", "reviewer") as desk:
            overview = desk.stub.GetBeneficiaryOverview(
                desk_pb2.GetBeneficiaryOverviewRequest(beneficiary_id=beneficiary_id)
            )
        beneficiary, entitlement = overview.beneficiary, overview.entitlement
        return (
            to_datetime(beneficiary.valid_until),
            beneficiary.status,
            entitlement.state,
            entitlement.termination_pending_review,
            entitlement.overpayment_fen,
        )

    def valid_until(self, beneficiary_id: str) -> datetime:
        with self.desk("lanzhou") as desk:
            beneficiary = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
            ).beneficiary
        return to_datetime(beneficiary.valid_until)

    def received(self, attestation_id: str) -> dict[str, desk_pb2.AttestationSummary]:
        """The attestations Lanzhou keeps under `attestation_id`, by issuer."""
        with self.desk("lanzhou", "admin") as desk:
            listed = desk.stub.ListAttestations(
                desk_pb2.ListAttestationsRequest(page_size=500)
            ).attestations
        return {a.issuing_node_id: a for a in listed if a.attestation_id == attestation_id}

    def audited(self, action: str, subject_id: str) -> list[desk_pb2.AuditRecordView]:
        with self.desk("lanzhou", "admin") as desk:
            records = desk.stub.ListAuditRecords(
                desk_pb2.ListAuditRecordsRequest(action_prefix=action, page_size=100)
            ).records
        return [record for record in records if record.subject_id == subject_id]


@pytest.fixture(scope="module", params=["postgres"])
def federation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp("id-squatting")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(
            workdir, database_url_for=urls, max_backoff_s=0.5, metrics=True
        ) as local:
            local.start_registry()
            for spec in (VICTIM, HONEST, ROGUE):
                local.add_node(spec)
            yield Federation(local)


def just_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def test_an_attestation_delivered_first_under_another_nodes_id_never_displaces_it(
    federation: Federation,
) -> None:
    local = federation.local
    beneficiary_id, number = federation.person("370202")
    with federation.desk("lanzhou") as desk:
        request_id = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
            )
        ).request.request_id
    local.await_outbox_drained("lanzhou")
    # Lanzhou is down while Qingdao certifies, so Qingdao's delivery waits in its outbox; Datong
    # reads the new id (from Qingdao's log) and is first to reach Lanzhou once it is back.
    local.stop_node("lanzhou")
    with federation.desk("qingdao") as desk:
        recorded = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                request_id=request_id,
                method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(just_now()),
                evidence_digests=[upload_capture(desk)],
            )
        ).certification
    with federation.desk("qingdao", "reviewer") as desk:
        genuine_id = desk.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=recorded.certification_id)
        ).certification.attestation_id
    local.stop_node("qingdao")
    local.start_node("lanzhou")
    before = federation.state(beneficiary_id)
    before_valid = federation.valid_until(beneficiary_id)

    squatter = federation.forge(
        number,
        genuine_id,
        outcome=common_pb2.CERTIFICATION_OUTCOME_DECEASED,
        observed_at=just_now() - timedelta(days=30),
        request_id=request_id,
    )
    assert not federation.rogue.deliver("lanzhou", squatter).duplicate
    assert federation.state(beneficiary_id) == before

    local.start_node("qingdao")
    local.await_outbox_drained("qingdao")
    kept = federation.received(genuine_id)
    assert set(kept) == {"qingdao", "datong"}
    # The genuine attestation was applied (once proven in Qingdao's witnessed log) and answered
    # the request; Datong's is held.
    wait_until(
        lambda: federation.valid_until(beneficiary_id) > before_valid,
        30,
        "Lanzhou to apply the genuine attestation once proven",
    )
    after = federation.state(beneficiary_id)
    assert after[1:] == before[1:]
    with federation.desk("lanzhou") as desk:
        [sent] = [
            r
            for r in desk.stub.ListAssistanceRequests(
                desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_OUTBOUND)
            ).requests
            if r.request_id == request_id
        ]
    assert sent.status == common_pb2.ASSISTANCE_STATUS_COMPLETED
    assert sent.attestation_id == genuine_id
    with federation.desk("lanzhou", "reviewer") as desk:
        held = [
            h
            for h in desk.stub.ListHeldAttestations(
                desk_pb2.ListHeldAttestationsRequest(page_size=500)
            ).attestations
            if h.attestation_id == genuine_id
        ]
    assert [(h.issuing_node_id, h.reason) for h in held] == [
        ("datong", desk_pb2.HOLD_REASON_NOT_OUR_REQUEST)
    ]

    # An export by id alone would have to pick one: it asks which issuer instead.
    with federation.desk("lanzhou") as desk:
        with pytest.raises(grpc.RpcError) as ambiguous:
            desk.stub.ExportAttestation(
                desk_pb2.ExportAttestationRequest(attestation_id=genuine_id)
            )
        from_qingdao = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=genuine_id, issuing_node_id="qingdao")
        )
    assert ambiguous.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "name the issuing node" in (ambiguous.value.details() or "")
    with federation.desk("qingdao") as desk:
        issued = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=genuine_id)
        )
    assert from_qingdao.dsse_json == issued.dsse_json
    # Nothing was dead-lettered at Qingdao: the genuine delivery was accepted.
    with federation.desk("qingdao", "admin") as desk:
        dead = desk.stub.ListOutbox(
            desk_pb2.ListOutboxRequest(state=desk_pb2.DELIVERY_STATE_DEAD)
        ).messages
    assert not [m for m in dead if m.subject_id == genuine_id]


def test_an_issuer_reusing_its_own_id_for_another_attestation_is_a_refused_incident(
    federation: Federation,
) -> None:
    beneficiary_id, number = federation.person("140202")
    attestation_id = "0190f5d6-0000-7000-8000-0000000d0001"
    first = federation.forge(
        number,
        attestation_id,
        outcome=common_pb2.CERTIFICATION_OUTCOME_DECEASED,
        observed_at=just_now() - timedelta(days=20),
    )
    assert not federation.rogue.deliver("lanzhou", first).duplicate
    before = federation.state(beneficiary_id)
    # The same attestation again is a redelivery, recognised and harmless.
    assert federation.rogue.deliver("lanzhou", first).duplicate

    rewritten = federation.forge(
        number,
        attestation_id,
        outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
        observed_at=just_now(),
    )
    with pytest.raises(grpc.RpcError) as refused:
        federation.rogue.deliver("lanzhou", rewritten)
    assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "already delivered a different attestation" in (refused.value.details() or "")
    assert number not in (refused.value.details() or "")

    assert federation.state(beneficiary_id) == before
    with federation.desk("lanzhou") as desk:
        kept = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(
                attestation_id=attestation_id, issuing_node_id="datong"
            )
        )
    assert kept.dsse_json == first.to_json()
    assert set(federation.received(attestation_id)) == {"datong"}

    [incident] = wait_until(
        lambda: federation.audited("attestation.id_reused", attestation_id),
        30,
        "the id reuse in Lanzhou's audit trail",
    )
    assert incident.actor == "node:datong"
    assert json.loads(incident.details_json)["issuing_node_id"] == "datong"
    scraped = metrics_text(federation.local.nodes["lanzhou"])
    assert (
        metric_sample(scraped, 'certfed_attestation_id_reuses_total{issuing_node_id="datong"}') == 1
    )
