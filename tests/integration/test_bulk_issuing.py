"""The bulk issuing path (`Issuer.sign_soon`, then `Issuer.store_signed`: attestations built and
signed on the worker processes) stores, queues and logs what the one-at-a-time path
(`Issuer.issue`) does, on SQLite and PostgreSQL, with real keys from a real registry."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from certfed.v1 import attestation_pb2, common_pb2
from federation_node.offices.issuing import Finding
from federation_node.offices.node import Node
from federation_node.store import log_store
from federation_node.store.db import session_scope
from federation_node.store.models import Attestation, LogEntry, OutboxMessage
from signing import dsse, merkle
from tests.helpers.feed_office import EnrolledOffice, compose_office, enrolled_office

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
# More than one chunk per worker, and a log crossing cached subtrees (256 leaves) mid-batch.
BATCH = 2_300


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledOffice]:
    with enrolled_office(tmp_path_factory.mktemp("bulk-issuing-office")) as enrolled:
        yield enrolled


def _findings(count: int, own_node_id: str) -> list[Finding]:
    """Distinct findings; every fifth paid by this node itself (no delivery), some answering a
    request or correcting an earlier attestation."""
    return [
        Finding(
            subject_locator=secrets.token_bytes(32),
            paying_node_id=own_node_id if number % 5 == 0 else "lanzhou-chengguan",
            paying_region="620102",
            certifying_region="440604",
            method=common_pb2.CERTIFICATION_METHOD_DATA_MATCH,
            outcome=(
                common_pb2.CERTIFICATION_OUTCOME_ALIVE
                if number % 7
                else common_pb2.CERTIFICATION_OUTCOME_DECEASED
            ),
            observed_at=NOW - timedelta(days=number % 3),
            evidence_digests=[secrets.token_bytes(32)],
            clerk_id="clerk-7",
            reviewer_id="policy:data-match",
            request_id=f"request-{number}" if number % 11 == 0 else None,
            corrects_attestation_id=f"earlier-{number}" if number % 13 == 0 else None,
        )
        for number in range(count)
    ]


def _issue_in_bulk(node: Node, findings: list[Finding]) -> None:
    issuer = node.issuer
    half = len(findings) // 2
    first = issuer.sign_soon([(one, None) for one in findings[:half]], NOW)
    # The second batch signs while the first is stored, as `certfed bench issue` runs them.
    second = issuer.sign_soon([(one, None) for one in findings[half:]], NOW)
    for pending in (first, second):
        with session_scope(node.context.engine) as session:
            issuer.store_signed(session, pending.signed(), NOW)


def _issue_one_at_a_time(node: Node, findings: list[Finding]) -> None:
    issuer = node.issuer
    for finding in findings:
        with session_scope(node.context.engine) as session:
            issuer.issue(session, [(issuer.attestation(finding, NOW), None)], now=NOW)


def _stored(node: Node) -> tuple[list[tuple[object, ...]], dict[str, bytes], list[bytes]]:
    """Per attestation in log order: its payload without its id and what is kept beside it;
    the queued deliveries by attestation id; the log's leaf hashes. Checks each signature,
    payload digest and leaf hash on the way."""
    keys = {node.context.keys.signing.key_id: node.context.keys.signing.public_key}
    with session_scope(node.context.engine) as session:
        entries = list(session.exec(select(LogEntry).order_by(col(LogEntry.leaf_index))))
        rows = {row.attestation_id: row for row in session.exec(select(Attestation))}
        deliveries = {
            message.subject_id: message.payload for message in session.exec(select(OutboxMessage))
        }
        head = log_store.head(session)
    stored: list[tuple[object, ...]] = []
    for index, entry in enumerate(entries):
        assert entry.leaf_index == index
        assert entry.leaf_hash == merkle.leaf_hash(entry.envelope_json)
        row = rows[entry.attestation_id]
        assert row.envelope_json == entry.envelope_json
        envelope = dsse.Envelope.from_json(row.envelope_json)
        dsse.verify(envelope, keys, dsse.ATTESTATION_PAYLOAD_TYPE)
        assert row.payload_sha256 == hashlib.sha256(envelope.payload).hexdigest()
        attestation = attestation_pb2.CertificationAttestation.FromString(envelope.payload)
        assert attestation.attestation_id == row.attestation_id
        attestation.ClearField("attestation_id")
        stored.append(
            (
                attestation.SerializeToString(deterministic=True),
                row.paying_node_id,
                row.subject_locator,
                row.beneficiary_id,
                row.request_id,
                row.method,
                row.outcome,
                row.observed_at,
                row.valid_until,
                row.signing_key_id,
                row.direction,
                row.stored_at,
                row.corrects_attestation_id,
                entry.paying_region,
            )
        )
    leaves = [entry.leaf_hash for entry in entries]
    assert head.tree_size == len(entries)
    assert head.root_hash == merkle.root_from_leaves(leaves)[1]
    return stored, {key: deliveries[key] for key in sorted(deliveries)}, leaves


def test_bulk_issuing_stores_queues_and_logs_what_one_at_a_time_does(
    office: EnrolledOffice, store_url: str, tmp_path: Path
) -> None:
    bulk = compose_office(office, store_url, bulk_feed=True, clock=lambda: NOW)
    single = compose_office(
        office, f"sqlite:///{tmp_path / 'single.db'}", bulk_feed=False, clock=lambda: NOW
    )
    findings = _findings(BATCH, office.config.node_id)
    _issue_in_bulk(bulk, findings)
    _issue_one_at_a_time(single, findings)

    bulk_rows, bulk_deliveries, _ = _stored(bulk)
    single_rows, single_deliveries, _ = _stored(single)
    assert bulk_rows == single_rows
    # A delivery queued for each attestation paid by another node, holding no copy of it: it
    # is built from the log when it goes, which holds the envelope as stored.
    remote = sum(1 for finding in findings if finding.paying_node_id != office.config.node_id)
    assert len(bulk_deliveries) == len(single_deliveries) == remote
    assert set(bulk_deliveries.values()) == set(single_deliveries.values()) == {b""}
    with session_scope(bulk.context.engine) as session:
        envelopes = {
            row.attestation_id: row.envelope_json for row in session.exec(select(Attestation))
        }
        logged = {
            entry.attestation_id: entry.envelope_json for entry in session.exec(select(LogEntry))
        }
        pending = list(session.exec(select(OutboxMessage)))
    for attestation_id in bulk_deliveries:
        assert logged[attestation_id] == envelopes[attestation_id]
    assert {(message.kind, message.state, message.attempts) for message in pending} == {
        (single_message.kind, single_message.state, single_message.attempts)
        for single_message in _messages(single)
    }
    assert len({message.message_id for message in pending}) == remote


def _messages(node: Node) -> list[OutboxMessage]:
    with session_scope(node.context.engine) as session:
        return list(session.exec(select(OutboxMessage)))
