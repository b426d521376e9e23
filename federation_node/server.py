"""Start a node: the one factory that tests, the demo and production all use.

`start_node` loads the node's keys, migrates and opens its store, loads the cached directory and
refreshes it, and starts the gRPC server on two ports (FederationService over mutual TLS for
peers, DeskService over TLS with operator tokens for the region's own staff) together with the
outbox dispatcher, the directory refresher and the audit sequencer (which chains the audit
records transactions queue). Port 0 binds a free port; the bound ports are in `NodeRuntime.ports`
and, for `serve`, in `<data_dir>/node.ready.json`.

Every call is counted in the node's own metrics registry (`NodeRuntime.metrics`), with the
outbox, directory, log and attestation gauges of `federation_node.metrics`; with
`metrics_address` set they are served over HTTP, and with `health_listen` set the health
statuses are also served without TLS for probes. Both are in the ready file ("metrics": URL,
"health": port).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import threading
from dataclasses import dataclass

import structlog

from certfed.v1 import desk_pb2_grpc, federation_pb2_grpc
from federation import tracing
from federation.errors import CertfedError
from federation.health_port import HealthPort, start_health_port
from federation.logs import configure_logging, dump_stacks_on_sigusr1
from federation.metrics import MetricsEndpoint, ProcessMetrics, start_metrics_endpoint
from federation.registry_client import RegistryClient
from federation.rpc import Port, RunningServer, Service, build_server
from federation_node.audit_checker import AuditChecker
from federation_node.audit_sequencer import AuditSequencer
from federation_node.config import NodeConfig
from federation_node.cycle_scheduler import CycleScheduler
from federation_node.keystore import KeyPaths, load_keys
from federation_node.links.carried_proofs import CarriedProofs
from federation_node.links.directory_client import DirectoryClient, DirectoryRefresher
from federation_node.links.directory_health import publish_directory_health
from federation_node.links.dispatcher import Dispatcher, replica_id, suspension_hold
from federation_node.links.key_rollover import (
    KeyRollover,
    ReloadableTls,
    catch_up_with_directory,
    finish_interrupted_promotion,
)
from federation_node.links.peers import PeerChannels
from federation_node.locators import Locators
from federation_node.metrics import (
    AttestationIncidentMetrics,
    CycleMetrics,
    NodeCollector,
    SignInMetrics,
)
from federation_node.offices.node import Node, compose_node
from federation_node.offices.revocation_review import review_revocations
from federation_node.offices.roll import fill_roll_keys
from federation_node.rules.policy import load_policy
from federation_node.service.authz import NodeAuthorizer
from federation_node.service.desk_service import DeskServicer
from federation_node.service.federation_service import FederationServicer
from federation_node.store.db import create_engine_for, migrate
from federation_node.tlog.checkpoints import load_witness_verifier
from federation_node.tlog.inclusion import InclusionProver
from federation_node.tlog.node_witness import (
    NodeWitness,
    load_or_create_witness_signer,
    peer_witness,
)
from federation_node.tlog.recovery import LogRecovery
from federation_node.tlog.sync import LogFollower, LogSync
from federation_node.tlog.transparency import (
    CheckpointPublisher,
    Continuity,
    TransparencyLog,
    publish_log_health,
)
from federation_node.tlog.witness_policy import office_witness_policy

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
    transparency: TransparencyLog
    publisher: CheckpointPublisher
    followers: list[LogFollower]
    scheduler: CycleScheduler
    sequencer: AuditSequencer
    checker: AuditChecker
    metrics: ProcessMetrics | None = None
    metrics_endpoint: MetricsEndpoint | None = None
    health_port: HealthPort | None = None
    prover: InclusionProver | None = None

    @property
    def ports(self) -> dict[str, int]:
        return self.server.ports

    def stop(self) -> None:
        self.server.set_serving(False)
        self.scheduler.stop()
        self.checker.stop()
        self.publisher.stop()
        if self.prover is not None:
            self.prover.stop()
        for follower in self.followers:
            follower.stop()
        self.refresher.stop()
        self.dispatcher.stop()
        self.server.stop(grace=2.0)
        # After the server: the last flush chains what the last calls wrote.
        self.sequencer.stop()
        if self.health_port is not None:
            self.health_port.stop()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        self.peers.close()
        self.registry.close()
        self.node.context.engine.dispose()


def start_node(config: NodeConfig) -> NodeRuntime:
    paths = KeyPaths(config.data_dir)
    finish_interrupted_promotion(paths)
    keys = load_keys(config, paths)
    # Read first: a node whose policy is wrong must not start (docs/policy.md).
    policy = load_policy(config.policy_file)
    url = config.effective_database_url
    migrate(url)
    engine = create_engine_for(url)
    sequencer = AuditSequencer(engine, config.audit_sequence_interval_s)
    registry = RegistryClient(
        config.registry_endpoint, keys.tls.channel_credentials(), config.limits
    )
    directory = DirectoryClient(
        registry.get_directory_update,
        keys.root_public_key,
        paths.directory_cache,
        root_chain_path=paths.root_chain,
        fetch_key_history=registry.get_key_history,
    )
    try:
        directory.refresh()
    except CertfedError as error:
        log.warning("directory.initial_refresh_refused", error=str(error))
    peers = PeerChannels(directory, keys.tls, config.limits, registry_serving=registry.serving)
    node = compose_node(
        config,
        keys,
        engine,
        directory,
        policy,
        registry.locate,
        locators=Locators(registry.evaluate_locators, left_today=registry.locators_left_today),
    )
    context = node.context
    keyed, unkeyed = fill_roll_keys(context)
    if keyed or unkeyed:
        log.info("roll_keys.filled", keyed=keyed, skipped=unkeyed)
    dispatcher = Dispatcher(
        engine,
        peers,
        lambda request: registry.publish_locators(list(request.locators), list(request.withdrawn)),
        node.registration.record_duplicates,
        config.dispatch,
        config.limits.call_timeout_s,
        hold=suspension_hold(directory, config.node_id),
        replica=replica_id(config),
        reachable=peers.reachable,
    )
    context.on_enqueued = dispatcher.wake
    serving = ReloadableTls(keys.tls)
    rollover = KeyRollover(
        context,
        paths,
        serving,
        peers,
        registry,
        renew_fraction=config.certificate_renew_fraction,
        refresh_directory=directory.refresh,
    )
    directory.add_listener(rollover.on_directory)
    directory.add_listener(lambda trusted: review_revocations(engine, trusted, context.now()))
    catch_up_with_directory(directory, rollover, engine, context.now())

    def after_refresh() -> None:
        publish_directory_health(server.health, directory)
        rollover.renew_if_due()

    registry_witness = load_witness_verifier(config.witness_public_key)
    transparency = TransparencyLog(
        engine,
        config.node_id,
        keys.signing,
        registry.witness_checkpoint,
        registry_witness,
        config.limits,
        node_witnesses=[
            (witness, peer_witness(peers.federation, witness, config.limits.call_timeout_s))
            for witness in config.ask_witnesses
        ],
    )
    witness = NodeWitness(
        engine,
        config.node_id,
        load_or_create_witness_signer(config.data_dir, config.node_id),
        directory.current,
        context.now,
        enabled=config.witness,
    )
    prover = InclusionProver(
        engine,
        directory.current,
        lambda: office_witness_policy(registry_witness, context.policy),
        peers.federation,
        node.paying_office.apply_proven,
        context.now,
        timeout_s=config.limits.call_timeout_s,
    )
    node.paying_office.on_awaiting_inclusion = prover.wake
    node.paying_office.witness_policy = lambda: office_witness_policy(
        registry_witness, context.policy
    )
    recovery = LogRecovery(
        engine,
        config.node_id,
        directory.current,
        transparency.witness_verifier,
        config.limits,
        stub_for=peers.federation,
    )

    def published(continuity: Continuity) -> None:
        publish_log_health(server.health, continuity)
        dispatcher.wake()

    publisher = CheckpointPublisher(
        transparency,
        config.checkpoint_interval_s,
        recover=recovery.from_peers,
        on_continuity=published,
        pool_s=config.sequencing_pool_s,
    )
    # Attestation deliveries wait for a cosigned checkpoint and carry their proof; each
    # publication wakes the dispatcher to send what it now covers.
    dispatcher.carried_proofs = CarriedProofs(transparency)

    def appended() -> None:
        transparency.notify_appended()
        publisher.soon()

    context.on_log_appended = appended
    syncer = LogSync(
        engine, directory.current, transparency.witness_verifier, peers.federation, config.limits
    )
    followers = [LogFollower(syncer, origin) for origin in config.follow]
    refresher = DirectoryRefresher(
        directory,
        config.directory_refresh_s,
        also=lambda: node.registration.record_duplicates(registry.list_duplicates()),
        after_each=after_refresh,
    )
    services = [
        Service(
            FEDERATION_SERVICE,
            FederationServicer(node, transparency, witness),
            federation_pb2_grpc.add_FederationServiceServicer_to_server,
        ),
        Service(DESK_SERVICE, DeskServicer(node), desk_pb2_grpc.add_DeskServiceServicer_to_server),
    ]
    ports = [
        Port("federation", config.listen, serving.server_credentials(require_client_auth=True)),
        Port("desk", config.desk_listen, serving.server_credentials(require_client_auth=False)),
    ]
    metrics = ProcessMetrics({"tls": paths.tls_certificate, "ca": config.ca_certificate})
    metrics.registry.register(
        NodeCollector(config.node_id, engine, directory, context.now, config.follow)
    )
    node.sign_in.on_failure = SignInMetrics(metrics.registry).failed
    node.paying_office.on_id_reused = AttestationIncidentMetrics(metrics.registry).id_reused
    authorizer = NodeAuthorizer(directory, engine, config.operator_sessions, context.now)
    server = build_server(services, ports, authorizer, config.limits, metrics=metrics.rpc)
    metrics_endpoint: MetricsEndpoint | None = None
    try:
        if config.metrics_address:
            metrics_endpoint = start_metrics_endpoint(config.metrics_address, metrics.registry)
        health_port = (
            start_health_port(config.health_listen, server.health) if config.health_listen else None
        )
    except BaseException:
        if metrics_endpoint is not None:
            metrics_endpoint.stop()
        server.stop(grace=0)
        raise
    publish_directory_health(server.health, directory)
    publish_log_health(server.health, transparency.continuity())
    sequencer.start()
    checker = AuditChecker(engine, config.audit_full_check_interval_s, context.now)
    checker.start()
    dispatcher.start()
    refresher.start()
    publisher.start()
    prover.start()
    for follower in followers:
        follower.start()
    scheduler = CycleScheduler(
        node.daily_cycle, config.cycle_hour_utc, metrics=CycleMetrics(metrics.registry)
    )
    scheduler.start()
    log.info(
        "node.started",
        node_id=config.node_id,
        ports=server.ports,
        metrics=metrics_endpoint.url if metrics_endpoint else None,
        health_port=health_port.port if health_port else None,
        directory_version=directory.version,
    )
    return NodeRuntime(
        config,
        node,
        server,
        dispatcher,
        refresher,
        registry,
        peers,
        transparency,
        publisher,
        followers,
        scheduler,
        sequencer,
        checker,
        metrics,
        metrics_endpoint,
        health_port,
        prover,
    )


def ready_file(config: NodeConfig) -> str:
    return str(config.data_dir / "node.ready.json")


def serve(config: NodeConfig) -> int:
    """Run a node until SIGTERM or SIGINT; returns the process exit code."""
    configure_logging(f"node:{config.node_id}", config.log_level)
    dump_stacks_on_sigusr1()
    tracing.configure("certfed-node", {"certfed.node_id": config.node_id})
    runtime = start_node(config)
    # What exists now (modules, the composed node) lives as long as the process: kept out of
    # the collector's full collections, which would otherwise scan it again and again.
    gc.freeze()
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("node.stopping", signal=signum)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    path = ready_file(config)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        document: dict[str, int | str] = {**runtime.ports, "pid": os.getpid()}
        if runtime.metrics_endpoint is not None:
            document["metrics"] = runtime.metrics_endpoint.url
        if runtime.health_port is not None:
            document["health"] = runtime.health_port.port
        json.dump(document, handle)
    os.replace(temporary, path)
    try:
        stopping.wait()
    finally:
        os.unlink(path)
        runtime.stop()
        log.info("node.stopped")
    return 0
