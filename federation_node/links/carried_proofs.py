"""Attestation deliveries that carry their inclusion proof.

A paying office applies a peer's attestation only once it is proven in the issuer's log against
a checkpoint its witnesses cosigned. Sent as soon as it is issued, an attestation arrives before
any such checkpoint exists, and the paying office has to come back for the proof (two calls per
attempt, retried until the issuer's next checkpoint). So the dispatcher holds a delivery until
the issuer's latest cosigned checkpoint covers the attestation (its sequencing pool: about half
a second) and sends it with the audit path and that checkpoint (`DeliverAttestationRequest.
inclusion`): the paying office checks the proof and applies the attestation on delivery.

A delivery waits at most `max_wait_s` from when it was queued. Past that (the witness
unreachable, the log behind its witness) it goes without the proof, as before, and the paying
office fetches the proof itself once there is one: waiting for a proof never stops a delivery.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from certfed.v1 import federation_pb2, log_pb2
from federation.errors import CertfedError

# How long a delivery waits for a cosigned checkpoint to carry: several sequencing pools and a
# witness round trip on a busy node.
MAX_WAIT_S = 5.0


class ProvingLog(Protocol):
    """What this needs of the node's transparency log (tlog/transparency.py)."""

    def checkpoint(self) -> bytes: ...

    def inclusion_proof(
        self, leaf_index: int | None, attestation_id: str | None, tree_size: int
    ) -> tuple[int, int, list[bytes]]: ...


class CarriedProofs:
    def __init__(self, log: ProvingLog, max_wait_s: float = MAX_WAIT_S) -> None:
        self._log = log
        self._max_wait = timedelta(seconds=max_wait_s)

    def checkpoint(self) -> bytes | None:
        """The latest cosigned checkpoint, read once for a pass's deliveries; None if none."""
        try:
            return self._log.checkpoint()
        except CertfedError:
            return None

    def payload(
        self,
        attestation_id: str,
        payload: bytes,
        checkpoint: bytes | None,
        queued_at: datetime,
        now: datetime,
    ) -> bytes | None:
        """The delivery with its proof under `checkpoint`; None while it should wait for a
        checkpoint covering it; the delivery as queued once it has waited long enough."""
        proof = self._proof(attestation_id, checkpoint)
        if proof is None:
            return payload if now - queued_at >= self._max_wait else None
        request = federation_pb2.DeliverAttestationRequest.FromString(payload)
        request.inclusion.CopyFrom(proof)
        return request.SerializeToString(deterministic=True)

    def _proof(
        self, attestation_id: str, checkpoint: bytes | None
    ) -> federation_pb2.LogInclusion | None:
        if checkpoint is None:
            return None
        try:
            tree_size = int(checkpoint.split(b"\n", 2)[1])
            leaf_index, size, hashes = self._log.inclusion_proof(None, attestation_id, tree_size)
        except (CertfedError, ValueError, IndexError):
            # Not in the log yet, or past the checkpoint: the next one covers it.
            return None
        return federation_pb2.LogInclusion(
            leaf_index=leaf_index,
            tree_size=size,
            hashes=hashes,
            checkpoint=log_pb2.SignedCheckpoint(note=checkpoint),
        )
