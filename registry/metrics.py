"""What the registry's operators watch, read from its database at each scrape.

    certfed_directory_version                      latest published directory
    certfed_directory_age_seconds                  since it was issued (republished at half life)
    certfed_directory_expiry_timestamp_seconds     when it expires, as a Unix time
    certfed_registry_nodes{status}                 enrolled nodes by status (pending ones await
                                                   an administrator)
    certfed_witness_forks_recorded{node}           forks the witness recorded, by node id
    certfed_witness_last_fork_timestamp_seconds{node}  when the latest was detected
    certfed_database_up                            0 when the queries above failed

The directory series carry the same names on nodes, where they describe the copy in use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError

from federation.errors import CertfedError
from federation.metrics import DirectoryGauges
from registry.operations import Registry
from registry.tables import NodeState
from registry.utc import as_utc

log = structlog.get_logger("certfed.metrics")


class _Families:
    def __init__(self) -> None:
        self.nodes = GaugeMetricFamily(
            "certfed_registry_nodes", "Enrolled nodes by status.", labels=["status"]
        )
        self.forks = GaugeMetricFamily(
            "certfed_witness_forks_recorded",
            "Forks the registry witness recorded (two histories of one log), by node id.",
            labels=["node"],
        )
        self.last_fork = GaugeMetricFamily(
            "certfed_witness_last_fork_timestamp_seconds",
            "When the witness last recorded a fork of the node's log, as a Unix time.",
            labels=["node"],
        )
        self.directory = DirectoryGauges("latest published", "registry's database")

    def all(self) -> list[Metric]:
        return [self.nodes, self.forks, self.last_fork, *self.directory.all()]


class RegistryCollector:
    """A prometheus_client collector of the registry's state."""

    def __init__(self, registry: Registry, clock: Callable[[], datetime]) -> None:
        self._registry = registry
        self._clock = clock

    @staticmethod
    def families() -> list[Metric]:
        return _Families().all()

    def describe(self) -> Iterable[Metric]:
        return self.families()

    def collect(self) -> Iterable[Metric]:
        families = _Families()
        try:
            latest = self._registry.directory(known_version=0)
            nodes = self._registry.list_nodes()
            forks = self._registry.witness.forks_by_node()
        except (SQLAlchemyError, CertfedError) as error:
            log.warning("metrics.database_unavailable", error_type=type(error).__name__)
            families.directory.database_up.add_metric([], 0.0)
            return families.all()
        families.directory.database_up.add_metric([], 1.0)
        if latest is not None:
            families.directory.observe(
                latest.version,
                as_utc(latest.issued_at),
                as_utc(latest.expires_at),
                self._clock(),
            )
        counts = dict.fromkeys((state.value for state in NodeState), 0)
        for node in nodes:
            counts[node.status] = counts.get(node.status, 0) + 1
        for status, count in counts.items():
            families.nodes.add_metric([status], count)
        for node_id, (recorded, latest_at) in sorted(forks.items()):
            families.forks.add_metric([node_id], recorded)
            families.last_fork.add_metric([node_id], as_utc(latest_at).timestamp())
        return families.all()
