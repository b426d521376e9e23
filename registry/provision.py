"""Creating a registry's key material and default configuration in a new data directory.

Promises: `init_registry` never overwrites a key: if any file it would create exists, it refuses
before writing anything. Private keys are written with mode 0600 (`signing.keys`), directories
holding them with 0700. It leaves `trust/` holding exactly what nodes receive out of band (the
root public key, the CA certificate and the witness's verifier key) and a `registry.toml` with
every default spelled out.
File names and formats are listed in `registry.config`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from federation.errors import InvalidInputError, PreconditionError
from federation.transport import PeerKind, certificate_request, generate_tls_key
from federation.witness_protocol import witness_signer
from registry.applications import validate_node_id
from registry.ca import FederationCA
from registry.config import FEDERATION_ID_PATTERN, RegistryPaths, default_config_text
from registry.locator_oprf import create_locator_key
from signing.keys import SigningKey, write_private_file

REGISTRY_CERTIFICATE_LIFETIME = timedelta(days=730)
ADMIN_CERTIFICATE_LIFETIME = timedelta(days=365)


def issue_tls_certificate(
    ca: FederationCA,
    kind: PeerKind,
    name: str,
    key_path: Path,
    certificate_path: Path,
    valid_for: timedelta,
) -> None:
    """Create a TLS key for `name` of `kind` and the certificate the CA issues for it."""
    for path in (key_path, certificate_path):
        if path.exists():
            raise PreconditionError(f"{path} exists already; refusing to replace it")
    key_pem = generate_tls_key()
    certificate_pem = ca.issue(certificate_request(kind, name, key_pem), kind, name, valid_for)
    write_private_file(key_path, key_pem)
    certificate_path.write_bytes(certificate_pem)


def issue_admin_certificate(paths: RegistryPaths, ca: FederationCA, admin_name: str) -> None:
    """A registry administrator's client certificate, in admin/<name>.key and admin/<name>.pem."""
    validate_node_id(admin_name, "admin_name")
    paths.admin_dir.mkdir(mode=0o700, exist_ok=True)
    issue_tls_certificate(
        ca,
        PeerKind.ADMIN,
        admin_name,
        paths.admin_key(admin_name),
        paths.admin_certificate(admin_name),
        ADMIN_CERTIFICATE_LIFETIME,
    )


def ensure_witness_key(paths: RegistryPaths, federation_id: str) -> None:
    """Create the witness key if absent, and publish its verifier key in trust/witness.vkey.

    Separate from the root key on purpose: an Ed25519 cosignature does not commit to the
    signer's name, so c2sp.org/tlog-cosignature asks for a key used for nothing else.
    """
    if not paths.witness_key.exists():
        SigningKey.generate().save(paths.witness_key)
    signer = witness_signer(SigningKey.load(paths.witness_key), federation_id)
    paths.trust_witness_vkey.write_text(signer.verifier.to_vkey() + "\n", encoding="ascii")


def init_registry(data_dir: Path, federation_id: str, admin_name: str = "admin") -> None:
    """Create the registry's keys, CA, certificates, trust bundle and default registry.toml."""
    if not FEDERATION_ID_PATTERN.fullmatch(federation_id):
        raise InvalidInputError(
            "federation_id", "use 1-63 lowercase letters, digits or '-', starting with one"
        )
    validate_node_id(admin_name, "admin_name")
    paths = RegistryPaths(data_dir.resolve())
    planned = [
        paths.root_key,
        paths.root_public_key,
        paths.ca_key,
        paths.ca_certificate,
        paths.registry_key,
        paths.registry_certificate,
        paths.locator_oprf_key,
        paths.admin_key(admin_name),
        paths.admin_certificate(admin_name),
        paths.trust_root_public_key,
        paths.trust_ca_certificate,
        paths.config_file,
    ]
    existing = [str(path) for path in planned if path.exists()]
    if existing:
        raise PreconditionError(
            f"refusing to overwrite existing registry files: {', '.join(existing)}"
        )
    paths.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(paths.data_dir, 0o700)
    paths.trust_dir.mkdir(mode=0o755, exist_ok=True)

    root_key = SigningKey.generate()
    root_key.save(paths.root_key)
    root_public_hex = (root_key.public_key.raw.hex() + "\n").encode("ascii")
    paths.root_public_key.write_bytes(root_public_hex)
    ensure_witness_key(paths, federation_id)

    ca = FederationCA.create(federation_id)
    ca.save(paths.ca_certificate, paths.ca_key)

    issue_tls_certificate(
        ca,
        PeerKind.REGISTRY,
        "registry",
        paths.registry_key,
        paths.registry_certificate,
        REGISTRY_CERTIFICATE_LIFETIME,
    )
    create_locator_key(paths)
    issue_admin_certificate(paths, ca, admin_name)

    paths.trust_root_public_key.write_bytes(root_public_hex)
    paths.trust_ca_certificate.write_bytes(ca.certificate_pem)
    paths.config_file.write_text(default_config_text(federation_id), encoding="utf-8")
