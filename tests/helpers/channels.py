"""Channels to a running federation's processes, as a member node or a stranger would open them."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.launcher import LocalFederation
from federation.limits import Limits
from federation.transport import (
    TlsMaterial,
    anonymous_channel_credentials,
    node_tls_name,
    secure_channel,
)


def tls_channel(endpoint: str, tls_name: str, credentials: grpc.ChannelCredentials) -> grpc.Channel:
    return secure_channel(
        endpoint, tls_name, credentials, max_message_bytes=Limits().max_message_bytes
    )


def member_credentials(local: LocalFederation, node_id: str) -> grpc.ChannelCredentials:
    """The client credentials of member `node_id` (its own TLS key and certificate)."""
    config = local.nodes[node_id].config
    return TlsMaterial.load(
        config.data_dir / "keys" / "tls.pem",
        config.data_dir / "keys" / "tls.key",
        config.ca_certificate,
    ).channel_credentials()


def peer_channel(local: LocalFederation, caller: str, target: str) -> grpc.Channel:
    """A channel to `target`'s federation port, as member `caller`."""
    return tls_channel(
        f"127.0.0.1:{local.nodes[target].federation_port}",
        node_tls_name(target),
        member_credentials(local, caller),
    )


def stranger_desk_channel(local: LocalFederation, target: str) -> grpc.Channel:
    """A channel to `target`'s desk port with no credentials at all."""
    handle = local.nodes[target]
    return tls_channel(
        f"127.0.0.1:{handle.desk_port}",
        node_tls_name(target),
        anonymous_channel_credentials(handle.config.ca_certificate.read_bytes()),
    )


def serving(channel: grpc.Channel, timeout_s: float) -> bool:
    """Whether the server behind `channel` answers SERVING within `timeout_s`."""
    answer = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=timeout_s
    )
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
