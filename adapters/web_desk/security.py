"""What keeps the desk's pages safe in a shared office browser: the session cookie, CSRF tokens
bound to the session, and the headers every response carries.

The session cookie holds the node's session token (HttpOnly, Secure, SameSite=Strict): the desk
keeps no session of its own, so signing out, an idle or absolute expiry, or a disabled operator
ends the browser's session at the node's next answer. Before sign-in, a random `presession`
cookie binds the CSRF token of the sign-in and language forms.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

SESSION_COOKIE = "certfed_session"
PRESESSION_COOKIE = "certfed_presession"
LANGUAGE_COOKIE = "lang"
CSRF_FIELD = "csrf_token"
SECRET_BYTES = 32

# No inline script or style anywhere; evidence previews are blob: URLs made by desk.js.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


def load_or_create_secret(path: Path) -> bytes:
    """The desk's key, made (0600) on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(secrets.token_bytes(SECRET_BYTES))
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise ValueError(
            f"{path} holds fewer than {SECRET_BYTES} bytes: delete it to make a new key"
        )
    return secret


def csrf_token(secret: bytes, binding: str) -> str:
    """The CSRF token of a session (or presession) value: an HMAC of its hash."""
    bound = hashlib.sha256(binding.encode()).digest()
    return hmac.new(secret, b"certfed-web-csrf\0" + bound, hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, binding: str, offered: str) -> bool:
    return bool(binding) and hmac.compare_digest(csrf_token(secret, binding), offered)


def session_key(token: str) -> str:
    """A name for a session that does not reveal its token (for caches of the desk's own)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def new_presession() -> str:
    return secrets.token_urlsafe(24)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """Adds the security headers to every response, and `Cache-Control: no-store` to every page
    but the static files (pages show personal data; the browser keeps none of them)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"cache-control" or static
                ]
                headers.extend(SECURITY_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                    headers.append((b"pragma", b"no-cache"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Refuses a request body over `max_bytes` with 413 before anything reads it."""

    def __init__(self, app: App, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLargeError:
            await _too_large(send)


class BodyTooLargeError(Exception):
    pass


async def _too_large(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"request too large"})


class AccessLog:
    """One line per request: method, path without its query, status, milliseconds. Paths never
    carry identity numbers (look-ups are POSTs); queries are left out all the same."""

    def __init__(self, app: App, write: Callable[[str], None]) -> None:
        self.app = app
        self.write = write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.write(
                f"{scope.get('method', '')} {scope.get('path', '')} {status} {elapsed_ms:.0f}ms"
            )
