"""A member's log subscriptions cannot starve a node, and end when it may hold them no more.

Qingdao serves its log with small stream limits; Lanzhou and the Macau desk (members with
certificates of their own) open many Subscribe streams to it, as a runaway follower or a hostile
member would. Qingdao's desk, health and peer calls must go on answering within their deadlines;
the streams over a member's share or over the node's total are refused; a member suspended at
the registry loses its open streams within the directory refresh interval; and Foshan, whose
streams live two seconds, ends one when its time is up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from certfed.v1 import common_pb2, desk_pb2, federation_pb2
from cli.launcher import LocalFederation, wait_until
from tests.helpers.channels import peer_channel, serving, stranger_desk_channel
from tests.helpers.nodes import FOSHAN as SHORT_LIVED
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import MACAU as PARTNER
from tests.helpers.nodes import QINGDAO_AGENCY as AGENCY

# Per member, and for the whole node; more streams than the synchronous server had threads.
PER_CALLER, TOTAL = 4, 6
STREAMS = 20
ANSWER_WITHIN_S = 3.0
LIFETIME_S = 2.0


class Subscriptions:
    """`count` Subscribe streams opened by one member over one channel, left open."""

    def __init__(self, channel: grpc.Channel, count: int) -> None:
        subscribe = channel.unary_stream(
            "/certfed.v1.FederationService/Subscribe",
            request_serializer=federation_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=federation_pb2.SubscribeResponse.FromString,
        )
        self.calls = [subscribe(federation_pb2.SubscribeRequest()) for _ in range(count)]

    def refused(self) -> list[str]:
        """The details of each stream that ended RESOURCE_EXHAUSTED."""
        return [
            call.details() or ""
            for call in self.calls
            if not call.is_active() and call.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        ]

    def open(self) -> int:
        return sum(1 for call in self.calls if call.is_active())

    def close(self) -> None:
        for call in self.calls:
            call.cancel()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    workdir: Path = tmp_path_factory.mktemp("streams")
    with LocalFederation(workdir) as federation:
        federation.start_registry()
        federation.add_node(
            AGENCY,
            settings={"limits": {"max_streams": TOTAL, "max_streams_per_caller": PER_CALLER}},
        )
        federation.add_node(SHORT_LIVED, settings={"limits": {"max_stream_s": LIFETIME_S}})
        federation.add_node(PAYING)
        federation.add_node(PARTNER)
        yield federation


def _answers_throughout(local: LocalFederation, target: str, peer: grpc.Channel) -> None:
    """Health, a desk call and a peer call are each answered within ANSWER_WITHIN_S."""
    probe = stranger_desk_channel(local, target)
    try:
        assert serving(probe, ANSWER_WITHIN_S)
    finally:
        probe.close()
    with local.desk(target) as desk:
        assert desk.stub.WhoAmI(desk_pb2.WhoAmIRequest(), timeout=ANSWER_WITHIN_S).roles
    answer = peer.unary_unary(
        "/certfed.v1.FederationService/GetCheckpoint",
        request_serializer=federation_pb2.GetCheckpointRequest.SerializeToString,
        response_deserializer=federation_pb2.GetCheckpointResponse.FromString,
    )(federation_pb2.GetCheckpointRequest(), timeout=ANSWER_WITHIN_S)
    assert answer.checkpoint.note


def test_many_streams_from_members_are_capped_and_the_desk_still_answers(
    local: LocalFederation,
) -> None:
    flooder = peer_channel(local, PAYING.node_id, AGENCY.node_id)
    other = peer_channel(local, PARTNER.node_id, AGENCY.node_id)
    floods: list[Subscriptions] = []
    try:
        floods.append(Subscriptions(flooder, STREAMS))
        time.sleep(1.0)  # the flood reaches the server before the probes do
        _answers_throughout(local, AGENCY.node_id, other)
        wait_until(
            lambda: len(floods[0].refused()) == STREAMS - PER_CALLER,
            10,
            "the streams over one member's share to be refused",
        )
        assert "node:lanzhou already has 4 open streams here" in floods[0].refused()[0]
        assert floods[0].open() == PER_CALLER
        # The other member gets what is left of the node's total, not its own full share.
        floods.append(Subscriptions(other, PER_CALLER))
        wait_until(
            lambda: len(floods[1].refused()) == PER_CALLER - (TOTAL - PER_CALLER),
            10,
            "the streams over the node's total to be refused",
        )
        assert f"its maximum of {TOTAL} streams" in floods[1].refused()[0]
        assert floods[1].open() == TOTAL - PER_CALLER
        _answers_throughout(local, AGENCY.node_id, other)
    finally:
        for flood in floods:
            flood.close()
        flooder.close()
        other.close()
    # Streams the callers closed give their places back.
    again = peer_channel(local, PAYING.node_id, AGENCY.node_id)
    try:
        wait_until(lambda: _opens_all(again, PER_CALLER), 30, "closed streams to free their places")
    finally:
        again.close()


def _opens_all(channel: grpc.Channel, count: int) -> bool:
    """Whether `count` streams open and stay open for a second. A stream the caller closes
    keeps its place until the server's next look at it (within a subscription poll), so after
    a refusal this probe waits that long before the next: probing again at once would find the
    places of its own streams still taken, again and again on a loaded machine."""
    streams = Subscriptions(channel, count)
    try:
        try:
            wait_until(lambda: streams.refused() or None, 1.0, "a refusal")
        except TimeoutError:
            return streams.open() == count
    finally:
        streams.close()
    time.sleep(1.0)
    return False


def test_a_suspended_members_open_stream_ends_within_the_refresh_interval(
    local: LocalFederation,
) -> None:
    channel = peer_channel(local, PARTNER.node_id, AGENCY.node_id)
    streams = Subscriptions(channel, 1)
    stream = streams.calls[0]
    try:
        next(iter(stream))  # the first checkpoint: the stream is open and served
        with local.admin() as admin:
            admin.set_status(PARTNER.node_id, common_pb2.NODE_STATUS_SUSPENDED, "under review")
        # The node learns of it at its next refresh (every second here), its stream re-check
        # (every second) ends the stream: well within five seconds.
        wait_until(lambda: not stream.is_active(), 5, "the suspended member's stream to end")
        assert stream.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "suspended" in (stream.details() or "")
    finally:
        streams.close()
        channel.close()
        with local.admin() as admin:
            admin.set_status(PARTNER.node_id, common_pb2.NODE_STATUS_ACTIVE, "review closed")


def test_a_stream_ends_when_its_lifetime_is_up(local: LocalFederation) -> None:
    channel = peer_channel(local, PAYING.node_id, SHORT_LIVED.node_id)
    streams = Subscriptions(channel, 1)
    stream = streams.calls[0]
    try:
        next(iter(stream))
        wait_until(
            lambda: not stream.is_active(),
            LIFETIME_S + 5,
            "the stream to reach its lifetime",
        )
        # Ended by the server as a finished stream: a follower subscribes again from there.
        assert stream.code() is grpc.StatusCode.OK
    finally:
        streams.close()
        channel.close()
