"""What a node's operators watch, read from its store and directory at each scrape.

The node's gauges are computed when Prometheus asks, not kept up to date in this process, so
they are right whichever replica did the work: every replica of a node reads the same database
and reports the same values (sum nothing across replicas; take the maximum). The two totals of
rows written (attestations issued, feed rows) are read from running totals the writers keep in
the database (store/tally.py), which retention never lowers; the rest costs a few small
queries. No query reads a table whose size grows with the years kept.

    certfed_outbox_pending_messages{destination}          messages waiting for delivery
    certfed_outbox_oldest_pending_age_seconds{destination} how long the oldest has waited (0: none)
    certfed_outbox_dead_letters{destination}               given up on; an administrator acts
    certfed_directory_version / _age_seconds / _expiry_timestamp_seconds / _stale
    certfed_log_size                                       entries in this node's log
    certfed_log_cosigned_size                              of them, covered by a cosigned checkpoint
    certfed_log_checkpoint_age_seconds                     since the last witness cosignature
    certfed_attestations_issued_total{method}              by certification method
    certfed_feed_rows_total{outcome}                       data feed rows recorded, by outcome
    certfed_sync_verified_entries{origin}                  entries of a followed log verified
    certfed_sync_lag_seconds{origin}                       since a followed log was last verified
                                                           up to a fresh checkpoint of it
    certfed_cycle_last_run_timestamp_seconds               start of the latest committed cycle
    certfed_audit_chain_problems                           problems the audit chain's checks
                                                           found (kept; 0: intact)
    certfed_audit_chain_unverified_records                 records chained since the last check
    certfed_audit_chain_full_check_timestamp_seconds       end of the last pass over the whole
                                                           chain (absent before the first)
    certfed_database_up                                    0 when the queries above failed

`CycleMetrics` adds what the server's own cycle scheduler observes in this process (on the
replica that ran the day):

    certfed_cycle_duration_seconds                         how long a run of the cycle took
    certfed_cycle_runs_total{outcome}                      ran / already_ran / failed
    certfed_cycle_records_skipped_total                    records a run skipped (bad dates)

`AttestationIncidentMetrics` counts what members did that this process refused as an incident:

    certfed_attestation_id_reuses_total{issuing_node_id}   a different attestation delivered
                                                           under an id its issuer had used

`SignInMetrics` counts operator sign-ins this process refused:

    certfed_operator_sign_in_failures_total{reason}        wrong password, unknown user name,
                                                           account locked, address limited, ...

Outbox series are there for the registry and every peer in the directory, 0 when nothing waits;
sync series for every node in `follow`. Labels carry node ids, method names and outcome names
only: never an identity, name or locator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from certfed.v1 import common_pb2
from federation.errors import CertfedError
from federation.metrics import DirectoryGauges
from federation_node.links.directory_client import DirectoryClient
from federation_node.offices.sign_in import RefusalReason
from federation_node.store import audit_check, cycles_store, log_store, outbox, sync_store, tally
from federation_node.store.models import REGISTRY_DESTINATION, SignalOutcome

log = structlog.get_logger("certfed.metrics")

_METHOD_PREFIX = "CERTIFICATION_METHOD_"


def method_label(method: int) -> str:
    """`on_site` for CERTIFICATION_METHOD_ON_SITE; the number for a value this build lacks."""
    try:
        name = common_pb2.CertificationMethod.Name(common_pb2.CertificationMethod.ValueType(method))
    except ValueError:
        return str(method)
    return name.removeprefix(_METHOD_PREFIX).lower()


class _Families:
    """One scrape's metric families, created empty; `NodeCollector.families` lists them."""

    def __init__(self) -> None:
        self.pending = GaugeMetricFamily(
            "certfed_outbox_pending_messages",
            "Outbox messages waiting for delivery, by destination node (or registry).",
            labels=["destination"],
        )
        self.oldest = GaugeMetricFamily(
            "certfed_outbox_oldest_pending_age_seconds",
            "How long the oldest pending outbox message has waited, by destination.",
            labels=["destination"],
        )
        self.dead = GaugeMetricFamily(
            "certfed_outbox_dead_letters",
            "Outbox messages given up on (dead letters), by destination.",
            labels=["destination"],
        )
        self.directory_stale = GaugeMetricFamily(
            "certfed_directory_stale",
            "1 when the last directory refresh failed or was refused (working from a copy).",
        )
        self.log_size = GaugeMetricFamily(
            "certfed_log_size", "Entries (issued attestations) in this node's transparency log."
        )
        self.cosigned_size = GaugeMetricFamily(
            "certfed_log_cosigned_size",
            "Size of the log's latest checkpoint cosigned by the registry witness.",
        )
        self.checkpoint_age = GaugeMetricFamily(
            "certfed_log_checkpoint_age_seconds",
            "Time since the registry witness last cosigned a checkpoint of this log.",
        )
        self.issued = CounterMetricFamily(
            "certfed_attestations_issued",
            "Attestations this node has issued, by certification method.",
            labels=["method"],
        )
        self.feed_rows = CounterMetricFamily(
            "certfed_feed_rows",
            "Data feed rows (signals) recorded, by outcome: applied, unknown_person, ignored.",
            labels=["outcome"],
        )
        self.sync_entries = GaugeMetricFamily(
            "certfed_sync_verified_entries",
            "Entries of a followed node's log that this node has verified, by origin node.",
            labels=["origin"],
        )
        self.sync_lag = GaugeMetricFamily(
            "certfed_sync_lag_seconds",
            "Time since this node last verified a followed log up to a fresh cosigned "
            "checkpoint of it, by origin node.",
            labels=["origin"],
        )
        self.cycle_last_run = GaugeMetricFamily(
            "certfed_cycle_last_run_timestamp_seconds",
            "When the latest committed run of the daily cycle started, as a Unix time.",
        )
        self.audit_problems = GaugeMetricFamily(
            "certfed_audit_chain_problems",
            "Problems the checks of the audit trail's hash chain found and keep (0: intact).",
        )
        self.audit_unverified = GaugeMetricFamily(
            "certfed_audit_chain_unverified_records",
            "Audit records chained since the chain was last checked.",
        )
        self.audit_full_check = GaugeMetricFamily(
            "certfed_audit_chain_full_check_timestamp_seconds",
            "When a pass over the whole audit chain last ended, as a Unix time.",
        )
        self.directory = DirectoryGauges("in-use", "node's database")

    def all(self) -> list[Metric]:
        own = [family for family in vars(self).values() if isinstance(family, Metric)]
        return [*own, *self.directory.all()]


