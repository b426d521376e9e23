"""`certfed audit`: check a node's audit chain and hand it to an inspector.

    certfed audit verify --config node.toml [--head HASH]
    certfed audit export --config node.toml --out audit.jsonl

`verify` walks the hash chain (federation_node.store.audit) and prints every problem it finds, one
line each: an edited record, a deleted one, a broken link; then those an earlier check found
and recorded (the chain cut back or rewritten since, which a walk alone cannot see). It records
its walk as the node's latest full check (federation_node.store.audit_check) and exits 0 only
for an intact chain.
A chain cannot show that its newest records were cut off, so `--head` takes a record hash
noted earlier (printed by `export` and by `verify`) and checks that the chain still holds it.

`export` writes every record as one JSON object per line (JSON Lines), in chain order, with the
hashes, so an inspector can recompute the chain without access to the node. The export is itself
an administrative action and is recorded in the chain first.

Both first chain every record still pending (committed, not yet sequenced; see
federation_node.store.audit), so nothing a committed transaction recorded is left out of what they
check or export.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from cli.operator_commands import host_actor
from federation_node.config import load_node_config
from federation_node.store import audit, audit_check, db

EXIT_BROKEN = 2


def _engine(config_path: str) -> Engine:
    config = load_node_config(Path(config_path))
    return db.create_engine_for(config.effective_database_url)


def verify_command(args: argparse.Namespace) -> int:
    engine = _engine(args.config)
    problems: list[str] = []
    try:
        audit.flush(engine)
        check = audit_check.check_all(engine, datetime.now(UTC), problems.append)
        with Session(engine) as session:
            last = audit.head(session)
            anchored = args.head is None or any(
                record["record_hash"] == args.head for record in audit.export(session)
            )
    finally:
        engine.dispose()
    earlier = [problem for problem in check.problems if problem not in problems]
    if not anchored:
        problems.append(
            f"no record has the hash {args.head}: records after it were removed, or it is "
            "from another node"
        )
    for problem in problems:
        print(f"audit chain: {problem}", file=sys.stderr)
    for problem in earlier:
        print(f"audit chain (found by an earlier check): {problem}", file=sys.stderr)
    if check.problems_dropped:
        print("audit chain: earlier checks found more problems than they kept", file=sys.stderr)
    if problems or earlier or check.problems_dropped:
        print(f"audit chain BROKEN: {len(problems) + len(earlier)} problem(s)", file=sys.stderr)
        return EXIT_BROKEN
    if last is None:
        print("audit chain intact: no records yet")
    else:
        print(f"audit chain intact: {last.seq} records, head {last.record_hash}")
    return 0


def export_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    engine = _engine(args.config)
    temporary = out.with_name(out.name + ".tmp")
    try:
        with db.session_scope(engine) as session:
            audit.append(
                session,
                actor=host_actor(),
                action="audit.export",
                subject_type="audit",
                subject_id=out.name[:64],
                details={},
                now=datetime.now(UTC),
            )
        audit.flush(engine)
        with Session(engine) as session:
            problems = audit.verify_chain(session)
            count, head = 0, ""
            with temporary.open("w", encoding="utf-8") as handle:
                for record in audit.export(session):
                    handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
                    count, head = record["seq"], record["record_hash"]
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, out)
    finally:
        engine.dispose()
        temporary.unlink(missing_ok=True)
    print(f"exported {count} audit records to {out}; head {head}")
    if problems:
        print(
            f"warning: the chain has {len(problems)} problem(s); run `certfed audit verify`",
            file=sys.stderr,
        )
        return EXIT_BROKEN
    return 0


def add_audit_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `certfed audit verify` and `certfed audit export`."""
    parser = subparsers.add_parser("audit", help="verify or export a node's audit trail")
    commands = parser.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = commands.add_parser("verify", help="check the audit hash chain")
    verify.add_argument("--config", required=True)
    verify.add_argument(
        "--head", help="a record hash noted earlier, which the chain must still contain"
    )
    verify.set_defaults(handler=verify_command)
    export = commands.add_parser("export", help="write the audit trail as JSON Lines")
    export.add_argument("--config", required=True)
    export.add_argument("--out", required=True, help="file to write (replaced if it exists)")
    export.set_defaults(handler=export_command)
