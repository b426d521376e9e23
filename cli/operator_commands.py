"""Operator accounts as a node administrator manages them: create, set a password, disable, list.

    certfed node add-operator     --config node.toml --label "Qingdao counter 1" --role clerk \
                                  [--user-name counter1 --password-stdin] [--token-days 365]
    certfed node add-operator     --config node.toml --label "hospital feed" --role feed \
                                  --source foshan-hospitals [--source ...]
    certfed node set-password     --config node.toml OPERATOR_ID [--user-name U] --password-stdin
    certfed node disable-operator --config node.toml OPERATOR_ID
    certfed node list-operators   --config node.toml

These run on the node's host against its database (whoever can read the configuration and reach
the database administers the node). Each change commits with its audit record in one
transaction, under the actor `host:<login name>`. A disabled operator's next call is refused
and their sessions end: the desk looks tokens and sessions up on every call, nothing is cached.
A password is read as one line from standard input, never from the command line (which other
users of the host can see), and is kept only as a scrypt hash.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session

from cli.output import console
from federation.errors import InvalidInputError
from federation_node.config import load_node_config
from federation_node.offices import operator_accounts
from federation_node.rules.passwords import hash_password, require_password
from federation_node.store import db, operators
from federation_node.store.models import Operator, OperatorRole

DEFAULT_TOKEN_DAYS = 365


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
    user_name: str | None = None,
    password: str | None = None,
    locale: str = "",
    token_days: int = DEFAULT_TOKEN_DAYS,
    feed_sources: Sequence[str] = (),
) -> tuple[Operator, str]:
    """A new operator and its bearer token (shown once), recorded in the audit trail.

    With `user_name` and `password` the operator can also sign in to a session (the desk); the
    password must be 12 to 256 characters and is kept only hashed. A feed account (role
    `feed`, alone) records signals only for `feed_sources`.
    """
    if password is not None and user_name is None:
        raise InvalidInputError("user_name", "is required to sign in with a password")
    password_hash = hash_password(require_password(password)) if password is not None else None
    return operator_accounts.new_operator(
        session,
        label=label,
        roles=roles,
        actor=actor,
        now=now,
        user_name=user_name,
        password_hash=password_hash,
        locale=locale,
        token_lifetime=timedelta(days=token_days),
        feed_sources=feed_sources,
    )


def set_operator_password(
    session: Session,
    operator_id: str,
    password: str,
    *,
    actor: str,
    now: datetime,
    user_name: str | None = None,
) -> Operator:
    """A new password (and user name, for an operator who had none); their sessions end."""
    password_hash = hash_password(require_password(password))
    return operator_accounts.set_password(
        session, operator_id, password_hash, actor=actor, now=now, user_name=user_name
    )


def disable_operator(session: Session, operator_id: str, *, actor: str, now: datetime) -> bool:
    """Disable an operator and end their sessions; False when disabled already (nothing
    recorded)."""
    return operator_accounts.disable(session, operator_id, actor=actor, now=now)


def read_password() -> str:
    """One line from standard input, without its line break; refused when there is none."""
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise InvalidInputError("password", "give it as one line on standard input")
    return password


def _engine(args: argparse.Namespace) -> tuple[Engine, str]:
    config = load_node_config(Path(args.config))
    url = config.effective_database_url
    db.migrate(url)
    return db.create_engine_for(url), config.node_id


def add_operator_command(args: argparse.Namespace) -> int:
    if args.password_stdin and not args.user_name:
        raise InvalidInputError("--password-stdin", "needs --user-name")
    if args.user_name and not args.password_stdin:
        raise InvalidInputError("--user-name", "needs --password-stdin (the password)")
    if args.token_days < 1:
        raise InvalidInputError("--token-days", "must be at least 1")
    password = read_password() if args.password_stdin else None
    engine, _node_id = _engine(args)
    try:
        with db.session_scope(engine) as session:
            operator, token = create_operator(
                session,
                label=args.label,
                roles=[OperatorRole(role) for role in args.role],
                actor=host_actor(),
                now=datetime.now(UTC),
                user_name=args.user_name,
                password=password,
                token_days=args.token_days,
                feed_sources=args.source or (),
            )
            operator_id = operator.operator_id
            expires = operators.token_expiry(operator.created_at, operator.token_expires_at)
    finally:
        engine.dispose()
    console.print(f"operator {operator_id} ({', '.join(args.role)}) created.")
    if args.source:
        console.print(f"records signals for the sources {', '.join(sorted(set(args.source)))}")
    if args.user_name:
        console.print(f"signs in as {operator.user_name}")
    console.print(f"token valid until {expires.date().isoformat()}")
    console.print(f"token (shown once; give it to the operator, store nowhere else):\n{token}")
    return 0


def set_password_command(args: argparse.Namespace) -> int:
    if not args.password_stdin:
        raise InvalidInputError("--password-stdin", "is required: the password is read from stdin")
    password = read_password()
    engine, node_id = _engine(args)
    try:
        with db.session_scope(engine) as session:
            operator = set_operator_password(
                session,
                args.operator_id,
                password,
                actor=host_actor(),
                now=datetime.now(UTC),
                user_name=args.user_name,
            )
            user_name = operator.user_name
    finally:
        engine.dispose()
    console.print(
        f"password of operator {args.operator_id} ({user_name}) set at {node_id}; "
        "their open sessions have ended"
    )
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
        console.print(
            f"operator {args.operator_id} disabled at {node_id}; "
            "its token is refused and its sessions have ended"
        )
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
    for column in ("operator", "label", "user name", "roles", "sources", "created", "disabled"):
        table.add_column(column)
    for operator in everyone:
        table.add_row(
            operator.operator_id,
            operator.label,
            operator.user_name or "",
            ", ".join(operator.roles),
            ", ".join(operator.feed_sources),
            operator.created_at.astimezone(UTC).isoformat(timespec="seconds"),
            operator.disabled_at.astimezone(UTC).isoformat(timespec="seconds")
            if operator.disabled_at
            else "",
        )
    console.print(table)
    return 0


def add_operator_commands(node_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `add-operator`, `set-password`, `disable-operator` and `list-operators` under
    `certfed node`."""
    add = node_actions.add_parser(
        "add-operator", help="a new operator: a bearer token, and a password with --user-name"
    )
    add.add_argument("--config", required=True)
    add.add_argument("--label", required=True, help="a role label, not a personal name")
    add.add_argument(
        "--role", action="append", required=True, choices=[role.value for role in OperatorRole]
    )
    add.add_argument(
        "--source",
        action="append",
        help="a feed account (--role feed) records signals for this source; repeat for more",
    )
    add.add_argument("--user-name", help="the name the operator signs in to the web desk with")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the operator's password (12 to 256 characters) as one line from stdin",
    )
    add.add_argument(
        "--token-days",
        type=int,
        default=DEFAULT_TOKEN_DAYS,
        help=f"days the bearer token stays valid (default {DEFAULT_TOKEN_DAYS})",
    )
    add.set_defaults(handler=add_operator_command)
    password = node_actions.add_parser(
        "set-password", help="a new password for an operator; their open sessions end"
    )
    password.add_argument("--config", required=True)
    password.add_argument("operator_id", metavar="OPERATOR_ID")
    password.add_argument("--user-name", help="give a user name to an operator who has none")
    password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the new password (12 to 256 characters) as one line from stdin",
    )
    password.set_defaults(handler=set_password_command)
    disable = node_actions.add_parser(
        "disable-operator", help="refuse an operator's token from the next call on"
    )
    disable.add_argument("--config", required=True)
    disable.add_argument("operator_id", metavar="OPERATOR_ID")
    disable.set_defaults(handler=disable_operator_command)
    listing = node_actions.add_parser("list-operators", help="every operator, enabled or not")
    listing.add_argument("--config", required=True)
    listing.set_defaults(handler=list_operators_command)
