"""What the web desk needs to know about its office, read once at start by `certfed web serve`."""

from __future__ import annotations

from dataclasses import dataclass, field

# Rows per page of every list; the node pages on its side with the same size.
PAGE_SIZE = 25


@dataclass(frozen=True)
class WebDeskSettings:
    node_id: str
    # Key of the CSRF tokens (HMAC-SHA256), from [web] secret_file.
    secret: bytes
    # The office's evidence limits (its policy file): larger uploads are refused before the node.
    evidence_max_bytes: int = 2 * 1024 * 1024
    evidence_media_types: frozenset[str] = field(
        default_factory=lambda: frozenset({"image/jpeg", "image/png", "application/pdf"})
    )
    # The liaison desk's forms: the largest upload accepted.
    form_max_bytes: int = 8 * 1024 * 1024
    page_size: int = PAGE_SIZE
    # Cookies carry the Secure attribute (always in production; docs/web-desk.md).
    secure_cookies: bool = True
