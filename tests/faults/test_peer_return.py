"""A restart costs no more than the restart: messages go within seconds of a process's return.

Two causes of delay are covered, each on real processes: a node killed while it held claimed
messages (their leases would otherwise run for three call timeouts), and a peer that was down
while messages for it backed off (they would otherwise sit out their backoff step).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from sqlmodel import Session

from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation, wait_until
from federation.database import reader
from federation.timestamps import to_timestamp
from federation_node.store import db, outbox
from federation_node.store.models import DeliveryState, OutboxMessage
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import QINGDAO_AGENCY as AGENCY

# How soon after its return a message must be out: far below the lease (3 x 10 s) and the
# backoff (20 s) these tests set up, with room for a loaded machine.
WITHIN_S = 5.0


class BlackHole:
    """A TCP listener on a port that accepts connections and never answers: a peer's calls
    hang until their deadline, so the caller holds its claim on the message meanwhile."""

    def __init__(self, port: int) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self._socket.listen(16)
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        # shutdown wakes the accept() under way, which would otherwise keep the port bound.
        self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        for connection in self._held:
            connection.close()
        self._thread.join(timeout=5)


def _pending(local: LocalFederation, node_id: str) -> list[OutboxMessage]:
    engine = db.create_engine_for(local.nodes[node_id].config.effective_database_url)
    try:
        with Session(reader(engine)) as session:
            return outbox.page(session, DeliveryState.PENDING, 100, "")[0]
    finally:
        engine.dispose()


def _request(local: LocalFederation, serial: int) -> str:
    """A beneficiary of the paying office living in Qingdao, and a certification request for
    them (queued for the agency); the request id."""
    person = resident(resident_id("620102", date(1941, 2, 3), serial), "Peer Return")
    with local.desk(PAYING.node_id) as desk:
        beneficiary = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(identity=person, residence_region="370202")
        ).beneficiary
        return str(
            desk.stub.RequestCertification(
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=beneficiary.beneficiary_id,
                    deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
                )
            ).request.request_id
        )


def _arrived(local: LocalFederation, request_id: str) -> bool:
    with local.desk(AGENCY.node_id) as desk:
        try:
            desk.stub.GetAssistanceRequest(
                desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
    return True


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[LocalFederation]:
    # The production backoff bound, not the launcher's one second: the backoff is under test.
    local = LocalFederation(tmp_path, max_backoff_s=30.0)
    with local:
        local.start_registry()
        local.add_node(AGENCY)
        # A first retry 20 s after a failure: a message that waits for it is easy to tell.
        local.add_node(PAYING, settings={"dispatch": {"initial_backoff_s": 20.0}})
        yield local


def test_messages_a_killed_node_had_claimed_go_within_seconds_of_its_restart(
    federation: LocalFederation,
) -> None:
    agency = federation.nodes[AGENCY.node_id]
    federation.stop_node(AGENCY.node_id)
    hole = BlackHole(agency.federation_port)
    try:
        request_id = _request(federation, 1)
        # The paying office's call hangs in the black hole, its lease held by this replica.
        wait_until(
            lambda: [
                m
                for m in _pending(federation, PAYING.node_id)
                if m.leased_by and m.subject_id == request_id
            ],
            15.0,
            "the paying office to claim the request",
        )
        federation.stop_node(PAYING.node_id, kill=True)
    finally:
        hole.close()
    federation.start_node(AGENCY.node_id)
    federation.start_node(PAYING.node_id)
    restarted = time.monotonic()
    wait_until(lambda: _arrived(federation, request_id), WITHIN_S, "the request at the agency")
    assert time.monotonic() - restarted < WITHIN_S


def test_a_peer_back_ends_the_backoff_of_messages_waiting_for_it(
    federation: LocalFederation,
) -> None:
    federation.stop_node(AGENCY.node_id)
    request_id = _request(federation, 2)
    failed = wait_until(
        lambda: [m for m in _pending(federation, PAYING.node_id) if m.attempts >= 1],
        15.0,
        "a failed delivery to the stopped agency",
    )
    assert failed[0].next_attempt_at > datetime.now(UTC) + timedelta(seconds=10)
    federation.start_node(AGENCY.node_id)
    back = time.monotonic()
    wait_until(lambda: _arrived(federation, request_id), WITHIN_S, "the request at the agency")
    assert time.monotonic() - back < WITHIN_S
    # The probes of the stopped agency spent none of the message's retry budget.
    with federation.desk(PAYING.node_id, "admin") as desk:
        listed = desk.stub.ListOutbox(
            desk_pb2.ListOutboxRequest(state=desk_pb2.DELIVERY_STATE_DELIVERED)
        ).messages
    assert [m.attempts for m in listed if m.subject_id == request_id] == [1]
