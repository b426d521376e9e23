"""Alembic environment of the node's store, run through `federation_node.store.db.migrate`.

The caller hands over an open connection (in `config.attributes["connection"]`) inside its own
transaction, so the migration, its version stamp and the caller's lock commit together. Offline
mode (`alembic upgrade --sql`) renders SQL for the URL in `sqlalchemy.url`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from federation_node.store.models import metadata

config = context.config


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    given = config.attributes.get("connection")
    if not isinstance(given, Connection):
        raise RuntimeError(
            "run the node's migrations through federation_node.store.db.migrate(url)"
        )
    _run_online(given)
