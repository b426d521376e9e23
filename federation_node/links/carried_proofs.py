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

The outbox keeps no copy of the attestation: the delivery is built here from the envelope as
the log holds it (an attestation is logged in the transaction that queues its delivery), which
spares a bulk issue a second serialisation and a third copy of every envelope. A delivery
queued by an earlier version carries its request, and goes as queued.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from certfed.v1 import federation_pb2, log_pb2
from federation.envelopes import envelope_to_proto
from federation.errors import CertfedError
from signing import dsse

# How long a delivery waits for a cosigned checkpoint to carry: several sequencing pools and a
# witness round trip on a busy node.
MAX_WAIT_S = 5.0


class ProvingLog(Protocol):
    """What this needs of the node's transparency log (tlog/transparency.py)."""

    def checkpoint(self) -> bytes: ...

    def logged(
        self, attestation_id: str, tree_size: int | None
    ) -> tuple[bytes, tuple[int, int, list[bytes]] | None]: ...


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
        queued: bytes,
        checkpoint: bytes | None,
        queued_at: datetime,
        now: datetime,
    ) -> bytes | None:
        """The delivery of `attestation_id` with its proof under `checkpoint`; None while it
        should wait for a checkpoint covering it; without the proof once it has waited long
        enough. `queued`: the message's payload, empty unless an earlier version queued it.
        Raises UnknownAttestationError when the log does not hold the attestation."""
        envelope_json, proof = self._log.logged(attestation_id, _tree_size(checkpoint))
        if proof is None and now - queued_at < self._max_wait:
            return None
        if queued:
            request = federation_pb2.DeliverAttestationRequest.FromString(queued)
        else:
            envelope = envelope_to_proto(dsse.Envelope.from_json(envelope_json))
            request = federation_pb2.DeliverAttestationRequest(envelope=envelope)
        if proof is not None and checkpoint is not None:
            leaf_index, size, hashes = proof
            request.inclusion.CopyFrom(
                federation_pb2.LogInclusion(
                    leaf_index=leaf_index,
                    tree_size=size,
                    hashes=hashes,
                    checkpoint=log_pb2.SignedCheckpoint(note=checkpoint),
                )
            )
        return request.SerializeToString(deterministic=True)


def _tree_size(checkpoint: bytes | None) -> int | None:
    """The size a checkpoint note states (its second line); None without a readable one."""
    if checkpoint is None:
        return None
    try:
        return int(checkpoint.split(b"\n", 2)[1])
    except (ValueError, IndexError):
        return None
