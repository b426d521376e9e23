"""The registry's configuration: a TOML file plus `CERTFED_REGISTRY_<FIELD>` environment overrides.

Promises: a loaded `RegistryConfig` is complete and valid. Unknown keys (top level or in the
`[limits]` table) are refused by name, so a typo never silently falls back to a default; values of
the wrong type are refused naming the key; relative paths are resolved against the directory of
the configuration file. Environment variables override the file: `CERTFED_REGISTRY_<FIELD>` for
a top-level field (e.g. `CERTFED_REGISTRY_DATABASE_URL`) and `CERTFED_REGISTRY_LIMITS_<FIELD>` for
a limit (e.g. `CERTFED_REGISTRY_LIMITS_CALL_TIMEOUT_S`).

`RegistryPaths` names every file the registry keeps in its data directory:

    root.key            Ed25519 root signing key, PKCS#8 PEM, mode 0600
    root.pub            the root public key: lowercase hex of the raw 32 bytes, one line
    root.next.key       during a root rotation only: the new root key, until the rotation commits
    ca.key / ca.pem     federation CA (ECDSA P-256) private key (0600) and certificate
    registry.key/.pem   the registry's own TLS key (0600) and certificate, SAN registry.certfed
    locator_oprf.key    the locator key: the RFC 9497 OPRF scalar (32 bytes) only the registry
                        holds, mode 0600 (a `locator.key` left from before is no longer read)
    witness.key         Ed25519 key cosigning the nodes' log checkpoints, PKCS#8 PEM, mode 0600
    admin/<name>.key    administrator TLS keys (0600) and certificates, SAN <name>.admin.certfed
    admin/<name>.pem
    trust/root.pub      what nodes receive out of band: copies of root.pub and ca.pem, nothing
    trust/ca.pem        secret
    trust/witness.vkey  the witness's C2SP verifier key <name>+<key id>+<base64(0x04 || key)>
    registry.db         the SQLite database when no database_url is configured
    registry.ready.json written by `serve` once listening: {"mtls", "enrol", "pid"}, and
                        "metrics" (the /metrics URL) and "health" (port) when configured
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.errors import InvalidInputError
from federation.limits import LOCATOR_BATCH, Limits
from federation.metrics import parse_host_port

ENV_PREFIX = "CERTFED_REGISTRY_"
LIMITS_ENV_PREFIX = "CERTFED_REGISTRY_LIMITS_"
LOG_LEVELS = ("debug", "info", "warning", "error")
FEDERATION_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CONFIG_FILE_NAME = "registry.toml"


@dataclass(frozen=True)
class RegistryPaths:
    """Where the registry's key material and state live inside its data directory."""

    data_dir: Path

    @property
    def root_key(self) -> Path:
        return self.data_dir / "root.key"

    @property
    def root_public_key(self) -> Path:
        return self.data_dir / "root.pub"

    @property
    def next_root_key(self) -> Path:
        return self.data_dir / "root.next.key"

    @property
    def ca_key(self) -> Path:
        return self.data_dir / "ca.key"

    @property
    def ca_certificate(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def registry_key(self) -> Path:
        return self.data_dir / "registry.key"

    @property
    def registry_certificate(self) -> Path:
        return self.data_dir / "registry.pem"

    @property
    def locator_oprf_key(self) -> Path:
        return self.data_dir / "locator_oprf.key"

    @property
    def witness_key(self) -> Path:
        return self.data_dir / "witness.key"

    @property
    def admin_dir(self) -> Path:
        return self.data_dir / "admin"

    def admin_key(self, name: str) -> Path:
        return self.admin_dir / f"{name}.key"

    def admin_certificate(self, name: str) -> Path:
        return self.admin_dir / f"{name}.pem"

    @property
    def trust_dir(self) -> Path:
        return self.data_dir / "trust"

    @property
    def trust_root_public_key(self) -> Path:
        return self.trust_dir / "root.pub"

    @property
    def trust_ca_certificate(self) -> Path:
        return self.trust_dir / "ca.pem"

    @property
    def trust_witness_vkey(self) -> Path:
        return self.trust_dir / "witness.vkey"

    @property
    def ready_file(self) -> Path:
        return self.data_dir / "registry.ready.json"

    @property
    def default_database(self) -> Path:
        return self.data_dir / "registry.db"

    @property
    def config_file(self) -> Path:
        return self.data_dir / CONFIG_FILE_NAME


@dataclass(frozen=True)
class RegistryConfig:
    federation_id: str
    data_dir: Path
    # Empty means the SQLite file registry.db in data_dir; see `effective_database_url`.
    database_url: str = ""
    # Mutual-TLS port: administration, locator and directory calls.
    listen: str = "127.0.0.1:7400"
    # TLS without a client certificate: Enrol, GetEnrolment and GetDirectory only.
    enrol_listen: str = "127.0.0.1:7401"
    # How long a published directory stays valid.
    directory_lifetime_s: float = Limits().directory_lifetime_s
    # How often the server checks whether less than half the directory's lifetime is left.
    republish_interval_s: float = 600.0
    # A directory older than this is re-signed at the next check even with lifetime to spare,
    # so nodes see a fresh signature (and its new expiry) every hour.
    directory_resign_s: float = 3600.0
    # Validity of the TLS certificate a node receives when approved or when it renews.
    node_certificate_days: int = 365
    # After a node rotates its signing key, how long the previous key still signs (7 days).
    signing_key_overlap_s: float = 7 * 24 * 3600.0
    # After a node renews its TLS certificate, how long the previous one is still accepted.
    certificate_overlap_s: float = 24 * 3600.0
    # The least time between two signing-key rotations of one node, and between two certificate
    # renewals of one node: each publishes a directory, so a member cannot flood it (0: no limit).
    key_change_interval_s: float = 3600.0
    # A signing key that ended or was revoked longer ago than this leaves the live directory for
    # the signed key history (GetKeyHistory), so the directory does not grow with time.
    key_history_after_s: float = 24 * 3600.0
    # Locator evaluations (EvaluateLocators): blinded elements one call may carry, elements per
    # second a node may have evaluated (its bucket holds `locator_burst`, at least one batch),
    # and elements per node per UTC day. The daily quota is the bound on a member trying
    # candidate identity numbers; the rate and burst only smooth spikes, so they are sized for
    # a bulk roll import at full speed (a 100,000-row roll fits in the burst, and the bucket
    # refills faster than a node blinds and unblinds) rather than to slow brute force.
    locator_batch_max: int = 1000
    locator_rate_per_s: float = 10_000.0
    locator_burst: int = 100_000
    locator_daily_quota: int = 1_000_000
    # Published directory versions older than this are deleted (the latest is always kept).
    directory_retention_s: float = 30 * 24 * 3600.0
    # The registry renews its own TLS certificate this long before it expires (30 days).
    registry_certificate_renew_before_s: float = 30 * 24 * 3600.0
    log_level: str = "info"
    # Prometheus /metrics over plain HTTP at host:port; empty: off (docs/operations.md).
    metrics_address: str = ""
    # grpc.health.v1 alone, without TLS, for Kubernetes gRPC probes; empty: off.
    health_listen: str = ""
    limits: Limits = field(default_factory=Limits)

    @property
    def paths(self) -> RegistryPaths:
        return RegistryPaths(self.data_dir)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.paths.default_database}"


