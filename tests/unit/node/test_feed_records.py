"""Feed record ids are kept keyed with the node's own secret, and retention periods are policy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.feeds import content_key
from federation.errors import InvalidInputError
from federation_node.rules.feed_records import keyed_record_id
from federation_node.rules.policy import Policy, load_policy
from signing.keys import HpkeKey

OBSERVED = datetime(2025, 3, 1, tzinfo=UTC)


def test_a_content_key_is_kept_only_keyed_and_each_node_keys_it_differently() -> None:
    node, other = HpkeKey.generate(), HpkeKey.generate()
    unkeyed = content_key(1, 1, "110101195001011238", OBSERVED)
    kept = keyed_record_id(node, "hospital", unkeyed)
    assert kept == keyed_record_id(node, "hospital", unkeyed)
    assert unkeyed not in kept
    assert kept != keyed_record_id(other, "hospital", unkeyed)
    assert kept != keyed_record_id(node, "bank", unkeyed)
    assert len(kept) <= 128


def test_the_same_key_loaded_again_keys_ids_the_same() -> None:
    node = HpkeKey.generate()
    reloaded = HpkeKey.from_pem(node.to_pem())
    assert keyed_record_id(node, "hospital", "R1") == keyed_record_id(reloaded, "hospital", "R1")


def test_retention_periods_are_read_from_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[retention]\nclosed_request_identity_days = 7\nsignal_days = 400\n"
        "unmatched_signal_days = 3\ndelivered_message_days = 14\n"
        "former_beneficiary_days = 10950\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert (
        policy.closed_request_identity_days,
        policy.signal_retention_days,
        policy.unmatched_signal_days,
        policy.delivered_message_days,
        policy.former_beneficiary_days,
    ) == (7, 400, 3, 14, 10950)
    assert Policy().former_beneficiary_days == 3650


@pytest.mark.parametrize(
    "text",
    [
        "[retention]\nsignal_days = 0\n",
        "[retention]\nformer_beneficiary_days = 40000\n",
        "[retention]\nunmatched_days = 3\n",
    ],
)
def test_a_retention_period_out_of_range_or_misspelt_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError, match="retention"):
        load_policy(path)
