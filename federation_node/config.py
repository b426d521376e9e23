"""A node's configuration: one TOML file per node plus `CERTFED_NODE_<FIELD>` environment overrides.

Every field has a safe default except who the node is (node_id, region_codes, roles) and where
its registry is. Unknown keys are refused by name, so a typo never silently falls back to a
default. Relative paths are resolved against the directory of the configuration file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from federation.errors import InvalidInputError
from federation.limits import Limits
from federation.metrics import parse_host_port
from federation.regions import validate_region_code
from federation.roles import ROLE_VALUES, check_served_regions
from federation_node.rules.minimisation import MinimisationConfig

ENV_PREFIX = "CERTFED_NODE_"
# Settings that moved out of node.toml, and where each lives now. A file that still sets one is
# refused rather than run with a value the node would no longer read.
MOVED_SETTINGS = {
    "validity_months": (
        "the validity period is set in the policy file now: write `period_months = N` under "
        "`[validity]` in policy.toml (the file `policy_file` names; docs/policy.md)"
    ),
}


@dataclass(frozen=True)
class DispatchConfig:
    """How the outbox dispatcher delivers messages to peers and the registry, and how long and
    how often a message is retried before it becomes a dead letter."""

    poll_interval_s: float = 1.0
    batch_size: int = 50
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 30.0
    max_attempts: int = 50
    max_age_s: float = 7 * 24 * 3600.0
    # Random extra delay (uniform in [0, jitter_s]) so replicas and peers do not retry in step.
    jitter_s: float = 1.0
    # A destination that refused a connection is probed (a gRPC health check) after
    # probe_initial_s, then at doubling intervals up to probe_max_s; once it answers again,
    # what waits for it goes at once instead of at the end of its backoff.
    probe_initial_s: float = 0.1
    probe_max_s: float = 0.5

    def backoff_s(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt; never above max_backoff_s."""
        wait = wait_exponential_jitter(
            multiplier=self.initial_backoff_s, max=self.max_backoff_s, jitter=self.jitter_s
        )
        state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = max(attempts, 1)
        return float(wait(state))


@dataclass(frozen=True)
class OperatorSessionsConfig:
    """How long a signed-in operator's session lasts, and how failed sign-ins are limited
    (`[operator_sessions]` in node.toml; described in the README's configuration section)."""

    # A session ends after this long without a call, and this long after sign-in at the latest.
    idle_minutes: float = 15.0
    lifetime_hours: float = 10.0
    # This many failures for one account within lockout_minutes lock it until the oldest of
    # them is lockout_minutes old.
    max_failed_sign_ins: int = 5
    lockout_minutes: float = 15.0
    # Failures from one address (the client address a web desk reports, else the connection's)
    # within lockout_minutes before that address is refused too.
    max_failed_per_address: int = 20
    # Sign-in attempts per second (and burst) from one connection address, checked in memory
    # before any database work.
    peer_sign_ins_per_s: float = 5.0
    peer_sign_in_burst: int = 20

    def validate(self) -> None:
        for name in (f.name for f in dataclasses.fields(self)):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"operator_sessions.{name}", "must be positive")
        if self.idle_minutes > self.lifetime_hours * 60:
            raise InvalidInputError(
                "operator_sessions.idle_minutes", "must not exceed lifetime_hours"
            )


WEB_TLS_MODES = ("off", "node")
# Longest sequencing pool: attestations must be provable within about a second or two.
MAX_SEQUENCING_POOL_S = 5.0
# Bounds of audit_full_check_interval_s: a full pass costs about 15 µs a record (45 s at three
# million records), and an edit to an old record shows within a day at the latest, which the
# CertfedAuditChainNotChecked alert watches.
MIN_AUDIT_FULL_CHECK_S = 60.0
MAX_AUDIT_FULL_CHECK_S = 86400.0


