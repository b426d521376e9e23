"""The directory does not grow with time, and no member can bloat it (issue: directory bloat).

Against a real registry server: a node rotating its key (and renewing its certificate) in a loop
leaves the signed directory the same size, its old keys move to the signed key history, and an
attestation signed with the first key still verifies through that history, by the node's own
directory client; a rotation within `key_change_interval_s` is RESOURCE_EXHAUSTED with the time to
wait; a change that would make the directory larger than `max_directory_bytes` is refused,
changes nothing and is audited.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from certfed.v1 import attestation_pb2, registry_pb2, registry_pb2_grpc
from federation.directory import verify_directory, verify_key_history
from federation.envelopes import envelope_to_proto
from federation.errors import CertfedError, UnknownSigningKeyError
from federation.key_rotation import sign_rotation
from federation.registry_client import RegistryClient
from federation.timestamps import to_timestamp
from federation.transport import REGISTRY_TLS_NAME, PeerKind, certificate_request, secure_channel
from federation_node.links.directory_client import DirectoryClient
from federation_node.tlog.attestation import verify_attestation_envelope
from registry.db import create_engine_for
from signing import dsse
from signing.keys import SigningKey, VerifyKey
from tests.integration.registry.conftest import EnrolledFactory, NodeKit, RunningRegistry

SKEW = timedelta(seconds=60)


def _root_key(registry: RunningRegistry) -> VerifyKey:
    return VerifyKey.from_raw(bytes.fromhex(registry.config.paths.root_public_key.read_text()))


def _directory_bytes(registry: RunningRegistry) -> bytes:
    with registry.anonymous() as anonymous:
        envelope = anonymous.get_directory(0)
    assert envelope is not None
    return envelope.to_json()


def _rotate(client: RegistryClient, node: NodeKit) -> SigningKey:
    """Rotate the node's key; the kit signs with the new key from then on."""
    new = SigningKey.generate()
    client.rotate_signing_key(sign_rotation(node.node_id, node.signing_key, new, datetime.now(UTC)))
    node.signing_key = new
    return new


def _attestation(node: NodeKit, key: SigningKey, issued_at: datetime) -> dsse.Envelope:
    attestation = attestation_pb2.CertificationAttestation(
        attestation_id="0190b8c4-0000-7000-8000-000000000001",
        subject_locator=bytes(32),
        paying_region="440600",
        paying_node_id=node.node_id,
        issuing_node_id=node.node_id,
        certifying_region="440600",
        certifying_agency="Foshan social security",
        issued_at=to_timestamp(issued_at),
    )
    return dsse.sign(
        attestation.SerializeToString(deterministic=True), dsse.ATTESTATION_PAYLOAD_TYPE, key
    )


