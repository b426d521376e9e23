"""An audit record's hash covers every field and the previous hash."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from federation_node.store.audit import record_hash
from federation_node.store.models import AuditRecord


def _record(**changes: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "seq": 7,
        "at": datetime(2025, 6, 23, 8, 30, tzinfo=UTC),
        "actor": "op-0a1b2c3d4e5f",
        "action": "certification.approve",
        "subject_type": "certification",
        "subject_id": "c-1",
        "details": {"attestation_id": "a-1", "outcome": "alive"},
        "prev_hash": "ab" * 32,
        "record_hash": "",
    }
    fields.update(changes)
    return AuditRecord(**fields)


def test_hash_is_stable_and_independent_of_detail_order() -> None:
    one = _record(details={"attestation_id": "a-1", "outcome": "alive"})
    two = _record(details={"outcome": "alive", "attestation_id": "a-1"})
    assert record_hash(one) == record_hash(two)
    assert len(record_hash(one)) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 8},
        {"at": datetime(2025, 6, 23, 8, 30, 0, 1, tzinfo=UTC)},
        {"actor": "op-ffffffffffff"},
        {"action": "certification.reject"},
        {"subject_type": "attestation"},
        {"subject_id": "c-2"},
        {"details": {"attestation_id": "a-2", "outcome": "alive"}},
        {"prev_hash": "cd" * 32},
    ],
)
def test_changing_any_field_changes_the_hash(change: dict[str, object]) -> None:
    assert record_hash(_record(**change)) != record_hash(_record())
