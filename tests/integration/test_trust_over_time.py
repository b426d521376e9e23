"""Keys and membership over time, end to end: a registry and nodes as real processes over mutual
TLS, changed the way operators change them (the `certfed` command line), observed through the
desk API, health checks and peer calls.

Signing-key rotation and retirement, key revocation with an effective time, node revocation and
suspension run on SQLite and on PostgreSQL; certificate renewal, root rotation and directory
freshness (they restart the registry or restore its database) on SQLite.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certfed.v1 import (
    attestation_pb2,
    common_pb2,
    desk_pb2,
    directory_pb2,
    federation_pb2,
    federation_pb2_grpc,
)
from cli.launcher import LocalFederation, NodeHandle, NodeSpec, wait_until
from federation.envelopes import envelope_to_proto
from federation.errors import PermissionDeniedError, PreconditionError
from federation.registry_client import RegistryClient
from federation.timestamps import to_datetime, to_timestamp
from federation.transport import (
    TlsMaterial,
    anonymous_channel_credentials,
    node_tls_name,
    secure_channel,
)
from federation_node.keystore import KeyPaths
from federation_node.links.directory_health import DIRECTORY_FRESH_HEALTH, DIRECTORY_HEALTH
from signing import dsse
from signing.keys import SigningKey
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import FOSHAN, LANZHOU, database_url_for
from tests.helpers.nodes import QINGDAO_AGENCY as QINGDAO

PeerStub = federation_pb2_grpc.FederationServiceStub
Delivered = federation_pb2.DeliverAttestationResponse
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Trust:
    """A started federation and what the tests do to it and ask of it."""

    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self._serial = 0

    def node(self, node_id: str) -> NodeHandle:
        return self.local.nodes[node_id]

    def add_residence(self, node_id: str, region: str) -> None:
        self.local.add_node(
            NodeSpec(node_id, f"{node_id} centre", (region,), ("residence_agency",))
        )

    # The command line, as operators use it.

    def registry_admin(self, *arguments: str) -> str:
        config = str(self.local.registry_paths.config_file)
        return self.local.certfed("registry", *arguments, "--config", config)

    def node_command(self, node_id: str, *arguments: str) -> str:
        config = str(self.node(node_id).config_path)
        return self.local.certfed("node", *arguments, "--config", config)

    def desk_command(self, node_id: str, action: str, operator: str = "reviewer") -> str:
        handle = self.node(node_id)
        return self.local.certfed(
            "desk",
            "--config",
            str(handle.config_path),
            action,
            env={"CERTFED_OPERATOR_TOKEN": handle.tokens[operator], "COLUMNS": "400"},
        )

    # The desk.

    def call(self, node_id: str, method: str, request: object, operator: str = "clerk") -> object:
        with self.local.desk(node_id, operator) as desk:
            return getattr(desk.stub, method)(request)

    def status(self, node_id: str) -> desk_pb2.GetDirectoryStatusResponse:
        response = self.call(node_id, "GetDirectoryStatus", desk_pb2.GetDirectoryStatusRequest())
        assert isinstance(response, desk_pb2.GetDirectoryStatusResponse)
        return response

    def await_version(self, node_id: str, version: int) -> desk_pb2.GetDirectoryStatusResponse:
        return wait_until(
            lambda: s if (s := self.status(node_id)).version >= version else None,
            30,
            f"{node_id} to hold directory version {version}",
        )

    def reviews(self, node_id: str) -> list[desk_pb2.RevocationReview]:
        response = self.call(
            node_id,
            "ListRevocationReviews",
            desk_pb2.ListRevocationReviewsRequest(),
            operator="reviewer",
        )
        assert isinstance(response, desk_pb2.ListRevocationReviewsResponse)
        return list(response.reviews)

    def new_person(self, region_prefix: str) -> attestation_pb2.IdentityBundle:
        self._serial += 1
        return resident(resident_id(region_prefix, date(1948, 3, 12), self._serial))

    def register(self, residence: str) -> desk_pb2.Beneficiary:
        response = self.call(
            "lanzhou",
            "RegisterBeneficiary",
            desk_pb2.RegisterBeneficiaryRequest(
                identity=self.new_person("620102"), residence_region=residence
            ),
        )
        assert isinstance(response, desk_pb2.RegisterBeneficiaryResponse)
        return response.beneficiary

    def request(self, beneficiary_id: str) -> str:
        response = self.call(
            "lanzhou",
            "RequestCertification",
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
            ),
        )
        assert isinstance(response, desk_pb2.RequestCertificationResponse)
        return response.request.request_id

    def inbox(self, certifier: str) -> set[str]:
        response = self.call(
            certifier,
            "ListAssistanceRequests",
            desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND),
        )
        assert isinstance(response, desk_pb2.ListAssistanceRequestsResponse)
        return {request.request_id for request in response.requests}

    def certify(self, certifier: str, residence: str) -> tuple[desk_pb2.Beneficiary, str]:
        """Flow 1 from Lanzhou to `certifier`; the beneficiary and the applied attestation id."""
        beneficiary = self.register(residence)
        request_id = self.request(beneficiary.beneficiary_id)
        wait_until(lambda: request_id in self.inbox(certifier), 30, "the request to arrive")
        recorded = self.call(
            certifier,
            "RecordCertification",
            desk_pb2.RecordCertificationRequest(
                request_id=request_id,
                method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC)),
            ),
        )
        assert isinstance(recorded, desk_pb2.RecordCertificationResponse)
        approved = self.call(
            certifier,
            "ApproveCertification",
            desk_pb2.ApproveCertificationRequest(
                certification_id=recorded.certification.certification_id
            ),
            operator="reviewer",
        )
        assert isinstance(approved, desk_pb2.ApproveCertificationResponse)
        attestation_id = approved.certification.attestation_id
        wait_until(
            lambda: attestation_id in self.received("lanzhou"), 30, "the attestation to arrive"
        )
        return beneficiary, attestation_id

    def received(self, node_id: str) -> set[str]:
        response = self.call(
            node_id,
            "ListAttestations",
            desk_pb2.ListAttestationsRequest(direction=desk_pb2.DIRECTION_INBOUND),
        )
        assert isinstance(response, desk_pb2.ListAttestationsResponse)
        return {attestation.attestation_id for attestation in response.attestations}

    def exported(self, node_id: str, attestation_id: str) -> dsse.Envelope:
        response = self.call(
            node_id,
            "ExportAttestation",
            desk_pb2.ExportAttestationRequest(attestation_id=attestation_id),
        )
        assert isinstance(response, desk_pb2.ExportAttestationResponse)
        return dsse.Envelope.from_json(response.dsse_json)

    # Peers and the registry, called with a node's own certificate.

    def tls_of(self, node_id: str) -> TlsMaterial:
        paths = KeyPaths(self.node(node_id).config.data_dir)
        return TlsMaterial.load(
            paths.tls_certificate, paths.tls_key, self.node(node_id).config.ca_certificate
        )

    def peer(self, as_node: str, to_node: str) -> tuple[grpc.Channel, PeerStub]:
        channel = secure_channel(
            f"127.0.0.1:{self.node(to_node).federation_port}",
            node_tls_name(to_node),
            self.tls_of(as_node).channel_credentials(),
            max_message_bytes=4 << 20,
        )
        return channel, federation_pb2_grpc.FederationServiceStub(channel)

    def registry_as(self, node_id: str) -> RegistryClient:
        return RegistryClient(
            self.local.registry_endpoint,
            self.tls_of(node_id).channel_credentials(),
            self.local.limits,
        )

    def deliver(self, issuer: str, envelope: dsse.Envelope) -> Delivered:
        channel, stub = self.peer(issuer, "lanzhou")
        with channel:
            response: federation_pb2.DeliverAttestationResponse = stub.DeliverAttestation(
                federation_pb2.DeliverAttestationRequest(envelope=envelope_to_proto(envelope)),
                timeout=10,
            )
        return response

    def health(self, node_id: str, service: str) -> int:
        handle = self.node(node_id)
        channel = secure_channel(
            f"127.0.0.1:{handle.desk_port}",
            node_tls_name(node_id),
            anonymous_channel_credentials(handle.config.ca_certificate.read_bytes()),
            max_message_bytes=1 << 20,
        )
        with channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
        return int(answer.status)

    def directory(self) -> directory_pb2.Directory:
        return directory_pb2.Directory.FromString(self.local.fetch_directory().payload)

    def directory_node(self, node_id: str) -> directory_pb2.DirectoryNode:
        return next(node for node in self.directory().nodes if node.node_id == node_id)


def signed_attestation(
    key: SigningKey,
    issuer: str,
    region: str,
    beneficiary: desk_pb2.Beneficiary,
    issued_at: datetime,
) -> dsse.Envelope:
    """An attestation for a Lanzhou beneficiary, signed with `key` as `issuer` at `issued_at`."""
    observed = issued_at - timedelta(minutes=1)
    attestation = attestation_pb2.CertificationAttestation(
        attestation_id=str(uuid.uuid4()),
        subject_locator=beneficiary.subject_locator,
        paying_region="620102",
        paying_node_id="lanzhou",
        issuing_node_id=issuer,
        certifying_region=region,
        certifying_agency=f"{issuer} centre",
        method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
        outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
        observed_at=to_timestamp(observed),
        valid_until=to_timestamp(observed + timedelta(days=365)),
        evidence_digests=[hashlib.sha256(b"form").digest()],
        clerk_id="clerk-1",
        reviewer_id="reviewer-1",
        issued_at=to_timestamp(issued_at),
    )
    return dsse.sign(
        attestation.SerializeToString(deterministic=True), dsse.ATTESTATION_PAYLOAD_TYPE, key
    )


def version_in(printed: str) -> int:
    """The directory version a `certfed registry` command reports."""
    found = re.search(r"directory version (\d+)", printed)
    assert found is not None, printed
    return int(found.group(1))


def attestation_id_of(envelope: dsse.Envelope) -> str:
    return attestation_pb2.CertificationAttestation.FromString(envelope.payload).attestation_id


def refusal(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value


def _started(workdir: Path, urls: Callable[[str], str] | None = None) -> LocalFederation:
    local = LocalFederation(workdir, database_url_for=urls, max_backoff_s=0.5)
    local.start_registry()
    for spec in (LANZHOU, QINGDAO):
        local.add_node(spec)
    return local


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def trust(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trust]:
    urls = database_url_for(request)
    with _started(tmp_path_factory.mktemp(f"trust-{request.param}"), urls) as local:
        yield Trust(local)


# 1. Signing-key rotation with an overlap window.


def test_a_rotated_signing_key_takes_over_and_the_old_one_verifies_until_retired(
    trust: Trust, tmp_path: Path
) -> None:
    paths = KeyPaths(trust.node("qingdao").config.data_dir)
    old_key = SigningKey.load(paths.signing_key)
    beneficiary, before = trust.certify("qingdao", "370202")
    assert trust.exported("lanzhou", before).signatures[0].keyid == old_key.key_id

    printed = trust.node_command("qingdao", "rotate-key", "--wait", "30")
    assert "now uses the new signing key" in printed
    new_key_id = trust.status("qingdao").signing_key_id
    assert new_key_id != old_key.key_id
    keys = {key.key_id: key for key in trust.directory_node("qingdao").signing_keys}
    assert set(keys) == {old_key.key_id, new_key_id}
    window = to_datetime(keys[old_key.key_id].valid_until) - to_datetime(
        keys[new_key_id].valid_from
    )
    assert window == timedelta(days=7)

    _, after = trust.certify("qingdao", "370203")
    assert trust.exported("lanzhou", after).signatures[0].keyid == new_key_id
    # Inside the overlap window the old key still signs: e.g. an attestation approved just
    # before the switch and delivered after it.
    in_window = signed_attestation(old_key, "qingdao", "370200", beneficiary, datetime.now(UTC))
    assert not trust.deliver("qingdao", in_window).duplicate

    printed = trust.registry_admin("retire-key", "qingdao", old_key.key_id)
    version = version_in(printed)
    trust.await_version("lanzhou", version)
    late = signed_attestation(old_key, "qingdao", "370200", beneficiary, datetime.now(UTC))
    refused = refusal(lambda: trust.deliver("qingdao", late))
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "retired" in refused.details()
    assert attestation_id_of(late) not in trust.received("lanzhou")
    # What was signed inside the window stays valid and applied.
    assert {before, after, attestation_id_of(in_window)} <= trust.received("lanzhou")


def test_the_only_valid_key_of_a_node_cannot_be_retired(trust: Trust) -> None:
    key_id = trust.status("lanzhou").signing_key_id
    with pytest.raises(RuntimeError, match="only valid signing key"):
        trust.registry_admin("retire-key", "lanzhou", key_id)


# 2. Revocation with an effective time.


def test_a_revoked_key_is_refused_from_its_effective_time_and_earlier_ones_are_listed(
    trust: Trust,
) -> None:
    trust.add_residence("datong", "140200")
    key = SigningKey.load(KeyPaths(trust.node("datong").config.data_dir).signing_key)
    beneficiary, certified = trust.certify("datong", "140211")
    compromised_from = datetime.now(UTC)
    after_compromise = signed_attestation(
        key, "datong", "140200", beneficiary, compromised_from + timedelta(seconds=1)
    )
    trust.deliver("datong", after_compromise)

    printed = trust.registry_admin(
        "revoke-key",
        "datong",
        key.key_id,
        "--reason",
        "laptop with the node key stolen",
        "--effective-at",
        compromised_from.isoformat(),
    )
    version = version_in(printed)
    trust.await_version("lanzhou", version)

    expected = {certified, attestation_id_of(after_compromise)}
    findings = wait_until(
        lambda: (
            f
            if expected <= set(f := {r.attestation_id: r for r in trust.reviews("lanzhou")})
            else None
        ),
        30,
        "the review list after the revocation",
    )
    assert findings[certified].finding == desk_pb2.REVOCATION_FINDING_SIGNED_BY_SINCE_REVOKED_KEY
    assert (
        findings[attestation_id_of(after_compromise)].finding
        == desk_pb2.REVOCATION_FINDING_REFUSED_AFTER_REVOCATION
    )
    assert findings[certified].revocation_reason == "laptop with the node key stolen"
    assert findings[certified].beneficiary_id == beneficiary.beneficiary_id
    # Never silently deleted: both stay stored.
    assert {certified, attestation_id_of(after_compromise)} <= trust.received("lanzhou")
    listed = trust.desk_command("lanzhou", "review-list")
    assert certified in listed
    assert "REFUSED_AFTER_REVOCATION" in listed

    # From the effective time on, the key signs nothing that is trusted.
    now = signed_attestation(key, "datong", "140200", beneficiary, datetime.now(UTC))
    refused = refusal(lambda: trust.deliver("datong", now))
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "revoked" in refused.details()
    # Signed before the effective time and delivered late: accepted, and listed at once.
    earlier = signed_attestation(
        key, "datong", "140200", beneficiary, compromised_from - timedelta(milliseconds=1)
    )
    trust.deliver("datong", earlier)
    late = {r.attestation_id: r for r in trust.reviews("lanzhou")}[attestation_id_of(earlier)]
    assert late.finding == desk_pb2.REVOCATION_FINDING_SIGNED_BY_SINCE_REVOKED_KEY


def test_a_revoked_node_is_refused_by_peers_and_the_registry_while_its_certificate_is_valid(
    trust: Trust,
) -> None:
    trust.add_residence("hohhot", "150100")
    trust.certify("hohhot", "150102")
    printed = trust.registry_admin(
        "revoke-node", "hohhot", "--reason", "office closed after the merger"
    )
    version = version_in(printed)
    trust.await_version("lanzhou", version)
    certificate = trust.tls_of("hohhot").certificate_pem
    assert x509.load_pem_x509_certificate(certificate).not_valid_after_utc > datetime.now(UTC)

    channel, stub = trust.peer("hohhot", "lanzhou")
    with channel:
        refused = refusal(
            lambda: stub.UpdateAssistanceStatus(
                federation_pb2.UpdateAssistanceStatusRequest(), timeout=10
            )
        )
    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in refused.details()
    with trust.registry_as("hohhot") as registry, pytest.raises(PermissionDeniedError) as denied:
        registry.locate(hashlib.sha256(b"anyone").digest())
    assert "revoked" in str(denied.value)
    # Its keys are revoked with it: nothing it signs from now on is trusted.
    assert all(key.HasField("revoked_at") for key in trust.directory_node("hohhot").signing_keys)


# 3. Suspension: refused, nothing lost, delivered after reinstatement.


def test_a_suspended_node_is_refused_loses_nothing_and_gets_its_messages_when_reinstated(
    trust: Trust,
) -> None:
    trust.add_residence("xian", "610100")
    _, delivered_before = trust.certify("xian", "610113")
    trust.local.stop_node("xian")
    waiting = trust.register("610113")
    request_id = trust.request(waiting.beneficiary_id)

    printed = trust.registry_admin("suspend", "xian", "--reason", "office under investigation")
    version = version_in(printed)
    trust.await_version("lanzhou", version)
    trust.local.start_node("xian")

    channel, stub = trust.peer("xian", "lanzhou")
    with channel:
        refused = refusal(
            lambda: stub.UpdateAssistanceStatus(
                federation_pb2.UpdateAssistanceStatusRequest(), timeout=10
            )
        )
    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "suspended" in refused.details()
    with trust.registry_as("xian") as registry, pytest.raises(PermissionDeniedError) as denied:
        registry.locate(hashlib.sha256(b"anyone").digest())
    assert "suspended" in str(denied.value)

    def held() -> desk_pb2.OutboxMessage | None:
        response = trust.call("lanzhou", "ListOutbox", desk_pb2.ListOutboxRequest(), "admin")
        assert isinstance(response, desk_pb2.ListOutboxResponse)
        for message in response.messages:
            if message.subject_id == request_id and "suspended" in message.last_error:
                return message
        return None

    message = wait_until(held, 30, "the request to xian to be held")
    assert message.state == desk_pb2.DELIVERY_STATE_PENDING
    assert request_id not in trust.inbox("xian")
    assert delivered_before in trust.received("lanzhou")
    # Held is no failure: however long the investigation, the retry budget is not spent.
    wait_until(lambda: (m := held()) is not None and m.last_error and m.next_attempt_at.seconds
               > message.next_attempt_at.seconds, 30, "the hold to be renewed")  # fmt: skip
    still = held()
    assert still is not None
    assert still.attempts == message.attempts
    assert still.state == desk_pb2.DELIVERY_STATE_PENDING

    printed = trust.registry_admin("reinstate", "xian")
    wait_until(lambda: request_id in trust.inbox("xian"), 60, "the held request to arrive")
    trust.local.await_outbox_drained("lanzhou")


# 6. Directory freshness, as the desk, the health service and the log say it.


def test_directory_status_names_the_version_the_root_and_the_keys_in_use(trust: Trust) -> None:
    status = trust.await_version("lanzhou", trust.directory().version)
    assert not status.stale
    assert not status.expired
    assert status.root_key_id == SigningKey.load(trust.local.registry_paths.root_key).key_id
    assert to_datetime(status.expires_at) > datetime.now(UTC)
    lanzhou_keys = KeyPaths(trust.node("lanzhou").config.data_dir)
    assert status.signing_key_id == SigningKey.load(lanzhou_keys.signing_key).key_id
    printed = trust.desk_command("lanzhou", "directory-status", operator="clerk")
    assert f'"version": "{status.version}"' in printed
    assert trust.health("lanzhou", DIRECTORY_HEALTH) == SERVING
    assert trust.health("lanzhou", DIRECTORY_FRESH_HEALTH) == SERVING


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trust]:
    """A federation whose directory lives 8 seconds (re-signed every second while it runs)."""
    local = LocalFederation(tmp_path_factory.mktemp("trust-short"), max_backoff_s=0.5)
    local.registry_settings.update({"directory_lifetime_s": "8", "republish_interval_s": "1"})
    with local:
        local.start_registry()
        for spec in (LANZHOU, QINGDAO):
            local.add_node(spec)
        yield Trust(local)


def test_a_node_says_when_its_directory_is_stale_and_refuses_work_once_it_expired(
    short_lived: Trust,
) -> None:
    trust = short_lived
    # Registering a person needs the registry (it evaluates the locator, RFC 9497 OPRF), so the
    # person is registered first; what is refused once the directory expired is the work on them.
    beneficiary = trust.register("370202")
    trust.local.stop_registry()
    try:
        unavailable = refusal(lambda: trust.register("370202"))
        assert unavailable.code() is grpc.StatusCode.UNAVAILABLE
        assert "registry" in unavailable.details()
        stale = wait_until(
            lambda: s if (s := trust.status("lanzhou")).stale else None,
            30,
            "lanzhou to notice that the registry is gone",
        )
        assert "registry" in stale.last_error
        wait_until(
            lambda: trust.health("lanzhou", DIRECTORY_FRESH_HEALTH) == NOT_SERVING,
            30,
            "the freshness health status to drop",
        )
        wait_until(
            lambda: trust.health("lanzhou", DIRECTORY_HEALTH) == NOT_SERVING,
            30,
            "the directory to expire",
        )
        assert trust.status("lanzhou").expired
        refused = refusal(lambda: trust.request(beneficiary.beneficiary_id))
        assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "expired" in refused.details()
        assert "directory.expired" in trust.node("lanzhou").log_path.read_text()
    finally:
        trust.local.start_registry()
    wait_until(
        lambda: trust.health("lanzhou", DIRECTORY_HEALTH) == SERVING, 30, "a fresh directory"
    )
    recovered = trust.status("lanzhou")
    assert not recovered.stale
    assert not recovered.expired
    trust.certify("qingdao", "370202")


def test_a_directory_rolled_back_by_the_registry_is_refused_and_the_node_keeps_working(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with _started(tmp_path_factory.mktemp("trust-rollback")) as local:
        trust = Trust(local)
        database = local.registry_paths.default_database
        snapshot = database.with_name("snapshot.db")
        local.stop_registry()
        shutil.copyfile(database, snapshot)
        local.start_registry()
        trust.registry_admin("suspend", "qingdao", "--reason", "audit")
        printed = trust.registry_admin("reinstate", "qingdao")
        newest = version_in(printed)
        # Both nodes must hold the reinstatement before the rollback: a node left on the
        # suspension's version would rightly hold its outbox and refuse the older directory.
        trust.await_version("lanzhou", newest)
        trust.await_version("qingdao", newest)

        local.stop_registry()
        shutil.copyfile(snapshot, database)
        local.start_registry()
        refused = wait_until(
            lambda: s if "rollback" in (s := trust.status("lanzhou")).last_error else None,
            30,
            "lanzhou to refuse the older directory",
        )
        assert refused.version == newest
        assert refused.stale
        assert trust.health("lanzhou", DIRECTORY_FRESH_HEALTH) == NOT_SERVING
        assert trust.health("lanzhou", DIRECTORY_HEALTH) == SERVING
        trust.certify("qingdao", "370202")


# 4. TLS certificates renewed without downtime.


def _presented_certificate(
    port: int, ca_path: Path, server_name: str, client: KeyPaths | None = None
) -> str:
    """SHA-256 of the certificate a server presents to a new TLS connection."""
    context = ssl.create_default_context(cafile=str(ca_path))
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(client.tls_certificate, client.tls_key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def renewing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trust]:
    with _started(tmp_path_factory.mktemp("trust-renewal")) as local:
        yield Trust(local)


def test_a_certificate_is_renewed_while_requests_keep_flowing(renewing: Trust) -> None:
    trust = renewing
    handle = trust.node("qingdao")
    before = trust.status("qingdao").tls_certificate_sha256
    failures: list[BaseException] = []
    calls = [0]
    stop = threading.Event()

    def keep_calling() -> None:
        # Paced well under the per-operator rate limit, on an operator of its own.
        with trust.local.desk("qingdao", "clerk2") as desk:
            while not stop.wait(0.1):
                try:
                    desk.stub.WhoAmI(desk_pb2.WhoAmIRequest())
                    # A new connection each time too: it sees whichever certificate is current.
                    with trust.local.desk("qingdao", "clerk2") as fresh:
                        fresh.stub.WhoAmI(desk_pb2.WhoAmIRequest())
                    calls[0] += 1
                except grpc.RpcError as error:
                    failures.append(error)

    caller = threading.Thread(target=keep_calling, daemon=True)
    caller.start()
    try:
        printed = trust.node_command("qingdao", "renew-certificate", "--wait", "30")
        assert "now uses the new certificate" in printed
        _, attestation_id = trust.certify("qingdao", "370202")
    finally:
        stop.set()
        caller.join(timeout=30)
    assert failures == []
    assert calls[0] > 0
    after = trust.status("qingdao").tls_certificate_sha256
    assert after != before
    assert set(trust.directory_node("qingdao").tls_certificate_sha256) == {before, after}
    ca = handle.config.ca_certificate
    peer = KeyPaths(trust.node("lanzhou").config.data_dir)
    assert _presented_certificate(handle.desk_port, ca, node_tls_name("qingdao")) == after
    assert _presented_certificate(handle.federation_port, ca, node_tls_name("qingdao"), peer) == (
        after
    )
    assert attestation_id in trust.received("lanzhou")


def test_a_node_renews_its_certificate_by_itself_when_little_validity_is_left(
    renewing: Trust,
) -> None:
    trust = renewing
    local = trust.local
    # Enrol with a one-day certificate, then let the registry issue normal ones again.
    local.registry_settings["node_certificate_days"] = "1"
    local.stop_registry()
    local.start_registry()
    local.add_node(
        NodeSpec("hangzhou", "Hangzhou office", ("330100",), ("paying_office",)),
        start=False,
        settings={"certificate_renew_fraction": 0.999},
    )
    del local.registry_settings["node_certificate_days"]
    local.stop_registry()
    local.start_registry()
    enrolled = trust.tls_of("hangzhou").certificate_pem
    local.start_node("hangzhou")

    def renewed() -> x509.Certificate | None:
        current = trust.tls_of("hangzhou").certificate_pem
        return x509.load_pem_x509_certificate(current) if current != enrolled else None

    certificate = wait_until(renewed, 30, "hangzhou to renew its certificate")
    assert certificate.not_valid_after_utc > datetime.now(UTC) + timedelta(days=300)
    assert trust.health("hangzhou", DIRECTORY_HEALTH) == SERVING
    assert "keys.certificate_switched" in trust.node("hangzhou").log_path.read_text()


# 5. Root key rotation: nodes follow the signed chain, also after a restart.


def _tamper_root_statements(trust: Trust, change: Callable[[bytes], bytes]) -> None:
    engine = sa.create_engine(trust.local.registry_database_url)
    try:
        with engine.begin() as connection:
            rows = connection.execute(
                sa.text("SELECT version, envelope_json FROM root_statement")
            ).all()
            for version, envelope_json in rows:
                connection.execute(
                    sa.text("UPDATE root_statement SET envelope_json = :e WHERE version = :v"),
                    {"e": change(bytes(envelope_json)), "v": version},
                )
    finally:
        engine.dispose()


def _forge_old_root_signature(envelope_json: bytes) -> bytes:
    """Replace the old root's signature by one from an impostor claiming its key id."""
    envelope = dsse.Envelope.from_json(envelope_json)
    impostor = SigningKey.generate()
    forged = dsse.Signature(
        keyid=envelope.signatures[0].keyid,
        sig=impostor.sign(dsse.pae(envelope.payload_type, envelope.payload)),
    )
    return dsse.Envelope(
        envelope.payload, envelope.payload_type, (forged, *envelope.signatures[1:])
    ).to_json()


