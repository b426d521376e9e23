"""Registry root key rotation, in the TUF root-rotation model (TUF specification 5.3.4).

A node is configured once, out of band, with the federation's root public key. When the registry
replaces its root key it publishes a `RootStatement` naming the new key, signed by the previous
root key (authority) and by the new one (proof of possession). A node that trusts root N accepts
root N+1 only from a statement that verifies with both keys, and so follows the chain of
statements one step at a time to the newest root, with nothing configured by hand. A statement
that does not chain from the root the node trusts, skips a version, or fails a signature is
refused, and the node keeps the root it had. A statement is bound to its federation: one naming
another federation id than the node's (or than the statements before it) is refused too, so a
rotation in one federation can never move another that happens to share a root key.

`sign_root_statement` is what the registry does; `follow_root_chain` is what every node does
with the statements GetDirectory returned (and with the chain it saved, when it starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from certfed.v1 import directory_pb2
from federation.errors import DirectoryVerificationError
from signing import dsse
from signing.errors import SigningError
from signing.keys import SigningKey, VerifyKey

# The version of a root no statement introduced: the configured one, whose number a node cannot
# know (a node enrolled after a rotation is configured with the newer root directly).
UNKNOWN_VERSION = 0
FIRST_VERSION = 1


@dataclass(frozen=True)
class TrustedRoot:
    """The root key a node trusts, and its version (UNKNOWN_VERSION for a configured key)."""

    key: VerifyKey
    version: int = UNKNOWN_VERSION

    @property
    def key_id(self) -> str:
        return self.key.key_id


@dataclass(frozen=True)
class RootStep:
    """One verified statement: the root it makes current, and the envelope as received."""

    root: TrustedRoot
    envelope: dsse.Envelope
    federation_id: str


def sign_root_statement(
    statement: directory_pb2.RootStatement, previous: SigningKey, new: SigningKey
) -> dsse.Envelope:
    """The statement as a DSSE envelope signed by the previous root and by the new root."""
    payload = statement.SerializeToString(deterministic=True)
    return dsse.sign(payload, dsse.ROOT_PAYLOAD_TYPE, previous, new)


def parse_root_statement(envelope: dsse.Envelope) -> directory_pb2.RootStatement:
    """The statement inside an envelope, not yet verified."""
    if envelope.payload_type != dsse.ROOT_PAYLOAD_TYPE:
        raise DirectoryVerificationError(
            f"a root statement must have payload type {dsse.ROOT_PAYLOAD_TYPE}"
        )
    statement = directory_pb2.RootStatement()
    try:
        statement.ParseFromString(envelope.payload)
    except DecodeError as error:
        raise DirectoryVerificationError("a root statement payload does not parse") from error
    return statement


def verify_root_statement(
    envelope: dsse.Envelope, trusted: TrustedRoot, federation_id: str = ""
) -> TrustedRoot:
    """The root a statement introduces, if it verifies as the next step after `trusted` in
    federation `federation_id` (empty: any, when the node does not know it yet)."""
    statement = parse_root_statement(envelope)
    if federation_id and statement.federation_id != federation_id:
        raise DirectoryVerificationError(
            f"root statement version {statement.version} is of federation "
            f"{statement.federation_id!r}, not {federation_id!r}; refusing it"
        )
    if statement.previous_key_id != trusted.key_id:
        raise DirectoryVerificationError(
            f"root statement version {statement.version} replaces root key "
            f"{statement.previous_key_id[:16]}, not the trusted root {trusted.key_id[:16]}"
        )
    if trusted.version != UNKNOWN_VERSION and statement.version != trusted.version + 1:
        raise DirectoryVerificationError(
            f"root statement version {statement.version} does not follow the trusted root "
            f"version {trusted.version}"
        )
    if statement.version <= FIRST_VERSION:
        raise DirectoryVerificationError(
            f"root statement version {statement.version} is not a rotation (versions start at 2)"
        )
    try:
        new_key = VerifyKey.from_raw(statement.root_public_key)
        dsse.verify(envelope, {trusted.key_id: trusted.key}, dsse.ROOT_PAYLOAD_TYPE)
        dsse.verify(envelope, {new_key.key_id: new_key}, dsse.ROOT_PAYLOAD_TYPE)
    except SigningError as error:
        raise DirectoryVerificationError(
            f"root statement version {statement.version} is not signed by both the trusted "
            f"root and the new root: {error}"
        ) from error
    return TrustedRoot(new_key, int(statement.version))


def follow_root_chain(
    trusted: TrustedRoot, envelopes: Sequence[dsse.Envelope], federation_id: str = ""
) -> tuple[TrustedRoot, list[RootStep]]:
    """Walk the statements (oldest first) from `trusted` to the newest root, every one of them
    of federation `federation_id` (empty: of the federation the first one names).

    Statements from before the trusted root (the registry may send the whole chain) are
    skipped; from the first statement that replaces the trusted root on, every statement must be
    the next step, or the whole chain is refused with DirectoryVerificationError.
    """
    current = trusted
    steps: list[RootStep] = []
    for envelope in envelopes:
        statement = parse_root_statement(envelope)
        if not steps and statement.previous_key_id != current.key_id:
            if current.version != UNKNOWN_VERSION and statement.version > current.version:
                raise DirectoryVerificationError(
                    f"root statement version {statement.version} does not chain from the "
                    f"trusted root {current.key_id[:16]} (version {current.version})"
                )
            continue
        current = verify_root_statement(envelope, current, federation_id)
        federation_id = statement.federation_id
        steps.append(RootStep(current, envelope, federation_id))
    return current, steps