def _audit_actions(registry: RunningRegistry) -> list[str]:
    engine = create_engine_for(registry.config.effective_database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT action FROM audit_event ORDER BY id")).all()
    finally:
        engine.dispose()
    return [row[0] for row in rows]


@pytest.mark.parametrize(
    "registry_env",
    [{"CERTFED_REGISTRY_KEY_CHANGE_INTERVAL_S": "0", "CERTFED_REGISTRY_KEY_HISTORY_AFTER_S": "0"}],
    ids=["no-interval"],
)
def test_directory_size_is_bounded_under_a_rotation_loop_and_old_keys_verify_through_history(
    registry: RunningRegistry, enrolled_node: EnrolledFactory, tmp_path: Path
) -> None:
    node, client = enrolled_node("foshan-paying")
    first_key = node.signing_key
    signed_early = _attestation(node, first_key, datetime.now(UTC))
    time.sleep(0.01)
    rotated = [_rotate(client, node) for _ in range(2)]
    client.renew_certificate(certificate_request(PeerKind.NODE, node.node_id, node.tls_key_pem))
    settled = len(_directory_bytes(registry))

    for _ in range(15):
        rotated.append(_rotate(client, node))
        renewed = client.renew_certificate(
            certificate_request(PeerKind.NODE, node.node_id, node.tls_key_pem)
        )
        client.close()
        client = registry.node_client(node.tls(renewed.tls_certificate_pem, registry.ca_pem))
    sizes_after = len(_directory_bytes(registry))
    client.close()

    # Version numbers and timestamps may take a byte or two more; keys and certificates may not.
    assert sizes_after <= settled + 16, (settled, sizes_after)
    live = verify_directory(
        dsse.Envelope.from_json(_directory_bytes(registry)),
        _root_key(registry),
        now=datetime.now(UTC),
    )
    listed = [key.key_id for key in live.node(node.node_id).signing_keys]
    assert first_key.key_id not in listed
    assert len(listed) <= 2
    assert len(live.node(node.node_id).tls_certificate_sha256) <= 2
    with pytest.raises(UnknownSigningKeyError):
        verify_attestation_envelope(signed_early, live, now=datetime.now(UTC), max_clock_skew=SKEW)

    # The node's own directory client fetches the signed history and then verifies.
    with registry.anonymous() as anonymous:
        history = verify_key_history(
            anonymous.get_key_history(node.node_id), _root_key(registry), "test-federation"
        )
        assert {first_key.key_id, *(key.key_id for key in rotated)} <= {
            key.key_id for key in history[node.node_id]
        }
        directory = DirectoryClient(
            anonymous.get_directory_update,
            _root_key(registry),
            tmp_path / "directory.json",
            fetch_key_history=anonymous.get_key_history,
        )
        directory.refresh()
        assert directory.load_key_history()
    attestation, key_id = verify_attestation_envelope(
        signed_early, directory.current(), now=datetime.now(UTC), max_clock_skew=SKEW
    )
    assert key_id == first_key.key_id
    assert attestation.issuing_node_id == node.node_id


def test_key_history_from_another_federation_is_refused(registry: RunningRegistry) -> None:
    with registry.anonymous() as anonymous:
        envelope = anonymous.get_key_history()
    assert verify_key_history(envelope, _root_key(registry), "test-federation") == {}
    with pytest.raises(CertfedError, match="not 'other-federation'"):
        verify_key_history(envelope, _root_key(registry), "other-federation")


def test_second_rotation_within_the_interval_is_resource_exhausted_with_retry_after(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, client = enrolled_node("foshan-paying")
    _rotate(client, node)
    version = verify_directory(
        dsse.Envelope.from_json(_directory_bytes(registry)),
        _root_key(registry),
        now=datetime.now(UTC),
    ).version
    renewal = certificate_request(PeerKind.NODE, node.node_id, node.tls_key_pem)
    client.renew_certificate(renewal)
    client.close()

    second = sign_rotation(node.node_id, node.signing_key, SigningKey.generate(), datetime.now(UTC))
    enrolment = registry.anonymous()
    with enrolment:
        certificate = enrolment.get_enrolment(node.node_id, node.signing_key).tls_certificate_pem
    credentials = node.tls(certificate, registry.ca_pem).channel_credentials()
    channel = secure_channel(
        registry.mtls_endpoint, REGISTRY_TLS_NAME, credentials, max_message_bytes=1 << 20
    )
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    with channel:
        for call, request in (
            (
                stub.RotateSigningKey,
                registry_pb2.RotateSigningKeyRequest(rotation=envelope_to_proto(second)),
            ),
            (stub.RenewCertificate, registry_pb2.RenewCertificateRequest(tls_csr_pem=renewal)),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(request, timeout=10)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "key_change_interval_s" in (refused.value.details() or "")
            trailers = dict(refused.value.trailing_metadata() or ())
            assert 3_000_000 <= int(trailers["retry-after-ms"]) <= 3_600_000
    latest = verify_directory(
        dsse.Envelope.from_json(_directory_bytes(registry)),
        _root_key(registry),
        now=datetime.now(UTC),
    )
    # The refused rotation published nothing and added no key (the renewal before it did publish).
    assert latest.version == version + 1
    assert second.signatures[-1].keyid not in {
        key.key_id for key in latest.node(node.node_id).signing_keys
    }


@pytest.mark.parametrize(
    "registry_env",
    [
        {
            "CERTFED_REGISTRY_KEY_CHANGE_INTERVAL_S": "0",
            "CERTFED_REGISTRY_LIMITS_MAX_DIRECTORY_BYTES": "4000",
        }
    ],
    ids=["small-limit"],
)
def test_change_that_would_exceed_max_directory_bytes_is_refused_changes_nothing_and_is_audited(
    registry: RunningRegistry, enrolled_node: EnrolledFactory
) -> None:
    node, client = enrolled_node("foshan-paying")
    refusal: CertfedError | None = None
    with client:
        # With the default history cut-off (a day) every ended key stays listed: it must stop.
        for _ in range(40):
            before = _directory_bytes(registry)
            try:
                _rotate(client, node)
            except CertfedError as error:
                refusal = error
                break
    assert refusal is not None, "the directory grew past max_directory_bytes"
    assert refusal.status is grpc.StatusCode.FAILED_PRECONDITION
    assert "max_directory_bytes" in str(refusal)
    assert _directory_bytes(registry) == before
    assert len(before) <= 4000
    assert _audit_actions(registry)[-1] == "refused:rotate-signing-key"
