"""The demo's face-recognition provider: the vendor of Foshan's certification app signs each
result with its Ed25519 key, and Foshan pulls the day's results as a batch file.

Foshan configures the provider as docs/channels.md says (a settings file naming the provider and
its public key, and a feed account bound to the provider's name), and the results go through
the same adapter code as `certfed adapter face-recognition import`: each line's signature is
verified before anything reaches the node. The batch holds one genuine result and one signed with
a key that is not the provider's, which the adapter refuses into the rejects file.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.face_recognition import (
    DeskResultRecorder,
    import_batch_file,
    load_provider_config,
    signed_envelope,
)
from certfed.v1 import attestation_pb2, desk_pb2
from cli.launcher import LocalFederation
from cli.operator_commands import create_operator, host_actor
from federation_node.store import db
from federation_node.store.models import OperatorRole

PROVIDER = "foshan-app"


@dataclass(frozen=True)
class FaceRecognitionImport:
    """What the batch import did: the attestation the genuine result was certified by, the
    node's answers by outcome name, and the lines the adapter refused."""

    provider: str
    attestation_id: str
    outcomes: dict[str, int]
    refused_by_adapter: int
    rejects_file: Path


class _KeptAnswers:
    """The desk recorder, keeping the node's answers (the attestation ids) for the demo."""

    def __init__(self, recorder: DeskResultRecorder) -> None:
        self._recorder = recorder
        self.answers: list[desk_pb2.FaceRecognitionAnswer] = []

    def record(
        self, results: Sequence[desk_pb2.FaceRecognitionResult]
    ) -> Sequence[desk_pb2.FaceRecognitionAnswer]:
        answers = self._recorder.record(results)
        self.answers.extend(answers)
        return answers


def configure_provider(
    federation: LocalFederation, node_id: str, folder: Path
) -> tuple[Path, Ed25519PrivateKey]:
    """The office's side of a new provider: its settings file with the provider's public key,
    and a feed account bound to the provider's name (as `certfed node add-operator --role feed
    --source foshan-app` creates it), whose token the demo keeps under PROVIDER. Returns the
    settings file, and the signing key the demo's vendor keeps (never written to disk)."""
    folder.mkdir(parents=True, exist_ok=True)
    vendor_key = Ed25519PrivateKey.generate()
    (folder / f"{PROVIDER}.pub").write_bytes(
        vendor_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    settings = folder / f"{PROVIDER}.toml"
    settings.write_text(
        f'provider = "{PROVIDER}"\nalgorithm = "ed25519"\nkey_file = "{PROVIDER}.pub"\n',
        encoding="utf-8",
    )
    handle = federation.nodes[node_id]
    engine = db.create_engine_for(handle.config.effective_database_url)
    try:
        with db.session_scope(engine) as session:
            _, token = create_operator(
                session,
                label="certification app vendor",
                roles=(OperatorRole.FEED,),
                actor=host_actor(),
                now=datetime.now(UTC),
                feed_sources=(PROVIDER,),
            )
    finally:
        engine.dispose()
    handle.tokens[PROVIDER] = token
    return settings, vendor_key


def write_vendor_batch(
    folder: Path,
    vendor_key: Ed25519PrivateKey,
    person: attestation_pb2.IdentityBundle,
    reference: str,
) -> Path:
    """The vendor's batch file: the person's passing result signed with the vendor's key, and
    the same result under another reference signed with a key that is not the vendor's."""
    now = datetime.now(UTC)
    result: dict[str, Any] = {
        "provider": PROVIDER,
        "reference": reference,
        "signed_at": now.isoformat(),
        "identity_type": "resident_id",
        "identity_number": person.identity_number,
        "observed_at": (now - timedelta(minutes=3)).isoformat(),
        "liveness_score": 97.5,
        "match_score": 92.0,
        "helper_relation": "",
    }
    forged = {**result, "reference": f"{reference}-forged"}
    path = folder / "results.jsonl"
    path.write_bytes(
        signed_envelope(result, vendor_key.sign)
        + b"\n"
        + signed_envelope(forged, Ed25519PrivateKey.generate().sign)
        + b"\n"
    )
    return path


def import_vendor_batch(
    federation: LocalFederation, node_id: str, settings: Path, batch: Path
) -> FaceRecognitionImport:
    """Verify and record the batch as `certfed adapter face-recognition import` does, under the
    provider's feed account; the refused lines (number and reason) go to FILE.rejects.csv."""
    config = load_provider_config(settings)
    rejects_path = batch.with_suffix(".rejects.csv")
    with (
        federation.desk(node_id, PROVIDER) as desk,
        rejects_path.open("w", encoding="utf-8", newline="") as rejects,
    ):
        writer = csv.writer(rejects)
        writer.writerow(("line", "reason"))
        recorder = _KeptAnswers(DeskResultRecorder(desk))
        summary = import_batch_file(
            batch,
            config,
            recorder,
            reject=lambda line, reason: writer.writerow((line, reason)),
        )
    certified = [
        answer.attestation_id
        for answer in recorder.answers
        if answer.outcome == desk_pb2.FACE_RECOGNITION_OUTCOME_CERTIFIED
    ]
    return FaceRecognitionImport(
        provider=config.provider,
        attestation_id=certified[0] if certified else "",
        outcomes=dict(summary.outcomes),
        refused_by_adapter=summary.rejected,
        rejects_file=rejects_path,
    )