@dataclass(frozen=True)
class WebConfig:
    """The office's web desk (`certfed web serve`, docs/web-desk.md): where it listens, whether
    it serves HTTPS itself with the node's certificate ("node") or plain HTTP on loopback or
    behind the office's reverse proxy ("off"), the file holding its cookie and CSRF key
    (relative to data_dir; created 0600 when missing; every replica of the desk needs the same
    one), and where it reaches the node's desk (host:port; empty for desk_listen, which is right
    when both run on one host but not when the node listens on 0.0.0.0 or behind a Service)."""

    listen: str = "127.0.0.1:7700"
    tls: str = "off"
    secret_file: Path = Path("web.secret")
    desk_endpoint: str = ""


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    region_codes: tuple[str, ...]
    roles: tuple[str, ...]
    registry_endpoint: str
    registry_enrol_endpoint: str
    data_dir: Path
    display_name: str = ""
    # Name of the office that certifies people here, written into attestations.
    certifying_agency: str = ""
    # Where peers reach this node's FederationService (host:port), as listed in the directory.
    endpoint: str = "127.0.0.1:7500"
    listen: str = "127.0.0.1:7500"
    desk_listen: str = "127.0.0.1:7600"
    database_url: str = ""
    # Registry root public key and federation CA certificate, received out of band.
    root_public_key: Path = Path("trust/root.pub")
    ca_certificate: Path = Path("trust/ca.pem")
    # The registry witness's note verifier key (c2sp.org/signed-note vkey), received out of band
    # like root.pub: checkpoints are accepted only with its cosignature.
    witness_public_key: Path = Path("trust/witness.vkey")
    # How often this node signs a checkpoint of its log and has the registry witness cosign it.
    checkpoint_interval_s: float = 10.0
    # When attestations wait to be sequenced, the checkpoint covering them is signed and
    # cosigned this long after the first of them was appended (a short pool, tlog/transparency.py)
    # rather than at the next checkpoint_interval_s; an idle log signs nothing new.
    sequencing_pool_s: float = 0.5
    # Whether this node witnesses (cosigns) the checkpoints of the other members' logs, whose
    # signing keys the signed directory lists (c2sp.org/tlog-witness, tlog/node_witness.py).
    witness: bool = True
    # Node ids of the witnesses this node asks to cosign its own checkpoints, besides the
    # registry's; offices that require them name their keys in their policy (docs/policy.md).
    ask_witnesses: tuple[str, ...] = ()
    # How often audit records queued by business transactions are chained (audit_sequencer.py).
    audit_sequence_interval_s: float = 0.2
    # Locator evaluations a roll import or a bulk registration leaves of the registry's daily
    # quota for the office's federation work (requests from other offices, the desk's
    # registrations and certifications); 0 lets an import use the whole quota.
    locator_reserve: int = 20_000
    # How often the whole audit chain is re-read and verified in the background
    # (audit_checker.py); a view of the audit trail verifies only what was added since.
    audit_full_check_interval_s: float = 6 * 3600.0
    # Nodes whose logs this node syncs in the background (node ids).
    follow: tuple[str, ...] = ()
    directory_refresh_s: float = 60.0
    # Renew the TLS certificate when less than this fraction of its validity is left.
    certificate_renew_fraction: float = 1 / 3
    # The region's entitlement policy (docs/policy.md); the defaults apply when it is absent.
    policy_file: Path = Path("policy.toml")
    # Hour (UTC) at which the server runs the daily cycle; -1: only `certfed node cycle` runs it.
    cycle_hour_utc: int = 2
    log_level: str = "info"
    # This process's name among the node's replicas, which owns the outbox leases it takes;
    # empty: an id kept in <data_dir>/replica.id, made at first start (docs/operations.md).
    replica_id: str = ""
    # Prometheus /metrics over plain HTTP at host:port; empty: off (docs/operations.md).
    metrics_address: str = ""
    # grpc.health.v1 alone, without TLS, for Kubernetes gRPC probes; empty: off.
    health_listen: str = ""
    # RecordSignals set-based (matched, signed, stored and logged by the batch); false: one row
    # at a time through the ORM, the reference path `certfed bench feed` measures against.
    bulk_feed: bool = True
    # The daily cycle in batches of set-based writes, each its own transaction; false: the whole
    # day in one transaction, one ORM object per person, the reference `certfed bench cycle`
    # measures against.
    bulk_cycle: bool = True
    limits: Limits = field(default_factory=Limits)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    # Identity fields an assistance request carries, by the receiving node's role.
    minimisation: MinimisationConfig = field(default_factory=MinimisationConfig)
    web: WebConfig = field(default_factory=WebConfig)
    operator_sessions: OperatorSessionsConfig = field(default_factory=OperatorSessionsConfig)
    # Where this office sends requests for a region several nodes serve: region code -> node id
    # (`[routing]`, e.g. `370200 = "qingdao"`; the most specific code covering a region applies).
    # Without an entry such a region is refused, never given to the lowest node id.
    routing: dict[str, str] = field(default_factory=dict)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'node.db'}"

    @property
    def primary_region(self) -> str:
        return self.region_codes[0]