class NodeCollector:
    """A prometheus_client collector of the node's state; register it on the node's registry."""

    def __init__(
        self,
        node_id: str,
        engine: Engine,
        directory: DirectoryClient,
        clock: Callable[[], datetime],
        follow: Sequence[str] = (),
    ) -> None:
        self._node_id = node_id
        self._follow = tuple(follow)
        self._engine = engine
        self._directory = directory
        self._clock = clock

    def _destinations(self) -> list[str]:
        """Where this node may send: the registry and every other node the directory lists, so
        their outbox series read 0 rather than go missing while nothing waits."""
        try:
            trusted = self._directory.current()
        except CertfedError:
            return [REGISTRY_DESTINATION]
        peers = (node.node_id for node in trusted.directory.nodes)
        return [REGISTRY_DESTINATION, *(peer for peer in peers if peer != self._node_id)]

    @staticmethod
    def families() -> list[Metric]:
        return _Families().all()

    def describe(self) -> Iterable[Metric]:
        return self.families()

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        families = _Families()
        freshness = self._directory.freshness()
        families.directory.observe(
            freshness.version, freshness.issued_at, freshness.expires_at, now
        )
        families.directory_stale.add_metric([], 1.0 if freshness.stale else 0.0)
        try:
            with Session(self._engine) as session:
                backlog = outbox.backlog_by_destination(session)
                head = log_store.head(session)
                checkpoint = log_store.latest_checkpoint(session)
                issued = tally.totals(session, tally.ATTESTATIONS_ISSUED)
                feed_rows = tally.totals(session, tally.FEED_ROWS)
                synced = sync_store.verified_logs(session)
                cycle_started = cycles_store.latest_started_at(session)
                chain = audit_check.current(session)
        except SQLAlchemyError as error:
            log.warning("metrics.database_unavailable", error_type=type(error).__name__)
            families.directory.database_up.add_metric([], 0.0)
            return families.all()
        families.directory.database_up.add_metric([], 1.0)
        waiting = {entry.destination: entry for entry in backlog}
        for destination in self._destinations():
            waiting.setdefault(destination, outbox.Backlog(destination, 0, None, 0))
        for destination, entry in sorted(waiting.items()):
            families.pending.add_metric([destination], entry.pending)
            families.dead.add_metric([destination], entry.dead)
            since = entry.oldest_pending_since
            age = (now - since).total_seconds() if since is not None else 0.0
            families.oldest.add_metric([destination], max(age, 0.0))
        families.log_size.add_metric([], head.tree_size)
        families.cosigned_size.add_metric([], checkpoint.tree_size if checkpoint else 0)
        if checkpoint is not None:
            age = (now - checkpoint.cosigned_at).total_seconds()
            families.checkpoint_age.add_metric([], max(age, 0.0))
        for method, count in sorted(issued.items(), key=lambda item: int(item[0])):
            families.issued.add_metric([method_label(int(method))], count)
        for outcome in SignalOutcome:
            families.feed_rows.add_metric([outcome.value], feed_rows.get(outcome.value, 0))
        verified = {row.origin_node_id: row for row in synced}
        for origin in sorted(set(self._follow) | set(verified)):
            row = verified.get(origin)
            families.sync_entries.add_metric([origin], row.tree_size if row else 0)
            if row is not None:
                lag = (now - row.updated_at).total_seconds()
                families.sync_lag.add_metric([origin], max(lag, 0.0))
        if cycle_started is not None:
            families.cycle_last_run.add_metric([], cycle_started.timestamp())
        families.audit_problems.add_metric([], len(chain.problems))
        families.audit_unverified.add_metric([], chain.unverified)
        if chain.full_pass_at is not None:
            families.audit_full_check.add_metric([], chain.full_pass_at.timestamp())
        return families.all()