def test_nodes_follow_a_root_rotation_and_refuse_a_chain_with_a_bad_signature(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with _started(tmp_path_factory.mktemp("trust-root")) as local:
        trust = Trust(local)
        old_root = trust.status("lanzhou").root_key_id
        local.stop_node("qingdao")

        printed = trust.registry_admin("rotate-root")
        new_root = printed.split("root key is now ", 1)[1].split()[0]
        version = version_in(printed)
        assert new_root != old_root
        followed = trust.await_version("lanzhou", version)
        assert (followed.root_key_id, followed.root_version) == (new_root, 2)
        assert not followed.stale
        # The old root signs no more: the directory is signed by the new root alone.
        assert [s.keyid for s in local.fetch_directory().signatures] == [new_root]
        # A replayed or retried rotation naming the replaced root changes nothing.
        with local.admin() as admin, pytest.raises(PreconditionError, match="rotated already"):
            admin.rotate_root(old_root)
        assert [s.keyid for s in local.fetch_directory().signatures] == [new_root]

        # Qingdao was down during the rotation; the registry now serves a forged chain.
        originals: dict[str, bytes] = {}

        def forge(envelope_json: bytes) -> bytes:
            originals["statement"] = envelope_json
            return _forge_old_root_signature(envelope_json)

        _tamper_root_statements(trust, forge)
        local.start_node("qingdao")
        refused = wait_until(
            lambda: s if "root statement" in (s := trust.status("qingdao")).last_error else None,
            30,
            "qingdao to refuse the forged root chain",
        )
        assert refused.root_key_id == old_root
        assert refused.version < version
        assert not KeyPaths(trust.node("qingdao").config.data_dir).root_chain.exists()

        _tamper_root_statements(trust, lambda _forged: originals["statement"])
        following = trust.await_version("qingdao", version)
        assert (following.root_key_id, following.root_version) == (new_root, 2)

        # A restart keeps the followed root: nothing was reconfigured by hand.
        local.restart_node("lanzhou")
        restarted = trust.status("lanzhou")
        assert restarted.root_key_id == new_root
        assert restarted.version >= followed.version
        assert trust.health("lanzhou", DIRECTORY_HEALTH) == SERVING
        trust.certify("qingdao", "370202")
        # A node enrolled after the rotation is given the new root and needs no chain.
        local.add_node(FOSHAN)
        assert trust.status("foshan").root_key_id == new_root
