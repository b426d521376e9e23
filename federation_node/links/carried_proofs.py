"""Attestation deliveries that carry their inclusion proof.

A paying office applies a peer's attestation only once it is proven in the issuer's log against
a checkpoint its witnesses cosigned. Sent as soon as it is issued, an attestation arrives before
any such checkpoint exists, and the paying office has to come back for the proof (two calls per
attempt, retried until the issuer's next checkpoint). So the dispatcher holds a delivery until
the issuer's latest cosigned checkpoint covers the attestation (its sequencing pool: about half
a second) and sends it with the audit path and that checkpoint (`DeliverAttestationRequest.
inclusion`): the paying office checks the proof and applies the attestation on delivery.

The dispatcher builds a pass's deliveries together (four queries for the entries and all their
proofs, `payloads`), and remembers the leaf each held delivery waits for: the publication of a
checkpoint that covers it sends it at once, and nothing looks at it before (links/dispatcher.py).

A delivery waits at most `max_wait_s` from when it was queued (and up to the dispatcher's
recheck after that). Past that (the witness unreachable, the log behind its witness) it goes
without the proof, as before, and the paying office fetches the proof itself once there is one:
waiting for a proof never stops a delivery.

The outbox keeps no copy of the attestation: the delivery is built here from the envelope as
the log holds it (an attestation is logged in the transaction that queues its delivery), which
spares a bulk issue a second serialisation and a third copy of every envelope. A delivery
queued by an earlier version carries its request, and goes as queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from certfed.v1 import federation_pb2, log_pb2
from federation.envelopes import envelope_to_proto
from federation.errors import CertfedError, UnknownAttestationError
from federation_node.store.log_store import Logged, not_logged
from signing import dsse

# How long a delivery waits for a cosigned checkpoint to carry: several sequencing pools and a
# witness round trip on a busy node.
MAX_WAIT_S = 5.0


class ProvingLog(Protocol):
    """What this needs of the node's transparency log (tlog/transparency.py)."""

    def checkpoint(self) -> bytes: ...

    def logged(
        self, attestation_ids: Sequence[str], tree_size: int | None
    ) -> dict[str, tuple[Logged, list[bytes] | None]]: ...


class Delivery(NamedTuple):
    """An attestation delivery the dispatcher claimed."""

    attestation_id: str
    # The message's payload: empty unless an earlier version queued the request itself.
    queued: bytes
    # When it was queued (or last retried): how long it has waited for a checkpoint.
    queued_at: datetime


class Built(NamedTuple):
    """A delivery ready to go (`payload`), or None while it waits for a checkpoint that covers
    `leaf_index`."""

    payload: bytes | None
    leaf_index: int


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

    def payloads(
        self, deliveries: Sequence[Delivery], checkpoint: bytes | None, now: datetime
    ) -> list[Built | UnknownAttestationError]:
        """Each delivery with its proof under `checkpoint`, in order, read from the log together;
        waiting while no checkpoint covers it, and going without the proof once it has waited
        long enough; an UnknownAttestationError for one the log does not hold."""
        logged = self._log.logged([one.attestation_id for one in deliveries], tree_size(checkpoint))
        built: list[Built | UnknownAttestationError] = []
        for attestation_id, queued, queued_at in deliveries:
            found = logged.get(attestation_id)
            if found is None:
                built.append(not_logged(attestation_id))
                continue
            entry, proof = found
            if proof is None and now - queued_at < self._max_wait:
                built.append(Built(None, entry.leaf_index))
                continue
            built.append(Built(_request(entry, queued, proof, checkpoint), entry.leaf_index))
        return built


def _request(
    entry: Logged, queued: bytes, proof: list[bytes] | None, checkpoint: bytes | None
) -> bytes:
    """The serialised DeliverAttestationRequest: the envelope as logged (or the request as an
    earlier version queued it), with its audit path and checkpoint when it has a proof."""
    if queued:
        request = federation_pb2.DeliverAttestationRequest.FromString(queued)
    else:
        envelope = envelope_to_proto(dsse.Envelope.from_json(entry.envelope_json))
        request = federation_pb2.DeliverAttestationRequest(envelope=envelope)
    size = tree_size(checkpoint)
    if proof is not None and checkpoint is not None and size is not None:
        request.inclusion.CopyFrom(
            federation_pb2.LogInclusion(
                leaf_index=entry.leaf_index,
                tree_size=size,
                hashes=proof,
                checkpoint=log_pb2.SignedCheckpoint(note=checkpoint),
            )
        )
    return request.SerializeToString(deterministic=True)


def tree_size(checkpoint: bytes | None) -> int | None:
    """The size a checkpoint note states (its second line); None without a readable one."""
    if checkpoint is None:
        return None
    try:
        return int(checkpoint.split(b"\n", 2)[1])
    except (ValueError, IndexError):
        return None
