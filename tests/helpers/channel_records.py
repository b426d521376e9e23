"""Records of the certification channels on a running paying office, made as the channels make
them: a face-recognition result below the policy's thresholds from a provider's feed account
(the person goes on the follow-up list), and an employer's batch list uploaded by a clerk."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation
from cli.operator_commands import create_operator, host_actor
from federation.timestamps import to_timestamp
from federation_node.store import db
from federation_node.store.models import OperatorRole


def face_recognition_feed(local: LocalFederation, node_id: str, provider: str) -> str:
    """A feed account bound to `provider`, as `certfed node add-operator --role feed --source
    <provider>` creates it; its token is kept under `provider` in the node's tokens, whose name
    this returns (for `local.desk(node_id, name)`)."""
    handle = local.nodes[node_id]
    engine = db.create_engine_for(handle.config.effective_database_url)
    try:
        with db.session_scope(engine) as session:
            _, token = create_operator(
                session,
                label=f"{provider} face recognition",
                roles=(OperatorRole.FEED,),
                actor=host_actor(),
                now=datetime.now(UTC),
                feed_sources=(provider,),
            )
    finally:
        engine.dispose()
    handle.tokens[provider] = token
    return provider


def record_failed_face_recognition(
    local: LocalFederation,
    node_id: str,
    provider: str,
    identity_number: str,
    reference: str,
    *,
    liveness_score: float = 62.0,
    match_score: float = 93.5,
) -> None:
    """One resident's face-recognition result whose liveness score is below the default
    policy's threshold (90): the node lists the person for another channel."""
    with local.desk(node_id, provider) as feed:
        answer = feed.stub.RecordFaceRecognitions(
            desk_pb2.RecordFaceRecognitionsRequest(
                results=[
                    desk_pb2.FaceRecognitionResult(
                        provider=provider,
                        provider_reference=reference,
                        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                        identity_number=identity_number,
                        observed_at=to_timestamp(datetime.now(UTC) - timedelta(minutes=5)),
                        liveness_score=liveness_score,
                        match_score=match_score,
                    )
                ]
            )
        )
    (outcome,) = [item.outcome for item in answer.answers]
    assert outcome == desk_pb2.FACE_RECOGNITION_OUTCOME_BELOW_THRESHOLD, answer


def upload_employer_batch(
    local: LocalFederation,
    node_id: str,
    operator: str,
    file_name: str,
    identity_numbers: Sequence[str],
    unit: str = "兰州市财政局",
) -> desk_pb2.EmployerBatch:
    """A unit's batch list naming the residents `identity_numbers`, confirmed alive two days
    ago, uploaded by `operator`; every row is expected to be accepted."""
    confirmed = to_timestamp(datetime.now(UTC) - timedelta(days=2))
    rows = [
        desk_pb2.EmployerBatchRow(
            line=line,
            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
            identity_number=number,
            observed_at=confirmed,
        )
        for line, number in enumerate(identity_numbers, start=2)
    ]
    with local.desk(node_id, operator) as desk:
        answer = desk.stub.UploadEmployerBatch(
            desk_pb2.UploadEmployerBatchRequest(
                unit=unit,
                file_name=file_name,
                file_sha256=hashlib.sha256(file_name.encode()).digest(),
                rows=rows,
            )
        )
    assert all(result.accepted for result in answer.results), answer.results
    batch: desk_pb2.EmployerBatch = answer.batch
    return batch
