"""Alembic migrations of the registry database; run them with `registry.db.migrate`."""
