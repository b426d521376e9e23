"""Which key signed an attestation decides whether a receiver refuses it for good or asks again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from certfed.v1 import attestation_pb2, common_pb2, directory_pb2
from federation.directory import TrustedDirectory, sign_directory
from federation.errors import UnknownSigningKeyError
from federation.timestamps import to_timestamp
from federation_node.tlog.attestation import verify_attestation_envelope
from signing import dsse
from signing.keys import SigningKey

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def directory_listing(key: SigningKey) -> TrustedDirectory:
    directory = directory_pb2.Directory(
        version=3,
        issued_at=to_timestamp(NOW),
        expires_at=to_timestamp(NOW + timedelta(days=7)),
        nodes=[
            directory_pb2.DirectoryNode(
                node_id="qingdao",
                region_codes=["370200"],
                roles=[common_pb2.ROLE_RESIDENCE_AGENCY],
                status=common_pb2.NODE_STATUS_ACTIVE,
                signing_keys=[
                    directory_pb2.NodeKey(
                        key_id=key.key_id,
                        public_key=key.public_key.raw,
                        valid_from=to_timestamp(NOW - timedelta(days=1)),
                    )
                ],
            )
        ],
    )
    return TrustedDirectory(sign_directory(directory, SigningKey.generate()), directory)


def attestation_signed_by(key: SigningKey) -> dsse.Envelope:
    attestation = attestation_pb2.CertificationAttestation(
        attestation_id="0190f5d6-0000-7000-8000-000000000001",
        issuing_node_id="qingdao",
        issued_at=to_timestamp(NOW),
    )
    return dsse.sign(attestation.SerializeToString(), dsse.ATTESTATION_PAYLOAD_TYPE, key)


def test_an_attestation_by_a_listed_key_verifies() -> None:
    key = SigningKey.generate()
    _, key_id = verify_attestation_envelope(
        attestation_signed_by(key), directory_listing(key), now=NOW, max_clock_skew=timedelta()
    )
    assert key_id == key.key_id


def test_a_key_the_directory_does_not_list_yet_is_a_retryable_refusal() -> None:
    listed, rotated_in = SigningKey.generate(), SigningKey.generate()
    with pytest.raises(UnknownSigningKeyError) as refused:
        verify_attestation_envelope(
            attestation_signed_by(rotated_in),
            directory_listing(listed),
            now=NOW,
            max_clock_skew=timedelta(),
        )
    # FAILED_PRECONDITION: the sender's dispatcher retries instead of dead-lettering.
    assert refused.value.status is grpc.StatusCode.FAILED_PRECONDITION