_TOP_LEVEL = {f.name: f for f in dataclasses.fields(RegistryConfig) if f.name != "limits"}
_LIMIT_FIELDS = {f.name: f for f in dataclasses.fields(Limits)}


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """Convert a TOML or environment value to the field's type, refusing it by key if it won't."""
    # Field types are strings here (postponed annotations): "int", "float", "str", "Path".
    name = kind if isinstance(kind, str) else kind.__name__
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInputError(key, f"expected a {name}, got a TOML {type(value).__name__}")
    if name in ("str", "Path"):
        if not isinstance(value, str):
            raise InvalidInputError(key, f"expected a string, got {value!r}")
        return value
    try:
        if name == "int":
            if isinstance(value, float):
                raise ValueError
            return int(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    except ValueError:
        raise InvalidInputError(key, f"{value!r} is not a valid {name}") from None


def _check_address(key: str, address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInputError(key, f"{address!r} is not host:port (port 0 picks a free one)")


def _validate(config: RegistryConfig) -> None:
    if not FEDERATION_ID_PATTERN.fullmatch(config.federation_id):
        raise InvalidInputError(
            "federation_id",
            "use 1-63 lowercase letters, digits or '-', starting with a letter or digit",
        )
    _check_address("listen", config.listen)
    _check_address("enrol_listen", config.enrol_listen)
    for name in ("metrics_address", "health_listen"):
        if getattr(config, name):
            parse_host_port(getattr(config, name), name)
    if config.directory_lifetime_s <= 0:
        raise InvalidInputError("directory_lifetime_s", "must be a positive number of seconds")
    if not 0 < config.republish_interval_s <= config.directory_lifetime_s / 2:
        raise InvalidInputError(
            "republish_interval_s",
            "must be positive and at most half of directory_lifetime_s, or the directory "
            "could expire between two checks",
        )
    if config.directory_resign_s <= 0:
        raise InvalidInputError("directory_resign_s", "must be a positive number of seconds")
    if config.node_certificate_days <= 0:
        raise InvalidInputError("node_certificate_days", "must be a positive number of days")
    for name in (
        "signing_key_overlap_s",
        "certificate_overlap_s",
        "registry_certificate_renew_before_s",
    ):
        if getattr(config, name) <= 0:
            raise InvalidInputError(name, "must be a positive number of seconds")
    for name in ("key_change_interval_s", "key_history_after_s"):
        if getattr(config, name) < 0:
            raise InvalidInputError(name, "must be zero or a positive number of seconds")
    if config.locator_batch_max < LOCATOR_BATCH:
        raise InvalidInputError(
            "locator_batch_max", f"must be at least {LOCATOR_BATCH}, the batch nodes send"
        )
    if config.locator_daily_quota <= 0:
        raise InvalidInputError("locator_daily_quota", "must be a positive number of locators")
    if config.locator_rate_per_s <= 0:
        raise InvalidInputError("locator_rate_per_s", "must be a positive number per second")
    if config.locator_burst < config.locator_batch_max:
        raise InvalidInputError(
            "locator_burst", "must be at least locator_batch_max, or no full batch could pass"
        )
    if config.directory_retention_s < config.directory_lifetime_s:
        raise InvalidInputError(
            "directory_retention_s",
            "must be at least directory_lifetime_s: a version still valid is never deleted",
        )
    if config.log_level not in LOG_LEVELS:
        raise InvalidInputError("log_level", f"use one of {', '.join(LOG_LEVELS)}")
    config.limits.validate()


def load_registry_config(path: Path, environ: Mapping[str, str] | None = None) -> RegistryConfig:
    """Read, override from the environment, resolve paths and validate; raises InvalidInputError.

    A missing or unreadable file, or one that is not TOML, is reported as an InvalidInputError
    naming the file, so the CLI can print one line.
    """
    env = dict(os.environ if environ is None else environ)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInputError(str(path), f"cannot read configuration: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(str(path), f"not valid TOML: {error}") from None

    raw_limits = document.pop("limits", {})
    if not isinstance(raw_limits, dict):
        raise InvalidInputError("limits", "must be a table ([limits])")
    for key in document:
        if key not in _TOP_LEVEL:
            raise InvalidInputError(key, f"unknown setting in {path.name}")
    for key in raw_limits:
        if key not in _LIMIT_FIELDS:
            raise InvalidInputError(f"limits.{key}", f"unknown limit in {path.name}")

    values: dict[str, Any] = {
        key: _coerce(key, value, _TOP_LEVEL[key].type) for key, value in document.items()
    }
    limit_values: dict[str, Any] = {
        key: _coerce(f"limits.{key}", value, _LIMIT_FIELDS[key].type)
        for key, value in raw_limits.items()
    }
    for name, variable in env.items():
        if name.startswith(LIMITS_ENV_PREFIX):
            key = name.removeprefix(LIMITS_ENV_PREFIX).lower()
            if key not in _LIMIT_FIELDS:
                raise InvalidInputError(name, "unknown limit in the environment")
            limit_values[key] = _coerce(name, variable, _LIMIT_FIELDS[key].type)
        elif name.startswith(ENV_PREFIX):
            key = name.removeprefix(ENV_PREFIX).lower()
            if key not in _TOP_LEVEL:
                raise InvalidInputError(name, "unknown registry setting in the environment")
            values[key] = _coerce(name, variable, _TOP_LEVEL[key].type)

    for required in ("federation_id", "data_dir"):
        if not values.get(required):
            raise InvalidInputError(required, f"missing from {path.name}")
    base = path.resolve().parent
    data_dir = Path(values["data_dir"]).expanduser()
    values["data_dir"] = data_dir if data_dir.is_absolute() else base / data_dir
    config = RegistryConfig(**values, limits=Limits(**limit_values))
    _validate(config)
    return config


def default_config_text(federation_id: str) -> str:
    """The registry.toml `init_registry` writes: every setting with its default, data_dir '.'."""
    defaults = RegistryConfig(federation_id=federation_id, data_dir=Path())
    limits = defaults.limits
    lines = [
        "# certfed registry configuration. Environment variables CERTFED_REGISTRY_<SETTING>",
        "# (and CERTFED_REGISTRY_LIMITS_<LIMIT>) override what is written here.",
        f'federation_id = "{federation_id}"',
        "# Relative to this file.",
        'data_dir = "."',
        "# Empty: SQLite file registry.db in data_dir. Production: postgresql+psycopg://...",
        'database_url = ""',
        f'listen = "{defaults.listen}"',
        f'enrol_listen = "{defaults.enrol_listen}"',
        f"directory_lifetime_s = {defaults.directory_lifetime_s}",
        f"republish_interval_s = {defaults.republish_interval_s}",
        f"directory_resign_s = {defaults.directory_resign_s}",
        f"node_certificate_days = {defaults.node_certificate_days}",
        f"signing_key_overlap_s = {defaults.signing_key_overlap_s}",
        f"certificate_overlap_s = {defaults.certificate_overlap_s}",
        f"key_change_interval_s = {defaults.key_change_interval_s}",
        f"key_history_after_s = {defaults.key_history_after_s}",
        f"directory_retention_s = {defaults.directory_retention_s}",
        "# EvaluateLocators: elements per call, per second and burst per node, per node per day.",
        f"locator_batch_max = {defaults.locator_batch_max}",
        f"locator_rate_per_s = {defaults.locator_rate_per_s}",
        f"locator_burst = {defaults.locator_burst}",
        f"locator_daily_quota = {defaults.locator_daily_quota}",
        f"registry_certificate_renew_before_s = {defaults.registry_certificate_renew_before_s}",
        f'log_level = "{defaults.log_level}"',
        "# Prometheus metrics over HTTP (host:port); empty: off.",
        f'metrics_address = "{defaults.metrics_address}"',
        "# Plaintext gRPC health checking only, for probes that speak no TLS; empty: off.",
        f'health_listen = "{defaults.health_listen}"',
        "",
        "[limits]",
    ]
    for name in _LIMIT_FIELDS:
        lines.append(f"{name} = {getattr(limits, name)!r}")
    return "\n".join(lines) + "\n"
