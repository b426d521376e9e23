"""Run a real federation on this machine: the registry and each node as its own process.

Used by `certfed demo`, the integration and fault tests, and the benchmarks. It does what an
operator does when standing up a region, through the same code: create the registry's keys,
create each node's keys, enrol it, approve it as the registry administrator, install its
certificate, create its operators, and start `certfed node serve` as a separate process on
127.0.0.1. Readiness is a gRPC health check with a deadline, never a sleep. Every process it
started is stopped when it closes, even after an error.

With `sign_in=True` every operator also gets a user name and a random password (and one more
operator holds both clerk and reviewer roles), and `start_web_desk` runs `certfed web serve` for
a node, ready when its /healthz answers. With `metrics=True` every process serves Prometheus
/metrics on a port of its own, kept across restarts.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.feed_mappings import builtin_mapping_names, load_mapping
from certfed.v1 import desk_pb2
from cli.operator_commands import create_operator, host_actor
from federation.desk_client import DeskClient
from federation.fingerprints import KeyFingerprints
from federation.limits import Limits
from federation.registry_client import RegistryAdminClient, RegistryClient
from federation.transport import (
    REGISTRY_TLS_NAME,
    TlsMaterial,
    anonymous_channel_credentials,
    node_tls_name,
    secure_channel,
)
from federation_node.config import NodeConfig, load_node_config, render_node_config
from federation_node.keystore import (
    KeyPaths,
    build_application,
    create_keys,
    store_enrolment,
)
from federation_node.store import db
from federation_node.store.models import OperatorRole
from registry.config import RegistryPaths
from registry.provision import init_registry
from signing import dsse
from signing.keys import SigningKey

T = TypeVar("T")
READY_TIMEOUT_S = 30.0

# Every node's operators: their name in NodeHandle.tokens (also their user name) and roles.
OPERATORS: dict[str, tuple[OperatorRole, ...]] = {
    "clerk": (OperatorRole.CLERK,),
    "clerk2": (OperatorRole.CLERK,),
    "reviewer": (OperatorRole.REVIEWER,),
    "admin": (OperatorRole.ADMIN,),
}
# With sign-in, one more: an operator who records and reviews, so that the rule "the recorder
# does not approve" has someone to apply to.
SIGN_IN_OPERATORS: dict[str, tuple[OperatorRole, ...]] = {
    **OPERATORS,
    "senior": (OperatorRole.CLERK, OperatorRole.REVIEWER),
}
# Every node's feed account (NodeHandle.tokens["feed"]): a service, bound to the sources of the
# shipped feed mappings, with a bearer token and no password.
FEED_OPERATOR = "feed"


# Ports for local servers come from below the kernel's ephemeral range (32768 and up on Linux), so
# no outgoing connection can take one between its choice and the server's bind; each pytest-xdist
# worker draws from its own block, so two workers never pick the same port either.
PORT_BLOCK = 4_000
PORTS_WITHOUT_WORKER = range(10_000, 10_000 + 2 * PORT_BLOCK)
WORKER_PORTS_START = 18_000
WORKER_BLOCKS = 3


def _port_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return PORTS_WITHOUT_WORKER
    start = WORKER_PORTS_START + (int(worker[2:]) % WORKER_BLOCKS) * PORT_BLOCK
    return range(start, start + PORT_BLOCK)


class _PortAllocator:
    """Hands out free loopback ports of this process's block in turn, from a random start (a
    port released by an earlier run may still be in TIME_WAIT)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: int | None = None

    def take(self) -> int:
        block = _port_block()
        with self._lock:
            if self._next is None or self._next not in block:
                self._next = block.start + secrets.randbelow(len(block))
            for _ in range(len(block)):
                port = self._next
                self._next = port + 1 if port + 1 < block.stop else block.start
                if _bindable(port):
                    return port
        raise RuntimeError(f"no free loopback port in {block.start}-{block.stop - 1}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port left in TIME_WAIT by a closed server may be bound again.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_ports = _PortAllocator()


def free_port() -> int:
    """A loopback port no server of this process listens on, for a server about to start."""
    return _ports.take()


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    display_name: str
    region_codes: tuple[str, ...]
    roles: tuple[str, ...]
    certifying_agency: str = ""


@dataclass
class NodeHandle:
    spec: NodeSpec
    config_path: Path
    config: NodeConfig
    federation_port: int
    desk_port: int
    tokens: dict[str, str] = field(default_factory=dict)
    operator_ids: dict[str, str] = field(default_factory=dict)
    # With sign-in: each operator's password (their user name is their name in `tokens`).
    passwords: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    metrics_url: str = ""
    web_process: subprocess.Popen[bytes] | None = None
    web_url: str = ""

    @property
    def log_path(self) -> Path:
        return self.config.data_dir / "node.log"

    @property
    def web_log_path(self) -> Path:
        return self.config.data_dir / "web.log"


# Signals that end a command which started a federation: a `kill`, and the terminal it ran in
# closing (SIGHUP, e.g. a dropped SSH session during a long benchmark).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _exit_on_stop_signal(signum: int, _frame: FrameType | None) -> None:
    # A second signal while unwinding would cut the stopping of the processes short.
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    raise SystemExit(128 + signum)


@contextmanager
def stopping_on_signals(command: str) -> Iterator[None]:
    """Within it, SIGTERM or SIGHUP unwinds this process like Ctrl-C (exit status 128 + the
    signal), so a federation it started is stopped on the way out, and then says so on stderr;
    by default either signal ends this process alone and leaves the registry, the nodes and
    PostgreSQL running. For commands that start one (`command`: the demo, a benchmark), from the
    main thread."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, _exit_on_stop_signal)
    try:
        yield
    except SystemExit as stopped:
        signals = {128 + stop: stop.name for stop in STOP_SIGNALS}
        if isinstance(stopped.code, int) and stopped.code in signals:
            print(
                f"{command} stopped by {signals[stopped.code]}; every process it started has "
                "stopped",
                file=sys.stderr,
                flush=True,
            )
        raise


def wait_until(predicate: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `predicate` until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


class LocalFederation:
    """A registry and any number of nodes, each a process of its own, on 127.0.0.1."""

    def __init__(
        self,
        workdir: Path,
        *,
        federation_id: str = "certfed-local",
        database_url_for: Callable[[str], str] | None = None,
        directory_refresh_s: float = 1.0,
        max_backoff_s: float = 1.0,
        log_level: str = "info",
        sign_in: bool = False,
        metrics: bool = False,
    ) -> None:
        self.workdir = workdir.resolve()
        self.federation_id = federation_id
        self._database_url_for = database_url_for
        self._directory_refresh_s = directory_refresh_s
        self._max_backoff_s = max_backoff_s
        self._log_level = log_level
        self._sign_in = sign_in
        self._metrics = metrics
        self.limits = Limits()
        self.registry_paths = RegistryPaths(self.workdir / "registry")
        self.registry_process: subprocess.Popen[bytes] | None = None
        self.registry_port = 0
        self.enrol_port = 0
        self.nodes: dict[str, NodeHandle] = {}
        # Registry settings for its next start, as CERTFED_REGISTRY_<SETTING> overrides (e.g.
        # a short directory lifetime); change them and restart the registry to apply.
        self.registry_settings: dict[str, str] = {}
        # Chosen once: a restarted registry must find the database it had.
        self._registry_database_url = database_url_for("registry") if database_url_for else ""
        self.registry_metrics_url = ""

    # Registry.

    @property
    def registry_endpoint(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def enrol_endpoint(self) -> str:
        return f"127.0.0.1:{self.enrol_port}"

    def _registry_env(self) -> dict[str, str]:
        env = {
            "CERTFED_REGISTRY_LISTEN": self.registry_endpoint,
            "CERTFED_REGISTRY_ENROL_LISTEN": self.enrol_endpoint,
            "CERTFED_REGISTRY_LOG_LEVEL": self._log_level,
        }
        if self._registry_database_url:
            env["CERTFED_REGISTRY_DATABASE_URL"] = self._registry_database_url
        for setting, value in self.registry_settings.items():
            env[f"CERTFED_REGISTRY_{setting.upper()}"] = value
        return env

    @property
    def registry_database_url(self) -> str:
        """The registry's database, as its process reaches it."""
        return self._registry_database_url or f"sqlite:///{self.registry_paths.default_database}"

    def start_registry(self) -> None:
        if not self.registry_paths.config_file.exists():
            init_registry(self.registry_paths.data_dir, self.federation_id)
            self.registry_port, self.enrol_port = free_port(), free_port()
            if self._metrics:
                metrics_port = free_port()
                self.registry_settings["metrics_address"] = f"127.0.0.1:{metrics_port}"
                self.registry_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.registry_process = self._spawn(
            ["registry", "serve", "--config", str(self.registry_paths.config_file)],
            self._registry_env(),
            self.registry_paths.data_dir / "registry.log",
        )
        self._wait_healthy(
            self.registry_process,
            self.enrol_endpoint,
            REGISTRY_TLS_NAME,
            self.registry_paths.trust_ca_certificate.read_bytes(),
            "the registry",
        )

    def stop_registry(self) -> None:
        if self.registry_process is not None:
            _terminate(self.registry_process)
            self.registry_process = None

    def admin(self) -> RegistryAdminClient:
        tls = TlsMaterial.load(
            self.registry_paths.admin_certificate("admin"),
            self.registry_paths.admin_key("admin"),
            self.registry_paths.ca_certificate,
        )
        return RegistryAdminClient(self.registry_endpoint, tls.channel_credentials(), self.limits)

    def fetch_directory(self) -> dsse.Envelope:
        """The registry's current signed directory, as any TLS client may fetch it."""
        ca = self.registry_paths.trust_ca_certificate.read_bytes()
        with RegistryClient(
            self.enrol_endpoint, anonymous_channel_credentials(ca), self.limits
        ) as registry:
            envelope = registry.get_directory(0)
        if envelope is None:
            raise RuntimeError("the registry answered not_modified to a request for any version")
        return envelope

    # Nodes.

    def add_node(
        self,
        spec: NodeSpec,
        *,
        start: bool = True,
        settings: Mapping[str, object] | None = None,
        allow_second_node_for_region: bool = False,
    ) -> NodeHandle:
        """Create, enrol, approve and (by default) start a node; returns its handle.

        `settings` are written into the node's node.toml over the defaults chosen here (e.g.
        `follow`, or a `limits` table). `allow_second_node_for_region` is the administrator's
        explicit approval of a node for a region and role another node serves already.
        """
        data_dir = self.workdir / spec.node_id
        trust = data_dir / "trust"
        trust.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.registry_paths.trust_root_public_key, trust / "root.pub")
        shutil.copyfile(self.registry_paths.trust_ca_certificate, trust / "ca.pem")
        shutil.copyfile(self.registry_paths.trust_witness_vkey, trust / "witness.vkey")
        federation_port, desk_port = free_port(), free_port()
        values: dict[str, object] = {
            "node_id": spec.node_id,
            "display_name": spec.display_name,
            "certifying_agency": spec.certifying_agency or spec.display_name,
            "region_codes": list(spec.region_codes),
            "roles": list(spec.roles),
            "endpoint": f"127.0.0.1:{federation_port}",
            "listen": f"127.0.0.1:{federation_port}",
            "desk_listen": f"127.0.0.1:{desk_port}",
            "registry_endpoint": self.registry_endpoint,
            "registry_enrol_endpoint": self.enrol_endpoint,
            "data_dir": ".",
            "directory_refresh_s": self._directory_refresh_s,
            "checkpoint_interval_s": 1.0,
            "log_level": self._log_level,
            "dispatch": {"poll_interval_s": 0.5, "max_backoff_s": self._max_backoff_s},
        }
        if self._database_url_for is not None:
            values["database_url"] = self._database_url_for(spec.node_id)
        if self._metrics:
            values["metrics_address"] = f"127.0.0.1:{free_port()}"
        values.update(settings or {})
        config_path = data_dir / "node.toml"
        config_path.write_text(render_node_config(values), encoding="utf-8")
        config = load_node_config(config_path, environ={})
        handle = NodeHandle(spec, config_path, config, federation_port, desk_port)
        if config.metrics_address:
            handle.metrics_url = f"http://{config.metrics_address}/metrics"
        self.nodes[spec.node_id] = handle
        self.enrol(handle, allow_second_node_for_region=allow_second_node_for_region)
        self._create_operators(handle)
        if start:
            self.start_node(spec.node_id)
        return handle

    def enrol(self, handle: NodeHandle, *, allow_second_node_for_region: bool = False) -> None:
        """What `certfed node init` + `node enrol` + `registry approve` do, in that order; the
        fingerprints the node prints reach the administrator here as they would by phone."""
        paths = KeyPaths(handle.config.data_dir)
        create_keys(paths)
        application = build_application(handle.config, paths, datetime.now(UTC))
        fingerprints = KeyFingerprints.of_application(application)
        ca = handle.config.ca_certificate.read_bytes()
        with RegistryClient(
            self.enrol_endpoint, anonymous_channel_credentials(ca), self.limits
        ) as registry:
            registry.enrol(application)
            with self.admin() as admin:
                admin.approve(
                    handle.spec.node_id,
                    signing_key_fingerprint=fingerprints.signing_key,
                    tls_key_fingerprint=fingerprints.tls_key,
                    allow_second_node_for_region=allow_second_node_for_region,
                )
            enrolment = registry.get_enrolment(
                handle.spec.node_id, SigningKey.load(paths.signing_key)
            )
        store_enrolment(paths, enrolment.tls_certificate_pem)

    def _create_operators(self, handle: NodeHandle) -> None:
        url = handle.config.effective_database_url
        db.migrate(url)
        engine = db.create_engine_for(url)
        try:
            accounts = SIGN_IN_OPERATORS if self._sign_in else OPERATORS
            with db.session_scope(engine) as session:
                for name, granted in accounts.items():
                    password = secrets.token_urlsafe(12) if self._sign_in else None
                    operator, token = create_operator(
                        session,
                        label=f"{handle.spec.display_name} {name}",
                        roles=granted,
                        actor=host_actor(),
                        now=datetime.now(UTC),
                        user_name=name if self._sign_in else None,
                        password=password,
                    )
                    handle.tokens[name] = token
                    handle.operator_ids[name] = operator.operator_id
                    if password is not None:
                        handle.passwords[name] = password
                feed, token = create_operator(
                    session,
                    label=f"{handle.spec.display_name} feeds",
                    roles=(OperatorRole.FEED,),
                    actor=host_actor(),
                    now=datetime.now(UTC),
                    feed_sources=sorted(
                        {load_mapping(name).source for name in builtin_mapping_names()}
                    ),
                )
                handle.tokens[FEED_OPERATOR] = token
                handle.operator_ids[FEED_OPERATOR] = feed.operator_id
        finally:
            engine.dispose()

    def start_node(self, node_id: str) -> None:
        handle = self.nodes[node_id]
        env = {}
        if self._database_url_for is not None:
            env["CERTFED_NODE_DATABASE_URL"] = handle.config.effective_database_url
        handle.process = self._spawn(
            ["node", "serve", "--config", str(handle.config_path)], env, handle.log_path
        )
        self._wait_healthy(
            handle.process,
            f"127.0.0.1:{handle.desk_port}",
            node_tls_name(node_id),
            handle.config.ca_certificate.read_bytes(),
            f"node {node_id}",
        )

    def start_web_desk(self, node_id: str) -> str:
        """Start `certfed web serve` for a node on a free loopback port; its base URL, once its
        /healthz answers."""
        handle = self.nodes[node_id]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        handle.web_process = self._spawn(
            ["web", "serve", "--config", str(handle.config_path), "--listen", f"127.0.0.1:{port}"],
            {},
            handle.web_log_path,
        )
        process = handle.web_process

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the web desk of {node_id} exited with code {process.returncode} at start; "
                    f"see {handle.web_log_path}"
                )
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1.0) as answer:  # noqa: S310
                    return bool(answer.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_until(healthy, READY_TIMEOUT_S, f"the web desk of {node_id}")
        handle.web_url = url
        return url

    def stop_web_desk(self, node_id: str) -> None:
        handle = self.nodes[node_id]
        if handle.web_process is not None:
            _terminate(handle.web_process)
            handle.web_process = None
            handle.web_url = ""

    def restart_node(self, node_id: str) -> None:
        self.stop_node(node_id)
        self.start_node(node_id)

    def certfed(self, *arguments: str, env: Mapping[str, str] | None = None) -> str:
        """Run `certfed ARGUMENTS` as an operator would, in its own process; its output.

        Raises RuntimeError with the command's output when it exits non-zero.
        """
        finished = subprocess.run(
            [sys.executable, "-m", "cli", *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
            check=False,
        )
        if finished.returncode != 0:
            raise RuntimeError(
                f"certfed {' '.join(arguments)} exited {finished.returncode}: "
                f"{finished.stdout}{finished.stderr}"
            )
        return finished.stdout

    def stop_node(self, node_id: str, *, kill: bool = False) -> None:
        handle = self.nodes[node_id]
        if handle.process is not None:
            if kill:
                handle.process.kill()
                handle.process.wait(timeout=10)
            else:
                _terminate(handle.process)
            handle.process = None

    def await_outbox_drained(self, node_id: str, timeout_s: float = 30.0) -> None:
        """Wait until a node has delivered everything it queued (nothing pending)."""
        pending = desk_pb2.ListOutboxRequest(state=desk_pb2.DELIVERY_STATE_PENDING)
        with self.desk(node_id, "admin") as desk:

            def drained() -> bool:
                return not desk.stub.ListOutbox(pending).messages

            wait_until(drained, timeout_s, f"{node_id} to deliver its outbox")

    def desk(self, node_id: str, operator: str = "clerk") -> DeskClient:
        handle = self.nodes[node_id]
        return DeskClient(
            f"127.0.0.1:{handle.desk_port}",
            node_id,
            handle.config.ca_certificate.read_bytes(),
            handle.tokens[operator],
            self.limits,
        )

    # Processes.

    def _spawn(
        self, arguments: list[str], env: dict[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            return subprocess.Popen(
                [sys.executable, "-m", "cli", *arguments],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )

    def _wait_healthy(
        self,
        process: subprocess.Popen[bytes],
        endpoint: str,
        tls_name: str,
        ca_pem: bytes,
        what: str,
    ) -> None:
        channel = secure_channel(
            endpoint,
            tls_name,
            anonymous_channel_credentials(ca_pem),
            max_message_bytes=self.limits.max_message_bytes,
        )
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{what} exited with code {process.returncode} at start")
                try:
                    answer = stub.Check(
                        health_pb2.HealthCheckRequest(), timeout=1.0, wait_for_ready=True
                    )
                except grpc.RpcError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"{what} did not become healthy") from None
                    continue
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        finally:
            channel.close()

    def close(self) -> None:
        for node_id in list(self.nodes):
            self.stop_web_desk(node_id)
        for node_id in list(self.nodes):
            self.stop_node(node_id)
        self.stop_registry()

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
