"""The transparency log across real node processes on a real PostgreSQL server: checkpoints the
registry witness cosigns, inclusion proofs, bulk sync that refuses rewritten entries and resumes
after an interruption, a node caught showing two histories, and subscriptions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import delete, update

from certfed.v1 import (
    attestation_pb2,
    common_pb2,
    desk_pb2,
    federation_pb2,
    federation_pb2_grpc,
)
from cli.bench.sync import issue_signed_attestations
from cli.launcher import LocalFederation, NodeHandle, NodeSpec, wait_until
from federation.directory import verify_directory
from federation.limits import Limits
from federation.timestamps import to_timestamp
from federation.transport import TlsMaterial, node_tls_name, secure_channel
from federation_node.keystore import KeyPaths, load_keys
from federation_node.store import db, log_store, sync_store
from federation_node.store.log_store import NewEntry
from federation_node.store.models import LogEntry, LogHead, LogSubtree
from federation_node.tlog.checkpoints import load_witness_verifier
from federation_node.tlog.sync import LogSync, LogVerificationError
from registry import db as registry_db
from registry import witness_store
from registry.tables import WitnessFork
from signing import dsse, merkle
from tests.helpers.commands import certfed
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import DATONG
from tests.helpers.nodes import FOSHAN as AUDITOR
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import QINGDAO as RESIDENCE


class Offices:
    def __init__(self, local: LocalFederation, database_urls: dict[str, str]) -> None:
        self.local = local
        self.database_urls = database_urls
        self._serial = 0

    def node(self, node_id: str) -> NodeHandle:
        return self.local.nodes[node_id]

    def certify(self) -> str:
        """An assistance request from Lanzhou certified by Qingdao; returns the attestation id."""
        self._serial += 1
        person = resident(resident_id("620102", date(1950, 1, 1), self._serial))
        with self.local.desk("lanzhou") as desk:
            beneficiary = desk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(identity=person, residence_region="370202"),
            ).beneficiary
            request_id = desk.stub.RequestCertification(
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=beneficiary.beneficiary_id,
                    deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
                ),
            ).request.request_id
        with self.local.desk("qingdao") as desk:
            inbound = desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
            wait_until(
                lambda: any(
                    r.request_id == request_id
                    for r in desk.stub.ListAssistanceRequests(inbound).requests
                ),
                30,
                "the request in Qingdao's inbox",
            )
            certification_id = desk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    request_id=request_id,
                    method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                    observed_at=to_timestamp(datetime.now(UTC)),
                    evidence_digests=[upload_capture(desk)],
                ),
            ).certification.certification_id
        with self.local.desk("qingdao", "reviewer") as desk:
            approved = desk.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=certification_id),
            )
        attestation_id: str = approved.certification.attestation_id
        return attestation_id

    def stub(
        self, as_node: str, to_node: str
    ) -> tuple[grpc.Channel, federation_pb2_grpc.FederationServiceStub]:
        caller = self.node(as_node).config
        tls = TlsMaterial.load(
            caller.data_dir / "keys" / "tls.pem",
            caller.data_dir / "keys" / "tls.key",
            caller.ca_certificate,
        )
        channel = secure_channel(
            f"127.0.0.1:{self.node(to_node).federation_port}",
            node_tls_name(to_node),
            tls.channel_credentials(),
            max_message_bytes=4 << 20,
        )
        return channel, federation_pb2_grpc.FederationServiceStub(channel)

    def syncer(self, as_node: str, to_node: str, step: int = 50_000) -> LogSync:
        """What `certfed sync` runs, in this process, as `as_node` against `to_node`."""
        config = self.node(as_node).config
        keys = load_keys(config, KeyPaths(config.data_dir))
        directory = verify_directory(
            self.local.fetch_directory(), keys.root_public_key, now=datetime.now(UTC)
        )
        _, stub = self.stub(as_node, to_node)
        return LogSync(
            db.create_engine_for(config.effective_database_url),
            lambda: directory,
            load_witness_verifier(config.witness_public_key),
            lambda _origin: stub,
            Limits(sync_step_entries=step),
        )

    def checkpoint_size(self, as_node: str, of_node: str) -> int:
        channel, stub = self.stub(as_node, of_node)
        with channel:
            try:
                answer = stub.GetCheckpoint(federation_pb2.GetCheckpointRequest(), timeout=5)
            except grpc.RpcError:
                return -1
        return merkle_size(bytes(answer.checkpoint.note))

    def await_checkpoint(self, of_node: str, size: int) -> None:
        wait_until(
            lambda: self.checkpoint_size("foshan", of_node) >= size,
            30,
            f"a cosigned checkpoint of {of_node} with {size} entries",
        )


def merkle_size(checkpoint_note: bytes) -> int:
    return int(checkpoint_note.split(b"\n")[1])


@pytest.fixture(scope="module")
def offices(
    postgres_url_factory: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Offices]:
    factory = postgres_url_factory
    assert callable(factory)
    workdir: Path = tmp_path_factory.mktemp("transparency")
    urls: dict[str, str] = {}

    def database_for(name: str) -> str:
        urls[name] = str(factory())
        return urls[name]

    local = LocalFederation(workdir, database_url_for=database_for, max_backoff_s=0.5)
    with local:
        local.start_registry()
        local.add_node(PAYING)
        local.add_node(RESIDENCE)
        local.add_node(AUDITOR)
        yield Offices(local, urls)


pytestmark = pytest.mark.postgres


def test_an_issued_attestation_is_logged_and_its_inclusion_proof_verifies(
    offices: Offices,
) -> None:
    attestation_id = offices.certify()
    channel, stub = offices.stub("lanzhou", "qingdao")
    with channel:

        def proof() -> federation_pb2.GetInclusionProofResponse | None:
            try:
                answer: federation_pb2.GetInclusionProofResponse = stub.GetInclusionProof(
                    federation_pb2.GetInclusionProofRequest(attestation_id=attestation_id),
                    timeout=5,
                )
            except grpc.RpcError as error:
                # Not covered by a cosigned checkpoint yet; anything else is a failure.
                if error.code() is not grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                return None
            return answer

        answer = wait_until(proof, 30, "a cosigned checkpoint covering the attestation")
        note = bytes(
            stub.GetCheckpoint(federation_pb2.GetCheckpointRequest(), timeout=5).checkpoint.note
        )
        entry = next(
            iter(
                stub.GetEntries(
                    federation_pb2.GetEntriesRequest(
                        start=answer.leaf_index, end=answer.leaf_index + 1
                    ),
                    timeout=5,
                )
            )
        ).entries[0]
    syncer = offices.syncer("lanzhou", "qingdao")
    checkpoint = syncer.verify_checkpoint("qingdao", note)
    assert checkpoint.tree_size >= answer.tree_size
    channel, stub = offices.stub("lanzhou", "qingdao")
    with channel:
        at_size = stub.GetInclusionProof(
            federation_pb2.GetInclusionProofRequest(
                leaf_index=answer.leaf_index, tree_size=checkpoint.tree_size
            ),
            timeout=5,
        )
    merkle.verify_inclusion(
        merkle.leaf_hash(entry.envelope_json),
        answer.leaf_index,
        checkpoint.tree_size,
        list(at_size.hashes),
        checkpoint.root_hash,
    )
    assert entry.paying_region == "620102"


def test_a_checkpoint_without_the_registry_cosignature_is_refused(offices: Offices) -> None:
    from federation_node.tlog.checkpoints import CheckpointRefusedError, node_signer
    from signing import note

    config = offices.node("qingdao").config
    keys = load_keys(config, KeyPaths(config.data_dir))
    forged = note.sign_note(
        note.Checkpoint("certfed.node/qingdao", 1, merkle.leaf_hash(b"x")).to_text(),
        node_signer("qingdao", keys.signing),
    )
    syncer = offices.syncer("foshan", "qingdao")
    with pytest.raises(CheckpointRefusedError, match="witness"):
        syncer.verify_checkpoint("qingdao", forged)


def _bulk_issue(offices: Offices, node_id: str, count: int) -> int:
    """Append `count` attestations signed by `node_id` to its log; returns the new size."""
    config = offices.node(node_id).config
    keys = load_keys(config, KeyPaths(config.data_dir))
    engine = db.create_engine_for(config.effective_database_url)
    try:
        head = issue_signed_attestations(engine, node_id, keys.signing, count)
    finally:
        engine.dispose()
    return head.tree_size


def test_sync_stores_a_verified_copy_and_resumes_after_an_interruption(offices: Offices) -> None:
    size = _bulk_issue(offices, "qingdao", 1200)
    offices.await_checkpoint("qingdao", size)
    syncer = offices.syncer("foshan", "qingdao", step=500)
    stop = threading.Event()
    seen: list[int] = []

    def interrupt_after_first_step(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            stop.set()

    first = syncer.sync("qingdao", progress=interrupt_after_first_step, stop=stop)
    assert first.to_size == 500
    engine = db.create_engine_for(offices.node("foshan").config.effective_database_url)
    try:
        with db.session_scope(engine) as session:
            assert sync_store.count(session, "qingdao") == 500
            stored = sync_store.entries(session, "qingdao", 0, 500)
            head = sync_store.head(session, "qingdao")
        assert head is not None
        assert head.tree_size == 500
        leaves = [merkle.leaf_hash(row.envelope_json) for row in stored]
        assert merkle.root_from_leaves(leaves) == (500, head.root_hash)
        resumed = syncer.sync("qingdao")
        assert resumed.from_size == 500
        assert resumed.to_size >= size
        with db.session_scope(engine) as session:
            assert sync_store.count(session, "qingdao") == resumed.to_size
    finally:
        engine.dispose()


def _synced_copy_of_qingdao(offices: Offices) -> int:
    """The size of Lanzhou's verified copy of Qingdao's log; its head and its rows agree."""
    lanzhou = db.create_engine_for(offices.node("lanzhou").config.effective_database_url)
    try:
        with db.session_scope(lanzhou) as session:
            head = sync_store.head(session, "qingdao")
            assert head is not None
            assert sync_store.count(session, "qingdao") == head.tree_size
            return head.tree_size
    finally:
        lanzhou.dispose()


def test_a_rewritten_entry_fails_sync_and_nothing_of_it_is_stored(offices: Offices) -> None:
    syncer = offices.syncer("lanzhou", "qingdao", step=400)
    synced = syncer.sync("qingdao").to_size
    size = _bulk_issue(offices, "qingdao", 900)
    offices.await_checkpoint("qingdao", size)
    # Qingdao's database is changed behind the node's back: one envelope past what Lanzhou
    # verified is rewritten, in the second step of the next sync.
    qingdao = db.create_engine_for(offices.node("qingdao").config.effective_database_url)
    victim = synced + 450
    try:
        with db.session_scope(qingdao) as session:
            original = log_store.entry_at(session, victim).envelope_json
            session.execute(
                update(LogEntry)
                .where(LogEntry.leaf_index == victim)  # type: ignore[arg-type]
                .values(envelope_json=original.replace(b'"payload"', b'"payload" '))
            )
        with pytest.raises(LogVerificationError, match="rewritten"):
            syncer.sync("qingdao")
        # The first step (before the rewritten entry) verified and was kept.
        assert _synced_copy_of_qingdao(offices) == synced + 400
    finally:
        with db.session_scope(qingdao) as session:
            session.execute(
                update(LogEntry)
                .where(LogEntry.leaf_index == victim)  # type: ignore[arg-type]
                .values(envelope_json=original)
            )
        qingdao.dispose()
    assert syncer.sync("qingdao").to_size >= size


def test_a_gap_in_the_entries_sent_fails_sync_and_nothing_of_it_is_stored(
    offices: Offices,
) -> None:
    syncer = offices.syncer("lanzhou", "qingdao", step=400)
    synced = syncer.sync("qingdao").to_size
    size = _bulk_issue(offices, "qingdao", 900)
    offices.await_checkpoint("qingdao", size)
    # An entry vanishes from Qingdao's database, in the second step of the next sync: the
    # stream skips from the entry before it to the one after. It lies inside a complete block
    # of 256 entries whose root the log keeps, so the proofs the sync asks for still answer.
    qingdao = db.create_engine_for(offices.node("qingdao").config.effective_database_url)
    block = -(-(synced + 400) // log_store.CHUNK) * log_store.CHUNK
    assert block + log_store.CHUNK <= synced + 800
    victim = block + 100
    try:
        with db.session_scope(qingdao) as session:
            removed = log_store.entry_at(session, victim)
            kept = LogEntry(
                leaf_index=victim,
                leaf_hash=removed.leaf_hash,
                envelope_json=removed.envelope_json,
                paying_region=removed.paying_region,
                attestation_id=removed.attestation_id,
            )
            session.execute(delete(LogEntry).where(LogEntry.leaf_index == victim))  # type: ignore[arg-type]
        with pytest.raises(LogVerificationError, match=f"sent entry {victim + 1} where {victim}"):
            syncer.sync("qingdao")
        assert _synced_copy_of_qingdao(offices) == synced + 400
    finally:
        with db.session_scope(qingdao) as session:
            session.add(kept)
        qingdao.dispose()
    assert syncer.sync("qingdao").to_size >= size


def test_subscription_pushes_a_new_attestation_within_a_second_and_resumes(
    offices: Offices,
) -> None:
    channel, stub = offices.stub("lanzhou", "qingdao")
    with channel:
        start = offices.checkpoint_size("lanzhou", "qingdao")
        size_now = merkle_size(
            bytes(
                stub.GetCheckpoint(federation_pb2.GetCheckpointRequest(), timeout=5).checkpoint.note
            )
        )
        assert size_now == start
        call = stub.Subscribe(
            federation_pb2.SubscribeRequest(from_tree_size=start, paying_regions=["620102"]),
            timeout=120,
        )
        received: list[tuple[int, float]] = []

        def read() -> None:
            try:
                for response in call:
                    for entry in response.entries:
                        received.append((entry.index, time.monotonic()))
            except grpc.RpcError:
                return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        before = len(received)
        attestation_id = offices.certify()
        approved_at = time.monotonic()
        wait_until(lambda: len(received) > before, 10, "the pushed entry")
        index, arrived_at = received[-1]
        assert arrived_at - approved_at < 1.0
        call.cancel()
        reader.join(timeout=5)
        # Resume after the disconnect from the size already received.
        resumed = stub.Subscribe(federation_pb2.SubscribeRequest(from_tree_size=index), timeout=10)
        first = next(iter(resumed))
        resumed.cancel()
    assert first.entries[0].index == index
    pushed = attestation_pb2.CertificationAttestation.FromString(
        dsse.Envelope.from_json(first.entries[0].envelope_json).payload
    )
    assert pushed.attestation_id == attestation_id


def _rewrite_history(url: str, victim: int, extra: int) -> None:
    """What a dishonest office could do to its own database: rebuild its log with one entry
    changed (a consistent tree of its own), then keep appending."""
    engine = db.create_engine_for(url)
    try:
        with db.session_scope(engine) as session:
            size = log_store.head(session).tree_size
            rows = log_store.entries(session, 0, size)
            session.execute(delete(LogSubtree))
            session.execute(delete(LogEntry))
            # Its record of what the witness cosigned too, or its own store would refuse.
            session.execute(
                update(LogHead).values(
                    tree_size=0, root_hash=merkle.EMPTY_ROOT, compact_state=b"", witnessed_size=0
                )
            )
        rewritten = [
            NewEntry(
                f"rewritten-{row.leaf_index}",
                row.envelope_json.replace(b'"payload"', b'"payload" ')
                if row.leaf_index == victim
                else row.envelope_json,
                row.paying_region,
            )
            for row in rows
        ]
        with db.session_scope(engine) as session:
            log_store.append_many(session, rewritten)
            log_store.append_many(
                session,
                (NewEntry(f"later-{n}", b'{"later":%d}' % n, "620102") for n in range(extra)),
            )
    finally:
        engine.dispose()


def test_a_node_that_shows_two_histories_is_caught_by_the_witness(offices: Offices) -> None:
    datong = offices.local.add_node(DATONG)
    size = _bulk_issue(offices, "datong", 300)
    offices.await_checkpoint("datong", size)
    syncer = offices.syncer("foshan", "datong")
    assert syncer.sync("datong").to_size == size
    offices.local.stop_node("datong")
    _rewrite_history(datong.config.effective_database_url, victim=10, extra=5)
    offices.local.start_node("datong")
    registry = registry_db.create_engine_for(offices.database_urls["registry"])
    try:

        def recorded() -> list[WitnessFork]:
            with registry_db.transaction(registry) as session:
                return [fork for fork in witness_store.forks(session) if fork.node_id == "datong"]

        forks = wait_until(recorded, 30, "the witness to record Datong's fork")
    finally:
        registry.dispose()
    assert b"certfed.node/datong\n300\n" in forks[0].cosigned_note
    assert b"certfed.node/datong\n305\n" in forks[0].offered_note
    # Datong still hands out only what the witness cosigned, and the rewritten entries behind it
    # fail verification at any receiver.
    assert offices.checkpoint_size("foshan", "datong") == size
    fresh = offices.syncer("lanzhou", "datong")
    with pytest.raises(LogVerificationError, match="rewritten"):
        fresh.sync("datong")
    lanzhou = db.create_engine_for(offices.node("lanzhou").config.effective_database_url)
    try:
        with db.session_scope(lanzhou) as session:
            assert sync_store.count(session, "datong") == 0
    finally:
        lanzhou.dispose()


def test_an_exported_bundle_verifies_offline_and_a_tampered_one_does_not(
    offices: Offices, tmp_path: Path
) -> None:
    attestation_id = offices.certify()
    qingdao = offices.node("qingdao")
    offices.await_checkpoint("qingdao", _log_size(offices, "qingdao"))
    bundle_path = tmp_path / "bundle.json"
    exported = certfed(
        "desk", "--config", str(qingdao.config_path), "export-bundle", attestation_id,
        "--out", str(bundle_path),
        token=qingdao.tokens["clerk"], timeout=60,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout
    directory_path = tmp_path / "directory.json"
    directory_path.write_bytes(offices.local.fetch_directory().to_json())
    trust = offices.local.registry_paths
    verify = [
        "verify", "--directory", str(directory_path),
        "--root-key", str(trust.trust_root_public_key),
        "--witness-key", str(trust.trust_witness_vkey),
    ]  # fmt: skip
    checked = certfed(*verify, str(bundle_path), token="", timeout=60)
    assert checked.returncode == 0, checked.stdout
    assert f"attestation {attestation_id}" in checked.stdout
    document = json.loads(bundle_path.read_text(encoding="utf-8"))
    document["envelope_json"] = document["envelope_json"].replace('"payload"', '"payload" ')
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document), encoding="utf-8")
    refused = certfed(*verify, str(tampered), token="", timeout=60)
    assert refused.returncode == 1
    assert "REFUSED" in refused.stdout


def _log_size(offices: Offices, node_id: str) -> int:
    engine = db.create_engine_for(offices.node(node_id).config.effective_database_url)
    try:
        with db.session_scope(engine) as session:
            return log_store.head(session).tree_size
    finally:
        engine.dispose()


def test_a_following_node_stores_new_entries_of_the_log_it_follows(offices: Offices) -> None:
    spec = NodeSpec("shenzhen", "Shenzhen office", ("440300",), ("paying_office",))
    follower = offices.local.add_node(spec, settings={"follow": ["qingdao"]})
    engine = db.create_engine_for(follower.config.effective_database_url)
    try:

        def synced() -> int:
            with db.session_scope(engine) as session:
                return sync_store.count(session, "qingdao")

        offices.certify()
        size = _log_size(offices, "qingdao")
        wait_until(lambda: synced() >= size, 60, "the follower to catch up")
        caught_up = synced()
        attestation_id = offices.certify()
        wait_until(lambda: synced() > caught_up, 30, "the new entry at the follower")
        with db.session_scope(engine) as session:
            head = sync_store.head(session, "qingdao")
            assert head is not None
            newest = sync_store.entries(session, "qingdao", head.tree_size - 1, head.tree_size)
        payload = dsse.Envelope.from_json(newest[0].envelope_json).payload
        assert attestation_pb2.CertificationAttestation.FromString(payload).attestation_id == (
            attestation_id
        )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (federation_pb2.SubscribeRequest(paying_regions=["nowhere"]), "paying_regions"),
        (federation_pb2.SubscribeRequest(from_tree_size=10**12), "from_tree_size"),
    ],
)
def test_a_bad_subscription_is_refused_naming_the_field(
    offices: Offices, request_: federation_pb2.SubscribeRequest, field: str
) -> None:
    channel, stub = offices.stub("lanzhou", "qingdao")
    with channel:
        call = stub.Subscribe(request_, timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(call))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith(f"{field}:")
