"""Inserting many rows into one table inside the caller's transaction, as fast as the engine can.

PostgreSQL gets them through COPY ... FROM STDIN in binary format (psycopg's `cursor.copy`),
streamed row by row so memory does not grow with the number of rows; SQLite gets one prepared
`executemany`. Values go through each column's type on the way in (an aware UTC datetime, an
enum's string value), as the ORM would bind them; a value every row shares (`same`) is bound
once. The log store, the sync store and the roll import use it, for the bulk paths the
benchmarks and `certfed sync` exercise; everything else inserts through the ORM. A row the
table's constraints refuse (a key inserted meanwhile by another transaction) raises
SQLAlchemy's `IntegrityError`, as the ORM would, whichever driver refused it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.string import BytesBinaryDumper
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Integer,
    LargeBinary,
    String,
    Table,
    TypeDecorator,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from federation_node.store.db import is_postgres

# Distinct values of one column whose bound form is remembered during one insert.
_MEMO_SIZE = 4096
# PostgreSQL type names for binary COPY, by the SQLAlchemy types the node's tables use.
_COPY_TYPES: tuple[tuple[type[Any], str], ...] = (
    (BigInteger, "int8"),
    (Integer, "int4"),
    (LargeBinary, "bytea"),
    (String, "text"),
    (Boolean, "bool"),
    (DateTime, "timestamptz"),
    # The column's bind processor has already made the JSON text, and `json`'s binary form in
    # COPY is its text (a `jsonb` column would need a version byte first, and is not used).
    (JSON, "text"),
)


def _copy_type(table: Table, column: str) -> str:
    kind = table.columns[column].type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    for sql_type, name in _COPY_TYPES:
        if isinstance(kind, sql_type):
            return name
    raise TypeError(f"{table.name}.{column}: no binary COPY type for {kind!r}")


def _bound(
    table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]], dialect: Dialect
) -> Iterable[Sequence[Any]]:
    """`rows` with each value bound by its column's type, for the columns whose type binds."""
    processors: list[tuple[int, Callable[[Any], Any]]] = []
    for index, column in enumerate(columns):
        kind = table.columns[column].type
        if isinstance(kind, LargeBinary):
            # Both drivers take bytes as they are; the dialect's wrapper would only cost time.
            continue
        if isinstance(kind, JSON):
            # The JSON text itself (psycopg's dialect would wrap it for its own adapter).
            processors.append((index, json.dumps))
            continue
        processor = kind.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            # Bulk rows repeat their values (one timestamp, a few enum members): bind each once.
            processors.append((index, _memoised(processor)))
    if not processors:
        return rows

    def bound() -> Iterator[Sequence[Any]]:
        for row in rows:
            values = list(row)
            for index, processor in processors:
                values[index] = processor(values[index])
            yield values

    return bound()


def _memoised(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    bound: dict[Any, Any] = {}

    def process(value: Any) -> Any:
        try:
            return bound[value]
        except KeyError:
            result = processor(value)
            if len(bound) < _MEMO_SIZE:
                bound[value] = result
            return result
        except TypeError:  # an unhashable value
            return processor(value)

    return process


def insert_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    same: Mapping[str, Any] | None = None,
) -> int:
    """Insert `rows` (values in `columns` order) into `table`, each row followed by the values
    of `same` (column -> the value every row has); returns how many were inserted."""
    try:
        return _insert_rows(session, table, columns, rows, same)
    except (psycopg.errors.IntegrityError, sqlite3.IntegrityError) as error:
        # The driver's own error, raised under COPY or executemany: said as SQLAlchemy says it,
        # so callers that answer a concurrent insert (IntegrityError) see this one too.
        raise IntegrityError(f"INSERT INTO {table.name}", None, error) from error


def _insert_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    same: Mapping[str, Any] | None,
) -> int:
    connection = session.connection()
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("the session's connection has no driver connection")
    rows = _bound(table, columns, rows, connection.dialect)
    if same:
        shared = tuple(
            next(iter(_bound(table, list(same), [list(same.values())], connection.dialect)))
        )
        rows = (tuple(row) + shared for row in rows)
        columns = (*columns, *same)
    names = ", ".join(columns)
    count = 0
    if is_postgres(session):
        cursor = driver.cursor()
        # bytea has psycopg's dumper for the DB-API `Binary` wrapper, written in Python; plain
        # bytes have a compiled one, which every value here is.
        cursor.adapters.register_dumper(None, BytesBinaryDumper)
        with (
            cursor,
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
