"""A plaintext port that answers only grpc.health.v1, for probes that speak no TLS.

Kubernetes' native gRPC probes (and most load balancers' health checks) cannot present or check a
certificate, while every certfed service port is TLS. This second, tiny server shares the main
server's `HealthServicer`, so it reports exactly the statuses `RunningServer.set_serving` and
the directory health set, and nothing else: no certfed service, no reflection. Off unless a
`health_listen` address is configured. It is built like every other server (`federation.rpc`),
so a stranger's half-open calls hold no thread here either.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health

from federation.errors import PermissionDeniedError
from federation.limits import Limits
from federation.metrics import parse_host_port
from federation.principal import Principal
from federation.rpc import Port, build_server
from federation.server_loop import AsyncServer


@dataclass
class HealthPort:
    server: AsyncServer
    port: int

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace)


def _nobody(method: str, context: grpc.ServicerContext) -> Principal:
    raise PermissionDeniedError(f"{method} is not served on the health port")


def start_health_port(address: str, servicer: health.HealthServicer) -> HealthPort:
    """Serve `servicer` alone, without TLS, at `address` (port 0 picks a free one)."""
    parse_host_port(address, "health_listen")
    running = build_server(
        [],
        [Port("health", address, None)],
        _nobody,
        Limits(),
        health_statuses=servicer,
        with_reflection=False,
    )
    return HealthPort(running.server, running.ports["health"])
