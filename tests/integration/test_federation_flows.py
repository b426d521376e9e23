"""The federation end to end: a registry and four nodes as real processes over mutual TLS, on
SQLite and on a real PostgreSQL server, driven through the desk API as clerks would."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from sqlmodel import Session

from certfed.v1 import (
    attestation_pb2,
    common_pb2,
    desk_pb2,
    federation_pb2,
    federation_pb2_grpc,
)
from cli.launcher import LocalFederation, NodeHandle, wait_until
from federation.desk_client import DeskClient
from federation.envelopes import envelope_to_proto
from federation.timestamps import to_datetime, to_timestamp
from federation.transport import TlsMaterial, node_tls_name, secure_channel
from federation_node.store import db
from federation_node.store.models import InclusionWait
from signing import dsse, sealing
from tests.helpers.commands import certfed
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.locators import member_locator
from tests.helpers.nodes import DATONG, database_url_for
from tests.helpers.nodes import FOSHAN as PAYING_ONLY
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import QINGDAO as RESIDENCE


class Federation:
    """A started federation plus the helpers the tests share."""

    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self._serial = 0

    def desk(self, node_id: str, operator: str = "clerk") -> DeskClient:
        return self.local.desk(node_id, operator)

    def node(self, node_id: str) -> NodeHandle:
        return self.local.nodes[node_id]

    def new_person(self, region_prefix: str = "620102") -> attestation_pb2.IdentityBundle:
        self._serial += 1
        return resident(resident_id(region_prefix, date(1950, 1, 1), self._serial))

    def register(self, payer: str, person: attestation_pb2.IdentityBundle, residence: str) -> str:
        with self.desk(payer) as desk:
            response = desk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(identity=person, residence_region=residence),
            )
        beneficiary_id: str = response.beneficiary.beneficiary_id
        return beneficiary_id

    def request(self, payer: str, beneficiary_id: str) -> str:
        with self.desk(payer) as desk:
            response = desk.stub.RequestCertification(
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=beneficiary_id,
                    deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
                ),
            )
        request_id: str = response.request.request_id
        return request_id

    def await_inbox(self, certifier: str, request_id: str) -> None:
        with self.desk(certifier) as desk:
            wait_until(
                lambda: any(
                    r.request_id == request_id
                    for r in desk.stub.ListAssistanceRequests(
                        desk_pb2.ListAssistanceRequestsRequest(
                            direction=desk_pb2.DIRECTION_INBOUND
                        ),
                    ).requests
                ),
                30,
                "the request in the residence inbox",
            )

    def record(self, certifier: str, request: desk_pb2.RecordCertificationRequest) -> str:
        request.method = request.method or common_pb2.CERTIFICATION_METHOD_ON_SITE
        request.outcome = request.outcome or common_pb2.CERTIFICATION_OUTCOME_ALIVE
        request.observed_at.CopyFrom(to_timestamp(datetime.now(UTC)))
        with self.desk(certifier) as desk:
            request.evidence_digests.append(upload_capture(desk))
            response = desk.stub.RecordCertification(request)
        certification_id: str = response.certification.certification_id
        return certification_id

    def approve(self, certifier: str, certification_id: str) -> str:
        with self.desk(certifier, "reviewer") as desk:
            response = desk.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=certification_id),
            )
        attestation_id: str = response.certification.attestation_id
        return attestation_id

    def beneficiary(self, payer: str, beneficiary_id: str) -> desk_pb2.Beneficiary:
        with self.desk(payer) as desk:
            response = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
            )
        beneficiary: desk_pb2.Beneficiary = response.beneficiary
        return beneficiary

    def await_valid(self, payer: str, beneficiary_id: str) -> datetime:
        def valid() -> datetime | None:
            b = self.beneficiary(payer, beneficiary_id)
            return to_datetime(b.valid_until) if b.HasField("valid_until") else None

        return wait_until(valid, 30, "the attestation to be applied")

    def await_published(self, payer: str) -> None:
        self.local.await_outbox_drained(payer)

    def certify_by_request(self, payer: str, certifier: str) -> tuple[str, str, str]:
        """Flow 1 start to end; returns beneficiary, request and attestation ids."""
        beneficiary_id = self.register(payer, self.new_person(), "370202")
        request_id = self.request(payer, beneficiary_id)
        self.await_inbox(certifier, request_id)
        certification_id = self.record(
            certifier, desk_pb2.RecordCertificationRequest(request_id=request_id)
        )
        attestation_id = self.approve(certifier, certification_id)
        self.await_valid(payer, beneficiary_id)
        return beneficiary_id, request_id, attestation_id

    def peer_stub(
        self, as_node: str, to_node: str
    ) -> tuple[grpc.Channel, federation_pb2_grpc.FederationServiceStub]:
        """A FederationService stub calling `to_node` with `as_node`'s own certificate."""
        caller = self.node(as_node).config
        tls = TlsMaterial.load(
            caller.data_dir / "keys" / "tls.pem",
            caller.data_dir / "keys" / "tls.key",
            caller.ca_certificate,
        )
        channel = secure_channel(
            f"127.0.0.1:{self.node(to_node).federation_port}",
            node_tls_name(to_node),
            tls.channel_credentials(),
            max_message_bytes=4 << 20,
        )
        return channel, federation_pb2_grpc.FederationServiceStub(channel)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def federation(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Federation]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp(f"federation-{request.param}")
    local = LocalFederation(workdir, database_url_for=urls, max_backoff_s=0.5)
    with local:
        local.start_registry()
        for spec in (PAYING, RESIDENCE, PAYING_ONLY):
            local.add_node(spec)
        yield Federation(local)


