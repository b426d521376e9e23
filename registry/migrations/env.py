"""Alembic environment of the registry: runs migrations on the connection `registry.db` passes.

Offline (SQL script) mode is not offered: the registry's schema is only changed by `migrate`,
inside a transaction on the live connection.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from registry.db import VERSION_TABLE
from registry.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("registry migrations run online only, through registry.db.migrate")

_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("registry migrations need a connection: use registry.db.migrate(url)")
_run(_connection)
