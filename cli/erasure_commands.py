"""`certfed node erase`: erase one person's personal data at the office's host, on request.

    certfed node erase --config node.toml BENEFICIARY_ID

Run by the node's administrator on its host against its database, as operator accounts are
(cli/operator_commands.py), under the audit actor `host:<login name>`. It erases what the daily
cycle would once `retention.former_beneficiary_days` had passed (offices/retention.py), and is
refused, with the reasons, while the office still pays the person or work in progress still
needs their data.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from cli.operator_commands import host_actor
from cli.output import console
from federation_node.config import load_node_config
from federation_node.offices import retention
from federation_node.store import db


def erase_command(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    url = config.effective_database_url
    db.migrate(url)
    engine = db.create_engine_for(url)
    try:
        erased = retention.erase(engine, host_actor(), args.beneficiary_id, datetime.now(UTC))
    finally:
        engine.dispose()
    counts = ", ".join(f"{kind} {count}" for kind, count in asdict(erased).items())
    console.print(f"beneficiary {args.beneficiary_id} erased at {config.node_id} ({counts})")
    return 0


def add_erasure_commands(node_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `erase` under `certfed node`."""
    erase = node_actions.add_parser(
        "erase", help="erase a person the office no longer pays, on their request (audited)"
    )
    erase.add_argument("--config", required=True)
    erase.add_argument("beneficiary_id", metavar="BENEFICIARY_ID")
    erase.set_defaults(handler=erase_command)