# From a cycle with nothing to do (milliseconds) to a year of a large office's roll.
CYCLE_DURATION_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class CycleMetrics:
    """What this process's cycle scheduler saw: runs by outcome, their duration, skipped records.

    `ran`: this process ran the day; `already_ran`: another replica (or `certfed node cycle`)
    had; `failed`: the run raised and is retried (after 2 s, then less often).
    """

    OUTCOMES = ("ran", "already_ran", "failed")

    def __init__(self, registry: CollectorRegistry) -> None:
        self._duration = Histogram(
            "certfed_cycle_duration_seconds",
            "How long a run of the daily cycle took in this process, whatever its outcome.",
            buckets=CYCLE_DURATION_BUCKETS_S,
            registry=registry,
        )
        self._runs = Counter(
            "certfed_cycle_runs",
            "Daily cycle attempts by this process's scheduler, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self._skipped = Counter(
            "certfed_cycle_records_skipped",
            "Beneficiary records a run of the daily cycle left as they were (dates unknown).",
            registry=registry,
        )
        for outcome in self.OUTCOMES:
            self._runs.labels(outcome)

    def observe(self, outcome: str, seconds: float, skipped: int = 0) -> None:
        self._runs.labels(outcome).inc()
        self._duration.observe(seconds)
        self._skipped.inc(skipped)


class AttestationIncidentMetrics:
    """Incidents of peers' deliveries refused by this process, by the member responsible."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._id_reuses = Counter(
            "certfed_attestation_id_reuses",
            "Attestations refused because their issuer had used the id for another one.",
            ["issuing_node_id"],
            registry=registry,
        )

    def id_reused(self, issuing_node_id: str) -> None:
        self._id_reuses.labels(issuing_node_id).inc()


class SignInMetrics:
    """Failed and refused operator sign-ins in this process, by reason (never by user name):
    wrong_password, unknown_user_name, account_locked, address_limited, operator_disabled."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._failures = Counter(
            "certfed_operator_sign_in_failures",
            "Operator sign-ins refused by this process, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in RefusalReason:
            self._failures.labels(reason.value)

    def failed(self, reason: RefusalReason) -> None:
        self._failures.labels(reason.value).inc()
