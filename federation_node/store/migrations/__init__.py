"""Alembic migrations of the node store; applied by `federation_node.store.db.migrate`."""
