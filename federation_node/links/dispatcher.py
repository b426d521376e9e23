"""The outbox dispatcher: delivers what the node's transactions queued, until it is delivered.

Each pass claims due messages (on PostgreSQL with FOR UPDATE SKIP LOCKED, so replicas share the
work without delivering one message twice at once), delivers them concurrently with a deadline,
and records the result: delivered; failed with exponential backoff and jitter (tenacity), bounded
in attempts and age; or dead-lettered at once when the receiver refuses the message for good (it
is then on the operator's dead-letter list, never silently dropped). Receivers are idempotent, so
a message delivered again after a crash changes nothing. While its destination or this node itself
is suspended in the federation, a message is held (`outbox.defer`) without spending its retry
budget, and goes out once the suspension is lifted.

Two rules make a restart cost no more than the restart itself:

- Leases name the replica that took them (`replica_id`, kept in the data directory or set in
  the configuration, so it survives a restart). A replica that starts releases what its previous
  incarnation held: messages it claimed and died delivering go at once, not when the lease
  (three call timeouts) runs out.
- A destination that refused a connection (UNAVAILABLE) is probed with a health check
  (`DispatchConfig.probe_initial_s`, doubling up to `probe_max_s`) while messages wait for it.
  Once a probe that failed succeeds, or a delivery to it succeeds, the messages waiting out a
  backoff for it are made due: a peer that is back gets its messages within a second, not at the
  end of a backoff step of up to `max_backoff_s`. A destination that answers health checks but
  refuses deliveries keeps the ordinary backoff, so a probe can never spend a retry budget.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import grpc
import structlog
from sqlalchemy.engine import Engine
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from certfed.v1 import federation_pb2, registry_pb2
from federation import tracing
from federation.errors import CertfedError, NodeSuspendedError, is_retryable
from federation.transport import PeerUnreachableError
from federation_node.config import DispatchConfig, NodeConfig
from federation_node.links.carried_proofs import CarriedProofs, Delivery, tree_size
from federation_node.links.directory_client import DirectoryClient
from federation_node.links.peers import PeerChannels
from federation_node.store import outbox
from federation_node.store.db import session_scope
from federation_node.store.models import ATTESTATION_DELIVERIES, OutboxKind, OutboxMessage

log = structlog.get_logger("certfed.dispatcher")

# Codes worth one quick retry inside the same pass (a connection being re-established).
BLIP = frozenset({grpc.StatusCode.UNAVAILABLE})


class _Delivery(Protocol):
    """A delivery under way: a gRPC call future or a thread-pool future, waited on alike."""

    def result(self, timeout: float | None = None) -> object: ...


class PermanentDeliveryError(Exception):
    """The receiver refused the message for a reason a retry cannot change."""


class HeldDeliveryError(Exception):
    """Not to be sent now, and no failure: the destination or this node is suspended."""


class UnreachableError(RuntimeError):
    """The destination could not be reached (UNAVAILABLE): retried, and the destination probed."""


Hold = Callable[[str], str | None]
# Reachable(destination): whether a peer node or the registry answers a health check now.
Reachable = Callable[[str], bool]
REPLICA_ID_FILE = "replica.id"


def replica_id(config: NodeConfig) -> str:
    """This replica's name for its outbox leases: `replica_id` from the configuration, else the
    id kept in <data_dir>/replica.id, made at first start. It survives restarts, so a restarted
    replica knows which leases were its own; two replicas must not share one."""
    if config.replica_id:
        return config.replica_id
    path = Path(config.data_dir) / REPLICA_ID_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    made = f"{config.node_id}-{secrets.token_hex(8)}"
    try:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(made + "\n", encoding="utf-8")
        temporary.replace(path)
    except OSError as error:
        # A read-only data directory: this incarnation's leases run out instead (3 timeouts).
        log.warning("outbox.replica_id_not_kept", path=str(path), error=str(error))
    return made


def suspension_hold(directory: DirectoryClient, node_id: str) -> Hold:
    """A hold that keeps everything back while this node itself is suspended: its peers and
    the registry would refuse it, and dead-lettering would only lose the order of things."""

    def hold(destination: str) -> str | None:
        try:
            suspended = directory.current().is_suspended(node_id)
        except CertfedError:
            return None
        if suspended:
            return f"this node ({node_id}) is suspended; held until it is reinstated"
        return None

    return hold


RegistryPublish = Callable[
    [registry_pb2.PublishLocatorsRequest], registry_pb2.PublishLocatorsResponse
]
DuplicatesFound = Callable[[list[registry_pb2.DuplicateEntitlement]], int]


# (message id, kind, destination, payload) of a message a pass delivers.
_Item = tuple[str, OutboxKind, str, bytes]
# How soon a delivery waiting for a cosigned checkpoint is looked at again when no publication
# this process hears of covers it first (`Dispatcher._hasten_covered`).
PROOF_RECHECK_S = 1.0


class Dispatcher(threading.Thread):
    def __init__(
        self,
        engine: Engine,
        peers: PeerChannels,
        publish_locators: RegistryPublish,
        on_duplicates: DuplicatesFound,
        config: DispatchConfig,
        call_timeout_s: float,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        hold: Hold = lambda _destination: None,
        replica: str | None = None,
        reachable: Reachable | None = None,
    ) -> None:
        super().__init__(name="outbox-dispatcher", daemon=True)
        self._hold = hold
        self._replica = replica
        self._probes = _Probes(config, reachable) if reachable is not None else None
        self._engine = engine
        self._peers = peers
        self._publish_locators = publish_locators
        self._on_duplicates = on_duplicates
        self._config = config
        self._timeout = call_timeout_s
        self._clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._awaiting_proof = False
        # Deliveries held for a checkpoint, by message id: the leaf each waits to see covered.
        self._proof_waits: dict[str, int] = {}
        # Registry calls (locator publication) are blocking client calls; peers get futures.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="publish")
        # Set by the server once the node's log exists: attestation deliveries then wait for a
        # cosigned checkpoint and carry their inclusion proof (links/carried_proofs.py).
        self.carried_proofs: CarriedProofs | None = None

    def wake(self) -> None:
        """Called after a transaction queued a message, so it goes out now, not at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=False)
        if self._probes is not None:
            self._probes.close()

    def release_own_leases(self) -> int:
        """Make due what this replica's previous incarnation held leased; how many."""
        if self._replica is None:
            return 0
        with session_scope(self._engine) as session:
            released = outbox.release_leases(session, self._replica, self._clock())
        if released:
            log.info("outbox.leases_released", replica=self._replica, messages=released)
        return released

    def run(self) -> None:
        try:
            self.release_own_leases()
        except Exception:
            log.exception("dispatcher.release_failed")
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                delivered = self.run_once()
            except Exception:
                log.exception("dispatcher.pass_failed")
                delivered = 0
            wait = self._config.poll_interval_s
            if self._awaiting_proof:
                # Deliveries wait for the next cosigned checkpoint, which wakes this too.
                wait = min(wait, PROOF_RECHECK_S)
            if self._probes is not None:
                try:
                    # What a destination's return made due goes in the next pass, now.
                    delivered += self._end_backoffs(self._probes.returned())
                except Exception:
                    log.exception("dispatcher.probe_failed")
                wait = min(wait, self._probes.start_due(self._wake.set))
            if delivered == 0:
                self._wake.wait(wait)

    def _end_backoffs(self, destinations: list[str]) -> int:
        """What waits for `destinations`, reachable again, is due now; how many messages."""
        hastened = 0
        if not destinations:
            return hastened
        with session_scope(self._engine) as session:
            for destination in destinations:
                count = outbox.end_backoff(session, destination, self._clock())
                log.info("outbox.destination_back", destination=destination, messages=count)
                hastened += count
        return hastened

    def run_once(self) -> int:
        """One pass: claim due messages, deliver them, record outcomes. Returns how many went."""
        now = self._clock()
        proofs = self.carried_proofs
        # The latest cosigned checkpoint, read at most once a pass and only when needed.
        checkpoint = functools.cache(proofs.checkpoint if proofs is not None else lambda: None)
        self._hasten_covered(checkpoint, now)
        with session_scope(self._engine) as session:
            claimed = outbox.claim_due(
                session,
                now,
                self._config.batch_size,
                lease_s=self._timeout * 3,
                owner=self._replica,
            )
            batch = [(m.message_id, m.kind, m.destination, m.payload) for m in claimed]
            queued = {m.message_id: (m.subject_id, m.retried_at or m.created_at) for m in claimed}
        # Read after the claim committed: its transaction holds SQLite's write lock.
        batch, waiting, lost = self._with_proofs(batch, queued, checkpoint, now)
        self._awaiting_proof = bool(waiting)
        for message_id in queued:
            self._proof_waits.pop(message_id, None)
        if waiting:
            self._proof_waits.update(
                (message_id, leaf) for message_id, leaf in waiting if leaf is not None
            )
            with session_scope(self._engine) as session:
                outbox.defer_all(
                    session,
                    [message_id for message_id, _ in waiting],
                    "waiting for a cosigned checkpoint to carry the inclusion proof",
                    now + timedelta(seconds=PROOF_RECHECK_S),
                )
        if not batch and not lost:
            return 0
        # What can never go as it stands is refused before any call, and dead-lettered below.
        started = [self._deliver(*item) for item in batch] + [
            _Pending(PermanentDeliveryError(reason)) for _, reason in lost
        ]
        batch += [item for item, _ in lost]
        results = [
            self._outcome(*item, pending) for item, pending in zip(batch, started, strict=True)
        ]
        succeeded = [item[0] for item, error in zip(batch, results, strict=True) if error is None]
        if self._probes is not None:
            self._probes.record(
                [(item[2], error) for item, error in zip(batch, results, strict=True)]
            )
        with session_scope(self._engine) as session:
            delivered = outbox.mark_all_delivered(session, succeeded, self._clock())
            for (message_id, kind, destination, _), error in zip(batch, results, strict=True):
                if error is None:
                    continue
                message = session.get(OutboxMessage, message_id)
                if message is None:
                    continue
                now = self._clock()
                if isinstance(error, HeldDeliveryError):
                    until = now + timedelta(seconds=self._config.max_backoff_s)
                    outbox.defer(session, message, str(error), now, until)
                    log.info(
                        "outbox.held",
                        message_id=message_id,
                        kind=kind,
                        destination=destination,
                        reason=str(error),
                    )
                elif isinstance(error, PermanentDeliveryError):
                    outbox.mark_dead(session, message, str(error), now)
                    log.error(
                        "outbox.dead_letter",
                        message_id=message_id,
                        kind=kind,
                        destination=destination,
                        error=str(error),
                    )
                else:
                    outbox.mark_failed(session, message, str(error), now, self._config)
                    log.warning(
                        "outbox.retry_later",
                        message_id=message_id,
                        kind=kind,
                        destination=destination,
                        attempts=message.attempts,
                        error=str(error),
                    )
        return delivered

    def _hasten_covered(self, checkpoint: Callable[[], bytes | None], now: datetime) -> None:
        """Deliveries held for a checkpoint that now covers their leaf are made due, to go in
        this pass.

        The checkpoint publisher wakes this after each publication, so a held delivery goes as
        soon as it can carry its proof, and is not looked at before: one that waits is deferred
        for PROOF_RECHECK_S, the bound for what this process does not hear of (a checkpoint
        another replica published, a wait from before a restart)."""
        if not self._proof_waits:
            return
        size = tree_size(checkpoint()) or 0
        covered = [message_id for message_id, leaf in self._proof_waits.items() if leaf < size]
        if covered:
            with session_scope(self._engine) as session:
                outbox.make_due(session, covered, now)
            for message_id in covered:
                del self._proof_waits[message_id]

    def _with_proofs(
        self,
        batch: list[_Item],
        queued: dict[str, tuple[str, datetime]],
        checkpoint: Callable[[], bytes | None],
        now: datetime,
    ) -> tuple[list[_Item], list[tuple[str, int | None]], list[tuple[_Item, str]]]:
        """The batch with each attestation delivery built from the log and carrying its
        inclusion proof under the latest `checkpoint`; the deliveries that wait for a checkpoint
        covering them (not sent this pass), with the leaf each waits to see covered; and those
        whose attestation the log does not hold, with why. `queued`: each message's subject (the
        attestation id) and when it was queued."""
        attestations = [item for item in batch if item[1] in ATTESTATION_DELIVERIES]
        if not attestations:
            return batch, [], []
        ready = [item for item in batch if item[1] not in ATTESTATION_DELIVERIES]
        proofs = self.carried_proofs
        if proofs is None:
            # Not before the server has opened the log (it does before starting this).
            return ready, [(item[0], None) for item in attestations], []
        deliveries = []
        for message_id, _, _, payload in attestations:
            attestation_id, queued_at = queued[message_id]
            deliveries.append(Delivery(attestation_id, payload, queued_at))
        built = proofs.payloads(deliveries, checkpoint(), now)
        waiting: list[tuple[str, int | None]] = []
        lost: list[tuple[_Item, str]] = []
        for (message_id, kind, destination, payload), one in zip(attestations, built, strict=True):
            if isinstance(one, CertfedError):
                lost.append(((message_id, kind, destination, payload), str(one)))
            elif one.payload is None:
                waiting.append((message_id, one.leaf_index))
            else:
                ready.append((message_id, kind, destination, one.payload))
        return ready, waiting, lost

    def _deliver(self, message_id: str, kind: str, destination: str, payload: bytes) -> _Pending:
        """Start delivering one message; its outcome is read with `_outcome`."""
        held = self._hold(destination)
        if held is not None:
            return _Pending(HeldDeliveryError(held))
        try:
            # The call carries the trace the message was queued in (federation/tracing.py).
            with tracing.resumed(
                message_id, f"outbox.deliver {kind}", {"destination": destination}
            ):
                return _Pending(None, self._send(OutboxKind(kind), destination, payload))
        except Exception as error:
            # Refused here, before any call (the directory says no): never "unreachable";
            # but a peer the certificate check could not connect to is down.
            refused = self._refusal(error)
            if isinstance(refused, UnreachableError) and not isinstance(
                error, PeerUnreachableError
            ):
                refused = RuntimeError(str(refused))
            return _Pending(refused)

    def _outcome(
        self, message_id: str, kind: str, destination: str, payload: bytes, pending: _Pending
    ) -> Exception | None:
        """None, a PermanentDeliveryError, a HeldDeliveryError or a transient error."""
        if pending.call is None:
            return pending.refused
        try:
            try:
                pending.call.result()
            except grpc.RpcError as error:
                if not _is_blip(error):
                    raise
                # A connection being re-established: one more try, after a short pause.
                for attempt in Retrying(
                    retry=retry_if_exception(_is_blip),
                    stop=stop_after_attempt(2),
                    wait=wait_exponential_jitter(initial=0.05, max=0.5),
                    reraise=True,
                ):
                    with attempt:
                        self._send(OutboxKind(kind), destination, payload).result()
        except Exception as error:
            return self._refusal(error)
        log.info("outbox.delivered", message_id=message_id, kind=kind, destination=destination)
        return None

    @staticmethod
    def _refusal(error: Exception) -> Exception:
        if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
            return _classify(error.code(), f"{error.code().name}: {error.details()}")
        if isinstance(error, NodeSuspendedError):
            return HeldDeliveryError(f"{error}; held until it is reinstated")
        if isinstance(error, CertfedError):
            # A local refusal (the directory says the peer is suspended, unknown or expired) or
            # a registry answer: decided by the same status code rules as a peer's answer.
            return _classify(error.status, f"{error.status.name}: {error}")
        return RuntimeError(f"{type(error).__name__}: {error}")

    def _send(self, kind: OutboxKind, destination: str, payload: bytes) -> _Delivery:
        """Start the call that delivers a message; a peer call runs as a gRPC future, so a
        pass has all its deliveries in flight at once without a thread for each."""
        if kind is OutboxKind.PUBLISH_LOCATORS:
            return self._pool.submit(self._publish, payload)
        stub = self._peers.federation(destination)
        future: _Delivery
        if kind is OutboxKind.REQUEST_ASSISTANCE:
            future = stub.RequestAssistance.future(
                federation_pb2.RequestAssistanceRequest.FromString(payload), timeout=self._timeout
            )
        elif kind is OutboxKind.UPDATE_ASSISTANCE_STATUS:
            future = stub.UpdateAssistanceStatus.future(
                federation_pb2.UpdateAssistanceStatusRequest.FromString(payload),
                timeout=self._timeout,
            )
        else:
            future = stub.DeliverAttestation.future(
                federation_pb2.DeliverAttestationRequest.FromString(payload), timeout=self._timeout
            )
        return future

    def _publish(self, payload: bytes) -> None:
        request = registry_pb2.PublishLocatorsRequest.FromString(payload)
        response = self._publish_locators(request)
        self._on_duplicates(list(response.duplicates))


