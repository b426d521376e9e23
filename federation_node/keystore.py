"""A node's key material on disk, and enrolment with the registry.

Keys are created on the node and never leave it: the Ed25519 attestation signing key, the X25519
HPKE key that identity bundles are sealed to, and the P-256 TLS key. Enrolment sends only public
keys and a certificate request, signed by the new signing key; once an administrator approves,
the node stores its TLS certificate. Nodes hold no locator key: they compute subject locators
through the registry (federation_node/locators.py).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from certfed.v1 import directory_pb2
from federation.errors import PreconditionError
from federation.roles import ROLE_VALUES
from federation.timestamps import to_timestamp
from federation.transport import PeerKind, TlsMaterial, certificate_request, generate_tls_key
from federation_node.config import NodeConfig
from signing import dsse
from signing.keys import HpkeKey, SigningKey, VerifyKey, write_private_file


@dataclass(frozen=True)
class KeyPaths:
    data_dir: Path

    @property
    def signing_key(self) -> Path:
        return self.data_dir / "keys" / "signing.key"

    @property
    def hpke_key(self) -> Path:
        return self.data_dir / "keys" / "hpke.key"

    @property
    def tls_key(self) -> Path:
        return self.data_dir / "keys" / "tls.key"

    @property
    def tls_certificate(self) -> Path:
        return self.data_dir / "keys" / "tls.pem"

    @property
    def retired_locator_key(self) -> Path:
        """The shared locator key nodes held before locators came from the registry's OPRF;
        `certfed node relocate` deletes it once every locator is re-derived."""
        return self.data_dir / "keys" / "locator.key"

    @property
    def directory_cache(self) -> Path:
        return self.data_dir / "directory.json"

    # Keys over time (federation_node.links.key_rollover): a successor waits in *.next.* until the
    # directory lists it, then replaces the key in use.

    @property
    def next_signing_key(self) -> Path:
        return self.data_dir / "keys" / "signing.next.key"

    @property
    def next_tls_key(self) -> Path:
        return self.data_dir / "keys" / "tls.next.key"

    @property
    def next_tls_certificate(self) -> Path:
        return self.data_dir / "keys" / "tls.next.pem"

    @property
    def root_chain(self) -> Path:
        """The registry root rotations this node followed, one DSSE envelope (JSON) a line."""
        return self.data_dir / "root-chain.jsonl"


def load_root_public_key(path: Path) -> VerifyKey:
    """The registry root key, from a PEM public key or a hex string of the raw 32 bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise PreconditionError(
            f"no registry root public key at {path}; copy it from the registry's trust/ folder"
        ) from error
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise PreconditionError(f"{path} is not an Ed25519 public key")
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return VerifyKey.from_raw(raw)
    try:
        return VerifyKey.from_raw(binascii.unhexlify(data.strip()))
    except (binascii.Error, ValueError) as error:
        raise PreconditionError(f"{path} holds no Ed25519 public key") from error


@dataclass(frozen=True)
class NodeKeys:
    """Everything secret or identifying a running node needs."""

    signing: SigningKey
    hpke: HpkeKey
    tls: TlsMaterial
    root_public_key: VerifyKey


def create_keys(paths: KeyPaths) -> None:
    """Create the node's private keys; refuse to overwrite any that exist."""
    for path in (paths.signing_key, paths.hpke_key, paths.tls_key):
        if path.exists():
            raise PreconditionError(f"{path} exists already; refusing to replace a node key")
    paths.signing_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    SigningKey.generate().save(paths.signing_key)
    HpkeKey.generate().save(paths.hpke_key)
    write_private_file(paths.tls_key, generate_tls_key())


def build_application(config: NodeConfig, paths: KeyPaths, now: datetime) -> dsse.Envelope:
    """The signed NodeApplication this node sends to the registry."""
    signing_key = SigningKey.load(paths.signing_key)
    hpke_key = HpkeKey.load(paths.hpke_key)
    application = directory_pb2.NodeApplication(
        node_id=config.node_id,
        display_name=config.display_name or config.node_id,
        region_codes=list(config.region_codes),
        roles=[ROLE_VALUES[role] for role in config.roles],
        endpoint=config.endpoint,
        signing_public_key=signing_key.public_key.raw,
        hpke_public_key=hpke_key.public_raw,
        tls_csr_pem=certificate_request(PeerKind.NODE, config.node_id, paths.tls_key.read_bytes()),
        applied_at=to_timestamp(now),
    )
    return dsse.sign(
        application.SerializeToString(deterministic=True),
        dsse.ENROLMENT_PAYLOAD_TYPE,
        signing_key,
    )


def store_enrolment(paths: KeyPaths, certificate_pem: bytes) -> None:
    """Keep what an approved enrolment returned: the TLS certificate."""
    paths.tls_certificate.write_bytes(certificate_pem)


def is_enrolled(paths: KeyPaths) -> bool:
    return paths.tls_certificate.exists()


def load_keys(config: NodeConfig, paths: KeyPaths) -> NodeKeys:
    if not is_enrolled(paths):
        raise PreconditionError(
            f"node {config.node_id} has no certificate yet: run `certfed node enrol` and have a "
            "registry administrator approve it"
        )
    return NodeKeys(
        signing=SigningKey.load(paths.signing_key),
        hpke=HpkeKey.load(paths.hpke_key),
        tls=TlsMaterial.load(paths.tls_certificate, paths.tls_key, config.ca_certificate),
        root_public_key=load_root_public_key(config.root_public_key),
    )
