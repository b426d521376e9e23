"""Inserting many rows into one table inside the caller's transaction, as fast as the engine can.

PostgreSQL gets them through COPY ... FROM STDIN in binary format (psycopg's `cursor.copy`),
streamed row by row so memory does not grow with the number of rows; SQLite gets one prepared
`executemany`. Only the log store and the sync store use it, for the bulk paths that the
benchmark and `certfed sync` exercise; everything else inserts through the ORM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Table
from sqlmodel import Session

from federation_node.store.db import is_postgres

# PostgreSQL type names for binary COPY, by the SQLAlchemy types the node's tables use.
_COPY_TYPES: tuple[tuple[type[Any], str], ...] = (
    (BigInteger, "int8"),
    (Integer, "int4"),
    (LargeBinary, "bytea"),
    (String, "text"),
)


def _copy_type(table: Table, column: str) -> str:
    kind = table.columns[column].type
    for sql_type, name in _COPY_TYPES:
        if isinstance(kind, sql_type):
            return name
    raise TypeError(f"{table.name}.{column}: no binary COPY type for {kind!r}")


def insert_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert `rows` (values in `columns` order) into `table`; returns how many were inserted."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("the session's connection has no driver connection")
    names = ", ".join(columns)
    count = 0
    if is_postgres(session):
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types([_copy_type(table, column) for column in columns])
            for row in rows:
                copy.write_row(row)
                count += 1
        return count
    marks = ", ".join("?" for _ in columns)
    statement = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608 - our names
    cursor = driver.cursor()
    try:
        batch: list[Sequence[Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 1000:
                cursor.executemany(statement, batch)
                count += len(batch)
                batch = []
        if batch:
            cursor.executemany(statement, batch)
            count += len(batch)
    finally:
        cursor.close()
    return count
