"""Corrections on real node processes over mutual TLS, on PostgreSQL: an attestation superseded
by a correcting one of the same issuer, signed and logged like any other, never an edit in place.

A death recorded by mistake at the paying office's own desk is reversed when its correction is
approved: the beneficiary is active again, the amount to recover cleared and the withheld month
paid back, and both attestations stay listed. A death a peer certified for this office's request
is corrected by that peer: the correction is held for this office's reviewer and changes nothing
until the reviewer applies it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.launcher import LocalFederation, wait_until
from federation.timestamps import to_timestamp
from signing import dsse
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU, QINGDAO_AGENCY, database_url_for, offices_with_policy

pytestmark = pytest.mark.postgres

MONTHLY_FEN = 250_000
ALIVE = common_pb2.CERTIFICATION_OUTCOME_ALIVE
DECEASED = common_pb2.CERTIFICATION_OUTCOME_DECEASED


def just_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


class Offices:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0

    def register(self, residence: str) -> str:
        self.serial += 1
        person = resident(resident_id("620102", date(1948, 5, 1), self.serial))
        request = desk_pb2.RegisterBeneficiaryRequest(
            identity=person,
            residence_region=residence,
            monthly_amount_fen=MONTHLY_FEN,
            valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=200)),
        )
        with self.local.desk("lanzhou", "clerk") as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(request).beneficiary.beneficiary_id
        return beneficiary_id

    def record(
        self, node_id: str, request: desk_pb2.RecordCertificationRequest, outcome: int
    ) -> desk_pb2.Certification:
        request.method = common_pb2.CERTIFICATION_METHOD_ON_SITE
        request.outcome = outcome  # type: ignore[assignment]
        request.observed_at.CopyFrom(to_timestamp(just_now()))
        with self.local.desk(node_id, "clerk") as desk:
            self.serial += 1
            request.evidence_digests.append(upload_capture(desk, self.serial))
            recorded: desk_pb2.Certification = desk.stub.RecordCertification(request).certification
        return recorded

    def approve(self, node_id: str, certification_id: str) -> str:
        with self.local.desk(node_id, "reviewer") as desk:
            approved = desk.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=certification_id)
            )
        attestation_id: str = approved.certification.attestation_id
        return attestation_id

    def certify(
        self, node_id: str, request: desk_pb2.RecordCertificationRequest, outcome: int
    ) -> str:
        return self.approve(node_id, self.record(node_id, request, outcome).certification_id)

    def overview(self, beneficiary_id: str) -> desk_pb2.GetBeneficiaryOverviewResponse:
        with self.local.desk("lanzhou", "admin") as desk:
            overview: desk_pb2.GetBeneficiaryOverviewResponse = desk.stub.GetBeneficiaryOverview(
                desk_pb2.GetBeneficiaryOverviewRequest(beneficiary_id=beneficiary_id)
            )
        return overview

    def exported(self, node_id: str, attestation_id: str) -> bytes:
        with self.local.desk(node_id, "clerk") as desk:
            exported = desk.stub.ExportAttestation(
                desk_pb2.ExportAttestationRequest(attestation_id=attestation_id)
            )
        return bytes(exported.dsse_json)

    def held(self, attestation_id: str) -> desk_pb2.HeldAttestation | None:
        with self.local.desk("lanzhou", "reviewer") as desk:
            listed = desk.stub.ListHeldAttestations(desk_pb2.ListHeldAttestationsRequest())
        return next((h for h in listed.attestations if h.attestation_id == attestation_id), None)


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def offices(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Offices]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp("corrections")
    with offices_with_policy(workdir, urls, LANZHOU, "", QINGDAO_AGENCY) as local:
        yield Offices(local)


def _signed(envelope_json: bytes) -> attestation_pb2.CertificationAttestation:
    envelope = dsse.Envelope.from_json(envelope_json)
    return attestation_pb2.CertificationAttestation.FromString(envelope.payload)


def test_a_mistaken_death_is_reversed_by_its_correction_and_both_stay_listed(
    offices: Offices,
) -> None:
    beneficiary_id = offices.register("620102")
    death = offices.certify(
        "lanzhou", desk_pb2.RecordCertificationRequest(beneficiary_id=beneficiary_id), DECEASED
    )
    ended = offices.overview(beneficiary_id)
    assert ended.entitlement.state == desk_pb2.ENTITLEMENT_STATE_TERMINATED
    assert ended.beneficiary.status == desk_pb2.BENEFICIARY_STATUS_DECEASED
    [stop] = [
        i for i in ended.payment_instructions if i.action == desk_pb2.PAYMENT_ACTION_TERMINATE
    ]
    signed_death = offices.exported("lanzhou", death)

    correction = offices.certify(
        "lanzhou", desk_pb2.RecordCertificationRequest(corrects_attestation_id=death), ALIVE
    )

    restored = offices.overview(beneficiary_id)
    assert restored.beneficiary.status == desk_pb2.BENEFICIARY_STATUS_ACTIVE
    assert restored.entitlement.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
    assert restored.entitlement.overpayment_fen == 0
    [resumed] = [
        i for i in restored.payment_instructions if i.action == desk_pb2.PAYMENT_ACTION_RESUME
    ]
    # Every month from the one payment stopped in up to the one it resumes in is paid back.
    assert resumed.effective_month > stop.effective_month
    assert resumed.back_pay_months >= 1
    assert resumed.back_pay_fen == resumed.back_pay_months * MONTHLY_FEN
    # Never an edit in place: the death is kept as signed, and the correction names it.
    assert offices.exported("lanzhou", death) == signed_death
    assert _signed(offices.exported("lanzhou", correction)).corrects_attestation_id == death
    listed = {a.attestation_id: a for a in restored.attestations}
    assert listed[death].outcome == DECEASED
    assert listed[correction].corrects_attestation_id == death
    # The reversal, naming both attestations, in the audit trail (sequenced shortly after).
    with offices.local.desk("lanzhou", "admin") as desk:

        def reversed_in_trail() -> bool | None:
            trail = desk.stub.ListAuditRecords(
                desk_pb2.ListAuditRecordsRequest(subject_id=beneficiary_id)
            ).records
            return any(r.action == "entitlement.correction_reversed" for r in trail) or None

        wait_until(reversed_in_trail, 30, "the reversal in the audit trail")


def test_an_attestation_is_corrected_once_and_a_correction_names_no_subject(
    offices: Offices,
) -> None:
    beneficiary_id = offices.register("620102")
    death = offices.certify(
        "lanzhou", desk_pb2.RecordCertificationRequest(beneficiary_id=beneficiary_id), DECEASED
    )
    offices.certify(
        "lanzhou", desk_pb2.RecordCertificationRequest(corrects_attestation_id=death), ALIVE
    )
    before = offices.overview(beneficiary_id)

    with pytest.raises(grpc.RpcError) as again:
        offices.record(
            "lanzhou", desk_pb2.RecordCertificationRequest(corrects_attestation_id=death), ALIVE
        )
    assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "corrected already" in (again.value.details() or "")
    with pytest.raises(grpc.RpcError) as both:
        offices.record(
            "lanzhou",
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=beneficiary_id, corrects_attestation_id=death
            ),
            ALIVE,
        )
    assert both.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as unknown:
        offices.record(
            "lanzhou",
            desk_pb2.RecordCertificationRequest(
                corrects_attestation_id="0190a6f2-0000-7000-8000-000000000000"
            ),
            ALIVE,
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    after = offices.overview(beneficiary_id)
    assert after.entitlement == before.entitlement
    assert list(after.payment_instructions) == list(before.payment_instructions)


def test_a_peers_correction_is_held_and_reverses_the_death_only_when_a_reviewer_applies_it(
    offices: Offices,
) -> None:
    beneficiary_id = offices.register("370202")
    with offices.local.desk("lanzhou", "clerk") as desk:
        request_id = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
            )
        ).request.request_id
    with offices.local.desk("qingdao", "clerk") as desk:
        wait_until(
            lambda: any(
                r.request_id == request_id
                for r in desk.stub.ListAssistanceRequests(
                    desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
                ).requests
            ),
            30,
            "the request in Qingdao's inbox",
        )
    death = offices.certify(
        "qingdao", desk_pb2.RecordCertificationRequest(request_id=request_id), DECEASED
    )
    wait_until(
        lambda: offices.overview(beneficiary_id).entitlement.termination_pending_review or None,
        30,
        "the reported death awaiting Lanzhou's reviewer",
    )
    with offices.local.desk("lanzhou", "reviewer") as desk:
        desk.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(
                beneficiary_id=beneficiary_id, confirm=True, reason="death confirmed"
            )
        )
    assert offices.overview(beneficiary_id).entitlement.state == (
        desk_pb2.ENTITLEMENT_STATE_TERMINATED
    )

    correction = offices.certify(
        "qingdao", desk_pb2.RecordCertificationRequest(corrects_attestation_id=death), ALIVE
    )
    held = wait_until(lambda: offices.held(correction), 30, "the correction held at Lanzhou")
    assert held.reason == desk_pb2.HOLD_REASON_CORRECTION
    assert held.corrects_attestation_id == death
    waiting = offices.overview(beneficiary_id)
    assert waiting.entitlement.state == desk_pb2.ENTITLEMENT_STATE_TERMINATED
    assert waiting.beneficiary.status == desk_pb2.BENEFICIARY_STATUS_DECEASED

    with offices.local.desk("lanzhou", "reviewer") as desk:
        desk.stub.DecideHeldAttestation(
            desk_pb2.DecideHeldAttestationRequest(
                attestation_id=correction, apply=True, reason="Qingdao found the person alive"
            )
        )
    restored = offices.overview(beneficiary_id)
    assert restored.beneficiary.status == desk_pb2.BENEFICIARY_STATUS_ACTIVE
    assert restored.entitlement.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
    assert restored.entitlement.overpayment_fen == 0
    assert any(
        i.action == desk_pb2.PAYMENT_ACTION_RESUME and i.back_pay_fen > 0
        for i in restored.payment_instructions
    )