def test_assistance_request_is_certified_and_applied_at_the_paying_office(
    federation: Federation,
) -> None:
    beneficiary_id, request_id, attestation_id = federation.certify_by_request("lanzhou", "qingdao")
    valid_until = federation.await_valid("lanzhou", beneficiary_id)
    assert valid_until > datetime.now(UTC) + timedelta(days=360)
    with federation.desk("lanzhou") as desk:
        sent = desk.stub.GetAssistanceRequest(
            desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
        ).request
        exported = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=attestation_id)
        )
    assert sent.status == common_pb2.ASSISTANCE_STATUS_COMPLETED
    envelope = dsse.Envelope.from_json(exported.dsse_json)
    attestation = attestation_pb2.CertificationAttestation.FromString(envelope.payload)
    assert attestation.issuing_node_id == "qingdao"
    assert attestation.assistance_request_id == request_id
    assert attestation.clerk_id != attestation.reviewer_id
    # The delivery carried its inclusion proof under Qingdao's cosigned checkpoint: Lanzhou
    # proved and applied it on receipt, without asking Qingdao for the proof.
    engine = db.create_engine_for(federation.node("lanzhou").config.effective_database_url)
    try:
        with Session(engine) as session:
            wait = session.get(InclusionWait, ("qingdao", attestation_id))
    finally:
        engine.dispose()
    assert wait is not None
    assert (wait.attempts, wait.proven_at, wait.last_error) == (1, wait.received_at, "")


def test_status_updates_flow_back_to_the_requester(federation: Federation) -> None:
    beneficiary_id = federation.register("lanzhou", federation.new_person(), "370203")
    request_id = federation.request("lanzhou", beneficiary_id)
    federation.await_inbox("qingdao", request_id)
    with federation.desk("qingdao") as desk:
        desk.stub.SetAssistanceStatus(
            desk_pb2.SetAssistanceStatusRequest(
                request_id=request_id,
                status=common_pb2.ASSISTANCE_STATUS_DECLINED,
                reason="the retiree moved away; no one at the address",
            ),
        )
    with federation.desk("lanzhou") as desk:
        declined = wait_until(
            lambda: (
                r
                if (
                    r := desk.stub.GetAssistanceRequest(
                        desk_pb2.GetAssistanceRequestRequest(request_id=request_id),
                    ).request
                ).status
                == common_pb2.ASSISTANCE_STATUS_DECLINED
                else None
            ),
            30,
            "the decline to reach the paying office",
        )
    assert "moved away" in declined.status_reason


