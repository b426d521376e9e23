"""A plaintext port that answers only grpc.health.v1, for probes that speak no TLS.

Kubernetes' native gRPC probes (and most load balancers' health checks) cannot present or check a
certificate, while every certfed service port is TLS. This second, tiny server shares the main
server's `HealthServicer`, so it reports exactly the statuses `RunningServer.set_serving` and
the directory health set, and nothing else: no certfed service, no reflection. Off unless a
`health_listen` address is configured.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from federation.metrics import parse_host_port


@dataclass
class HealthPort:
    server: grpc.Server
    port: int

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace).wait()


def start_health_port(address: str, servicer: health.HealthServicer) -> HealthPort:
    """Serve `servicer` alone, without TLS, at `address` (port 0 picks a free one)."""
    parse_host_port(address, "health_listen")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health-port"),
        options=[("grpc.so_reuseport", 0)],
    )
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind the health port at {address}")
    server.start()
    return HealthPort(server, port)
