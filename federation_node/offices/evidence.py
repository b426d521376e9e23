"""Evidence of certifications: the files clerks attach (a counter photo, a video call's screen
capture, a signed form), kept by the node that certified, for its own reviewers and inspectors.

What this module promises:

* A file is accepted only in a format the office's policy lists, checked by its first bytes, and
  no larger than `evidence.max_bytes` (rules/evidence.py); it is named by its SHA-256, which is
  what certifications and the signed attestation carry. The same bytes uploaded twice are one
  file.
* Files are encrypted at rest: HPKE-sealed (signing/sealing.py) to the node's own X25519 key,
  bound to their digest, so the database, its backups and its replicas hold ciphertext that
  opens only with the node's key and only under its own name; what opens is checked against the
  digest before anyone sees it.
* Only the office's own operators read a file (the desk's authorisation), and every read leaves
  an audit record naming the operator, in the transaction that reads it.
* A certification may name only files uploaded here (`require_kept`); attaching one restarts
  its retention period, and the daily cycle deletes files whose period has passed
  (`delete_expired`), one audit record per file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlmodel import Session

from certfed.v1 import desk_pb2
from federation.errors import InvalidInputError, UnknownEvidenceError
from federation_node.offices.context import Actor, NodeContext
from federation_node.rules.evidence import check_evidence
from federation_node.store import audit, evidence_store
from federation_node.store.db import session_scope
from federation_node.store.models import Evidence
from signing import sealing
from signing.errors import UnsealError

log = structlog.get_logger("certfed.node")

SHA256_SIZE = 32
# Room a desk message needs besides the file itself (field tags, media type, metadata).
MESSAGE_OVERHEAD_BYTES = 64 * 1024


def _info(sha256: str) -> bytes:
    # Its own context, so no other sealed value stored by the node opens as evidence.
    return sealing.at_rest_info(f"evidence:{sha256}")


class EvidenceArchive:
    """The files this node keeps as evidence, sealed to its key."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context
        room = context.config.limits.max_message_bytes - MESSAGE_OVERHEAD_BYTES
        if context.policy.evidence_max_bytes > room:
            raise InvalidInputError(
                "evidence.max_bytes",
                f"is {context.policy.evidence_max_bytes} bytes, but a file must fit in one desk "
                f"message (limits.max_message_bytes is {context.config.limits.max_message_bytes}"
                f"): set it to at most {room}",
            )

    def delete_after(self, evidence: Evidence) -> datetime:
        return evidence.retained_from + timedelta(days=self._context.policy.evidence_retention_days)

    def upload(self, actor: Actor, request: desk_pb2.UploadEvidenceRequest) -> Evidence:
        policy = self._context.policy
        media_type = check_evidence(
            request.media_type,
            request.content,
            policy.evidence_media_types,
            policy.evidence_max_bytes,
        )
        digest = hashlib.sha256(request.content).hexdigest()
        sealed = sealing.seal(request.content, self._context.keys.hpke.public_raw, _info(digest))
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            stored, kept_before = evidence_store.store(
                session,
                sha256=digest,
                media_type=media_type,
                sealed_content=sealed,
                size_bytes=len(request.content),
                now=now,
            )
            audit.append(
                session,
                actor=actor.label,
                action="evidence.upload",
                subject_type="evidence",
                subject_id=digest,
                details={
                    "media_type": media_type,
                    "size_bytes": len(request.content),
                    "kept_before": kept_before,
                },
                now=now,
            )
        return stored

    def read(self, actor: Actor, sha256: bytes) -> tuple[Evidence, bytes]:
        """A file and its content, for an operator of this office; the read is audited."""
        if len(sha256) != SHA256_SIZE:
            raise InvalidInputError("sha256", "must be the 32-byte SHA-256 of the file")
        digest = sha256.hex()
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            stored = evidence_store.get(session, digest)
            content = self._open(stored)
            audit.append(
                session,
                actor=actor.label,
                action="evidence.read",
                subject_type="evidence",
                subject_id=digest,
                details={"media_type": stored.media_type},
                now=now,
            )
        return stored, content

    def _open(self, stored: Evidence) -> bytes:
        try:
            content = sealing.open_sealed(
                stored.sealed_content, self._context.keys.hpke, _info(stored.sha256)
            )
        except UnsealError as error:
            # Not the caller's fault: the row was altered or moved, or the node's key changed.
            problem = f"evidence {stored.sha256} does not open with this node's key"
            raise RuntimeError(problem) from error
        if hashlib.sha256(content).hexdigest() != stored.sha256:
            raise RuntimeError(f"evidence {stored.sha256} opened to other content")
        return content

    def require_kept(self, session: Session, digests: Sequence[bytes], now: datetime) -> None:
        """Refuse a certification naming a file not uploaded here; restart the retention
        period of those it names. In the caller's transaction."""
        hexes = [digest.hex() for digest in digests]
        missing = evidence_store.retain(session, hexes, now)
        if missing:
            index = hexes.index(missing[0])
            raise UnknownEvidenceError(
                f"evidence_digests[{index}]: no file with this SHA-256 was uploaded to this node; "
                "upload the file first (UploadEvidence, or `certfed desk ... --evidence FILE`)"
            )

    def delete_expired(self, session: Session, actor: Actor, day: datetime, now: datetime) -> int:
        """Delete the files whose retention period ended before `day`, each with its audit
        record, in the caller's (the daily cycle's) transaction; returns how many."""
        retention = self._context.policy.evidence_retention_days
        deleted = evidence_store.delete_retained_before(session, day - timedelta(days=retention))
        for digest in deleted:
            audit.append(
                session,
                actor=actor.label,
                action="evidence.delete",
                subject_type="evidence",
                subject_id=digest,
                details={"retention_days": retention},
                now=now,
            )
        if deleted:
            log.info("evidence.deleted", count=len(deleted), retention_days=retention)
        return len(deleted)
