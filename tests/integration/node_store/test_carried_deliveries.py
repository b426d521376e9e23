"""Attestation deliveries built from the node's log when they go, on SQLite and PostgreSQL: the
outbox keeps no copy of the attestation, so what the paying office receives is the envelope as
logged, with its inclusion proof when a checkpoint covers it."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from certfed.v1 import federation_pb2
from federation.envelopes import envelope_to_proto
from federation.errors import UnknownAttestationError
from federation.limits import Limits
from federation_node.config import DispatchConfig
from federation_node.links.carried_proofs import MAX_WAIT_S, CarriedProofs, Delivery
from federation_node.links.dispatcher import PROOF_RECHECK_S, Dispatcher
from federation_node.store import log_store, outbox
from federation_node.store.db import session_scope
from federation_node.store.log_store import NewEntry
from federation_node.store.models import DeliveryState, OutboxKind
from federation_node.tlog.transparency import TransparencyLog
from signing import dsse, merkle
from signing.keys import SigningKey
from signing.note import NoteSigner
from tests.helpers.statements import counted_statements

ISSUER = "cn-sd-qingdao"


def _unused_witness(note: bytes, size: int, proof: list[bytes]) -> bytes:
    raise AssertionError("building a delivery never asks the witness")


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def proofs(engine: Engine, key: SigningKey) -> CarriedProofs:
    witness = NoteSigner("witness.example", SigningKey.generate())
    log = TransparencyLog(engine, ISSUER, key, _unused_witness, witness.verifier, Limits())
    return CarriedProofs(log)


def _log(engine: Engine, key: SigningKey, count: int) -> list[tuple[str, bytes]]:
    """`count` signed envelopes appended to the log: (attestation id, envelope JSON)."""
    logged = [
        (f"att-{number:04d}", dsse.sign(b"attestation %d" % number, "t", key).to_json())
        for number in range(count)
    ]
    with session_scope(engine) as session:
        log_store.append_many(
            session, (NewEntry(name, envelope, "370202") for name, envelope in logged)
        )
    return logged


def _checkpoint(engine: Engine, size: int) -> tuple[bytes, bytes]:
    """A checkpoint note of the log at `size` (its body: the signatures are not read here)."""
    with session_scope(engine) as session:
        root = log_store.root_at(session, size)
    return b"%s\n%d\n%s\n" % (ISSUER.encode(), size, root.hex().encode()), root


def _payload(
    proofs: CarriedProofs,
    attestation_id: str,
    queued: bytes,
    checkpoint: bytes | None,
    queued_at: datetime,
    now: datetime,
) -> bytes | None:
    """One delivery built alone: its payload, None while it waits."""
    [built] = proofs.payloads([Delivery(attestation_id, queued, queued_at)], checkpoint, now)
    if isinstance(built, Exception):
        raise built
    return built.payload


def _request(payload: bytes | None) -> federation_pb2.DeliverAttestationRequest:
    assert payload is not None
    return federation_pb2.DeliverAttestationRequest.FromString(payload)


def test_a_delivery_carries_the_envelope_as_logged_and_its_proof(
    engine: Engine, key: SigningKey, proofs: CarriedProofs, now: datetime
) -> None:
    logged = _log(engine, key, 5)
    checkpoint, root = _checkpoint(engine, 5)
    name, envelope_json = logged[3]
    request = _request(_payload(proofs, name, b"", checkpoint, now, now))
    assert request.envelope == envelope_to_proto(dsse.Envelope.from_json(envelope_json))
    inclusion = request.inclusion
    assert (inclusion.leaf_index, inclusion.tree_size) == (3, 5)
    assert inclusion.checkpoint.note == checkpoint
    merkle.verify_inclusion(merkle.leaf_hash(envelope_json), 3, 5, list(inclusion.hashes), root)


def test_a_delivery_waits_for_a_checkpoint_then_goes_without_proof(
    engine: Engine, key: SigningKey, proofs: CarriedProofs, now: datetime
) -> None:
    logged = _log(engine, key, 3)
    checkpoint, _ = _checkpoint(engine, 2)
    name, envelope_json = logged[2]
    # Not covered by the latest checkpoint (nor by none at all): it waits, for a while.
    assert _payload(proofs, name, b"", checkpoint, now, now) is None
    assert _payload(proofs, name, b"", None, now, now) is None
    late = now + timedelta(seconds=MAX_WAIT_S)
    request = _request(_payload(proofs, name, b"", checkpoint, now, late))
    assert request.envelope == envelope_to_proto(dsse.Envelope.from_json(envelope_json))
    assert not request.HasField("inclusion")


def test_a_delivery_queued_with_its_request_goes_as_queued(
    engine: Engine, key: SigningKey, proofs: CarriedProofs, now: datetime
) -> None:
    # Queued by an earlier version, which kept the request in the outbox.
    logged = _log(engine, key, 2)
    checkpoint, _ = _checkpoint(engine, 2)
    name, envelope_json = logged[0]
    queued = federation_pb2.DeliverAttestationRequest(
        envelope=envelope_to_proto(dsse.Envelope.from_json(envelope_json))
    ).SerializeToString()
    request = _request(_payload(proofs, name, queued, checkpoint, now, now))
    assert request.envelope == federation_pb2.DeliverAttestationRequest.FromString(queued).envelope
    assert (request.inclusion.leaf_index, request.inclusion.tree_size) == (0, 2)


def test_an_attestation_the_log_does_not_hold_is_refused(
    engine: Engine, key: SigningKey, proofs: CarriedProofs, now: datetime
) -> None:
    _log(engine, key, 1)
    checkpoint, _ = _checkpoint(engine, 1)
    with pytest.raises(UnknownAttestationError, match="not in this node's log"):
        _payload(proofs, "att-missing", b"", checkpoint, now, now)


class _NoPeers:
    """The dispatcher's peers, for passes that must not call any."""

    def federation(self, destination: str) -> object:
        raise AssertionError(f"no call to {destination} was expected")


