"""A stranger's half-open calls hold nothing: health, desk and peer calls are answered throughout.

The attacker has no credentials at all: it opens a TLS connection to a node's desk port (and to
the registry's enrolment port), starts many calls that send their headers and never a request
message, and keeps them open. Each server must go on answering health checks, operators and
peers within their deadlines, end the half-open calls itself, and turn away calls with no or a
wrong token cheaply once their address has spent its allowance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from certfed.v1 import desk_pb2, federation_pb2, registry_pb2
from cli.launcher import LocalFederation, wait_until
from federation.limits import Limits
from federation.transport import REGISTRY_TLS_NAME, anonymous_channel_credentials
from tests.helpers.channels import (
    member_credentials,
    peer_channel,
    serving,
    stranger_desk_channel,
    tls_channel,
)
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import QINGDAO_AGENCY as AGENCY

# More than the synchronous server's 16 worker threads.
HALF_OPEN_CALLS = 24
# A small allowance of failed sign-ins, so the test of it is quick.
FAILED_AUTH = {"failed_auth_burst": 10, "failed_auth_per_s": 1.0}
# How long a legitimate call may take while the attack runs.
ANSWER_WITHIN_S = 3.0


def _raw(data: bytes) -> bytes:
    return data


class HalfOpenCalls:
    """`count` calls to `method` over one channel, each sending headers and never a message."""

    def __init__(self, channel: grpc.Channel, method: str, count: int) -> None:
        self._release = threading.Event()
        call = channel.stream_stream(method, request_serializer=_raw, response_deserializer=_raw)
        self.calls = [call(self._silence()) for _ in range(count)]

    def _silence(self) -> Iterator[bytes]:
        self._release.wait()
        return
        yield b""  # a generator that never yields before it is released

    def ended(self) -> list[grpc.StatusCode]:
        """The status of each call that has ended (by the server's doing: nothing was sent)."""
        return [call.code() for call in self.calls if not call.is_active()]

    def close(self) -> None:
        for call in self.calls:
            call.cancel()
        self._release.set()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    workdir: Path = tmp_path_factory.mktemp("half-open")
    with LocalFederation(workdir) as federation:
        federation.start_registry()
        federation.add_node(AGENCY, settings={"limits": FAILED_AUTH})
        federation.add_node(PAYING)
        yield federation


def test_half_open_calls_from_a_stranger_do_not_stall_a_node(local: LocalFederation) -> None:
    stranger = stranger_desk_channel(local, AGENCY.node_id)
    probe = stranger_desk_channel(local, AGENCY.node_id)
    peer = peer_channel(local, PAYING.node_id, AGENCY.node_id)
    attack = HalfOpenCalls(stranger, "/certfed.v1.DeskService/WhoAmI", HALF_OPEN_CALLS)
    try:
        time.sleep(0.5)  # the attack's headers reach the server before the probes
        started = time.monotonic()
        assert serving(probe, ANSWER_WITHIN_S)
        with local.desk(AGENCY.node_id) as desk:
            assert desk.stub.WhoAmI(desk_pb2.WhoAmIRequest(), timeout=ANSWER_WITHIN_S).roles
        checkpoint = peer.unary_unary(
            "/certfed.v1.FederationService/GetCheckpoint",
            request_serializer=federation_pb2.GetCheckpointRequest.SerializeToString,
            response_deserializer=federation_pb2.GetCheckpointResponse.FromString,
        )(federation_pb2.GetCheckpointRequest(), timeout=ANSWER_WITHIN_S)
        assert checkpoint.checkpoint.note
        assert time.monotonic() - started < 3 * ANSWER_WITHIN_S
        # The server ends every half-open call itself (the caller would never end them).
        wait_until(
            lambda: len(attack.ended()) == HALF_OPEN_CALLS,
            Limits().request_arrival_timeout_s + 5,
            "the server to end every half-open call",
        )
        ended = attack.ended()
        assert grpc.StatusCode.OK not in ended
        assert grpc.StatusCode.DEADLINE_EXCEEDED in ended
    finally:
        attack.close()
        for channel in (stranger, peer, probe):
            channel.close()


def test_half_open_calls_from_a_stranger_do_not_stall_the_registry(
    local: LocalFederation,
) -> None:
    ca = local.registry_paths.trust_ca_certificate.read_bytes()
    stranger = tls_channel(
        local.enrol_endpoint, REGISTRY_TLS_NAME, anonymous_channel_credentials(ca)
    )
    probe = tls_channel(local.enrol_endpoint, REGISTRY_TLS_NAME, anonymous_channel_credentials(ca))
    member = tls_channel(
        local.registry_endpoint, REGISTRY_TLS_NAME, member_credentials(local, PAYING.node_id)
    )
    attack = HalfOpenCalls(stranger, "/certfed.v1.RegistryService/GetDirectory", HALF_OPEN_CALLS)
    try:
        time.sleep(0.5)
        assert serving(probe, ANSWER_WITHIN_S)
        directory = member.unary_unary(
            "/certfed.v1.RegistryService/GetDirectory",
            request_serializer=registry_pb2.GetDirectoryRequest.SerializeToString,
            response_deserializer=registry_pb2.GetDirectoryResponse.FromString,
        )(registry_pb2.GetDirectoryRequest(), timeout=ANSWER_WITHIN_S)
        assert directory.HasField("directory")
    finally:
        attack.close()
        for channel in (stranger, probe, member):
            channel.close()


def test_calls_with_a_wrong_token_are_refused_before_they_are_checked(
    local: LocalFederation,
) -> None:
    """Past its address's allowance of failed sign-ins, a wrong token is refused unchecked."""
    agency = local.nodes[AGENCY.node_id]
    burst = agency.config.limits.failed_auth_burst
    channel = stranger_desk_channel(local, AGENCY.node_id)
    who_am_i = channel.unary_unary(
        "/certfed.v1.DeskService/WhoAmI",
        request_serializer=desk_pb2.WhoAmIRequest.SerializeToString,
        response_deserializer=desk_pb2.WhoAmIResponse.FromString,
    )
    codes: list[tuple[grpc.StatusCode, str]] = []
    try:
        for attempt in range(3 * burst):
            # Half with a wrong token, half with none: both are failures to sign in.
            metadata = (("authorization", "Bearer not-a-token"),) if attempt % 2 else ()
            try:
                who_am_i(desk_pb2.WhoAmIRequest(), metadata=metadata, timeout=5)
            except grpc.RpcError as error:
                codes.append((error.code(), error.details() or ""))
    finally:
        channel.close()
    unauthenticated = [code for code, _ in codes if code is grpc.StatusCode.UNAUTHENTICATED]
    exhausted = [details for code, details in codes if code is grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(codes) == 3 * burst
    # The burst is looked at (a refill of about one a second may add a few), the rest is not.
    assert burst <= len(unauthenticated) <= burst + 5
    assert len(exhausted) == 3 * burst - len(unauthenticated)
    assert "too many calls that failed to sign in" in exhausted[0]
