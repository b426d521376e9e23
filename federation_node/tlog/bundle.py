"""An attestation bundle: the envelope, its inclusion proof and the cosigned checkpoint, as JSON.

With the directory file and the registry witness's verifier key, anyone can check a bundle
offline (`attestation.verify_bundle`, `certfed verify`): the attestation is signed by its issuer,
it is leaf `leaf_index` of the issuer's log, and that log (of `tree_size` entries) is the one the
issuer signed and the registry witness cosigned, so the issuer cannot later show a history
without it.

The file:

    {"format": "certfed.attestation-bundle/v1",
     "envelope_json": "<the DSSE JSON exactly as logged>",
     "leaf_index": 12, "tree_size": 40,
     "inclusion_proof": ["<base64 hash>", ...],
     "checkpoint": "<the cosigned checkpoint note>"}

The envelope is kept as the exact text that was hashed into the log (RFC 9162 2.1.1), not
re-serialised.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import grpc

from certfed.v1 import federation_pb2, federation_pb2_grpc
from federation.errors import InvalidInputError, PreconditionError

BUNDLE_FORMAT = "certfed.attestation-bundle/v1"
HASH_SIZE = 32
MAX_PROOF_HASHES = 64


@dataclass(frozen=True)
class Bundle:
    envelope_json: bytes
    leaf_index: int
    tree_size: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint_note: bytes

    def to_json(self) -> bytes:
        document = {
            "format": BUNDLE_FORMAT,
            "envelope_json": self.envelope_json.decode("utf-8"),
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "inclusion_proof": [base64.b64encode(h).decode("ascii") for h in self.inclusion_proof],
            "checkpoint": self.checkpoint_note.decode("utf-8"),
        }
        return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Bundle:
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidInputError("bundle", "is not JSON") from error
        if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
            raise InvalidInputError("bundle.format", f"must be {BUNDLE_FORMAT!r}")
        proof = _field(document, "inclusion_proof", list)
        if len(proof) > MAX_PROOF_HASHES:
            raise InvalidInputError("bundle.inclusion_proof", "has too many hashes")
        return cls(
            envelope_json=_field(document, "envelope_json", str).encode("utf-8"),
            leaf_index=_count(document, "leaf_index"),
            tree_size=_count(document, "tree_size"),
            inclusion_proof=tuple(_hash(value, position) for position, value in enumerate(proof)),
            checkpoint_note=_field(document, "checkpoint", str).encode("utf-8"),
        )


def is_bundle(data: bytes) -> bool:
    """Whether a file looks like a bundle (rather than a bare DSSE envelope)."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(document, dict) and "format" in document


def _field(document: dict[str, Any], name: str, kind: type[Any]) -> Any:
    value = document.get(name)
    if not isinstance(value, kind):
        raise InvalidInputError(f"bundle.{name}", f"is required and must be a {kind.__name__}")
    return value


def _count(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInputError(f"bundle.{name}", "must be a non-negative integer")
    return value


def _hash(value: object, position: int) -> bytes:
    where = f"bundle.inclusion_proof[{position}]"
    if not isinstance(value, str):
        raise InvalidInputError(where, "must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInputError(where, "is not base64") from error
    if len(raw) != HASH_SIZE:
        raise InvalidInputError(where, f"must be a {HASH_SIZE}-byte hash")
    return raw


def fetch_bundle(
    issuer: federation_pb2_grpc.FederationServiceStub,
    attestation_id: str,
    envelope_json: bytes,
    timeout_s: float,
) -> Bundle:
    """Ask the issuing node for its cosigned checkpoint and the attestation's proof under it."""
    try:
        checkpoint = issuer.GetCheckpoint(
            federation_pb2.GetCheckpointRequest(), timeout=timeout_s
        ).checkpoint.note
        size = int(checkpoint.split(b"\n", 2)[1])
        proof = issuer.GetInclusionProof(
            federation_pb2.GetInclusionProofRequest(attestation_id=attestation_id, tree_size=size),
            timeout=timeout_s,
        )
    except grpc.RpcError as error:
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        raise PreconditionError(
            f"the issuing node cannot prove attestation {attestation_id} yet: {details}; it "
            "enters a cosigned checkpoint within the node's checkpoint interval"
        ) from None
    except ValueError as error:
        raise PreconditionError("the issuing node sent a malformed checkpoint") from error
    return Bundle(
        envelope_json=envelope_json,
        leaf_index=proof.leaf_index,
        tree_size=proof.tree_size,
        inclusion_proof=tuple(proof.hashes),
        checkpoint_note=bytes(checkpoint),
    )
