"""Subject locators in tests, computed as a member node computes them: through the registry's
OPRF (EvaluateLocators), over mutual TLS with the node's own certificate."""

from __future__ import annotations

from federation.registry_client import RegistryClient
from federation.transport import TlsMaterial
from federation_node.config import NodeConfig
from federation_node.keystore import KeyPaths
from federation_node.locators import Locators
from signing.identity import IdentityKind


def member_locator(
    config: NodeConfig, number: str, kind: IdentityKind = IdentityKind.RESIDENT_ID
) -> bytes:
    """The locator of `number` as the node configured by `config` computes it."""
    paths = KeyPaths(config.data_dir)
    tls = TlsMaterial.load(paths.tls_certificate, paths.tls_key, config.ca_certificate)
    with RegistryClient(
        config.registry_endpoint, tls.channel_credentials(), config.limits
    ) as registry:
        return Locators(registry.evaluate_locators).subject_locator(kind, number)
