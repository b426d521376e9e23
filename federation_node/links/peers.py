"""Channels to other nodes, found through the directory and pinned to their certificate name.

One channel per peer, reused across calls and replaced when the directory moves the peer to
another endpoint or this node renews its certificate. Every channel verifies that the server
presents the certificate issued to the node id the directory lists, so a message for Qingdao can
only ever reach Qingdao.

`reachable` is the dispatcher's probe of a destination it could not connect to: a gRPC health
check on the same channel its deliveries use (the peer's here, the registry client's for the
registry), without `wait_for_ready`. While the channel waits to reconnect it fails at once,
without network traffic, so probing often is cheap; the channel's own reconnect backoff (at
most a second, `federation.transport`) bounds how often a peer that is still down is dialled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certfed.v1 import federation_pb2_grpc
from federation.errors import CertfedError
from federation.limits import Limits
from federation.transport import TlsMaterial, node_tls_name, secure_channel
from federation_node.links.directory_client import DirectoryClient
from federation_node.store.models import REGISTRY_DESTINATION

# A probe answers within this long, or counts as "not reachable yet".
PROBE_TIMEOUT_S = 1.0


class PeerChannels:
    def __init__(
        self,
        directory: DirectoryClient,
        tls: TlsMaterial,
        limits: Limits,
        *,
        registry_serving: Callable[[], bool] | None = None,
    ) -> None:
        self._directory = directory
        self._credentials = tls.channel_credentials()
        self._limits = limits
        self._registry_serving = registry_serving
        self._lock = threading.Lock()
        # node id -> (endpoint, channel, stub): a stub is made once per channel, not per call.
        self._channels: dict[
            str, tuple[str, grpc.Channel, federation_pb2_grpc.FederationServiceStub]
        ] = {}

    def federation(self, node_id: str) -> federation_pb2_grpc.FederationServiceStub:
        """A stub for the active peer `node_id`; raises if the directory says it is not active."""
        return self._peer(node_id)[2]

    def reachable(self, destination: str) -> bool:
        """Whether a peer (node id) or the registry (REGISTRY_DESTINATION) answers a health
        check now as SERVING, within PROBE_TIMEOUT_S."""
        if destination == REGISTRY_DESTINATION:
            return self._registry_serving is not None and self._registry_serving()
        try:
            channel = self._peer(destination)[1]
        except CertfedError:
            return False
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_S
            )
        except grpc.RpcError:
            return False
        serving: bool = answer.status == health_pb2.HealthCheckResponse.SERVING
        return serving

    def _peer(
        self, node_id: str
    ) -> tuple[str, grpc.Channel, federation_pb2_grpc.FederationServiceStub]:
        endpoint = self._directory.current().active_node(node_id).endpoint
        with self._lock:
            known = self._channels.get(node_id)
            if known is None or known[0] != endpoint:
                if known is not None:
                    known[1].close()
                channel = secure_channel(
                    endpoint,
                    node_tls_name(node_id),
                    self._credentials,
                    max_message_bytes=self._limits.max_message_bytes,
                )
                known = (endpoint, channel, federation_pb2_grpc.FederationServiceStub(channel))
                self._channels[node_id] = known
        return known

    def replace_credentials(self, tls: TlsMaterial) -> None:
        """Dial with a renewed certificate from now on. Calls under way finish on their old
        channels, which are closed once the longest call could have ended."""
        with self._lock:
            self._credentials = tls.channel_credentials()
            retired = [channel for _, channel, _ in self._channels.values()]
            self._channels.clear()
        closer = threading.Timer(2 * self._limits.call_timeout_s, _close_all, args=(retired,))
        closer.daemon = True
        closer.start()

    def close(self) -> None:
        with self._lock:
            for _, channel, _ in self._channels.values():
                channel.close()
            self._channels.clear()


def _close_all(channels: Iterable[grpc.Channel]) -> None:
    for channel in channels:
        channel.close()
