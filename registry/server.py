"""Running the registry: build the server from its configuration, and serve until told to stop.

Promises: `build_registry_server` migrates the database to the newest schema, publishes a first
(empty) directory when none exists, and returns a started server listening on two ports that
both present the registry's certificate: "mtls" (client certificate required) and "enrol" (no
client certificate; the authorizer lets only Enrol, GetEnrolment and GetDirectory through). A
background thread re-signs the directory as a new version whenever less than half of the
latest one's lifetime is left, so nodes never see it expire while the registry runs; the
registry's own certificate is renewed before it expires (registry/own_certificate.py). `serve`
blocks until SIGTERM or SIGINT, stops gracefully, and while it runs keeps a ready file
`<data_dir>/registry.ready.json` with the bound ports and its pid for process launchers.

Every call is counted in the server's own metrics registry (`RegistryServer.metrics`), with the
directory and node gauges of `registry.metrics`; with `metrics_address` set they are served over
HTTP, and with `health_listen` set the health statuses are also served without TLS for probes.
Both bound addresses are in the ready file ("metrics": URL, "health": port).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType

import structlog
from sqlalchemy.engine import Engine

from certfed.v1 import registry_pb2_grpc
from federation import tracing
from federation.errors import CertfedError
from federation.health_port import HealthPort, start_health_port
from federation.logs import configure_logging, dump_stacks_on_sigusr1
from federation.metrics import MetricsEndpoint, ProcessMetrics, start_metrics_endpoint
from federation.rpc import Port, RunningServer, Service, build_server
from registry.config import RegistryConfig
from registry.db import create_engine_for, migrate_engine
from registry.metrics import RegistryCollector
from registry.operations import Registry, RegistryKeys
from registry.own_certificate import RegistryCertificate
from registry.provision import init_registry
from registry.service import SERVICE_NAME, RegistryServicer, registry_authorizer
from registry.utc import utc_now

__all__ = ["RegistryServer", "build_registry_server", "init_registry", "serve"]

log = structlog.get_logger("certfed.registry")


class DirectoryRepublisher(threading.Thread):
    """Checks every `interval_s` whether the directory needs re-signing, until stopped."""

    def __init__(self, registry: Registry, interval_s: float) -> None:
        super().__init__(name="directory-republisher", daemon=True)
        self._registry = registry
        self._interval_s = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval_s):
            try:
                self._registry.republish_if_due()
            except Exception as error:
                log.error(
                    "registry.republish_failed", error_type=type(error).__name__, exc_info=error
                )

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=10)


@dataclass
class RegistryServer(RunningServer):
    """A running registry: the gRPC server plus its republisher and database engine."""

    registry: Registry | None = None
    republisher: DirectoryRepublisher | None = None
    engine: Engine | None = None
    metrics: ProcessMetrics | None = None
    metrics_endpoint: MetricsEndpoint | None = None
    health_port: HealthPort | None = None
    _stopped: bool = field(default=False, repr=False)

    def stop(self, grace: float = 2.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.republisher is not None:
            self.republisher.stop()
        try:
            super().stop(grace)
        finally:
            if self.health_port is not None:
                self.health_port.stop()
            if self.metrics_endpoint is not None:
                self.metrics_endpoint.stop()
            if self.engine is not None:
                self.engine.dispose()


def build_registry_server(config: RegistryConfig) -> RegistryServer:
    """Migrate, publish a first directory if needed, and start serving on both ports."""
    paths = config.paths
    keys = RegistryKeys.load(paths)
    own_certificate = RegistryCertificate(
        paths, keys.ca, timedelta(seconds=config.registry_certificate_renew_before_s)
    )
    engine = create_engine_for(config.effective_database_url)
    metrics = ProcessMetrics({"tls": paths.registry_certificate, "ca": paths.ca_certificate})
    running: RunningServer | None = None
    metrics_endpoint: MetricsEndpoint | None = None
    try:
        migrate_engine(engine)
        registry = Registry(engine, keys, config)
        registry.reconcile_root_key()
        version = registry.ensure_directory()
        metrics.registry.register(RegistryCollector(registry, utc_now))
        running = build_server(
            [
                Service(
                    SERVICE_NAME,
                    RegistryServicer(registry),
                    registry_pb2_grpc.add_RegistryServiceServicer_to_server,
                )
            ],
            [
                Port(
                    "mtls",
                    config.listen,
                    own_certificate.server_credentials(require_client_auth=True),
                ),
                Port(
                    "enrol",
                    config.enrol_listen,
                    own_certificate.server_credentials(require_client_auth=False),
                ),
            ],
            registry_authorizer(registry),
            config.limits,
            metrics=metrics.rpc,
        )
        if config.metrics_address:
            metrics_endpoint = start_metrics_endpoint(config.metrics_address, metrics.registry)
        health_port = (
            start_health_port(config.health_listen, running.health)
            if config.health_listen
            else None
        )
    except BaseException:
        if metrics_endpoint is not None:
            metrics_endpoint.stop()
        if running is not None:
            running.stop(grace=0)
        engine.dispose()
        raise
    republisher = DirectoryRepublisher(registry, config.republish_interval_s)
    republisher.start()
    log.info(
        "registry.started",
        federation_id=config.federation_id,
        mtls_port=running.ports["mtls"],
        enrol_port=running.ports["enrol"],
        metrics=metrics_endpoint.url if metrics_endpoint else None,
        health_port=health_port.port if health_port else None,
        directory=version,
    )
    return RegistryServer(
        server=running.server,
        ports=running.ports,
        health=running.health,
        services=running.services,
        registry=registry,
        republisher=republisher,
        engine=engine,
        metrics=metrics,
        metrics_endpoint=metrics_endpoint,
        health_port=health_port,
    )


def _write_ready_file(config: RegistryConfig, server: RegistryServer) -> None:
    path = config.paths.ready_file
    temporary = path.with_name(f".{path.name}.tmp")
    ports = server.ports
    document: dict[str, int | str] = {
        "mtls": ports["mtls"],
        "enrol": ports["enrol"],
        "pid": os.getpid(),
    }
    if server.metrics_endpoint is not None:
        document["metrics"] = server.metrics_endpoint.url
    if server.health_port is not None:
        document["health"] = server.health_port.port
    temporary.write_text(json.dumps(document) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def serve(config: RegistryConfig) -> int:
    """Serve until SIGTERM or SIGINT; returns the process exit code."""
    configure_logging("registry", config.log_level)
    dump_stacks_on_sigusr1()
    tracing.configure("certfed-registry")
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("registry.stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {
        signum: signal.signal(signum, _on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        try:
            server = build_registry_server(config)
        except CertfedError as error:
            log.error("registry.start_failed", error=str(error))
            return 1
        try:
            _write_ready_file(config, server)
            stop.wait()
        finally:
            with contextlib.suppress(FileNotFoundError):
                config.paths.ready_file.unlink()
            server.stop(grace=5.0)
        log.info("registry.stopped")
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
