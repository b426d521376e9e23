"""Which files a clerk may keep as evidence of a certification: pure checks, no I/O.

A file is accepted only when its declared media type is one the office's policy lists and its
first bytes are that format's signature, so a file renamed to .png is refused whatever the clerk's
terminal declared. Every refusal names the request field and says what to do.
"""

from __future__ import annotations

from collections.abc import Collection

from federation.errors import InvalidInputError

# The formats a desk may upload, and how each file begins.
# JPEG: SOI marker then the first marker's 0xFF (ISO/IEC 10918-1 B.1.1.3).
# PNG: the 8-byte signature (ISO/IEC 15948 5.2).
# PDF: the header "%PDF-" (ISO 32000-1 7.5.2).
MEDIA_SIGNATURES: dict[str, bytes] = {
    "image/jpeg": b"\xff\xd8\xff",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "application/pdf": b"%PDF-",
}
MEDIA_TYPES = tuple(MEDIA_SIGNATURES)


def media_type_of(content: bytes) -> str | None:
    """The accepted format `content` begins with, or None."""
    for media_type, signature in MEDIA_SIGNATURES.items():
        if content.startswith(signature):
            return media_type
    return None


def check_evidence(
    media_type: str, content: bytes, accepted: Collection[str], max_bytes: int
) -> str:
    """The media type, once `content` is a file of that type the office accepts."""
    if not media_type:
        raise InvalidInputError(
            "media_type", f"is required; give one of {', '.join(sorted(accepted))}"
        )
    if media_type not in accepted:
        raise InvalidInputError(
            "media_type",
            f"this office keeps only {', '.join(sorted(accepted))} as evidence "
            "(evidence.media_types in its policy)",
        )
    if not content:
        raise InvalidInputError("content", "is empty; attach the file itself")
    if len(content) > max_bytes:
        raise InvalidInputError(
            "content",
            f"is {len(content)} bytes; this office keeps files of at most {max_bytes} bytes "
            "(evidence.max_bytes in its policy): scan or capture at a lower resolution",
        )
    found = media_type_of(content)
    if found != media_type:
        seen = f"looks like {found}" if found else "is none of the accepted formats"
        raise InvalidInputError(
            "content", f"is declared {media_type} but {seen}; upload the original file"
        )
    return media_type