def test_walk_in_retiree_is_routed_to_the_paying_office_by_locator(
    federation: Federation,
) -> None:
    person = federation.new_person("440604")
    beneficiary_id = federation.register("foshan", person, "440604")
    federation.await_published("foshan")
    certification_id = federation.record(
        "qingdao", desk_pb2.RecordCertificationRequest(walk_in=person)
    )
    federation.approve("qingdao", certification_id)
    assert federation.await_valid("foshan", beneficiary_id) > datetime.now(UTC)


def test_walk_in_for_someone_no_office_pays_is_refused_with_not_found(
    federation: Federation,
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        federation.record(
            "qingdao", desk_pb2.RecordCertificationRequest(walk_in=federation.new_person("110105"))
        )
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    assert "no paying office" in refused.value.details()


def test_the_same_assistance_request_delivered_twice_changes_nothing(
    federation: Federation,
) -> None:
    directory_hpke = _hpke_key_of(federation, "qingdao")
    request_id = "0190f5d6-0000-7000-8000-00000000abcd"
    person = federation.new_person()
    message = federation_pb2.RequestAssistanceRequest(
        request_id=request_id,
        paying_node_id="lanzhou",
        paying_region="620102",
        residence_region="370202",
        subject_locator=_locator_of(federation, person),
        sealed_identity=sealing.seal(
            person.SerializeToString(), directory_hpke, sealing.request_info(request_id)
        ),
        deadline=to_timestamp(datetime.now(UTC) + timedelta(days=10)),
        requested_at=to_timestamp(datetime.now(UTC)),
    )
    channel, stub = federation.peer_stub("lanzhou", "qingdao")
    with channel:
        first = stub.RequestAssistance(message, timeout=10)
        second = stub.RequestAssistance(message, timeout=10)
        changed = federation_pb2.RequestAssistanceRequest()
        changed.CopyFrom(message)
        changed.note = "a different request under the same id"
        with pytest.raises(grpc.RpcError) as conflict:
            stub.RequestAssistance(changed, timeout=10)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert conflict.value.code() is grpc.StatusCode.ALREADY_EXISTS
    with federation.desk("qingdao") as desk:
        inbox = desk.stub.ListAssistanceRequests(
            desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND),
        ).requests
    assert sum(r.request_id == request_id for r in inbox) == 1


def _locator_of(federation: Federation, person: attestation_pb2.IdentityBundle) -> bytes:
    """The person's locator, as the paying office computes it through the registry."""
    return member_locator(federation.node("lanzhou").config, person.identity_number)


def test_the_same_attestation_delivered_twice_changes_nothing(federation: Federation) -> None:
    beneficiary_id, _, attestation_id = federation.certify_by_request("lanzhou", "qingdao")
    before = federation.beneficiary("lanzhou", beneficiary_id)
    with federation.desk("qingdao") as desk:
        exported = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=attestation_id)
        )
    envelope = dsse.Envelope.from_json(exported.dsse_json)
    channel, stub = federation.peer_stub("qingdao", "lanzhou")
    with channel:
        again = stub.DeliverAttestation(
            federation_pb2.DeliverAttestationRequest(envelope=envelope_to_proto(envelope)),
            timeout=10,
        )
    assert again.duplicate
    assert federation.beneficiary("lanzhou", beneficiary_id) == before


