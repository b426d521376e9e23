"""Channels to other nodes, found through the directory and pinned to their certificate name.

One channel per peer, reused across calls and replaced when the directory moves the peer to
another endpoint or this node renews its certificate. Every channel verifies that the server
presents the certificate issued to the node id the directory lists, so a message for Qingdao can
only ever reach Qingdao, and one whose fingerprint the directory lists for it (checked before a
channel is used and whenever it connects again): a superseded certificate whose key was stolen is
refused (`federation.transport.check_pinned_certificate`).

`reachable` is the dispatcher's probe of a destination it could not connect to: a gRPC health
check on the same channel its deliveries use (the peer's here, the registry client's for the
registry), without `wait_for_ready`. While the channel waits to reconnect it fails at once,
without network traffic, so probing often is cheap; the channel's own reconnect backoff (at
most a second, `federation.transport`) bounds how often a peer that is still down is dialled.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certfed.v1 import federation_pb2_grpc
from federation.errors import CertfedError
from federation.limits import Limits
from federation.transport import (
    PeerCertificateMismatchError,
    TlsMaterial,
    check_pinned_certificate,
    node_tls_name,
    secure_channel,
)
from federation_node.links.directory_client import DirectoryClient
from federation_node.store.models import REGISTRY_DESTINATION

# A probe answers within this long, or counts as "not reachable yet".
PROBE_TIMEOUT_S = 1.0
# The certificate check's own handshake: a peer that does not complete one by then is down.
PIN_CHECK_TIMEOUT_S = 5.0

log = structlog.get_logger("certfed.peers")

# endpoint, the certificate fingerprints pinned for it, the channel and its stub.
_Peer = tuple[str, frozenset[str], grpc.Channel, federation_pb2_grpc.FederationServiceStub]


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
        self._tls = tls
        self._limits = limits
        self._registry_serving = registry_serving
        self._lock = threading.Lock()
        # node id -> its peer: a stub is made once per channel, not per call.
        self._channels: dict[str, _Peer] = {}

    def federation(self, node_id: str) -> federation_pb2_grpc.FederationServiceStub:
        """A stub for the active peer `node_id`; raises if the directory says it is not active."""
        return self._peer(node_id)[3]

    def reachable(self, destination: str) -> bool:
        """Whether a peer (node id) or the registry (REGISTRY_DESTINATION) answers a health
        check now as SERVING, within PROBE_TIMEOUT_S."""
        if destination == REGISTRY_DESTINATION:
            return self._registry_serving is not None and self._registry_serving()
        try:
            channel = self._peer(destination)[2]
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

    def _peer(self, node_id: str) -> _Peer:
        node = self._directory.current().active_node(node_id)
        endpoint = node.endpoint
        pinned = frozenset(node.tls_certificate_sha256)
        with self._lock:
            known = self._channels.get(node_id)
        if known is not None and known[:2] == (endpoint, pinned):
            return known
        self._check_pin(node_id, endpoint, pinned)
        with self._lock:
            known = self._channels.get(node_id)
            if known is None or known[:2] != (endpoint, pinned):
                if known is not None:
                    known[2].close()
                channel = secure_channel(
                    endpoint,
                    node_tls_name(node_id),
                    self._credentials,
                    max_message_bytes=self._limits.max_message_bytes,
                )
                known = (
                    endpoint,
                    pinned,
                    channel,
                    federation_pb2_grpc.FederationServiceStub(channel),
                )
                self._channels[node_id] = known
                channel.subscribe(functools.partial(self._on_connectivity, node_id, known))
        return known

    def _check_pin(self, node_id: str, endpoint: str, pinned: frozenset[str]) -> None:
        check_pinned_certificate(
            endpoint,
            node_tls_name(node_id),
            self._tls.ca_certificate_pem,
            pinned,
            timeout_s=min(self._limits.call_timeout_s, PIN_CHECK_TIMEOUT_S),
            client=self._tls,
        )

    def _on_connectivity(self, node_id: str, peer: _Peer, state: grpc.ChannelConnectivity) -> None:
        """A channel that connected (again) may have reached another server: check it anew."""
        if state is grpc.ChannelConnectivity.READY:
            threading.Thread(
                target=self._recheck, args=(node_id, peer), name="peer-pin-check", daemon=True
            ).start()

    def _recheck(self, node_id: str, peer: _Peer) -> None:
        try:
            self._check_pin(node_id, peer[0], peer[1])
        except PeerCertificateMismatchError as error:
            log.error("peers.certificate_not_pinned", node_id=node_id, error=str(error))
            with self._lock:
                if self._channels.get(node_id) is peer:
                    del self._channels[node_id]
            peer[2].close()
        except CertfedError:
            return

    def replace_credentials(self, tls: TlsMaterial) -> None:
        """Dial with a renewed certificate from now on. Calls under way finish on their old
        channels, which are closed once the longest call could have ended."""
        with self._lock:
            self._credentials = tls.channel_credentials()
            self._tls = tls
            retired = [channel for _, _, channel, _ in self._channels.values()]
            self._channels.clear()
        closer = threading.Timer(2 * self._limits.call_timeout_s, _close_all, args=(retired,))
        closer.daemon = True
        closer.start()

    def close(self) -> None:
        with self._lock:
            for _, _, channel, _ in self._channels.values():
                channel.close()
            self._channels.clear()


def _close_all(channels: Iterable[grpc.Channel]) -> None:
    for channel in channels:
        channel.close()
