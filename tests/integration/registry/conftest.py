"""Fixtures for the registry's integration tests: a real registry server on 127.0.0.1 port 0
against the `store_url` database (SQLite and PostgreSQL), and nodes that enrol with it.

The server is started in-process from a data directory made by `init_registry`, with its
configuration loaded through `load_registry_config` and environment overrides (database URL,
port 0, a small repeated-field limit), and is stopped after each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certfed.v1 import common_pb2, directory_pb2
from federation.fingerprints import KeyFingerprints
from federation.registry_client import RegistryAdminClient, RegistryClient
from federation.roles import role_values
from federation.timestamps import to_timestamp
from federation.transport import (
    REGISTRY_TLS_NAME,
    PeerKind,
    TlsMaterial,
    anonymous_channel_credentials,
    certificate_request,
    generate_tls_key,
    secure_channel,
)
from registry.config import RegistryConfig, load_registry_config
from registry.server import RegistryServer, build_registry_server, init_registry
from signing import dsse
from signing.keys import HpkeKey, SigningKey

MAX_REPEATED = 50


@pytest.fixture
def registry_env() -> dict[str, str]:
    """Settings a test changes, as environment overrides (parametrize `registry_env` to set)."""
    return {}


@pytest.fixture
def registry_config(tmp_path: Path, store_url: str, registry_env: dict[str, str]) -> RegistryConfig:
    data_dir = tmp_path / "registry"
    init_registry(data_dir, "test-federation")
    return load_registry_config(
        data_dir / "registry.toml",
        environ={
            "CERTFED_REGISTRY_DATABASE_URL": store_url,
            "CERTFED_REGISTRY_LISTEN": "127.0.0.1:0",
            "CERTFED_REGISTRY_ENROL_LISTEN": "127.0.0.1:0",
            "CERTFED_REGISTRY_LIMITS_MAX_REPEATED": str(MAX_REPEATED),
            "CERTFED_REGISTRY_LIMITS_CALL_TIMEOUT_S": "10",
            **registry_env,
        },
    )


def wait_until_serving(endpoint: str, ca_pem: bytes, deadline_s: float = 10.0) -> None:
    channel = secure_channel(
        endpoint,
        REGISTRY_TLS_NAME,
        anonymous_channel_credentials(ca_pem),
        max_message_bytes=1024 * 1024,
    )
    with channel:
        grpc.channel_ready_future(channel).result(timeout=deadline_s)
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=deadline_s
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@dataclass
class RunningRegistry:
    config: RegistryConfig
    server: RegistryServer

    @property
    def mtls_endpoint(self) -> str:
        return f"127.0.0.1:{self.server.ports['mtls']}"

    @property
    def enrol_endpoint(self) -> str:
        return f"127.0.0.1:{self.server.ports['enrol']}"

    @property
    def ca_pem(self) -> bytes:
        return self.config.paths.ca_certificate.read_bytes()

    def admin(self, name: str = "admin") -> RegistryAdminClient:
        paths = self.config.paths
        tls = TlsMaterial.load(
            paths.admin_certificate(name), paths.admin_key(name), paths.ca_certificate
        )
        return RegistryAdminClient(
            self.mtls_endpoint, tls.channel_credentials(), self.config.limits
        )

    def anonymous(self) -> RegistryClient:
        return RegistryClient(
            self.enrol_endpoint, anonymous_channel_credentials(self.ca_pem), self.config.limits
        )

    def node_client(self, tls: TlsMaterial) -> RegistryClient:
        return RegistryClient(self.mtls_endpoint, tls.channel_credentials(), self.config.limits)


@pytest.fixture
def registry(registry_config: RegistryConfig) -> Iterator[RunningRegistry]:
    server = build_registry_server(registry_config)
    try:
        running = RunningRegistry(registry_config, server)
        wait_until_serving(running.enrol_endpoint, running.ca_pem)
        yield running
    finally:
        server.stop(grace=0.5)


@dataclass
class NodeKit:
    """A would-be node: its keys, and what it sends the registry."""

    node_id: str
    region_codes: tuple[str, ...]
    roles: tuple[str, ...]
    signing_key: SigningKey
    hpke_key: HpkeKey
    tls_key_pem: bytes

    def application(self, **overrides: object) -> dsse.Envelope:
        fields: dict[str, object] = {
            "node_id": self.node_id,
            "display_name": f"Office {self.node_id}",
            "region_codes": list(self.region_codes),
            "roles": role_values(self.roles),
            "endpoint": f"{self.node_id}.example.org:7500",
            "signing_public_key": self.signing_key.public_key.raw,
            "hpke_public_key": self.hpke_key.public_raw,
            "tls_csr_pem": certificate_request(PeerKind.NODE, self.node_id, self.tls_key_pem),
            "applied_at": to_timestamp(datetime.now(UTC)),
        }
        fields.update(overrides)
        application = directory_pb2.NodeApplication(**fields)  # type: ignore[arg-type]
        return dsse.sign(
            application.SerializeToString(deterministic=True),
            dsse.ENROLMENT_PAYLOAD_TYPE,
            self.signing_key,
        )

    def tls(self, certificate_pem: bytes, ca_pem: bytes) -> TlsMaterial:
        return TlsMaterial(certificate_pem, self.tls_key_pem, ca_pem)

    @property
    def fingerprints(self) -> KeyFingerprints:
        """What the office would send the administrator out of band."""
        return KeyFingerprints.of_application(self.application())

    def approve(self, admin: RegistryAdminClient, **options: bool) -> int:
        """Approve this node as an administrator who confirmed its fingerprints."""
        return admin.approve(
            self.node_id,
            signing_key_fingerprint=self.fingerprints.signing_key,
            tls_key_fingerprint=self.fingerprints.tls_key,
            **options,
        )


NodeFactory = Callable[..., NodeKit]


@pytest.fixture
def make_node() -> NodeFactory:
    def make(
        node_id: str,
        region_codes: tuple[str, ...] = ("440600",),
        roles: tuple[str, ...] = ("paying_office", "residence_agency"),
    ) -> NodeKit:
        return NodeKit(
            node_id=node_id,
            region_codes=region_codes,
            roles=roles,
            signing_key=SigningKey.generate(),
            hpke_key=HpkeKey.generate(),
            tls_key_pem=generate_tls_key(),
        )

    return make


EnrolledFactory = Callable[..., tuple[NodeKit, RegistryClient]]


@pytest.fixture
def enrolled_node(registry: RunningRegistry, make_node: NodeFactory) -> Iterator[EnrolledFactory]:
    """Enrol and approve a node; returns it with a client using its mTLS certificate."""
    clients: list[RegistryClient] = []

    def enrol(node_id: str, **kwargs: object) -> tuple[NodeKit, RegistryClient]:
        node = make_node(node_id, **kwargs)
        with registry.anonymous() as anonymous:
            response = anonymous.enrol(node.application())
            assert response.status == common_pb2.NODE_STATUS_PENDING
            with registry.admin() as admin:
                node.approve(admin)
            enrolment = anonymous.get_enrolment(node_id, node.signing_key)
        client = registry.node_client(
            node.tls(enrolment.tls_certificate_pem, enrolment.ca_certificate_pem)
        )
        clients.append(client)
        return node, client

    yield enrol
    for client in clients:
        client.close()
