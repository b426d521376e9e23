"""Evidence files at a node's desk: the files a clerk attaches to a certification
(`certfed desk ... record|walk-in|certify --evidence FILE`), uploaded before the certification is
recorded, and `certfed desk ... evidence DIGEST --out FILE` to read one back.

The node checks each file's format by its first bytes; the type sent with it is only what its
name says. A file read back is written readable by its owner only: it shows a person.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from certfed.v1 import desk_pb2
from cli.desk import desk_client
from cli.output import console
from federation.desk_client import DeskClient
from federation.errors import CertfedError, InvalidInputError
from federation.timestamps import to_datetime

MEDIA_TYPES_BY_SUFFIX = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".pdf": "application/pdf",
}
SHA256_HEX_LENGTH = 64


def upload_evidence(desk: DeskClient, paths: Sequence[str]) -> list[bytes]:
    """Upload each file; their SHA-256 digests, as the node named them, in order."""
    digests = []
    for name in paths:
        path = Path(name)
        media_type = MEDIA_TYPES_BY_SUFFIX.get(path.suffix.lower())
        if media_type is None:
            raise InvalidInputError("--evidence", f"{name}: give a .jpg, .jpeg, .png or .pdf file")
        content = path.read_bytes()
        response = desk.stub.UploadEvidence(
            desk_pb2.UploadEvidenceRequest(media_type=media_type, content=content)
        )
        digest = bytes(response.evidence.sha256)
        if digest != hashlib.sha256(content).digest():
            raise CertfedError(f"the node named {name} by another digest; nothing was recorded")
        console.print(f"uploaded {name}: sha256 {digest.hex()}")
        digests.append(digest)
    return digests


def evidence_command(args: argparse.Namespace) -> int:
    text = args.digest.strip().lower()
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(text) != SHA256_HEX_LENGTH or len(digest) * 2 != SHA256_HEX_LENGTH:
        raise InvalidInputError("digest", "give the file's SHA-256 as 64 hexadecimal characters")
    with desk_client(args) as desk:
        found = desk.stub.GetEvidence(desk_pb2.GetEvidenceRequest(sha256=digest))
    descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(found.content)
    kept_until = to_datetime(found.evidence.delete_after).date().isoformat()
    console.print(
        f"wrote {args.out}: {found.evidence.media_type}, {found.evidence.size_bytes} bytes, "
        f"kept until {kept_until}"
    )
    return 0


def add_evidence_desk_commands(desk_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`certfed desk ... evidence DIGEST --out FILE`."""
    parser = desk_actions.add_parser(
        "evidence", help="read a file kept as evidence (clerk or reviewer; audited)"
    )
    parser.add_argument("digest", help="the file's SHA-256, in hexadecimal")
    parser.add_argument("--out", required=True, help="file to write (readable by you only)")
    parser.set_defaults(handler=evidence_command)
