"""The desk methods about evidence files: a clerk uploads one, a clerk or reviewer of this office
reads one (audited). Mixed into `DeskServicer`; thin, like the rest of it."""

from __future__ import annotations

import grpc

from certfed.v1 import desk_pb2
from federation.principal import caller
from federation.timestamps import to_timestamp
from federation_node.offices.context import Actor
from federation_node.offices.evidence import EvidenceArchive
from federation_node.offices.node import Node
from federation_node.store.models import Evidence


def evidence_view(record: Evidence, archive: EvidenceArchive) -> desk_pb2.Evidence:
    return desk_pb2.Evidence(
        sha256=bytes.fromhex(record.sha256),
        media_type=record.media_type,
        size_bytes=record.size_bytes,
        retained_from=to_timestamp(record.retained_from),
        delete_after=to_timestamp(archive.delete_after(record)),
    )


class EvidenceDesk:
    """UploadEvidence and GetEvidence, for a servicer holding `_node`."""

    _node: Node

    def UploadEvidence(
        self, request: desk_pb2.UploadEvidenceRequest, context: grpc.ServicerContext
    ) -> desk_pb2.UploadEvidenceResponse:
        archive = self._node.evidence
        record = archive.upload(Actor("operator", caller().name), request)
        return desk_pb2.UploadEvidenceResponse(evidence=evidence_view(record, archive))

    def GetEvidence(
        self, request: desk_pb2.GetEvidenceRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetEvidenceResponse:
        archive = self._node.evidence
        record, content = archive.read(Actor("operator", caller().name), request.sha256)
        return desk_pb2.GetEvidenceResponse(
            evidence=evidence_view(record, archive), content=content
        )
