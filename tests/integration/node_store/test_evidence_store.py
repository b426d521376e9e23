"""The evidence store on SQLite and PostgreSQL: one row per file whatever the uploads, retention
restarted by use, and deletion of what is past its period."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from federation.errors import UnknownEvidenceError
from federation_node.store import evidence_store
from federation_node.store.db import session_scope


def _store(engine: Engine, digest: str, now: datetime) -> bool:
    with session_scope(engine) as session:
        _, kept_before = evidence_store.store(
            session,
            sha256=digest,
            media_type="image/png",
            sealed_content=b"sealed " + digest.encode(),
            size_bytes=100,
            now=now,
        )
    return kept_before


def test_the_same_file_stored_twice_is_one_row_whose_retention_restarts(
    engine: Engine, now: datetime
) -> None:
    assert _store(engine, "aa" * 32, now) is False
    assert _store(engine, "aa" * 32, now + timedelta(days=3)) is True
    with session_scope(engine) as session:
        row = evidence_store.get(session, "aa" * 32)
        assert row.uploaded_at == now
        assert row.retained_from == now + timedelta(days=3)


def test_retain_reports_unknown_digests_and_restarts_the_known(
    engine: Engine, now: datetime
) -> None:
    _store(engine, "bb" * 32, now)
    later = now + timedelta(days=10)
    with session_scope(engine) as session:
        assert evidence_store.retain(session, ["cc" * 32, "bb" * 32], later) == ["cc" * 32]
    with session_scope(engine) as session:
        assert evidence_store.get(session, "bb" * 32).retained_from == later


def test_files_retained_from_before_the_cutoff_are_deleted_and_named(
    engine: Engine, now: datetime
) -> None:
    _store(engine, "dd" * 32, now - timedelta(days=40))
    _store(engine, "ee" * 32, now)
    with session_scope(engine) as session:
        assert evidence_store.delete_retained_before(session, now - timedelta(days=1)) == [
            "dd" * 32
        ]
    with session_scope(engine) as session:
        with pytest.raises(UnknownEvidenceError):
            evidence_store.get(session, "dd" * 32)
        assert evidence_store.get(session, "ee" * 32).size_bytes == 100
