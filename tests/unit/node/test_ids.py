"""The node's ids: RFC 9562 UUIDv7, in creation order within a process, even within a millisecond
and across a batch."""

from __future__ import annotations

import time
import uuid

from federation_node.ids import new_id, new_ids


def test_ids_are_version_7_of_the_rfc_variant_and_carry_the_time() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid.UUID(new_id())
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    # The first 48 bits are Unix milliseconds (a borrowed millisecond at most ahead).
    assert before <= made.int >> 80 <= after + 1


def test_every_id_sorts_after_the_one_made_before_it_even_in_one_millisecond() -> None:
    made = [new_id() for _ in range(5_000)] + new_ids(20_000) + [new_id() for _ in range(10)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(str(uuid.UUID(value)) == value for value in made[:100])


def test_a_batch_is_unique_and_random_beyond_its_counter() -> None:
    first, second = new_ids(1_000), new_ids(1_000)
    assert len(set(first) | set(second)) == 2_000
    # The last 62 bits are random: no two ids of a batch share them.
    assert len({uuid.UUID(value).int & (2**62 - 1) for value in first}) == 1_000
