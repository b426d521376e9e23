"""Operator accounts as a node administrator manages them: create, disable, list.

    certfed node add-operator     --config node.toml --label "Qingdao counter 1" --role clerk
    certfed node disable-operator --config node.toml OPERATOR_ID
    certfed node list-operators   --config node.toml

These run on the node's host against its database (whoever can read the configuration and reach
the database administers the node). Each change commits with its audit record in one
transaction, under the actor `host:<login name>`. A disabled operator's next call is refused:
the desk looks the token up on every call, nothing is cached.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session

from cli.output import console
from federation.errors import InvalidInputError
from federation.limits import Limits
from federation_node.config import load_node_config
from federation_node.rules.validation import require_text
from federation_node.store import audit, db, operators
from federation_node.store.models import Operator, OperatorRole

LABEL_MAX = 128  # the operator.label column


def host_actor() -> str:
    """The audit actor of a command run on the node's host: its login name, else its uid."""
    try:
        return f"host:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"host:uid-{os.getuid()}"


def create_operator(
    session: Session,
    *,
    label: str,
    roles: Sequence[OperatorRole],
    actor: str,
    now: datetime,
) -> tuple[Operator, str]:
    """A new operator and its token (shown once), recorded in the audit trail."""
    require_text(label, "label", Limits(max_text_length=LABEL_MAX), required=True)
    if not roles:
        raise InvalidInputError("role", "an operator needs at least one role")
    operator, token = operators.create(session, label=label, roles=roles, now=now)
    audit.append(
        session,
        actor=actor,
        action="operator.create",
        subject_type="operator",
        subject_id=operator.operator_id,
        details={"roles": sorted(operator.roles)},
        now=now,
    )
    return operator, token


def disable_operator(session: Session, operator_id: str, *, actor: str, now: datetime) -> bool:
    """Disable an operator; returns False when it was disabled already (nothing recorded)."""
    operator = operators.get(session, operator_id)
    if operator.disabled:
        return False
    operators.disable(session, operator_id, now)
    audit.append(
        session,
        actor=actor,
        action="operator.disable",
        subject_type="operator",
        subject_id=operator_id,
        details={},
        now=now,
    )
    return True


def _engine(args: argparse.Namespace) -> tuple[Engine, str]:
    config = load_node_config(Path(args.config))
    url = config.effective_database_url
    db.migrate(url)
    return db.create_engine_for(url), config.node_id


def add_operator_command(args: argparse.Namespace) -> int:
    engine, _node_id = _engine(args)
    try:
        with db.session_scope(engine) as session:
            operator, token = create_operator(
                session,
                label=args.label,
                roles=[OperatorRole(role) for role in args.role],
                actor=host_actor(),
                now=datetime.now(UTC),
            )
            operator_id = operator.operator_id
    finally:
        engine.dispose()
    console.print(f"operator {operator_id} ({', '.join(args.role)}) created.")
    console.print(f"token (shown once; give it to the operator, store nowhere else):\n{token}")
    return 0


def disable_operator_command(args: argparse.Namespace) -> int:
    engine, node_id = _engine(args)
    try:
        with db.session_scope(engine) as session:
            changed = disable_operator(
                session, args.operator_id, actor=host_actor(), now=datetime.now(UTC)
            )
    finally:
        engine.dispose()
    if changed:
        console.print(f"operator {args.operator_id} disabled at {node_id}; its token is refused")
    else:
        console.print(f"operator {args.operator_id} was already disabled")
    return 0


def list_operators_command(args: argparse.Namespace) -> int:
    engine, node_id = _engine(args)
    try:
        with Session(engine) as session:
            everyone = operators.list_all(session)
    finally:
        engine.dispose()
    table = Table(title=f"operators of {node_id}")
    for column in ("operator", "label", "roles", "created", "disabled"):
        table.add_column(column)
    for operator in everyone:
        table.add_row(
            operator.operator_id,
            operator.label,
            ", ".join(operator.roles),
            operator.created_at.astimezone(UTC).isoformat(timespec="seconds"),
            operator.disabled_at.astimezone(UTC).isoformat(timespec="seconds")
            if operator.disabled_at
            else "",
        )
    console.print(table)
    return 0


def add_operator_commands(node_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `disable-operator` and `list-operators` under `certfed node`."""
    disable = node_actions.add_parser(
        "disable-operator", help="refuse an operator's token from the next call on"
    )
    disable.add_argument("--config", required=True)
    disable.add_argument("operator_id", metavar="OPERATOR_ID")
    disable.set_defaults(handler=disable_operator_command)
    listing = node_actions.add_parser("list-operators", help="every operator, enabled or not")
    listing.add_argument("--config", required=True)
    listing.set_defaults(handler=list_operators_command)
