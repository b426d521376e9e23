"""A node dials a peer only if the peer presents a certificate the directory lists for it.

The attack: Qingdao's TLS key is stolen; Qingdao makes a new key and renews its certificate, so
the directory lists only the new certificate. The thief still holds the old certificate, issued
by the federation CA for the same name and not yet expired, and serves with it at Qingdao's
endpoint. Lanzhou's channels to Qingdao refuse that server, and accept the real one again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from cli.launcher import free_port
from federation.transport import (
    PeerCertificateMismatchError,
    PeerKind,
    TlsMaterial,
    certificate_request,
    generate_tls_key,
)
from federation_node.links.directory_client import DirectoryClient
from federation_node.links.peers import PeerChannels
from signing.keys import VerifyKey
from tests.integration.registry.conftest import EnrolledFactory, NodeFactory, RunningRegistry


@contextmanager
def _serving(endpoint: str, tls: TlsMaterial) -> Iterator[None]:
    """A gRPC server (health only) at `endpoint` presenting `tls`, as a node's server would."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_secure_port(endpoint, tls.server_credentials(require_client_auth=True))
    server.start()
    try:
        yield
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize(
    "registry_env", [{"CERTFED_REGISTRY_CERTIFICATE_OVERLAP_S": "0.2"}], ids=["short-overlap"]
)
def test_peer_serving_a_superseded_certificate_with_its_stolen_key_is_refused(
    registry: RunningRegistry,
    make_node: NodeFactory,
    enrolled_node: EnrolledFactory,
    tmp_path: Path,
) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    qingdao = make_node("qingdao", region_codes=("370200",))
    with registry.anonymous() as anonymous:
        anonymous.enrol(qingdao.application(endpoint=endpoint))
        with registry.admin() as admin:
            qingdao.approve(admin)
        stolen = TlsMaterial(
            anonymous.get_enrolment("qingdao", qingdao.signing_key).tls_certificate_pem,
            qingdao.tls_key_pem,
            registry.ca_pem,
        )
    new_key = generate_tls_key()
    with registry.node_client(stolen) as client:
        renewed = client.renew_certificate(certificate_request(PeerKind.NODE, "qingdao", new_key))
    genuine = TlsMaterial(renewed.tls_certificate_pem, new_key, registry.ca_pem)
    time.sleep(0.3)  # the renewal's overlap ends: the next directory lists the new one only
    lanzhou, _ = enrolled_node("lanzhou", region_codes=("620102",))
    with registry.anonymous() as anonymous:
        lanzhou_tls = lanzhou.tls(
            anonymous.get_enrolment("lanzhou", lanzhou.signing_key).tls_certificate_pem,
            registry.ca_pem,
        )
        directory = DirectoryClient(
            anonymous.get_directory_update,
            VerifyKey.from_raw(bytes.fromhex(registry.config.paths.root_public_key.read_text())),
            tmp_path / "directory.json",
        )
        directory.refresh()
    listed = set(directory.current().node("qingdao").tls_certificate_sha256)
    assert len(listed) == 1
    peers = PeerChannels(directory, lanzhou_tls, registry.config.limits)
    try:
        with _serving(endpoint, stolen):
            with pytest.raises(PeerCertificateMismatchError, match="does not list"):
                peers.federation("qingdao")
            assert not peers.reachable("qingdao")
        with _serving(endpoint, genuine):
            peers.federation("qingdao")
            assert peers.reachable("qingdao")
    finally:
        peers.close()
