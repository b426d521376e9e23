"""The directory's freshness as gRPC health statuses, so monitoring sees what the desk sees.

Two service names on every node's health service (grpc.health.v1), set after every refresh
attempt:

    certfed.directory        SERVING while the node holds an unexpired directory; NOT_SERVING
                             when it has none or it expired (federation calls are refused then)
    certfed.directory.fresh  SERVING when the last refresh succeeded; NOT_SERVING when the node
                             works from a stale copy (registry unreachable, or a directory refused)

The overall status ("") stays SERVING while the directory is merely stale: the node keeps working
from its cached copy, as it should, and says so here, in its log and at the desk.
"""

from __future__ import annotations

import structlog
from grpc_health.v1 import health, health_pb2

from federation_node.links.directory_client import DirectoryClient

DIRECTORY_HEALTH = "certfed.directory"
DIRECTORY_FRESH_HEALTH = "certfed.directory.fresh"

log = structlog.get_logger("certfed.directory")


def _status(ok: bool) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    return (
        health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
    )


def publish_directory_health(servicer: health.HealthServicer, directory: DirectoryClient) -> None:
    freshness = directory.freshness()
    servicer.set(DIRECTORY_HEALTH, _status(not freshness.expired))
    servicer.set(DIRECTORY_FRESH_HEALTH, _status(not freshness.stale and not freshness.expired))
    if freshness.expired:
        log.error(
            "directory.expired",
            version=freshness.version,
            expires_at=freshness.expires_at.isoformat() if freshness.expires_at else None,
            last_error=freshness.last_error,
        )
