"""What the `certfed registry` administration commands share: reaching the running registry
over mTLS as an administrator, their options, and their failures as one line on stderr.

An administrator's certificate is `<data_dir>/admin/<NAME>.{key,pem}`; the registry's port is in
the ready file the server writes, or else in the configured `listen` address (`--endpoint`
overrides both). A command returns the process exit code; a failure prints the status and the
registry's message on stderr and returns non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from certfed.v1 import common_pb2
from federation.errors import CertfedError, InvalidInputError, PreconditionError
from federation.registry_client import RegistryAdminClient
from federation.transport import TlsMaterial
from registry.config import RegistryConfig, load_registry_config
from signing.errors import SigningError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}  # noqa: S104 - recognised, never bound here

Command = Callable[[argparse.Namespace], int]


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAILED


def guarded(command: Command) -> Command:
    """Run a command, turning every expected failure into one line on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CertfedError as error:
            return fail(f"{error.status.name}: {error}")
        except SigningError as error:
            return fail(str(error))
        except OSError as error:
            return fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


def admin_endpoint(config: RegistryConfig) -> str:
    """Where an administrator reaches the running registry's mTLS port."""
    host, _, port = config.listen.rpartition(":")
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    ready = config.paths.ready_file
    if ready.exists():
        try:
            port = str(int(json.loads(ready.read_text(encoding="utf-8"))["mtls"]))
        except (ValueError, KeyError, TypeError):
            raise PreconditionError(f"{ready} is not a registry ready file") from None
    if port == "0":
        raise PreconditionError(
            f"the registry listens on a port chosen at start and {ready} does not exist: "
            "is the registry running? (or pass --endpoint)"
        )
    return f"{host}:{port}"


def admin_client(args: argparse.Namespace) -> tuple[RegistryConfig, RegistryAdminClient]:
    """The configuration and an mTLS client of the running registry, as `--admin`."""
    config = load_registry_config(Path(args.config))
    paths = config.paths
    certificate, key = paths.admin_certificate(args.admin), paths.admin_key(args.admin)
    if not certificate.exists() or not key.exists():
        raise PreconditionError(
            f"no administrator certificate {certificate} (and key {key.name}); "
            "`certfed registry init` creates one for the first administrator"
        )
    tls = TlsMaterial.load(certificate, key, paths.ca_certificate)
    endpoint = args.endpoint or admin_endpoint(config)
    return config, RegistryAdminClient(endpoint, tls.channel_credentials(), config.limits)


def effective_at(text: str | None) -> datetime | None:
    """`--effective-at`, which must name its time zone; None when not given."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError("--effective-at", f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidInputError(
            "--effective-at", "give a time zone, e.g. 2025-03-01T09:00:00+08:00"
        )
    return moment


def status_command(status: common_pb2.NodeStatus.ValueType, verb: str) -> Command:
    """A command setting the node `args.node_id` to `status`, printing `verb`."""

    @guarded
    def command(args: argparse.Namespace) -> int:
        effective = effective_at(args.effective_at)
        _, client = admin_client(args)
        with client:
            version = client.set_status(args.node_id, status, args.reason or "", effective)
        print(f"{verb} {args.node_id}; directory version {version}")
        return EXIT_OK

    command.__name__ = f"{verb}_command"
    return command


def admin_options(parser: argparse.ArgumentParser) -> None:
    """`--config`, `--admin` and `--endpoint`, which `admin_client` reads."""
    parser.add_argument("--config", required=True, help="the registry's registry.toml")
    parser.add_argument(
        "--admin", default="admin", help="administrator certificate name (default: admin)"
    )
    parser.add_argument(
        "--endpoint", help="host:port of the registry's mTLS port (default: from the config)"
    )