def test_a_tampered_attestation_is_refused(federation: Federation) -> None:
    _, _, attestation_id = federation.certify_by_request("lanzhou", "qingdao")
    with federation.desk("qingdao") as desk:
        exported = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=attestation_id)
        )
    envelope = dsse.Envelope.from_json(exported.dsse_json)
    attestation = attestation_pb2.CertificationAttestation.FromString(envelope.payload)
    attestation.valid_until.seconds += 365 * 86400
    forged = dsse.Envelope(
        attestation.SerializeToString(), envelope.payload_type, envelope.signatures
    )
    channel, stub = federation.peer_stub("qingdao", "lanzhou")
    with channel, pytest.raises(grpc.RpcError) as refused:
        stub.DeliverAttestation(
            federation_pb2.DeliverAttestationRequest(envelope=envelope_to_proto(forged)),
            timeout=10,
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_a_peer_calling_an_rpc_its_role_does_not_allow_is_permission_denied(
    federation: Federation,
) -> None:
    # Foshan is a paying office: it requests assistance, it never answers a request's status
    # (DeliverAttestation it may call, to send the other paying offices a confirmed death).
    channel, stub = federation.peer_stub("foshan", "lanzhou")
    with channel, pytest.raises(grpc.RpcError) as refused:
        stub.UpdateAssistanceStatus(federation_pb2.UpdateAssistanceStatusRequest(), timeout=10)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "paying_office" in refused.value.details()


def test_a_client_without_a_federation_certificate_is_refused(
    federation: Federation, tmp_path: Path
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from cli.bench.webhook_gateway import self_signed
    from federation.transport import generate_tls_key

    key_pem = generate_tls_key()
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    lanzhou = x509.DNSName(node_tls_name("lanzhou"))
    rogue = self_signed(key, "lanzhou", lanzhou).public_bytes(serialization.Encoding.PEM)
    ca = federation.node("qingdao").config.ca_certificate.read_bytes()
    target = f"127.0.0.1:{federation.node('qingdao').federation_port}"
    for credentials in (
        grpc.ssl_channel_credentials(ca, key_pem, rogue),
        grpc.ssl_channel_credentials(ca),
    ):
        channel = secure_channel(
            target, node_tls_name("qingdao"), credentials, max_message_bytes=1 << 20
        )
        with channel, pytest.raises(grpc.RpcError) as refused:
            federation_pb2_grpc.FederationServiceStub(channel).RequestAssistance(
                federation_pb2.RequestAssistanceRequest(), timeout=5
            )
        assert refused.value.code() in {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.UNAUTHENTICATED,
        }


@pytest.mark.parametrize(
    ("call", "request_message", "code", "fragment"),
    [
        (
            "RegisterBeneficiary",
            desk_pb2.RegisterBeneficiaryRequest(
                identity=resident("620102194805120011"), residence_region="370202"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "check character",
        ),
        (
            "RegisterBeneficiary",
            desk_pb2.RegisterBeneficiaryRequest(
                identity=resident("620102194805120010"), residence_region="37020"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "residence_region",
        ),
        (
            "GetBeneficiary",
            desk_pb2.GetBeneficiaryRequest(beneficiary_id="0190f5d6-0000-7000-8000-000000000000"),
            grpc.StatusCode.NOT_FOUND,
            "beneficiary",
        ),
        (
            "GetBeneficiary",
            desk_pb2.GetBeneficiaryRequest(beneficiary_id="not-an-id"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "beneficiary_id",
        ),
    ],
)
def test_bad_desk_input_gets_a_clear_status_and_names_the_problem(
    federation: Federation,
    call: str,
    request_message: object,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    with federation.desk("lanzhou") as desk, pytest.raises(grpc.RpcError) as refused:
        getattr(desk.stub, call)(request_message)
    assert refused.value.code() is code
    assert fragment in refused.value.details()
    assert "620102194805120" not in refused.value.details()


def test_a_region_no_node_serves_is_a_failed_precondition(federation: Federation) -> None:
    beneficiary_id = federation.register("lanzhou", federation.new_person(), "530102")
    with pytest.raises(grpc.RpcError) as refused:
        federation.request("lanzhou", beneficiary_id)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "530102" in refused.value.details()


def test_a_second_open_request_for_the_same_beneficiary_is_already_exists(
    federation: Federation,
) -> None:
    beneficiary_id = federation.register("lanzhou", federation.new_person(), "370202")
    federation.request("lanzhou", beneficiary_id)
    with pytest.raises(grpc.RpcError) as refused:
        federation.request("lanzhou", beneficiary_id)
    assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS


def test_the_clerk_who_recorded_a_certification_cannot_approve_it(
    federation: Federation,
) -> None:
    beneficiary_id = federation.register("lanzhou", federation.new_person(), "370202")
    request_id = federation.request("lanzhou", beneficiary_id)
    federation.await_inbox("qingdao", request_id)
    certification_id = federation.record(
        "qingdao", desk_pb2.RecordCertificationRequest(request_id=request_id)
    )
    with federation.desk("qingdao") as clerk, pytest.raises(grpc.RpcError) as refused:
        clerk.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=certification_id),
        )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_an_operator_without_a_token_is_unauthenticated(federation: Federation) -> None:
    handle = federation.node("lanzhou")
    desk = DeskClient(
        f"127.0.0.1:{handle.desk_port}",
        "lanzhou",
        handle.config.ca_certificate.read_bytes(),
        "op-unknown.AAAA",
    )
    with desk, pytest.raises(grpc.RpcError) as refused:
        desk.stub.WhoAmI(desk_pb2.WhoAmIRequest())
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_nodes_keep_working_from_their_cached_directory_while_the_registry_is_down(
    federation: Federation,
) -> None:
    """Peers still authenticate each other from their cached directories while the registry is
    down. The steps that need the registry (the locator of the person asked about, the
    registry's cosignature before applying) wait; nothing is lost, and the round trip completes
    once the registry is back."""
    beneficiary_id = federation.register("lanzhou", federation.new_person(), "370202")
    federation.local.stop_registry()
    try:
        request_id = federation.request("lanzhou", beneficiary_id)
        channel, stub = federation.peer_stub("qingdao", "lanzhou")
        with channel, pytest.raises(grpc.RpcError) as refused:
            stub.UpdateAssistanceStatus(federation_pb2.UpdateAssistanceStatusRequest(), timeout=10)
        # Past mutual TLS and the cached directory's checks: refused only for its content.
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        federation.local.start_registry()
    federation.await_inbox("qingdao", request_id)
    certification_id = federation.record(
        "qingdao", desk_pb2.RecordCertificationRequest(request_id=request_id)
    )
    federation.approve("qingdao", certification_id)
    federation.await_valid("lanzhou", beneficiary_id)


def _hpke_key_of(federation: Federation, node_id: str) -> bytes:
    from federation.directory import verify_directory
    from federation_node.keystore import load_root_public_key

    paths = federation.local.registry_paths
    directory = verify_directory(
        federation.local.fetch_directory(),
        load_root_public_key(paths.trust_root_public_key),
        now=datetime.now(UTC),
    )
    return bytes(directory.node(node_id).hpke_public_key)


def test_a_suspended_node_is_neither_routed_to_nor_allowed_to_call(
    federation: Federation,
) -> None:
    federation.local.add_node(DATONG)
    with federation.local.admin() as admin:
        admin.set_status("datong", common_pb2.NODE_STATUS_SUSPENDED, "office under investigation")

    def refused_as_suspended() -> grpc.RpcError | None:
        # A fresh person each time: a request accepted before lanzhou's directory refresh
        # stays open (queued until datong is reinstated).
        beneficiary_id = federation.register("lanzhou", federation.new_person(), "140211")
        try:
            federation.request("lanzhou", beneficiary_id)
        except grpc.RpcError as error:
            # Until lanzhou's directory lists datong at all, the region is simply unserved.
            return error if "datong" in error.details() else None
        return None

    error = wait_until(refused_as_suspended, 30, "lanzhou to learn of the suspension")
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "datong" in error.details()
    assert "not active" in error.details()

    channel, stub = federation.peer_stub("datong", "lanzhou")
    with channel, pytest.raises(grpc.RpcError) as refused:
        stub.UpdateAssistanceStatus(federation_pb2.UpdateAssistanceStatusRequest(), timeout=10)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "suspended" in refused.value.details()


def test_a_second_certification_while_one_awaits_review_is_refused(
    federation: Federation,
) -> None:
    beneficiary_id = federation.register("lanzhou", federation.new_person(), "370202")
    request_id = federation.request("lanzhou", beneficiary_id)
    federation.await_inbox("qingdao", request_id)
    federation.record("qingdao", desk_pb2.RecordCertificationRequest(request_id=request_id))
    with pytest.raises(grpc.RpcError) as refused:
        federation.record("qingdao", desk_pb2.RecordCertificationRequest(request_id=request_id))
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "awaiting review" in refused.value.details()


def test_an_attestation_for_someone_the_office_does_not_pay_is_refused(
    federation: Federation,
) -> None:
    from signing.keys import SigningKey

    qingdao = federation.node("qingdao").config
    key = SigningKey.load(qingdao.data_dir / "keys" / "signing.key")
    now = datetime.now(UTC)
    attestation = attestation_pb2.CertificationAttestation(
        attestation_id="0190f5d6-0000-7000-8000-00000000beef",
        subject_locator=hashlib.sha256(b"nobody lanzhou pays").digest(),
        paying_region="620102",
        paying_node_id="lanzhou",
        issuing_node_id="qingdao",
        certifying_region="370200",
        method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
        outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
        observed_at=to_timestamp(now),
        valid_until=to_timestamp(now + timedelta(days=365)),
        issued_at=to_timestamp(now),
    )
    envelope = dsse.sign(attestation.SerializeToString(), dsse.ATTESTATION_PAYLOAD_TYPE, key)
    channel, stub = federation.peer_stub("qingdao", "lanzhou")
    with channel, pytest.raises(grpc.RpcError) as refused:
        stub.DeliverAttestation(
            federation_pb2.DeliverAttestationRequest(envelope=envelope_to_proto(envelope)),
            timeout=10,
        )
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    assert "does not pay" in refused.value.details()


def test_an_attestation_naming_another_persons_request_does_not_close_it(
    federation: Federation,
) -> None:
    from signing.keys import SigningKey

    asked_for = federation.register("lanzhou", federation.new_person(), "370202")
    request_id = federation.request("lanzhou", asked_for)
    federation.await_inbox("qingdao", request_id)
    other = federation.new_person()
    federation.register("lanzhou", other, "370202")
    qingdao = federation.node("qingdao").config
    key = SigningKey.load(qingdao.data_dir / "keys" / "signing.key")
    now = datetime.now(UTC)
    attestation = attestation_pb2.CertificationAttestation(
        attestation_id="0190f5d6-0000-7000-8000-0000000c1a55",
        subject_locator=member_locator(qingdao, other.identity_number),
        paying_region="620102",
        paying_node_id="lanzhou",
        issuing_node_id="qingdao",
        certifying_region="370200",
        method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
        outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
        observed_at=to_timestamp(now),
        valid_until=to_timestamp(now + timedelta(days=365)),
        issued_at=to_timestamp(now),
        assistance_request_id=request_id,
    )
    envelope = dsse.sign(attestation.SerializeToString(), dsse.ATTESTATION_PAYLOAD_TYPE, key)
    channel, stub = federation.peer_stub("qingdao", "lanzhou")
    with channel:
        stub.DeliverAttestation(
            federation_pb2.DeliverAttestationRequest(envelope=envelope_to_proto(envelope)),
            timeout=10,
        )
    with federation.desk("lanzhou") as desk:
        sent = desk.stub.GetAssistanceRequest(
            desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
        ).request
    assert sent.status != common_pb2.ASSISTANCE_STATUS_COMPLETED
    assert not sent.attestation_id


def test_a_clerk_works_the_inbox_from_the_terminal(federation: Federation) -> None:
    beneficiary_id = federation.register("lanzhou", federation.new_person(), "370202")
    request_id = federation.request("lanzhou", beneficiary_id)
    federation.await_inbox("qingdao", request_id)
    handle = federation.node("qingdao")

    def desk(*arguments: str, operator: str = "clerk") -> str:
        finished = certfed(
            "desk", "--config", str(handle.config_path), *arguments,
            token=handle.tokens[operator], timeout=60,
        )  # fmt: skip
        assert finished.returncode == 0, finished.stdout + finished.stderr
        return finished.stdout

    assert request_id in desk("inbox")
    desk("status", request_id, "accepted")
    recorded = json.loads(desk("record", request_id, "--method", "video_call"))
    approved = json.loads(desk("approve", recorded["certification_id"], operator="reviewer"))
    assert approved["status"] == "CERTIFICATION_STATUS_APPROVED"
    assert federation.await_valid("lanzhou", beneficiary_id) > datetime.now(UTC)
