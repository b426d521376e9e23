"""The registry renews its own TLS certificate before it expires: a registry whose certificate
ends within `registry_certificate_renew_before_s` starts with a new one, which its clients
accept through the federation CA they already trust."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509

from federation.transport import (
    REGISTRY_TLS_NAME,
    PeerKind,
    certificate_request,
    generate_tls_key,
    pem_certificate_sha256,
    presented_certificate_sha256,
)
from registry.ca import FederationCA
from registry.config import RegistryConfig
from registry.server import build_registry_server
from registry.utc import utc_now
from signing.keys import write_private_file
from tests.integration.registry.conftest import RunningRegistry, wait_until_serving


def test_a_certificate_close_to_expiry_is_renewed_and_clients_accept_the_new_one(
    registry_config: RegistryConfig,
) -> None:
    paths = registry_config.paths
    ca = FederationCA.load(paths.ca_certificate, paths.ca_key)
    # A registry whose certificate ends in ten days, inside the 30-day renewal margin.
    key = generate_tls_key()
    ending = ca.issue(
        certificate_request(PeerKind.REGISTRY, "registry", key),
        PeerKind.REGISTRY,
        "registry",
        timedelta(days=10),
    )
    write_private_file(paths.registry_key, key)
    paths.registry_certificate.write_bytes(ending)

    server = build_registry_server(registry_config)
    try:
        running = RunningRegistry(registry_config, server)
        wait_until_serving(running.enrol_endpoint, running.ca_pem)
        renewed = paths.registry_certificate.read_bytes()
        assert pem_certificate_sha256(renewed) != pem_certificate_sha256(ending)
        not_after = x509.load_pem_x509_certificate(renewed).not_valid_after_utc
        assert not_after - utc_now() > timedelta(days=700)
        for endpoint in (running.enrol_endpoint, running.mtls_endpoint):
            assert presented_certificate_sha256(
                endpoint, REGISTRY_TLS_NAME, running.ca_pem, timeout_s=10
            ) == pem_certificate_sha256(renewed)
        with running.anonymous() as anonymous:
            assert anonymous.get_directory(0) is not None
        with running.admin() as admin:
            admin.list_nodes()
    finally:
        server.stop(grace=0.5)
