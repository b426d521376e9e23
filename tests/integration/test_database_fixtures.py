"""The shared database fixtures hand out real, empty, isolated databases on both engines."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa


def test_store_url_is_a_fresh_writable_database(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            assert sa.inspect(conn).get_table_names() == []
            conn.execute(sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO probe (id) VALUES (1)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM probe")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_databases_are_distinct_and_served_by_postgresql(
    postgres_url_factory: Callable[[], str],
) -> None:
    first, second = postgres_url_factory(), postgres_url_factory()
    assert first != second
    for url in (first, second):
        assert url.startswith("postgresql+psycopg://")
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
                assert int(version) >= 130000
                name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
                assert url.split("?")[0].endswith("/" + name)
        finally:
            engine.dispose()