def _dispatcher(
    engine: Engine, proofs: CarriedProofs, now: datetime, peers: object | None = None
) -> Dispatcher:
    dispatcher = Dispatcher(
        engine,
        peers or _NoPeers(),  # type: ignore[arg-type]
        lambda request: None,  # type: ignore[arg-type, return-value]
        lambda duplicates: None,
        DispatchConfig(),
        5.0,
        clock=lambda: now,
    )
    dispatcher.carried_proofs = proofs
    return dispatcher


def _queue(engine: Engine, attestation_id: str, now: datetime) -> str:
    with session_scope(engine) as session:
        return outbox.enqueue(
            session,
            kind=OutboxKind.DELIVER_LOGGED_ATTESTATION,
            destination="lanzhou-chengguan",
            subject_id=attestation_id,
            payload=b"",
            now=now,
        ).message_id


def test_the_dispatcher_holds_a_delivery_for_its_checkpoint_and_buries_one_the_log_lacks(
    engine: Engine, key: SigningKey, proofs: CarriedProofs, now: datetime
) -> None:
    ((name, _),) = _log(engine, key, 1)
    waiting = _queue(engine, name, now)
    lost = _queue(engine, "att-missing", now)
    assert _dispatcher(engine, proofs, now).run_once() == 0
    with session_scope(engine) as session:
        held = outbox.get(session, waiting)
        dead = outbox.get(session, lost)
        assert (held.state, held.attempts) == (DeliveryState.PENDING, 0)
        assert held.next_attempt_at > now
        assert dead.state is DeliveryState.DEAD
        assert "not in this node's log" in dead.last_error


def test_deliveries_built_together_read_the_log_in_four_queries_and_each_proof_verifies(
    engine: Engine, key: SigningKey, proofs: CarriedProofs, now: datetime
) -> None:
    logged = _log(engine, key, 700)
    checkpoint, root = _checkpoint(engine, 690)
    chosen = [logged[index] for index in (0, 255, 256, 511, 600, 689, 695)]
    with counted_statements(engine) as statements:
        built = proofs.payloads([Delivery(name, b"", now) for name, _ in chosen], checkpoint, now)
    assert len([one for one in statements if one.lstrip().upper().startswith("SELECT")]) == 4
    for (name, envelope_json), one in zip(chosen, built, strict=True):
        assert not isinstance(one, Exception)
        index = int(name.removeprefix("att-"))
        assert one.leaf_index == index
        if index >= 690:
            # Beyond the checkpoint: it waits for one that covers it.
            assert one.payload is None
            continue
        inclusion = _request(one.payload).inclusion
        assert (inclusion.leaf_index, inclusion.tree_size) == (index, 690)
        merkle.verify_inclusion(
            merkle.leaf_hash(envelope_json), index, 690, list(inclusion.hashes), root
        )


class _RecordingPeers:
    """The dispatcher's peers: every attestation delivery is accepted and kept."""

    def __init__(self) -> None:
        self.delivered: list[federation_pb2.DeliverAttestationRequest] = []

    def federation(self, destination: str) -> object:
        return self

    @property
    def DeliverAttestation(self) -> object:  # noqa: N802 - the stub's method name
        return self

    def future(
        self, request: federation_pb2.DeliverAttestationRequest, timeout: float
    ) -> Future[None]:
        self.delivered.append(request)
        done: Future[None] = Future()
        done.set_result(None)
        return done


def test_a_held_delivery_goes_with_its_proof_in_the_pass_after_a_checkpoint_covers_it(
    engine: Engine, key: SigningKey, proofs: CarriedProofs, now: datetime
) -> None:
    ((name, envelope_json),) = _log(engine, key, 1)
    waiting = _queue(engine, name, now)
    peers = _RecordingPeers()
    dispatcher = _dispatcher(engine, proofs, now, peers)
    assert dispatcher.run_once() == 0
    with session_scope(engine) as session:
        held = outbox.get(session, waiting)
        assert held.next_attempt_at == now + timedelta(seconds=PROOF_RECHECK_S)
    # Another pass at the same moment leaves it held: no checkpoint covers it yet.
    assert dispatcher.run_once() == 0
    checkpoint, root = _checkpoint(engine, 1)
    with session_scope(engine) as session:
        log_store.store_checkpoint(session, 1, root, checkpoint, now)
    # The pass the publication wakes, still at the same moment: it goes, with its proof.
    assert dispatcher.run_once() == 1
    [request] = peers.delivered
    assert request.envelope == envelope_to_proto(dsse.Envelope.from_json(envelope_json))
    assert (request.inclusion.leaf_index, request.inclusion.tree_size) == (0, 1)
    assert request.inclusion.checkpoint.note == checkpoint
    with session_scope(engine) as session:
        assert outbox.get(session, waiting).state is DeliveryState.DELIVERED
