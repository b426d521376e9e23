"""Checking a node's application to join the federation. Pure: bytes and limits in, a value out.

Promises: `validate_application` returns an `Application` only when the DSSE envelope carries an
enrolment payload signed by the signing key the application itself declares (proof of
possession), and every field is well formed: node id, display name, region codes, roles,
endpoint, 32-byte keys usable for what they are for, a certificate request naming exactly this
node, and an application time not in the future beyond the allowed clock skew. Otherwise it
raises InvalidInputError naming the field (`application.<field>`). The `digest` of an
application identifies what makes it "the same application again", independent of the
randomised CSR signature and of when the node re-sent it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from google.protobuf.message import DecodeError

from certfed.v1 import directory_pb2
from federation.errors import InvalidInputError
from federation.limits import Limits
from federation.regions import validate_region_code
from federation.roles import ROLE_NAMES, check_served_regions
from federation.timestamps import to_datetime
from federation.transport import PeerKind
from registry.ca import check_certificate_request
from signing import dsse, sealing
from signing.errors import SigningError
from signing.keys import VerifyKey

NODE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
HOSTNAME_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
KEY_SIZE = 32
FIELD_PREFIX = "application."


def validate_node_id(node_id: str, field_name: str = "node_id") -> str:
    if not NODE_ID_PATTERN.fullmatch(node_id):
        raise InvalidInputError(
            field_name,
            "a node id is 3-63 characters: lowercase letters, digits and '-', "
            "starting with a letter or digit",
        )
    return node_id


def validate_text(value: str, field_name: str, limits: Limits, *, required: bool = True) -> str:
    if required and not value.strip():
        raise InvalidInputError(field_name, "must not be empty")
    if len(value) > limits.max_text_length:
        raise InvalidInputError(field_name, f"is longer than {limits.max_text_length} characters")
    if any(not character.isprintable() for character in value):
        raise InvalidInputError(field_name, "must not contain control characters")
    return value


def validate_endpoint(endpoint: str, field_name: str, limits: Limits) -> str:
    """host:port, the host a DNS name, IPv4 address or [IPv6] address, the port 1-65535."""
    validate_text(endpoint, field_name, limits)
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidInputError(field_name, f"{endpoint[:80]!r} is not host:port")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    if not bracketed and not HOSTNAME_PATTERN.fullmatch(host):
        raise InvalidInputError(field_name, f"{host[:80]!r} is not a host name or address")
    return endpoint


@dataclass(frozen=True)
class Application:
    """A verified, well-formed application of one node."""

    node_id: str
    display_name: str
    region_codes: tuple[str, ...]
    roles: tuple[str, ...]
    endpoint: str
    signing_public_key: bytes
    hpke_public_key: bytes
    tls_csr_pem: bytes
    tls_public_key_der: bytes
    applied_at: datetime

    @property
    def digest(self) -> str:
        """SHA-256 over what identifies the application: keys and declared details."""
        document = {
            "node_id": self.node_id,
            "display_name": self.display_name,
            "region_codes": list(self.region_codes),
            "roles": list(self.roles),
            "endpoint": self.endpoint,
            "signing_public_key": self.signing_public_key.hex(),
            "hpke_public_key": self.hpke_public_key.hex(),
            "tls_public_key": self.tls_public_key_der.hex(),
        }
        encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()


def _open_envelope(envelope: dsse.Envelope) -> directory_pb2.NodeApplication:
    if envelope.payload_type != dsse.ENROLMENT_PAYLOAD_TYPE:
        raise InvalidInputError(
            "application.payload_type", f"must be {dsse.ENROLMENT_PAYLOAD_TYPE}"
        )
    if not envelope.signatures:
        raise InvalidInputError("application.signatures", "the application is not signed")
    if len(envelope.signatures) > dsse.MAX_SIGNATURES:
        raise InvalidInputError(
            "application.signatures", f"more than {dsse.MAX_SIGNATURES} signatures"
        )
    application = directory_pb2.NodeApplication()
    try:
        application.ParseFromString(envelope.payload)
    except DecodeError:
        raise InvalidInputError(
            "application.payload", "is not a serialised NodeApplication"
        ) from None
    return application


def _check_key(raw: bytes, field_name: str) -> None:
    if len(raw) != KEY_SIZE:
        raise InvalidInputError(field_name, f"must be {KEY_SIZE} bytes, not {len(raw)}")


def validate_application(envelope: dsse.Envelope, limits: Limits, now: datetime) -> Application:
    """Check the proof of possession and every field; see the module docstring."""
    application = _open_envelope(envelope)
    p = FIELD_PREFIX

    node_id = validate_node_id(application.node_id, p + "node_id")
    display_name = validate_text(application.display_name, p + "display_name", limits)

    if not application.region_codes:
        raise InvalidInputError(p + "region_codes", "at least one region code is required")
    if len(application.region_codes) > limits.max_repeated:
        raise InvalidInputError(p + "region_codes", f"more than {limits.max_repeated} codes")
    region_codes = tuple(
        validate_region_code(code, f"{p}region_codes[{index}]")
        for index, code in enumerate(application.region_codes)
    )
    if len(set(region_codes)) != len(region_codes):
        raise InvalidInputError(p + "region_codes", "a region code is listed twice")

    if not application.roles:
        raise InvalidInputError(p + "roles", "at least one role is required")
    roles: list[str] = []
    for index, role in enumerate(application.roles):
        name = ROLE_NAMES.get(role)
        if name is None:
            raise InvalidInputError(
                f"{p}roles[{index}]",
                f"unknown role {role}; use one of {', '.join(sorted(ROLE_NAMES.values()))}",
            )
        if name in roles:
            raise InvalidInputError(f"{p}roles[{index}]", f"role {name} is listed twice")
        roles.append(name)
    check_served_regions(roles, region_codes, p + "region_codes")

    endpoint = validate_endpoint(application.endpoint, p + "endpoint", limits)

    _check_key(application.signing_public_key, p + "signing_public_key")
    try:
        signing_key = VerifyKey.from_raw(application.signing_public_key)
    except SigningError:
        raise InvalidInputError(
            p + "signing_public_key", "is not a usable Ed25519 public key"
        ) from None
    _check_key(application.hpke_public_key, p + "hpke_public_key")
    try:
        # Sealing nothing to the key proves it usable before it is stored and published.
        sealing.seal(b"", application.hpke_public_key, sealing.locator_key_info(node_id))
    except SigningError:
        raise InvalidInputError(
            p + "hpke_public_key", "is not a usable X25519 public key"
        ) from None

    # Proof of possession: the application is signed by the key it asks to have published.
    try:
        dsse.verify(envelope, {signing_key.key_id: signing_key}, dsse.ENROLMENT_PAYLOAD_TYPE)
    except SigningError:
        raise InvalidInputError(
            "application.signatures",
            "the application is not signed by its own signing_public_key",
        ) from None

    csr = check_certificate_request(application.tls_csr_pem, PeerKind.NODE, node_id)

    if not application.HasField("applied_at"):
        raise InvalidInputError(p + "applied_at", "is required")
    applied_at = to_datetime(application.applied_at, p + "applied_at")
    if applied_at > now + timedelta(seconds=limits.max_clock_skew_s):
        raise InvalidInputError(
            p + "applied_at",
            f"is in the future ({applied_at.isoformat()}); check the node's clock",
        )

    return Application(
        node_id=node_id,
        display_name=display_name,
        region_codes=region_codes,
        roles=tuple(roles),
        endpoint=endpoint,
        signing_public_key=bytes(application.signing_public_key),
        hpke_public_key=bytes(application.hpke_public_key),
        tls_csr_pem=bytes(application.tls_csr_pem),
        tls_public_key_der=csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        applied_at=applied_at,
    )