@dataclass(frozen=True)
class _Pending:
    """A delivery under way (`call`), or refused before it started (`refused`)."""

    refused: Exception | None
    call: _Delivery | None = None


def _classify(code: grpc.StatusCode, detail: str) -> Exception:
    if not is_retryable(code):
        return PermanentDeliveryError(detail)
    if code == grpc.StatusCode.UNAVAILABLE:
        return UnreachableError(detail)
    return RuntimeError(detail)


@dataclass
class _Probe:
    """A destination last seen unreachable: when to probe it next, how long after that."""

    due: float
    interval: float
    last_failure: float
    # A probe failed since: the destination was down, so its next success is a return.
    seen_down: bool = False
    # A delivery to it succeeded since: it is back, whatever the probes say.
    delivered: bool = False
    running: Future[bool] | None = None


class _Probes:
    """Destinations that refused a connection, probed until they answer (see module docstring).

    Probes run on their own small pool, never on the dispatcher's thread; each one that ends
    wakes the dispatcher. A destination whose messages stopped failing (delivered elsewhere, or
    dead) for longer than any backoff is forgotten.
    """

    def __init__(self, config: DispatchConfig, reachable: Reachable) -> None:
        self._config = config
        self._reachable = reachable
        self._lock = threading.Lock()
        self._known: dict[str, _Probe] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe")

    def record(self, outcomes: list[tuple[str, Exception | None]]) -> None:
        """A pass's outcomes: an unreachable destination is probed from now on; a delivery that
        succeeded to one being probed is its return."""
        now = time.monotonic()
        with self._lock:
            for destination, error in outcomes:
                probe = self._known.get(destination)
                if isinstance(error, UnreachableError):
                    if probe is None:
                        initial = self._config.probe_initial_s
                        self._known[destination] = _Probe(now + initial, initial, now)
                    else:
                        probe.last_failure = now
                elif error is None and probe is not None:
                    probe.delivered = True

    def start_due(self, wake: Callable[[], None]) -> float:
        """Start the probes that are due; seconds until the next one is."""
        now = time.monotonic()
        forget_after = self._config.max_backoff_s + self._config.jitter_s + 1.0
        next_due = float("inf")
        with self._lock:
            for destination, probe in list(self._known.items()):
                if probe.running is not None:
                    continue
                if now - probe.last_failure > forget_after:
                    del self._known[destination]
                    continue
                if probe.due <= now:
                    probe.running = self._pool.submit(self._reachable, destination)
                    probe.running.add_done_callback(lambda _done: wake())
                else:
                    next_due = min(next_due, probe.due - now)
        return next_due

    def returned(self) -> list[str]:
        """Destinations back since the last call: a delivery to it succeeded, or a probe
        succeeded after one had failed. Each is forgotten until it fails again."""
        now = time.monotonic()
        back: list[str] = []
        with self._lock:
            for destination, probe in list(self._known.items()):
                if probe.delivered:
                    back.append(destination)
                    del self._known[destination]
                    continue
                running = probe.running
                if running is None or not running.done():
                    continue
                probe.running = None
                if running.exception() is None and running.result():
                    # It answers. Back, if a probe had found it down; if none had, its refusals
                    # have another cause and the backoff stands.
                    if probe.seen_down:
                        back.append(destination)
                    del self._known[destination]
                    continue
                probe.seen_down = True
                probe.interval = min(probe.interval * 2, self._config.probe_max_s)
                probe.due = now + probe.interval
        return back

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _is_blip(error: BaseException) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() in BLIP
