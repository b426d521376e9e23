"""A paying office certifies its own retirees, on real node processes over mutual TLS, on SQLite
and PostgreSQL: at the counter or by video call at a pure paying office (Lanzhou), a walk-in of
its own retiree at a node that also certifies for others (Qingdao). The attestation is signed and
logged like any other and applied to the office's record when the reviewer approves it; validity
is always the paying office's own period, whatever an issuer signed.

Lanzhou's policy gives a 6-month validity period, Qingdao keeps the default 12, so whose rule
was applied shows in every date.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2, federation_pb2_grpc
from cli.launcher import LocalFederation, wait_until
from federation.desk_client import DeskClient
from federation.directory import verify_directory
from federation.envelopes import envelope_to_proto
from federation.timestamps import to_datetime, to_timestamp
from federation.transport import TlsMaterial, node_tls_name, secure_channel
from federation_node.keystore import load_root_public_key
from federation_node.rules.entitlement import add_months
from federation_node.tlog.attestation import verify_attestation_envelope
from signing import dsse
from signing.keys import SigningKey
from tests.helpers.commands import certfed
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU as PAYING_ONLY
from tests.helpers.nodes import QINGDAO as DUAL_ROLE
from tests.helpers.nodes import database_url_for, offices_with_policy
from tests.helpers.split_view import registry_witness, split_view

# Some tests replay months of 2025: certifications observed then are still accepted at the desk.
LANZHOU_POLICY = "[validity]\nperiod_months = 6\n[certifications]\nmax_age_days = 3650\n"
LANZHOU_MONTHS, QINGDAO_MONTHS = 6, 12


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def just_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


class Offices:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0

    def desk(self, node_id: str, operator: str = "clerk") -> DeskClient:
        return self.local.desk(node_id, operator)

    def person(self, region: str) -> attestation_pb2.IdentityBundle:
        self.serial += 1
        return resident(resident_id(region, date(1946, 3, 1), self.serial))

    def register(
        self,
        node_id: str,
        person: attestation_pb2.IdentityBundle,
        *,
        residence: str,
        valid_until: datetime | None,
        amount: int = 250_000,
    ) -> str:
        request = desk_pb2.RegisterBeneficiaryRequest(
            identity=person, residence_region=residence, monthly_amount_fen=amount
        )
        if valid_until is not None:
            request.valid_until.CopyFrom(to_timestamp(valid_until))
        with self.desk(node_id) as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(request).beneficiary.beneficiary_id
        return beneficiary_id

    def record(
        self,
        node_id: str,
        request: desk_pb2.RecordCertificationRequest,
        *,
        method: common_pb2.CertificationMethod.ValueType = common_pb2.CERTIFICATION_METHOD_ON_SITE,
        observed_at: datetime | None = None,
        token: str | None = None,
    ) -> desk_pb2.Certification:
        request.method = method
        request.outcome = request.outcome or common_pb2.CERTIFICATION_OUTCOME_ALIVE
        request.observed_at.CopyFrom(to_timestamp(observed_at or just_now()))
        with self._desk(node_id, "clerk", token) as desk:
            request.evidence_digests.append(upload_capture(desk, self.serial))
            certification: desk_pb2.Certification = desk.stub.RecordCertification(
                request
            ).certification
        return certification

    def approve(self, node_id: str, certification_id: str, token: str | None = None) -> str:
        with self._desk(node_id, "reviewer", token) as desk:
            approved = desk.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=certification_id)
            )
        attestation_id: str = approved.certification.attestation_id
        return attestation_id

    def _desk(self, node_id: str, operator: str, token: str | None) -> DeskClient:
        if token is None:
            return self.desk(node_id, operator)
        handle = self.local.nodes[node_id]
        return DeskClient(
            f"127.0.0.1:{handle.desk_port}",
            node_id,
            handle.config.ca_certificate.read_bytes(),
            token,
            self.local.limits,
        )

    def beneficiary(self, node_id: str, beneficiary_id: str) -> desk_pb2.Beneficiary:
        with self.desk(node_id) as desk:
            found: desk_pb2.Beneficiary = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
            ).beneficiary
        return found

    def valid_until(self, node_id: str, beneficiary_id: str) -> datetime | None:
        found = self.beneficiary(node_id, beneficiary_id)
        return to_datetime(found.valid_until) if found.HasField("valid_until") else None

    def entitlement(self, node_id: str, beneficiary_id: str) -> desk_pb2.Entitlement:
        with self.desk(node_id, "reviewer") as desk:
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
                if not token:
                    raise AssertionError(f"no entitlement for {beneficiary_id}")

    def attestation(
        self, node_id: str, attestation_id: str
    ) -> tuple[attestation_pb2.CertificationAttestation, desk_pb2.AttestationSummary, bytes]:
        with self.desk(node_id) as desk:
            exported = desk.stub.ExportAttestation(
                desk_pb2.ExportAttestationRequest(attestation_id=attestation_id)
            )
        envelope = dsse.Envelope.from_json(exported.dsse_json)
        signed = attestation_pb2.CertificationAttestation.FromString(envelope.payload)
        return signed, exported.attestation, bytes(exported.dsse_json)

    def queued_deliveries(self, node_id: str, attestation_id: str) -> list[desk_pb2.OutboxMessage]:
        with self.desk(node_id, "admin") as desk:
            messages = desk.stub.ListOutbox(desk_pb2.ListOutboxRequest()).messages
        return [m for m in messages if m.subject_id == attestation_id]

    def both_roles_token(self, node_id: str) -> str:
        config = str(self.local.nodes[node_id].config_path)
        added = certfed(
            "node", "add-operator", "--config", config, "--label", "one-person counter",
            "--role", "clerk", "--role", "reviewer",
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        return added.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def offices(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Offices]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp(f"own-office-{request.param}")
    with offices_with_policy(workdir, urls, PAYING_ONLY, LANZHOU_POLICY, DUAL_ROLE) as local:
        yield Offices(local)


@pytest.mark.parametrize(
    "method",
    [common_pb2.CERTIFICATION_METHOD_ON_SITE, common_pb2.CERTIFICATION_METHOD_VIDEO_CALL],
    ids=["counter", "video_call"],
)
def test_a_pure_paying_office_certifies_its_own_retiree_and_applies_it_on_approval(
    offices: Offices, method: common_pb2.CertificationMethod.ValueType
) -> None:
    lapsed = datetime.now(UTC) - timedelta(days=5)
    beneficiary_id = offices.register(
        "lanzhou", offices.person("620102"), residence="620102", valid_until=lapsed
    )
    observed = just_now()
    recorded = offices.record(
        "lanzhou",
        desk_pb2.RecordCertificationRequest(beneficiary_id=beneficiary_id),
        method=method,
        observed_at=observed,
    )
    assert recorded.status == desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW
    assert recorded.paying_node_id == "lanzhou"
    assert offices.valid_until("lanzhou", beneficiary_id) == lapsed, "not before approval"

    attestation_id = offices.approve("lanzhou", recorded.certification_id)

    # Applied in the approving transaction: nothing to wait for.
    expected = add_months(observed, LANZHOU_MONTHS)
    assert offices.valid_until("lanzhou", beneficiary_id) == expected
    entitlement = offices.entitlement("lanzhou", beneficiary_id)
    assert entitlement.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
    signed, summary, dsse_json = offices.attestation("lanzhou", attestation_id)
    assert (signed.issuing_node_id, signed.paying_node_id) == ("lanzhou", "lanzhou")
    assert signed.method == method
    assert to_datetime(signed.valid_until) == expected
    assert list(signed.evidence_digests) == list(recorded.evidence_digests)
    assert signed.clerk_id != signed.reviewer_id
    assert summary.direction == desk_pb2.DIRECTION_OUTBOUND
    assert summary.beneficiary_id == beneficiary_id
    assert offices.queued_deliveries("lanzhou", attestation_id) == []
    # Signed like any other: it verifies offline against the federation's directory.
    directory = verify_directory(
        offices.local.fetch_directory(),
        load_root_public_key(offices.local.registry_paths.trust_root_public_key),
        now=datetime.now(UTC),
    )
    verified, _ = verify_attestation_envelope(
        dsse.Envelope.from_json(dsse_json),
        directory,
        now=datetime.now(UTC),
        max_clock_skew=timedelta(minutes=5),
    )
    assert verified.attestation_id == attestation_id


def test_a_walk_in_of_its_own_retiree_at_a_dual_role_node_is_applied_there(
    offices: Offices,
) -> None:
    person = offices.person("370202")
    beneficiary_id = offices.register(
        "qingdao", person, residence="370202", valid_until=datetime.now(UTC) + timedelta(days=20)
    )
    observed = just_now()
    recorded = offices.record(
        "qingdao", desk_pb2.RecordCertificationRequest(walk_in=person), observed_at=observed
    )
    assert recorded.paying_node_id == "qingdao"
    attestation_id = offices.approve("qingdao", recorded.certification_id)
    assert offices.valid_until("qingdao", beneficiary_id) == add_months(observed, QINGDAO_MONTHS)
    assert offices.entitlement("qingdao", beneficiary_id).state == (
        desk_pb2.ENTITLEMENT_STATE_ACTIVE
    )
    _, summary, _ = offices.attestation("qingdao", attestation_id)
    assert summary.beneficiary_id == beneficiary_id
    assert offices.queued_deliveries("qingdao", attestation_id) == []


def test_the_operator_who_recorded_an_own_office_certification_cannot_approve_it(
    offices: Offices,
) -> None:
    token = offices.both_roles_token("lanzhou")
    beneficiary_id = offices.register(
        "lanzhou", offices.person("620102"), residence="620102", valid_until=None
    )
    recorded = offices.record(
        "lanzhou", desk_pb2.RecordCertificationRequest(beneficiary_id=beneficiary_id), token=token
    )
    with pytest.raises(grpc.RpcError) as refused:
        offices.approve("lanzhou", recorded.certification_id, token=token)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "a different reviewer must approve" in (refused.value.details() or "")
    assert offices.valid_until("lanzhou", beneficiary_id) is None
    # Another reviewer can.
    offices.approve("lanzhou", recorded.certification_id)
    assert offices.valid_until("lanzhou", beneficiary_id) is not None


def test_suspended_in_july_certified_at_the_counter_in_august_resumes_in_september_with_back_pay(
    offices: Offices,
) -> None:
    beneficiary_id = offices.register(
        "lanzhou",
        offices.person("620102"),
        residence="620102",
        valid_until=at(2025, 4, 1),
        amount=250_000,
    )
    with offices.desk("lanzhou", "admin") as admin:
        assert admin.stub.RunCycle(desk_pb2.RunCycleRequest(day=to_timestamp(at(2025, 7, 1)))).ran
    assert offices.entitlement("lanzhou", beneficiary_id).state == (
        desk_pb2.ENTITLEMENT_STATE_SUSPENDED
    )
    recorded = offices.record(
        "lanzhou",
        desk_pb2.RecordCertificationRequest(beneficiary_id=beneficiary_id),
        method=common_pb2.CERTIFICATION_METHOD_HOME_VISIT,
        observed_at=at(2025, 8, 14),
    )
    offices.approve("lanzhou", recorded.certification_id)

    assert offices.entitlement("lanzhou", beneficiary_id).state == (
        desk_pb2.ENTITLEMENT_STATE_ACTIVE
    )
    assert offices.valid_until("lanzhou", beneficiary_id) == at(2026, 2, 14)
    with offices.desk("lanzhou", "admin") as admin:

        def instructions(month: str) -> list[desk_pb2.PaymentInstruction]:
            listed = admin.stub.ListPaymentInstructions(
                desk_pb2.ListPaymentInstructionsRequest(month=month)
            ).instructions
            return [i for i in listed if i.beneficiary_id == beneficiary_id]

        [suspend] = instructions("2025-07")
        assert suspend.action == desk_pb2.PAYMENT_ACTION_SUSPEND
        assert instructions("2025-08") == []
        [resume] = instructions("2025-09")
    assert resume.action == desk_pb2.PAYMENT_ACTION_RESUME
    assert (resume.back_pay_months, resume.back_pay_fen) == (2, 500_000)


def test_the_paying_office_applies_its_own_period_to_a_peers_certification(
    offices: Offices,
) -> None:
    beneficiary_id = offices.register(
        "lanzhou", offices.person("620102"), residence="370202", valid_until=None
    )
    with offices.desk("lanzhou") as desk:
        request_id = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
            )
        ).request.request_id
    with offices.desk("qingdao") as desk:
        inbound = desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
        wait_until(
            lambda: any(r.request_id == request_id for r in desk.stub.ListAssistanceRequests(
                inbound).requests),
            30,
            "the request in Qingdao's inbox",
        )  # fmt: skip
    observed = just_now()
    recorded = offices.record(
        "qingdao", desk_pb2.RecordCertificationRequest(request_id=request_id), observed_at=observed
    )
    attestation_id = offices.approve("qingdao", recorded.certification_id)
    applied = wait_until(
        lambda: offices.valid_until("lanzhou", beneficiary_id), 30, "Lanzhou to apply it"
    )
    assert applied == add_months(observed, LANZHOU_MONTHS)
    # The issuer's statement is kept as it signed it.
    _, summary, _ = offices.attestation("lanzhou", attestation_id)
    assert summary.direction == desk_pb2.DIRECTION_INBOUND
    assert to_datetime(summary.valid_until) == add_months(observed, QINGDAO_MONTHS)


def test_an_issuer_claiming_a_far_validity_gets_only_the_paying_offices_period(
    offices: Offices,
) -> None:
    beneficiary_id = offices.register(
        "lanzhou", offices.person("620102"), residence="370202", valid_until=None
    )
    locator = offices.beneficiary("lanzhou", beneficiary_id).subject_locator
    observed = just_now()
    far = observed + timedelta(days=3650)
    attestation = attestation_pb2.CertificationAttestation(
        attestation_id=str(uuid.uuid4()),
        subject_locator=locator,
        paying_region="620102",
        paying_node_id="lanzhou",
        issuing_node_id="qingdao",
        certifying_region="370200",
        certifying_agency="Qingdao centre",
        method=common_pb2.CERTIFICATION_METHOD_HOME_VISIT,
        outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
        observed_at=to_timestamp(observed),
        valid_until=to_timestamp(far),
        clerk_id="clerk-1",
        reviewer_id="reviewer-1",
        issued_at=to_timestamp(datetime.now(UTC)),
    )
    qingdao = offices.local.nodes["qingdao"].config
    envelope = dsse.sign(
        attestation.SerializeToString(deterministic=True),
        dsse.ATTESTATION_PAYLOAD_TYPE,
        SigningKey.load(qingdao.data_dir / "keys" / "signing.key"),
    )
    tls = TlsMaterial.load(
        qingdao.data_dir / "keys" / "tls.pem",
        qingdao.data_dir / "keys" / "tls.key",
        qingdao.ca_certificate,
    )
    channel = secure_channel(
        f"127.0.0.1:{offices.local.nodes['lanzhou'].federation_port}",
        node_tls_name("lanzhou"),
        tls.channel_credentials(),
        max_message_bytes=4 << 20,
    )
    # In a checkpoint the registry witness cosigned (Lanzhou requires no other witness), so it
    # is applied on delivery.
    inclusion = split_view(
        "qingdao",
        SigningKey.load(qingdao.data_dir / "keys" / "signing.key"),
        envelope,
        [registry_witness(offices.local)],
    )
    with channel:
        federation_pb2_grpc.FederationServiceStub(channel).DeliverAttestation(
            federation_pb2.DeliverAttestationRequest(
                envelope=envelope_to_proto(envelope), inclusion=inclusion
            ),
            timeout=10,
        )
    assert offices.valid_until("lanzhou", beneficiary_id) == add_months(observed, LANZHOU_MONTHS)


def test_what_a_clerk_cannot_certify_is_refused_with_a_status_and_a_reason(
    offices: Offices,
) -> None:
    stranger = offices.person("620102")
    beneficiary_id = offices.register(
        "lanzhou", offices.person("620102"), residence="620102", valid_until=None
    )
    cases: list[tuple[desk_pb2.RecordCertificationRequest, grpc.StatusCode, str]] = [
        (
            desk_pb2.RecordCertificationRequest(walk_in=stranger),
            grpc.StatusCode.FAILED_PRECONDITION,
            "certifies only its own beneficiaries",
        ),
        (
            desk_pb2.RecordCertificationRequest(request_id=str(uuid.uuid4())),
            grpc.StatusCode.FAILED_PRECONDITION,
            "does not certify residents for other offices",
        ),
        (
            desk_pb2.RecordCertificationRequest(beneficiary_id=str(uuid.uuid4())),
            grpc.StatusCode.NOT_FOUND,
            "no beneficiary",
        ),
        (
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=beneficiary_id, method=common_pb2.CERTIFICATION_METHOD_DATA_MATCH
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "method: a data match comes from a data feed",
        ),
        (
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=beneficiary_id, evidence_digests=[bytes(32)]
            ),
            grpc.StatusCode.NOT_FOUND,
            "evidence_digests[0]: no file with this SHA-256 was uploaded",
        ),
    ]
    with offices.desk("lanzhou") as desk:
        for request, code, words in cases:
            request.method = request.method or common_pb2.CERTIFICATION_METHOD_ON_SITE
            request.outcome = common_pb2.CERTIFICATION_OUTCOME_ALIVE
            request.observed_at.CopyFrom(to_timestamp(just_now()))
            with pytest.raises(grpc.RpcError) as refused:
                desk.stub.RecordCertification(request)
            details = refused.value.details() or ""
            assert refused.value.code() is code, details
            assert words in details
            assert stranger.identity_number not in details
            assert stranger.full_name not in details
