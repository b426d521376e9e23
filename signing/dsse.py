"""DSSE v1 envelopes: sign payload bytes, serialise, parse strictly, verify.

Implements https://github.com/secure-systems-lab/dsse protocol.md (signing over PAE) and
envelope.md (the JSON envelope). Promises: a signature is made and checked over the PAE of the
payload bytes exactly as carried in the envelope, never over a re-serialised payload; parsing
refuses anything that is not a well-formed envelope within the size limit; verification
succeeds only when a key the caller trusts signed this payload type and payload.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from signing.errors import (
    InvalidSignatureError,
    MalformedEnvelopeError,
    PayloadTypeMismatchError,
    UnknownKeyError,
)
from signing.keys import SigningKey, VerifyKey

ATTESTATION_PAYLOAD_TYPE = "application/vnd.certfed.attestation.v1+protobuf"
DIRECTORY_PAYLOAD_TYPE = "application/vnd.certfed.directory.v1+protobuf"
ENROLMENT_PAYLOAD_TYPE = "application/vnd.certfed.enrolment.v1+protobuf"
KEY_ROTATION_PAYLOAD_TYPE = "application/vnd.certfed.key-rotation.v1+protobuf"
ROOT_PAYLOAD_TYPE = "application/vnd.certfed.root.v1+protobuf"

MAX_ENVELOPE_BYTES = 1_048_576
# Each signature may cost a verification per trusted key, so their number is bounded too.
MAX_SIGNATURES = 64

_T = TypeVar("_T")

_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding of a payload and its type."""
    # DSSE v1 protocol.md: PAE(type, body) = "DSSEv1" + SP + LEN(type) + SP + type + SP
    #   + LEN(body) + SP + body, LEN being the ASCII decimal byte length.
    encoded_type = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(encoded_type), encoded_type, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    """One DSSE signature. `keyid` is an unauthenticated hint; empty means "not given"."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        """DSSE envelope.md JSON: compact, keys sorted, standard base64 with padding.

        Byte for byte what `json.dumps(document, separators=(",", ":"), sort_keys=True)`
        writes, put together directly: a node signs tens of thousands of envelopes a second.
        """
        signatures = b",".join(
            b'{"keyid":%b,"sig":"%b"}'
            % (_json_string(signature.keyid), base64.b64encode(signature.sig))
            for signature in self.signatures
        )
        return b'{"payload":"%b","payloadType":%b,"signatures":[%b]}' % (
            base64.b64encode(self.payload),
            _json_string(self.payload_type),
            signatures,
        )

    @classmethod
    def from_json(
        cls,
        data: bytes,
        max_bytes: int = MAX_ENVELOPE_BYTES,
        *,
        max_signatures: int = MAX_SIGNATURES,
    ) -> Envelope:
        """Parse envelope JSON strictly; raises MalformedEnvelopeError.

        Unknown members are ignored, as envelope.md allows extension; duplicate members are
        refused, since two parsers could pick different ones.
        """
        if len(data) > max_bytes:
            raise MalformedEnvelopeError(
                f"envelope is {len(data)} bytes, more than the limit of {max_bytes}"
            )
        try:
            text = data.decode("utf-8")
            document = json.loads(text, object_pairs_hook=_reject_duplicate_members)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise MalformedEnvelopeError(f"envelope is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise MalformedEnvelopeError("envelope is not a JSON object")
        payload = _decode_base64(_member(document, "payload", str), "payload")
        payload_type = _member(document, "payloadType", str)
        raw_signatures = _member(document, "signatures", list)
        if len(raw_signatures) > max_signatures:
            raise MalformedEnvelopeError(
                f"envelope has {len(raw_signatures)} signatures, more than {max_signatures}"
            )
        signatures = []
        for raw_signature in raw_signatures:
            if not isinstance(raw_signature, dict):
                raise MalformedEnvelopeError("a signature is not a JSON object")
            # DSSE v1 protocol.md: KEYID is optional.
            keyid = raw_signature.get("keyid", "")
            if not isinstance(keyid, str):
                raise MalformedEnvelopeError("signature member 'keyid' is not a string")
            sig = _decode_base64(_member(raw_signature, "sig", str), "sig")
            signatures.append(Signature(keyid=keyid, sig=sig))
        return cls(payload=payload, payload_type=payload_type, signatures=tuple(signatures))


@functools.lru_cache(maxsize=64)
def _json_string(text: str) -> bytes:
    # A node's few key ids and payload types, each escaped as json.dumps escapes it (ASCII).
    return json.dumps(text).encode("ascii")


def _reject_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("duplicate member name")
    return members


def _member(document: dict[str, Any], name: str, kind: type[_T]) -> _T:
    if name not in document:
        raise MalformedEnvelopeError(f"member '{name}' is missing")
    value = document[name]
    if not isinstance(value, kind):
        raise MalformedEnvelopeError(f"member '{name}' is not a JSON {kind.__name__}")
    return value


def _decode_base64(text: str, name: str) -> bytes:
    # DSSE envelope.md: "Either standard or URL-safe encoding is allowed." Padding may be left
    # out; one alphabet per value, and the encoding must be canonical so one value has one text.
    if not _BASE64_CHARS.fullmatch(text):
        raise MalformedEnvelopeError(f"member '{name}' is not base64")
    if any(c in text for c in "+/") and any(c in text for c in "-_"):
        raise MalformedEnvelopeError(f"member '{name}' mixes standard and URL-safe base64")
    standard = text.replace("-", "+").replace("_", "/")
    unpadded = standard.rstrip("=")
    padded = unpadded + "=" * (-len(unpadded) % 4)
    if standard != unpadded and standard != padded:
        raise MalformedEnvelopeError(f"member '{name}' has wrong base64 padding")
    try:
        decoded = base64.b64decode(padded, validate=True)
    except binascii.Error:
        raise MalformedEnvelopeError(f"member '{name}' is not base64") from None
    if base64.b64encode(decoded).decode("ascii") != padded:
        raise MalformedEnvelopeError(f"member '{name}' is not canonical base64")
    return decoded


def sign(payload: bytes, payload_type: str, *keys: SigningKey) -> Envelope:
    """Sign `payload` as `payload_type` with each key, in order (a statement that two keys
    must both vouch for, such as a rotation, carries both signatures over the same PAE); the
    key id names each signer for verifiers."""
    if not keys:
        raise ValueError("sign needs at least one key")
    message = pae(payload_type, payload)
    signatures = tuple(Signature(keyid=key.key_id, sig=key.sign(message)) for key in keys)
    return Envelope(payload=payload, payload_type=payload_type, signatures=signatures)


@dataclass(frozen=True)
class VerifiedPayload:
    """A payload whose signature by `key_id` (a key of the caller's mapping) has verified."""

    payload: bytes
    payload_type: str
    key_id: str


def verify(envelope: Envelope, keys: Mapping[str, VerifyKey], payload_type: str) -> VerifiedPayload:
    """Verify that a trusted key signed the envelope's payload as `payload_type`.

    Signatures naming a key id not in `keys` are ignored; one with an empty key id is tried
    against every key. The first signature that verifies wins and its key id (the mapping's
    name for the key) is returned. Raises PayloadTypeMismatchError, UnknownKeyError when no
    signature is by a key in `keys`, InvalidSignatureError when a named key's signature fails.
    """
    if envelope.payload_type != payload_type:
        raise PayloadTypeMismatchError(
            # The received type is cut short: it is untrusted input headed for logs.
            f"expected payload type {payload_type!r}, envelope has {envelope.payload_type[:120]!r}"
        )
    # DSSE v1 protocol.md, verification: the signature covers PAE(payloadType, payload) over
    # the bytes as received.
    message = pae(envelope.payload_type, envelope.payload)
    named_key_failed = False
    for signature in envelope.signatures:
        if signature.keyid:
            candidates = (
                [(signature.keyid, keys[signature.keyid])] if signature.keyid in keys else []
            )
        else:
            candidates = list(keys.items())
        for name, key in candidates:
            try:
                key.verify(signature.sig, message)
            except InvalidSignatureError:
                named_key_failed = named_key_failed or bool(signature.keyid)
                continue
            return VerifiedPayload(
                payload=envelope.payload, payload_type=envelope.payload_type, key_id=name
            )
    if named_key_failed:
        raise InvalidSignatureError("no signature by a trusted key verifies")
    raise UnknownKeyError("the envelope has no signature by a trusted key")
