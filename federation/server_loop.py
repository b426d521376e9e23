"""The event loop a certfed server runs on, and what a worker thread sees of a call on it.

`AsyncServer` runs a `grpc.aio` server on an event loop thread of its own and lets synchronous
code start and stop it. `ThreadContext` is the synchronous `grpc.ServicerContext` a servicer
running on a worker thread is given for a call the loop holds: `abort` raises `AbortError`, which
the loop side turns into the call's status, and `is_active` also answers for the stream's
lifetime and the re-check of its caller (`watch`). `HealthService` answers grpc.health.v1 on the
loop from the statuses a synchronous `HealthServicer` holds (threads set them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2

from federation.errors import CertfedError
from federation.rate_limit import AdmissionTicket

_T = TypeVar("_T")


class AsyncServer:
    """A `grpc.aio` server on an event loop thread of its own, driven from synchronous code."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._server: grpc.aio.Server | None = None
        self._before_stop: list[Callable[[], None]] = []
        self._after_stop: list[Callable[[], None]] = []
        self._stopped = False

    def run(self, work: Awaitable[_T]) -> _T:
        """Run `work` on the server's loop and wait for its result."""

        async def wrapped() -> _T:
            return await work

        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result()

    def attach(
        self,
        server: grpc.aio.Server,
        *,
        before_stop: Sequence[Callable[[], None]] = (),
        after_stop: Sequence[Callable[[], None]] = (),
    ) -> None:
        """Serve `server`; `before_stop` runs as stopping begins (e.g. ending streams),
        `after_stop` once the calls under way had their grace."""
        self._server = server
        self._before_stop = list(before_stop)
        self._after_stop = list(after_stop)

    def stop(self, grace: float | None) -> None:
        """Stop serving, give calls under way `grace` seconds, then stop the loop (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        for callback in self._before_stop:
            callback()
        try:
            if self._server is not None:
                self.run(self._server.stop(grace))
        finally:
            for callback in self._after_stop:
                callback()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


class AbortError(Exception):
    """How a servicer thread ends its call: the loop side turns it into `context.abort`."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str], ...]
    ) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing = trailing


class ThreadContext(grpc.ServicerContext):
    """The synchronous servicer context a worker thread sees, over the call's aio context.

    `abort` raises `AbortError` (the loop side aborts the call); `is_active` is false once the call
    ended, the server is stopping, or `keep_going` (a stream's lifetime and re-check) says so.
    """

    def __init__(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        ticket: AdmissionTicket,
        stopping: threading.Event,
    ) -> None:
        self._context = context
        self.ticket = ticket
        self.peer_string = context.peer()
        self.ended = threading.Event()
        self._stopping = stopping
        self.keep_going: Callable[[], bool] | None = None
        # Why a stream's caller may no longer hold it, once a re-check found out.
        self.revoked: CertfedError | None = None
        self._trailing: tuple[tuple[str, str], ...] = ()
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._callbacks: list[Callable[[], None]] = []
        # Built on the loop side of the call; the thread reaches the loop through it.
        self._loop = asyncio.get_running_loop()

    def watch(
        self, authorize: Callable[[], object], *, lifetime_s: float, recheck_s: float
    ) -> None:
        """Stay active for at most `lifetime_s`, while `authorize` (tried every `recheck_s`)
        passes; a refusal is kept in `revoked`."""
        ends_at = time.monotonic() + lifetime_s
        next_check = time.monotonic() + recheck_s

        def keep_going() -> bool:
            nonlocal next_check
            now = time.monotonic()
            if now >= ends_at:
                return False
            if now >= next_check:
                next_check = now + recheck_s
                try:
                    authorize()
                except CertfedError as error:
                    self.revoked = error
                    return False
            return True

        self.keep_going = keep_going

    def finish(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            for callback in self._callbacks:
                callback()

    def is_active(self) -> bool:
        if self.ended.is_set() or self._stopping.is_set():
            return False
        return self.keep_going is None or self.keep_going()

    def time_remaining(self) -> float:
        return float(self._context.time_remaining() or 0.0)

    def cancel(self) -> bool:
        raise AbortError(grpc.StatusCode.CANCELLED, "cancelled by the server", self._trailing)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        if self.ended.is_set():
            return False
        self._callbacks.append(callback)
        return True

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def peer(self) -> str:
        return self.peer_string

    def peer_identities(self) -> Any:
        return self._context.peer_identities()

    def peer_identity_key(self) -> str | None:
        return self._context.peer_identity_key()

    def auth_context(self) -> Any:
        return self._context.auth_context()

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        asyncio.run_coroutine_threadsafe(
            self._context.send_initial_metadata(tuple(initial_metadata)), self._loop
        ).result()

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailing = tuple(trailing_metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> Any:
        raise AbortError(code, details, self._trailing)

    def abort_with_status(self, status: Any) -> Any:
        raise AbortError(status.code, status.details, self._trailing)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    async def settle(self) -> None:
        """On the loop, once the servicer returned: send what it set with `set_trailing_metadata`,
        `set_code` and `set_details`, as the synchronous server would have (a code other than OK
        ends the call with that status instead of the response)."""
        if self._trailing:
            self._context.set_trailing_metadata(self._trailing)
        if self._code is not None and self._code is not grpc.StatusCode.OK:
            await self._context.abort(self._code, self._details, self._trailing)


class HealthService:
    """grpc.health.v1 on the event loop, reading the statuses the synchronous servicer holds
    (which threads set); Watch looks again every second."""

    def __init__(self, statuses: health.HealthServicer) -> None:
        self._statuses = statuses

    def _status(self, service: str) -> Any:
        answer = self._statuses.Check(health_pb2.HealthCheckRequest(service=service), _NoCode())
        return answer.status if answer.status else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

    async def Check(  # noqa: N802 (the name in grpc.health.v1)
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self._status(request.service)
        if status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no health status for {request.service!r}"
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def List(  # noqa: N802 (the name in grpc.health.v1)
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        # As the synchronous servicer: the statuses are asked for by name.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "ask for a service's status by name")
        return health_pb2.HealthListResponse()

    async def Watch(  # noqa: N802 (the name in grpc.health.v1)
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            status = self._status(request.service)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            await asyncio.sleep(1.0)


class _NoCode:
    """What HealthServicer.Check may set a code on when the service is unknown."""

    def set_code(self, code: grpc.StatusCode) -> None:
        pass
