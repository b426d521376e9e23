"""The `certfed registry forks` command: the forks the registry witness has recorded.

    certfed registry forks --config F [--notes]

It reads the registry's database directly (no RPC): it is an operator's look at evidence kept
on this machine, and works while the registry is stopped. Each row is a log that signed a
checkpoint inconsistent with one the witness had cosigned; `--notes` prints both signed notes,
which together prove it to anyone holding the node's public key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sqlalchemy as sa

from federation.errors import CertfedError
from registry import witness_store
from registry.config import load_registry_config
from registry.db import create_engine_for, transaction

EXIT_OK = 0
EXIT_FAILED = 1


def forks_command(args: argparse.Namespace) -> int:
    """List recorded forks, oldest first."""
    try:
        config = load_registry_config(Path(args.config))
        engine = create_engine_for(config.effective_database_url)
        try:
            with transaction(engine) as session:
                forks = witness_store.forks(session)
        finally:
            engine.dispose()
    except CertfedError as error:
        print(f"error: {error.status.name}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except sa.exc.SQLAlchemyError as error:
        print(
            f"error: cannot read the registry database ({error.__class__.__name__}); has the "
            "registry been served once with this configuration, so its schema exists?",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if not forks:
        print("no forks recorded")
        return EXIT_OK
    for fork in forks:
        print(
            f"fork {fork.id}: node {fork.node_id}, log {fork.origin}, "
            f"detected {fork.detected_at.isoformat()}"
        )
        print(f"  {fork.reason}")
        if args.notes:
            # Byte for byte, unwrapped: the two notes are the evidence.
            print("  the checkpoint the witness had cosigned:")
            sys.stdout.write(fork.cosigned_note.decode("utf-8", "replace"))
            print("  the conflicting checkpoint offered:")
            sys.stdout.write(fork.offered_note.decode("utf-8", "replace"))
    return EXIT_OK


def add_witness_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `forks` to the `certfed registry` subcommands."""
    forks = subparsers.add_parser("forks", help="list the log forks the witness has recorded")
    forks.add_argument("--config", required=True, help="the registry's registry.toml")
    forks.add_argument("--notes", action="store_true", help="also print both signed notes")
    forks.set_defaults(handler=forks_command)
