"""Staging tables for set-based writes: a batch's computed rows copied into a temporary table of
the caller's transaction, so that one `UPDATE ... FROM` or `INSERT ... SELECT` applies them all.

A staging table lives only in the transaction that fills it (ON COMMIT DROP on PostgreSQL; on
SQLite, whose temporary tables outlive a transaction, it is dropped and made afresh each time it
is filled). Rows go in through `bulk_insert.insert_rows`: COPY on PostgreSQL, one prepared
`executemany` on SQLite, each value bound by its column's type as the ORM would bind it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Column, MetaData, Table, text
from sqlalchemy.schema import CreateTable
from sqlmodel import Session

from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import is_postgres

# Staging tables are no part of the node's schema (store/models.py), which the migrations make.
_metadata = MetaData()


def staging_table(name: str, *columns: Column[Any]) -> Table:
    return Table(name, _metadata, *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DROP")


def fill(session: Session, table: Table, rows: Iterable[Sequence[Any]]) -> int:
    """`table` made afresh in the caller's transaction and filled with `rows`; how many."""
    connection = session.connection()
    schema = "pg_temp" if is_postgres(session) else "temp"
    connection.execute(text(f"DROP TABLE IF EXISTS {schema}.{table.name}"))
    connection.execute(CreateTable(table))
    if not is_postgres(session):
        # SQLite's temporary tables have no statistics; the planner needs to know the key.
        key = table.columns[0].name
        connection.execute(text(f"CREATE INDEX temp.{table.name}_key ON {table.name} ({key})"))
    return insert_rows(session, table, [column.name for column in table.columns], rows)