def _coerce(name: str, value: Any, target: Any) -> Any:
    """Convert a TOML or environment value to the type of the field's default."""
    if isinstance(target, bool):
        if isinstance(value, str):
            return value.lower() in {"1", "true", "yes", "on"}
        return bool(value)
    if isinstance(target, int) and not isinstance(target, bool):
        return int(value)
    if isinstance(target, float):
        return float(value)
    if isinstance(target, Path):
        return Path(value)
    if isinstance(target, tuple):
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if not isinstance(value, list | tuple):
            raise InvalidInputError(name, "must be a list")
        return tuple(str(item) for item in value)
    if isinstance(target, str):
        return str(value)
    raise InvalidInputError(name, "unsupported setting")


def _sub_config(name: str, cls: Any, table: Any) -> Any:
    if not isinstance(table, dict):
        raise InvalidInputError(name, "must be a table")
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidInputError(f"{name}.{unknown[0]}", "unknown setting")
    values = {
        key: _coerce(f"{name}.{key}", value, getattr(defaults, key)) for key, value in table.items()
    }
    return dataclasses.replace(defaults, **values)


# Settings that are TOML tables; the environment overrides only plain settings.
_TABLES = ("limits", "dispatch", "minimisation", "web", "operator_sessions", "routing")
_REQUIRED = ("node_id", "region_codes", "roles", "registry_endpoint", "registry_enrol_endpoint")
_TEMPLATE: dict[str, Any] = {
    "node_id": "",
    "region_codes": (),
    "roles": (),
    "registry_endpoint": "",
    "registry_enrol_endpoint": "",
    "data_dir": Path("."),
}


def load_node_config(path: Path, environ: dict[str, str] | None = None) -> NodeConfig:
    """Read and validate a node configuration file; raise InvalidInputError naming the setting."""
    env = dict(os.environ if environ is None else environ)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise InvalidInputError("config", f"no configuration file at {path}") from error
    except tomllib.TOMLDecodeError as error:
        raise InvalidInputError("config", f"{path} is not valid TOML: {error}") from error
    base = path.resolve().parent
    field_types = {f.name: f for f in dataclasses.fields(NodeConfig)}
    for name, instead in MOVED_SETTINGS.items():
        if name in raw:
            raise InvalidInputError(name, f"remove it from {path.name}; {instead}")
        if ENV_PREFIX + name.upper() in env:
            raise InvalidInputError(name, f"unset {ENV_PREFIX + name.upper()}; {instead}")
    unknown = sorted(set(raw) - set(field_types))
    if unknown:
        raise InvalidInputError(unknown[0], f"unknown setting in {path.name}")
    for name in field_types:
        key = ENV_PREFIX + name.upper()
        if key in env and name not in _TABLES:
            raw[name] = env[key]
    missing = [name for name in _REQUIRED if not raw.get(name)]
    if missing:
        raise InvalidInputError(missing[0], f"required in {path.name}")
    values: dict[str, Any] = {}
    defaults = NodeConfig(**_TEMPLATE)
    for name, value in raw.items():
        if name == "limits":
            values[name] = _sub_config("limits", Limits, value)
        elif name == "minimisation":
            values[name] = _sub_config("minimisation", MinimisationConfig, value)
        elif name == "dispatch":
            values[name] = _sub_config("dispatch", DispatchConfig, value)
        elif name == "web":
            values[name] = _sub_config("web", WebConfig, value)
        elif name == "operator_sessions":
            values[name] = _sub_config("operator_sessions", OperatorSessionsConfig, value)
        elif name == "routing":
            values[name] = _routing(value)
        else:
            values[name] = _coerce(name, value, getattr(defaults, name))
    config = NodeConfig(**{**_TEMPLATE, **values})
    data_dir = config.data_dir if config.data_dir.is_absolute() else base / config.data_dir
    config = dataclasses.replace(
        config,
        data_dir=data_dir,
        root_public_key=_under(data_dir, config.root_public_key),
        ca_certificate=_under(data_dir, config.ca_certificate),
        witness_public_key=_under(data_dir, config.witness_public_key),
        policy_file=_under(data_dir, config.policy_file),
        web=dataclasses.replace(config.web, secret_file=_under(data_dir, config.web.secret_file)),
    )
    validate_node_config(config)
    return config


