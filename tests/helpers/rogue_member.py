"""A member of a test federation acting on its own, for the hostile-member tests.

It holds what any enrolled node holds (its signing key, its TLS certificate, the federation's
locator key) and calls other members and the registry directly with them, as a stolen node key
or a bribed operator would, instead of going through its own node's desk and outbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import grpc

from certfed.v1 import (
    attestation_pb2,
    federation_pb2,
    federation_pb2_grpc,
    registry_pb2_grpc,
)
from cli.launcher import LocalFederation
from federation.directory import verify_directory
from federation.envelopes import envelope_to_proto
from federation.transport import REGISTRY_TLS_NAME, TlsMaterial, node_tls_name, secure_channel
from federation_node.keystore import load_root_public_key
from signing import dsse
from signing.keys import SigningKey
from tests.helpers.locators import member_locator

MAX_MESSAGE_BYTES = 4 << 20


class RogueMember:
    """Node `node_id` of `local`, calling with its own credentials."""

    def __init__(self, local: LocalFederation, node_id: str) -> None:
        self.local = local
        self.node_id = node_id

    @property
    def _keys(self) -> Path:
        return self.local.nodes[self.node_id].config.data_dir / "keys"

    def locator(self, identity_number: str) -> bytes:
        """A resident's locator, computed through the registry as every member can."""
        return member_locator(self.local.nodes[self.node_id].config, identity_number)

    def hpke_public_key(self, node_id: str) -> bytes:
        """`node_id`'s sealing key, from the signed directory every member reads."""
        paths = self.local.registry_paths
        directory = verify_directory(
            self.local.fetch_directory(),
            load_root_public_key(paths.trust_root_public_key),
            now=datetime.now(UTC),
        )
        return bytes(directory.node(node_id).hpke_public_key)

    def sign(self, attestation: attestation_pb2.CertificationAttestation) -> dsse.Envelope:
        """`attestation` signed with this member's own signing key."""
        return dsse.sign(
            attestation.SerializeToString(deterministic=True),
            dsse.ATTESTATION_PAYLOAD_TYPE,
            SigningKey.load(self._keys / "signing.key"),
        )

    def _credentials(self) -> grpc.ChannelCredentials:
        config = self.local.nodes[self.node_id].config
        tls = TlsMaterial.load(
            self._keys / "tls.pem", self._keys / "tls.key", config.ca_certificate
        )
        return tls.channel_credentials()

    @contextmanager
    def peer(self, target: str) -> Iterator[federation_pb2_grpc.FederationServiceStub]:
        """`target`'s FederationService, called over mutual TLS with this member's certificate."""
        with secure_channel(
            f"127.0.0.1:{self.local.nodes[target].federation_port}",
            node_tls_name(target),
            self._credentials(),
            max_message_bytes=MAX_MESSAGE_BYTES,
        ) as channel:
            yield federation_pb2_grpc.FederationServiceStub(channel)

    @contextmanager
    def registry(self) -> Iterator[registry_pb2_grpc.RegistryServiceStub]:
        """The registry, called with this member's certificate."""
        with secure_channel(
            self.local.registry_endpoint,
            REGISTRY_TLS_NAME,
            self._credentials(),
            max_message_bytes=MAX_MESSAGE_BYTES,
        ) as channel:
            yield registry_pb2_grpc.RegistryServiceStub(channel)

    def deliver(
        self, target: str, envelope: dsse.Envelope
    ) -> federation_pb2.DeliverAttestationResponse:
        """Deliver an attestation to `target` itself."""
        with self.peer(target) as stub:
            response: federation_pb2.DeliverAttestationResponse = stub.DeliverAttestation(
                federation_pb2.DeliverAttestationRequest(envelope=envelope_to_proto(envelope)),
                timeout=10,
            )
        return response
