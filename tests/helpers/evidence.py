"""Evidence files for tests: the demo's synthetic screen capture (a small PNG), uploaded to a desk
as a clerk's terminal does before recording a certification."""

from __future__ import annotations

from certfed.v1 import desk_pb2
from cli.demo import screen_capture_png
from federation.desk_client import DeskClient

__all__ = ["screen_capture_png", "upload_capture"]


def upload_capture(desk: DeskClient, shade: int = 0) -> bytes:
    """Upload a PNG (a different picture for each `shade`); its SHA-256 as the node named it."""
    response = desk.stub.UploadEvidence(
        desk_pb2.UploadEvidenceRequest(media_type="image/png", content=screen_capture_png(shade))
    )
    digest: bytes = response.evidence.sha256
    return digest
