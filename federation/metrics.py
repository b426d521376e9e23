"""Prometheus metrics for one certfed process, and the HTTP endpoint that serves them.

Every server keeps its metrics in a `CollectorRegistry` of its own (never prometheus_client's
global one), so several servers in one test process do not clash. `ProcessMetrics` holds that
registry with what every process exports: the RPC series the interceptor in `federation.rpc`
records, the Python process and runtime series, and the expiry of the certificates the process
presents. The registry and the node add collectors that read their state at scrape time.

Promises: no label value is an identity number, a name or a locator. RPC series are labelled by
service, method and status code name, which come from the services the server registered (an
unknown method never reaches the interceptor's handler); the registry's and the node's gauges
are labelled by node status, destination node id, certification method or certificate role.

`start_metrics_endpoint` serves the registry over plain HTTP on a configured address (port 0
picks a free one); its URL is in the server's ready file. The endpoint carries no secrets: bind it
to an address only the monitoring system reaches.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import grpc
from cryptography import x509
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from federation.errors import InvalidInputError

# From a local read (milliseconds) to a log sync stream or a call at its deadline (30 s).
RPC_DURATION_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class RpcMetrics:
    """Calls served, by service, method and status code, and how long they took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._handled = Counter(
            "certfed_rpc_handled",
            "RPCs completed by the server, by service, method and gRPC status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "certfed_rpc_duration_seconds",
            "Time from the call reaching the interceptor to its answer, by service and method.",
            ["service", "method"],
            buckets=RPC_DURATION_BUCKETS_S,
            registry=registry,
        )

    def observe(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count one finished call of `full_method` ("/package.Service/Method")."""
        service, _, method = full_method.lstrip("/").rpartition("/")
        self._handled.labels(service, method, code.name).inc()
        self._duration.labels(service, method).observe(seconds)


class CertificateExpiryCollector:
    """The notAfter of each certificate file, read at scrape time (renewals replace the files).

    A file that is missing or not a PEM certificate is left out rather than failing the scrape.
    """

    NAME = "certfed_certificate_expiry_timestamp_seconds"

    def __init__(self, certificates: Mapping[str, Path]) -> None:
        self._certificates = dict(certificates)

    @classmethod
    def _family(cls) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            cls.NAME,
            "When the certificate stops being valid (notAfter), as a Unix time; by its role.",
            labels=["certificate"],
        )

    @classmethod
    def families(cls) -> list[Metric]:
        return [cls._family()]

    def describe(self) -> Iterable[Metric]:
        return self.families()

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for role, path in self._certificates.items():
            try:
                certificate = x509.load_pem_x509_certificate(path.read_bytes())
            except (OSError, ValueError):
                continue
            family.add_metric([role], certificate.not_valid_after_utc.astimezone(UTC).timestamp())
        return [family]


class ProcessMetrics:
    """The metrics registry of one server, with the series every certfed process exports."""

    def __init__(self, certificates: Mapping[str, Path]) -> None:
        self.registry = CollectorRegistry()
        self.rpc = RpcMetrics(self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(CertificateExpiryCollector(certificates))

    def series_names(self) -> set[str]:
        """Every series name this registry can show in a scrape (see `series_names`)."""
        return series_names(self.registry.collect())


class DirectoryGauges:
    """The directory and database series every service exports, under one definition each: the
    registry reports the directory it last published, a node the directory it works from."""

    def __init__(self, whose: str, database: str) -> None:
        self.version = GaugeMetricFamily(
            "certfed_directory_version", f"Version of the {whose} federation directory."
        )
        self.age = GaugeMetricFamily(
            "certfed_directory_age_seconds", f"Time since the {whose} directory was issued."
        )
        self.expiry = GaugeMetricFamily(
            "certfed_directory_expiry_timestamp_seconds",
            f"When the {whose} directory expires, as a Unix time.",
        )
        self.database_up = GaugeMetricFamily(
            "certfed_database_up", f"1 when the scrape's queries of the {database} succeeded."
        )

    def observe(
        self,
        version: int,
        issued_at: datetime | None,
        expires_at: datetime | None,
        now: datetime,
    ) -> None:
        self.version.add_metric([], version)
        if issued_at is not None:
            self.age.add_metric([], max((now - issued_at).total_seconds(), 0.0))
        if expires_at is not None:
            self.expiry.add_metric([], expires_at.timestamp())

    def all(self) -> list[Metric]:
        return [self.version, self.age, self.expiry, self.database_up]


# The series a family of each type shows in the Prometheus text format.
_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}


def series_names(families: Iterable[Metric]) -> set[str]:
    """The series names the families show in a scrape, whether or not they have samples yet.

    What alert rules and dashboards may name: a counter family `x` shows `x_total`, a histogram
    `x_bucket`, `x_count` and `x_sum`.
    """
    return {family.name + suffix for family in families for suffix in _SERIES_SUFFIXES[family.type]}


def parse_host_port(address: str, setting: str) -> tuple[str, int]:
    """host:port (IPv6 hosts in brackets) -> (host, port); raises InvalidInputError naming the
    configuration `setting` it came from."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInputError(
            setting, f"{address!r} is not host:port (port 0 picks a free one; empty: off)"
        )
    return host, int(port)


@dataclass
class MetricsEndpoint:
    """A running /metrics HTTP endpoint and the port it bound."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(RuntimeError):
            self._thread.join(timeout=5)


def start_metrics_endpoint(address: str, registry: CollectorRegistry) -> MetricsEndpoint:
    """Serve `registry` over HTTP at `address` (host:port, port 0 for a free one)."""
    host, port = parse_host_port(address, "metrics_address")
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound: int = server.server_address[1]
    return MetricsEndpoint(host, bound, server, thread)
