"""Evidence files on real node processes, on SQLite and PostgreSQL: uploaded by a clerk, named
by SHA-256, stored encrypted, read only by the office's own clerks and reviewers (every read
audited), refused when of the wrong kind or size, deleted by the daily cycle after retention.

Lanzhou's policy keeps files of at most 64 KiB for 30 days, so the limits show in the tests.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col

from certfed.v1 import common_pb2, desk_pb2, desk_pb2_grpc
from cli.launcher import LocalFederation, NodeHandle
from federation.desk_client import DeskClient
from federation.timestamps import to_datetime, to_timestamp
from federation.transport import (
    TlsMaterial,
    anonymous_channel_credentials,
    node_tls_name,
    secure_channel,
)
from federation_node.store import db
from federation_node.store.models import AuditRecord, Evidence
from tests.helpers.audit_trail import chained_records
from tests.helpers.commands import certfed
from tests.helpers.evidence import screen_capture_png, upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU, QINGDAO, database_url_for, offices_with_policy

POLICY = "[evidence]\nretention_days = 30\nmax_bytes = 65536\n"
MAX_BYTES = 65536
RETENTION = timedelta(days=30)
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


class Offices:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.shade = 100
        # Lanzhou's database, read and edited as its administrator could.
        self.engine = db.create_engine_for(local.nodes["lanzhou"].config.effective_database_url)

    def node(self, node_id: str) -> NodeHandle:
        return self.local.nodes[node_id]

    def desk(self, node_id: str = "lanzhou", operator: str = "clerk") -> DeskClient:
        return self.local.desk(node_id, operator)

    def upload(self, node_id: str = "lanzhou") -> bytes:
        self.shade += 1
        with self.desk(node_id) as desk:
            return upload_capture(desk, self.shade)

    def read(self, digest: bytes, operator: str = "reviewer") -> desk_pb2.GetEvidenceResponse:
        with self.desk("lanzhou", operator) as desk:
            found: desk_pb2.GetEvidenceResponse = desk.stub.GetEvidence(
                desk_pb2.GetEvidenceRequest(sha256=digest)
            )
        return found

    def session(self) -> Session:
        return Session(self.engine)

    def audit(self, action: str, subject_id: str) -> list[str]:
        """Actors of the audit records of `action` on `subject_id`."""
        return [
            record.actor
            for record in chained_records(
                self.engine, AuditRecord.action == action, AuditRecord.subject_id == subject_id
            )
        ]

    def backdate(self, digest: bytes, by: timedelta) -> None:
        with self.session() as session:
            session.execute(
                sa.update(Evidence)
                .where(col(Evidence.sha256) == digest.hex())
                .values(retained_from=datetime.now(UTC) - by)
            )
            session.commit()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def offices(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Offices]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp(f"evidence-{request.param}")
    with offices_with_policy(workdir, urls, LANZHOU, POLICY, QINGDAO) as local:
        offices = Offices(local)
        try:
            yield offices
        finally:
            offices.engine.dispose()


def test_an_uploaded_file_is_named_by_its_sha256_and_read_back_unchanged(
    offices: Offices,
) -> None:
    content = screen_capture_png(7)
    with offices.desk() as desk:
        uploaded = desk.stub.UploadEvidence(
            desk_pb2.UploadEvidenceRequest(media_type="image/png", content=content)
        ).evidence
        again = desk.stub.UploadEvidence(
            desk_pb2.UploadEvidenceRequest(media_type="image/png", content=content)
        ).evidence
        pdf = desk.stub.UploadEvidence(
            desk_pb2.UploadEvidenceRequest(media_type="application/pdf", content=PDF)
        ).evidence
    assert uploaded.sha256 == hashlib.sha256(content).digest()
    assert (uploaded.media_type, uploaded.size_bytes) == ("image/png", len(content))
    assert to_datetime(uploaded.delete_after) - to_datetime(uploaded.retained_from) == RETENTION
    assert again.sha256 == uploaded.sha256
    assert pdf.sha256 == hashlib.sha256(PDF).digest()
    for operator in ("clerk", "reviewer"):
        found = offices.read(uploaded.sha256, operator)
        assert found.content == content
        assert found.evidence.media_type == "image/png"


def test_the_database_holds_each_file_encrypted(offices: Offices) -> None:
    content = screen_capture_png(8)
    with offices.desk() as desk:
        digest = desk.stub.UploadEvidence(
            desk_pb2.UploadEvidenceRequest(media_type="image/png", content=content)
        ).evidence.sha256
    with offices.session() as session:
        row = session.get(Evidence, digest.hex())
        assert row is not None
        stored = bytes(row.sealed_content)
    assert stored != content
    assert b"\x89PNG" not in stored
    assert content[-64:] not in stored
    assert len(stored) >= len(content) + 32  # the HPKE encapsulated key and the tag


@pytest.mark.parametrize(
    ("media_type", "content", "field", "words"),
    [
        ("image/jpeg", screen_capture_png(9), "content", "looks like image/png"),
        ("image/png", b"not a picture at all", "content", "none of the accepted formats"),
        ("image/gif", b"GIF89a" + bytes(32), "media_type", "keeps only"),
        ("", screen_capture_png(9), "media_type", "is required"),
        ("image/png", b"", "content", "is empty"),
        ("image/png", b"\x89PNG\r\n\x1a\n" + bytes(MAX_BYTES), "content", f"at most {MAX_BYTES}"),
    ],
    ids=["declared-jpeg-is-png", "text-as-png", "gif", "no-type", "empty", "too-large"],
)
def test_a_file_of_a_kind_or_size_the_office_refuses_is_invalid_argument_naming_the_field(
    offices: Offices, media_type: str, content: bytes, field: str, words: str
) -> None:
    with offices.desk() as desk, pytest.raises(grpc.RpcError) as refused:
        desk.stub.UploadEvidence(
            desk_pb2.UploadEvidenceRequest(media_type=media_type, content=content)
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert details.startswith(f"{field}: ")
    assert words in details
    with offices.session() as session:
        assert session.get(Evidence, hashlib.sha256(content).hexdigest()) is None


def _refused(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    code: grpc.StatusCode = refused.value.code()
    return code


def test_only_the_offices_own_clerks_and_reviewers_read_evidence(offices: Offices) -> None:
    digest = offices.upload()
    request = desk_pb2.GetEvidenceRequest(sha256=digest)
    lanzhou, qingdao = offices.node("lanzhou"), offices.node("qingdao")
    ca = lanzhou.config.ca_certificate.read_bytes()

    # Another office's clerk: its token means nothing at this node.
    endpoint = f"127.0.0.1:{lanzhou.desk_port}"
    limits = offices.local.limits
    with DeskClient(endpoint, "lanzhou", ca, qingdao.tokens["clerk"], limits) as stranger:
        assert _refused(lambda: stranger.stub.GetEvidence(request)) is (
            grpc.StatusCode.UNAUTHENTICATED
        )
    # Its own desk does not have the file: evidence stays with the office that keeps it.
    with offices.desk("qingdao") as desk:
        assert _refused(lambda: desk.stub.GetEvidence(request)) is grpc.StatusCode.NOT_FOUND
    # No token at all, on the desk port.
    with secure_channel(
        f"127.0.0.1:{lanzhou.desk_port}",
        node_tls_name("lanzhou"),
        anonymous_channel_credentials(ca),
        max_message_bytes=4 << 20,
    ) as channel:
        anonymous = desk_pb2_grpc.DeskServiceStub(channel)
        assert _refused(lambda: anonymous.GetEvidence(request, timeout=10)) is (
            grpc.StatusCode.UNAUTHENTICATED
        )
    # Another node, with its federation certificate, on the federation port.
    peer_tls = TlsMaterial.load(
        qingdao.config.data_dir / "keys" / "tls.pem",
        qingdao.config.data_dir / "keys" / "tls.key",
        qingdao.config.ca_certificate,
    )
    with secure_channel(
        f"127.0.0.1:{lanzhou.federation_port}",
        node_tls_name("lanzhou"),
        peer_tls.channel_credentials(),
        max_message_bytes=4 << 20,
    ) as channel:
        peer = desk_pb2_grpc.DeskServiceStub(channel)
        assert _refused(lambda: peer.GetEvidence(request, timeout=10)) is (
            grpc.StatusCode.UNAUTHENTICATED
        )
    # This office's administrator is no reviewer.
    assert _refused(lambda: offices.read(digest, "admin")) is grpc.StatusCode.PERMISSION_DENIED
    # None of those refusals counts as a read.
    assert offices.audit("evidence.read", digest.hex()) == []


def test_every_read_is_audited_with_who_read(offices: Offices) -> None:
    digest = offices.upload()
    offices.read(digest, "reviewer")
    offices.read(digest, "clerk")
    lanzhou = offices.node("lanzhou")
    assert sorted(offices.audit("evidence.read", digest.hex())) == sorted(
        f"operator:{lanzhou.operator_ids[who]}" for who in ("reviewer", "clerk")
    )
    assert offices.audit("evidence.upload", digest.hex()) == [
        f"operator:{lanzhou.operator_ids['clerk']}"
    ]


def test_the_daily_cycle_deletes_evidence_past_retention_and_audits_each_deletion(
    offices: Offices,
) -> None:
    expired, attached, recent = offices.upload(), offices.upload(), offices.upload()
    offices.backdate(expired, RETENTION + timedelta(days=2))
    offices.backdate(attached, RETENTION + timedelta(days=2))
    # Attaching a file to a certification restarts its retention period.
    with offices.desk() as desk:
        beneficiary_id = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=resident(resident_id("620102", date(1944, 2, 2), 7)),
                residence_region="620102",
            )
        ).beneficiary.beneficiary_id
        desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=beneficiary_id,
                method=common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC) - timedelta(minutes=1)),
                evidence_digests=[attached],
            )
        )
    with offices.desk("lanzhou", "admin") as admin:
        assert admin.stub.RunCycle(desk_pb2.RunCycleRequest()).ran
    with offices.desk("lanzhou", "reviewer") as reviewer:
        gone = _refused(
            lambda: reviewer.stub.GetEvidence(desk_pb2.GetEvidenceRequest(sha256=expired))
        )
    assert gone is grpc.StatusCode.NOT_FOUND
    assert offices.read(attached).content
    assert offices.read(recent).content
    admin_label = f"operator:{offices.node('lanzhou').operator_ids['admin']}"
    assert offices.audit("evidence.delete", expired.hex()) == [admin_label]
    assert offices.audit("evidence.delete", attached.hex()) == []


def test_the_terminal_uploads_evidence_with_a_certification_and_reads_it_back(
    offices: Offices, tmp_path: Path
) -> None:
    lanzhou = offices.node("lanzhou")
    config = str(lanzhou.config_path)
    with offices.desk() as desk:
        beneficiary_id = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=resident(resident_id("620102", date(1944, 2, 2), 8)),
                residence_region="620102",
            )
        ).beneficiary.beneficiary_id
    capture = tmp_path / "screen.png"
    capture.write_bytes(screen_capture_png(42))
    recorded = certfed(
        "desk", "--config", config, "certify", beneficiary_id, "--method", "video_call",
        "--evidence", str(capture),
        token=lanzhou.tokens["clerk"],
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    digest = hashlib.sha256(capture.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in recorded.stdout
    out = tmp_path / "read-back.png"
    read = certfed(
        "desk", "--config", config, "evidence", digest, "--out", str(out),
        token=lanzhou.tokens["reviewer"],
    )  # fmt: skip
    assert read.returncode == 0, read.stdout + read.stderr
    assert out.read_bytes() == capture.read_bytes()
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    refused = certfed(
        "desk", "--config", config, "evidence", "not-a-digest", "--out", str(out),
        token=lanzhou.tokens["reviewer"],
    )  # fmt: skip
    assert refused.returncode != 0
    assert "64 hexadecimal characters" in refused.stdout