def _routing(table: Any) -> dict[str, str]:
    if not isinstance(table, dict):
        raise InvalidInputError("routing", 'must be a table of region code = "node id"')
    routing: dict[str, str] = {}
    for code, node_id in table.items():
        validate_region_code(str(code), f"routing.{code}")
        if not isinstance(node_id, str) or not node_id.strip():
            raise InvalidInputError(f"routing.{code}", "must name a node id")
        routing[str(code)] = node_id.strip()
    return routing


def _under(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


def validate_node_config(config: NodeConfig) -> None:
    if not config.region_codes:
        raise InvalidInputError("region_codes", "a node serves at least one region")
    for code in config.region_codes:
        validate_region_code(code, "region_codes")
    if not config.roles:
        raise InvalidInputError("roles", f"give at least one of {', '.join(ROLE_VALUES)}")
    for role in config.roles:
        if role not in ROLE_VALUES:
            raise InvalidInputError("roles", f"{role!r} is not one of {', '.join(ROLE_VALUES)}")
    check_served_regions(config.roles, config.region_codes, "region_codes")
    if not -1 <= config.cycle_hour_utc <= 23:
        raise InvalidInputError("cycle_hour_utc", "must be an hour from 0 to 23, or -1 for none")
    config.minimisation.validate()
    config.limits.validate()
    config.operator_sessions.validate()
    if config.directory_refresh_s <= 0:
        raise InvalidInputError("directory_refresh_s", "must be positive")
    if not 0 < config.certificate_renew_fraction < 1:
        raise InvalidInputError(
            "certificate_renew_fraction", "must be between 0 and 1 (e.g. 0.33: the last third)"
        )
    if config.checkpoint_interval_s <= 0:
        raise InvalidInputError("checkpoint_interval_s", "must be positive")
    if not 0 < config.sequencing_pool_s <= MAX_SEQUENCING_POOL_S:
        raise InvalidInputError(
            "sequencing_pool_s", f"must be positive and at most {MAX_SEQUENCING_POOL_S} seconds"
        )
    if config.node_id in config.ask_witnesses:
        raise InvalidInputError("ask_witnesses", "a node does not witness its own log")
    if config.audit_sequence_interval_s <= 0:
        raise InvalidInputError("audit_sequence_interval_s", "must be positive")
    if config.locator_reserve < 0:
        raise InvalidInputError("locator_reserve", "must be 0 or a positive number of locators")
    if not MIN_AUDIT_FULL_CHECK_S <= config.audit_full_check_interval_s <= MAX_AUDIT_FULL_CHECK_S:
        raise InvalidInputError(
            "audit_full_check_interval_s",
            f"must be between {MIN_AUDIT_FULL_CHECK_S:.0f} and "
            f"{MAX_AUDIT_FULL_CHECK_S:.0f} seconds (a day)",
        )
    for node_id in config.follow:
        if node_id == config.node_id:
            raise InvalidInputError("follow", "a node does not follow its own log")
    for name in ("metrics_address", "health_listen"):
        if getattr(config, name):
            parse_host_port(getattr(config, name), name)
    parse_host_port(config.web.listen, "web.listen")
    if config.web.tls not in WEB_TLS_MODES:
        raise InvalidInputError("web.tls", f"must be one of {', '.join(WEB_TLS_MODES)}")


def render_node_config(values: dict[str, Any]) -> str:
    """A TOML file for the given top-level settings (strings, numbers and lists of strings)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, list | tuple):
            items = ", ".join(f'"{item}"' for item in value)
            lines.append(f"{key} = [{items}]")
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, dict):
            continue
        else:
            lines.append(f'{key} = "{value}"')
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines.extend(
                f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in value.items()
            )
    return "\n".join(lines) + "\n"
