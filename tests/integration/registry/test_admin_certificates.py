"""Administrator certificates are listed and revocable: a revoked one is refused from its next
call on, against a real registry server; the last one not revoked cannot be revoked."""

from __future__ import annotations

import argparse

import grpc
import pytest

from cli.registry_lifecycle_commands import admins_command
from federation.errors import CertfedError
from federation.transport import pem_certificate_sha256
from registry.ca import FederationCA
from registry.provision import issue_admin_certificate
from tests.integration.registry.conftest import RunningRegistry


def test_a_revoked_administrator_certificate_is_refused_at_once(
    registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = registry.config.paths
    issue_admin_certificate(paths, FederationCA.load(paths.ca_certificate, paths.ca_key), "deputy")
    deputy_sha256 = pem_certificate_sha256(paths.admin_certificate("deputy").read_bytes())
    admin_sha256 = pem_certificate_sha256(paths.admin_certificate("admin").read_bytes())

    with registry.admin("deputy") as deputy:
        deputy.list_nodes()  # a working administrator, until revoked
        with registry.admin() as admin:
            listed = {item.name: item for item in admin.list_admin_certificates()}
            assert {name: item.sha256 for name, item in listed.items()} == {
                "admin": admin_sha256,
                "deputy": deputy_sha256,
            }
            assert not listed["deputy"].HasField("revoked_at")
            admin.revoke_admin_certificate(deputy_sha256, "laptop stolen")
            with pytest.raises(CertfedError) as again:
                admin.revoke_admin_certificate(deputy_sha256, "twice")
            assert again.value.status is grpc.StatusCode.FAILED_PRECONDITION
            # The last administrator who can still act cannot lock the registry out.
            with pytest.raises(CertfedError, match="last administrator certificate"):
                admin.revoke_admin_certificate(admin_sha256, "oops")
            listed = {item.name: item for item in admin.list_admin_certificates()}
            assert listed["deputy"].revoked_by == "admin"
            assert listed["deputy"].revocation_reason == "laptop stolen"

        # The same open channel, the very next call: refused.
        with pytest.raises(CertfedError) as refused:
            deputy.list_nodes()
        assert refused.value.status is grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in str(refused.value)
        with pytest.raises(CertfedError):
            deputy.revoke_admin_certificate(admin_sha256, "revenge")

    # What `certfed registry admins` prints (the command's function, in this process).
    arguments = argparse.Namespace(
        config=str(paths.config_file), admin="admin", endpoint=registry.mtls_endpoint
    )
    assert admins_command(arguments) == 0
    printed = capsys.readouterr().out
    lines = {line.split()[0]: line for line in printed.splitlines() if line.strip()}
    assert "valid" in lines["admin"]
    assert "revoked" in lines["deputy"]
    assert "laptop stolen" in lines["deputy"]
