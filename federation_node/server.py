"""Start a node: the one factory that tests, the demo and production all use.

`start_node` loads the node's keys, migrates and opens its store, loads the cached directory and
refreshes it, and starts the gRPC server on two ports (FederationService over mutual TLS for
peers, DeskService over TLS with operator tokens for the region's own staff) together with the
outbox dispatcher and the directory refresher. Port 0 binds a free port; the bound ports are in
`NodeRuntime.ports` and, for `serve`, in `<data_dir>/node.ready.json`.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import dataclass

import structlog

from certfed.v1 import desk_pb2_grpc, federation_pb2_grpc
from federation_node.authz import NodeAuthorizer
from federation_node.config import NodeConfig
from federation_node.db import create_engine_for, migrate
from federation_node.desk_service import DeskServicer
from federation_node.directory_client import DirectoryClient, DirectoryRefresher
from federation_node.dispatcher import Dispatcher
from federation_node.federation_service import FederationServicer
from federation_node.keystore import KeyPaths, load_keys
from federation_node.node import Node
from federation_node.peers import PeerChannels
from registry.client import RegistryClient
from registry.errors import CertfedError
from registry.logs import configure_logging
from registry.rpc import Port, RunningServer, Service, build_server

log = structlog.get_logger("certfed.node")

FEDERATION_SERVICE = "certfed.v1.FederationService"
DESK_SERVICE = "certfed.v1.DeskService"


@dataclass
class NodeRuntime:
    config: NodeConfig
    node: Node
    server: RunningServer
    dispatcher: Dispatcher
    refresher: DirectoryRefresher
    registry: RegistryClient
    peers: PeerChannels

    @property
    def ports(self) -> dict[str, int]:
        return self.server.ports

    def stop(self) -> None:
        self.server.set_serving(False)
        self.refresher.stop()
        self.dispatcher.stop()
        self.server.stop(grace=2.0)
        self.peers.close()
        self.registry.close()
        self.node.engine.dispose()


def start_node(config: NodeConfig) -> NodeRuntime:
    paths = KeyPaths(config.data_dir)
    keys = load_keys(config, paths)
    url = config.effective_database_url
    migrate(url)
    engine = create_engine_for(url)
    registry = RegistryClient(
        config.registry_endpoint, keys.tls.channel_credentials(), config.limits
    )
    directory = DirectoryClient(
        registry.get_directory,
        keys.root_public_key,
        paths.directory_cache,
    )
    try:
        directory.refresh()
    except CertfedError as error:
        log.warning("directory.initial_refresh_refused", error=str(error))
    peers = PeerChannels(directory, keys.tls, config.limits)
    node = Node(
        config,
        keys,
        engine,
        directory,
        locate=registry.locate,
    )
    dispatcher = Dispatcher(
        engine,
        peers,
        lambda request: registry.publish_locators(list(request.locators)),
        node.record_duplicates,
        config.dispatch,
        config.limits.call_timeout_s,
    )
    node.on_enqueued = dispatcher.wake
    refresher = DirectoryRefresher(
        directory,
        config.directory_refresh_s,
        also=lambda: node.record_duplicates(registry.list_duplicates()),
    )
    services = [
        Service(
            FEDERATION_SERVICE,
            FederationServicer(node),
            federation_pb2_grpc.add_FederationServiceServicer_to_server,
        ),
        Service(DESK_SERVICE, DeskServicer(node), desk_pb2_grpc.add_DeskServiceServicer_to_server),
    ]
    ports = [
        Port("federation", config.listen, keys.tls.server_credentials(require_client_auth=True)),
        Port("desk", config.desk_listen, keys.tls.server_credentials(require_client_auth=False)),
    ]
    server = build_server(services, ports, NodeAuthorizer(directory, engine), config.limits)
    dispatcher.start()
    refresher.start()
    log.info(
        "node.started",
        node_id=config.node_id,
        ports=server.ports,
        directory_version=directory.version,
    )
    return NodeRuntime(config, node, server, dispatcher, refresher, registry, peers)


def ready_file(config: NodeConfig) -> str:
    return str(config.data_dir / "node.ready.json")


def serve(config: NodeConfig) -> int:
    """Run a node until SIGTERM or SIGINT; returns the process exit code."""
    configure_logging(f"node:{config.node_id}", config.log_level)
    runtime = start_node(config)
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("node.stopping", signal=signum)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    path = ready_file(config)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump({**runtime.ports, "pid": os.getpid()}, handle)
    os.replace(temporary, path)
    try:
        stopping.wait()
    finally:
        os.unlink(path)
        runtime.stop()
        log.info("node.stopped")
    return 0
