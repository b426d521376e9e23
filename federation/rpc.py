"""The one way certfed builds a gRPC server, and the interceptor every call passes through.

`build_server` takes the services, the ports with their TLS mode, and an authorizer; it registers
health checking and reflection, binds every port (port 0 picks a free one) and returns the server
with the ports it bound. The interceptor decides who the caller is and whether its role allows the
method (once, before the servicer runs), exposes the caller to the servicer through `caller()`,
maps certfed's errors to status codes, logs one line per call without request contents, and
counts each finished call with its status code and duration in the process's `RpcMetrics`
(health checking and reflection are neither logged nor counted).

Nothing a caller does before it is authenticated holds a thread. The server is a `grpc.aio`
server on an event loop thread of its own: a call waits for its request message on the loop, for
at most `request_arrival_timeout_s`, holding only a pending place (`federation.rate_limit.
Admission`, bounded per connection and per address; an address that keeps failing
authentication is refused before its credentials are read). Once the request is there, the
caller is authenticated and the servicer (plain synchronous code) runs on a worker thread.
Server-streaming calls (a log subscription) run on threads of their own, bounded per caller and
in total, for at most `max_stream_s`, and end when their caller is no longer allowed (checked
again every `stream_recheck_s`). Client-streaming and bidirectional certfed methods are refused:
none is served, and none may slip past authentication.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.exc import DBAPIError

from federation import tracing
from federation.errors import (
    CertfedError,
    InvalidInputError,
    RateLimitedError,
    UnauthenticatedError,
)
from federation.limits import Limits
from federation.metrics import RpcMetrics
from federation.principal import ANONYMOUS, Principal, bind_caller
from federation.rate_limit import (
    Admission,
    AdmissionTicket,
    RateLimiter,
    StreamSlots,
    peer_address,
)
from federation.server_loop import AbortError, AsyncServer, HealthService, ThreadContext
from signing.errors import InvalidIdentityNumberError, SigningError

log = structlog.get_logger("certfed.rpc")

# Methods anyone may call, whatever the port: health checking and reflection.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_T = TypeVar("_T")


class Authorizer(Protocol):
    """Decides who calls `method` and whether that is allowed; raises a CertfedError if not."""

    def __call__(self, method: str, context: grpc.ServicerContext) -> Principal: ...


class RateLimitHook(Protocol):
    """Charges one call to the principal (and its network address); raises RateLimitedError."""

    def __call__(self, principal: Principal, peer_address: str) -> None: ...


class RequestTimeoutError(CertfedError):
    """The caller opened a call and did not send its request message in time."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED


class UnservedCallKindError(CertfedError):
    """A client-streaming or bidirectional method: certfed serves none."""

    status = grpc.StatusCode.UNIMPLEMENTED


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request whose bytes did not parse, so the call can be refused by name.

    gRPC itself answers INTERNAL to a request it cannot deserialise; parsing leniently here and
    refusing in the interceptor turns garbage into INVALID_ARGUMENT, after authentication.
    """

    error: str


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:  # any parse failure is the caller's bad input
            return _Undecodable(type(error).__name__)

    return parse


@dataclass(frozen=True)
class Port:
    """One listening address. `tls` None means plaintext, which only tests of refusal use."""

    name: str
    address: str
    server_credentials: grpc.ServerCredentials | None


@dataclass(frozen=True)
class Service:
    """A servicer and the generated function that registers it, e.g. add_XServicer_to_server."""

    name: str
    servicer: Any
    register: Callable[[Any, Any], None]


@dataclass
class RunningServer:
    server: AsyncServer
    ports: dict[str, int]
    health: health.HealthServicer
    services: list[str] = field(default_factory=list)

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.services]:
            self.health.set(name, status)

    def stop(self, grace: float = 2.0) -> None:
        self.set_serving(False)
        self.server.stop(grace)


def _status_for(error: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, CertfedError):
        return error.status, str(error)
    if isinstance(error, InvalidIdentityNumberError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"identity number: {error.reason}"
    if isinstance(error, SigningError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"signature or envelope refused: {error}"
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        # The database dropped the connection (a restart, a failover); the pool has been
        # invalidated, so the same call made again gets a fresh connection.
        return (
            grpc.StatusCode.UNAVAILABLE,
            "the service lost its database connection; nothing was changed, try again",
        )
    if isinstance(error, NotImplementedError):
        # The generated base servicer raises this for a method of the contract not served yet.
        return grpc.StatusCode.UNIMPLEMENTED, "this method is not served by this version"
    return grpc.StatusCode.INTERNAL, ""


@dataclass
class _Stream:
    """What a stream's worker thread tells the loop after each step."""

    item: Any = None
    ended: bool = False


class _Interceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authorize: Authorizer,
        rate_limit: RateLimitHook | None,
        metrics: RpcMetrics | None,
        limits: Limits,
        workers: futures.ThreadPoolExecutor,
        streams: futures.ThreadPoolExecutor,
    ) -> None:
        self._authorize = authorize
        self._rate_limit = rate_limit
        self._metrics = metrics
        self._limits = limits
        self._workers = workers
        self._streams = streams
        self._admission = Admission(limits)
        self._stream_slots = StreamSlots(limits)
        self.stopping = threading.Event()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        handler = tracing.traced(method, await continuation(handler_call_details))
        if handler is None:
            return handler
        if method.startswith(PUBLIC_PREFIXES):
            return self._public(method, handler)
        if handler.unary_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(self._unserved(method))

    # On the event loop: what happens before a thread is involved.

    async def _admit(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AdmissionTicket:
        try:
            return self._admission.admit(context.peer(), _credential(context))
        except RateLimitedError as error:
            await self._refuse_early(method, context, error)
            raise  # context.abort() has raised already; this keeps type checkers informed

    async def _receive(
        self,
        method: str,
        context: grpc.aio.ServicerContext[Any, Any],
        ticket: AdmissionTicket,
    ) -> Any:
        """The request message, or the call refused if it does not come in time."""
        timeout_s = self._limits.request_arrival_timeout_s
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    request = await context.read()
            except TimeoutError:
                raise RequestTimeoutError(
                    f"the request message did not arrive within {timeout_s:g} s of the call"
                ) from None
            if request is grpc.aio.EOF:
                raise InvalidInputError("request", "the call ended without a request message")
        except CertfedError as error:
            ticket.release()
            await self._refuse_early(method, context, error)
            raise
        except BaseException:
            ticket.release()
            raise
        return request

    async def _refuse_early(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], error: CertfedError
    ) -> None:
        code, message = _status_for(error)
        self._observe(method, code, time.perf_counter())
        if not method.startswith(PUBLIC_PREFIXES):
            log.info(
                "rpc.refused", method=method, caller=ANONYMOUS.label, code=code.name, error=message
            )
        await context.abort(code, message, _retry_after(error))

    @staticmethod
    def _submit(
        pool: futures.ThreadPoolExecutor, context_vars: contextvars.Context, work: Callable[[], _T]
    ) -> futures.Future[_T]:
        """Run `work` on `pool` inside the call's own context variables (the bound caller)."""
        return pool.submit(context_vars.run, work)

    # In a worker thread: authentication, the rate limit, the servicer.

    def _enter(self, method: str, request: Any, context: ThreadContext) -> tuple[Principal, str]:
        metadata = dict(context.invocation_metadata())
        request_id = str(metadata.get("x-request-id") or uuid.uuid4())[:64]
        try:
            principal = self._authorize(method, context)
        except UnauthenticatedError:
            self._admission.failed(context.peer_string)
            raise
        finally:
            context.ticket.release()
        self._admission.succeeded(context.ticket.credential)
        bind_caller(principal)
        if self._rate_limit is not None:
            self._rate_limit(principal, peer_address(context.peer_string))
        if isinstance(request, _Undecodable):
            raise InvalidInputError(
                "request", f"is not a valid {method.rsplit('/', 1)[-1]} request message"
            )
        return principal, request_id

    def _observe(self, method: str, code: grpc.StatusCode, started: float) -> None:
        if self._metrics is not None and not method.startswith(PUBLIC_PREFIXES):
            self._metrics.observe(method, code, time.perf_counter() - started)

    def _fail(
        self,
        method: str,
        context: grpc.ServicerContext,
        error: Exception,
        principal: Principal,
        request_id: str,
        started: float,
    ) -> None:
        code, message = _status_for(error)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        self._observe(method, code, started)
        if isinstance(error, RateLimitedError):
            context.set_trailing_metadata(_retry_after(error))
        if code is grpc.StatusCode.INTERNAL:
            reference = uuid.uuid4().hex[:12]
            log.error(
                "rpc.internal_error",
                method=method,
                caller=principal.label,
                request_id=request_id,
                reference=reference,
                error_type=type(error).__name__,
                exc_info=error,
            )
            message = f"internal error, reference {reference}; the node operator can look it up"
        else:
            log.info(
                "rpc.refused",
                method=method,
                caller=principal.label,
                request_id=request_id,
                code=code.name,
                error=message,
                ms=elapsed_ms,
            )
        context.abort(code, message)

    # The call kinds.

    def _unary(
        self, method: str, inner: Callable[[Any, grpc.ServicerContext], Any]
    ) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
        def serve(request: Any, context: ThreadContext, started: float) -> Any:
            principal, request_id = ANONYMOUS, "-"
            try:
                principal, request_id = self._enter(method, request, context)
                response = inner(request, context)
            except Exception as error:
                self._fail(method, context, error, principal, request_id, started)
                raise  # _fail has raised already; this keeps type checkers informed
            self._observe(method, grpc.StatusCode.OK, started)
            log.info(
                "rpc.ok",
                method=method,
                caller=principal.label,
                request_id=request_id,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
            return response

        async def call(_: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            ticket = await self._admit(method, context)
            request = await self._receive(method, context, ticket)
            worker = ThreadContext(context, ticket, self.stopping)
            try:
                response = await asyncio.wrap_future(
                    self._submit(
                        self._workers,
                        contextvars.copy_context(),
                        lambda: serve(request, worker, started),
                    )
                )
            except AbortError as abort:
                await context.abort(abort.code, abort.details, abort.trailing)
                raise
            finally:
                ticket.release()
                worker.finish()
            await worker.settle()
            return response

        return call

    def _streaming(
        self, method: str, inner: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
        def open_stream(
            request: Any, context: ThreadContext, started: float
        ) -> tuple[Principal, str, Callable[[], None]]:
            principal, request_id = ANONYMOUS, "-"
            try:
                principal, request_id = self._enter(method, request, context)
                release = self._stream_slots.open(principal, context.peer_string)
            except Exception as error:
                self._fail(method, context, error, principal, request_id, started)
                raise
            return principal, request_id, release

        def body(
            request: Any,
            context: ThreadContext,
            principal: Principal,
            request_id: str,
            started: float,
        ) -> Generator[Any, None, None]:
            try:
                yield from inner(request, context)
            except GeneratorExit:
                # The caller went away (or its deadline passed) before the stream ended.
                self._observe(method, grpc.StatusCode.CANCELLED, started)
                raise
            except Exception as error:
                self._fail(method, context, error, principal, request_id, started)
                raise
            if context.revoked is not None:
                self._fail(method, context, context.revoked, principal, request_id, started)
            self._observe(method, grpc.StatusCode.OK, started)

        def step(responses: Iterator[Any], context: ThreadContext) -> _Stream:
            if context.ended.is_set():
                return _Stream(ended=True)
            try:
                return _Stream(item=next(responses))
            except StopIteration:
                return _Stream(ended=True)

        async def call(
            _: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            started = time.perf_counter()
            ticket = await self._admit(method, context)
            request = await self._receive(method, context, ticket)
            worker = ThreadContext(context, ticket, self.stopping)
            context_vars = contextvars.copy_context()
            try:
                principal, request_id, release = await asyncio.wrap_future(
                    self._submit(
                        self._workers, context_vars, lambda: open_stream(request, worker, started)
                    )
                )
            except AbortError as abort:
                worker.finish()
                await context.abort(abort.code, abort.details, abort.trailing)
                raise
            finally:
                ticket.release()
            worker.watch(
                lambda: self._authorize(method, worker),
                lifetime_s=self._limits.max_stream_s,
                recheck_s=self._limits.stream_recheck_s,
            )
            responses = body(request, worker, principal, request_id, started)
            last: futures.Future[_Stream] | None = None
            try:
                while True:
                    last = self._submit(
                        self._streams, context_vars, lambda: step(responses, worker)
                    )
                    outcome = await asyncio.wrap_future(last)
                    if outcome.ended:
                        break
                    yield outcome.item
                await worker.settle()
            except AbortError as abort:
                await context.abort(abort.code, abort.details, abort.trailing)
            finally:
                worker.finish()

                def close(_: object = None) -> None:
                    # A generator is closed by the thread that is not running it; the slot
                    # frees only when no thread works for this stream any more.
                    try:
                        context_vars.run(responses.close)
                    finally:
                        release()

                if last is None or last.done():
                    close()
                else:
                    last.add_done_callback(close)

        return call

    def _unserved(
        self, method: str
    ) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
        async def call(
            _: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            await self._refuse_early(
                method,
                context,
                UnservedCallKindError(
                    f"{method} streams its requests; this server serves no such method"
                ),
            )
            yield  # an async generator, like the handlers of its kind

        return call

    def _public(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Health checking and reflection: anyone's, so each call holds a pending place (and
        a unary request must arrive in time) for as long as it runs, at most `max_stream_s`."""
        lifetime_s = self._limits.max_stream_s
        if handler.unary_unary is not None:
            # The public handlers (health, reflection) are coroutines on the loop.
            unary: Any = handler.unary_unary

            async def unary_call(
                _: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                ticket = await self._admit(method, context)
                request = await self._receive(method, context, ticket)
                try:
                    return await unary(request, context)
                finally:
                    ticket.release()

            return grpc.stream_unary_rpc_method_handler(
                unary_call,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            streaming: Any = handler.unary_stream

            async def stream_call(
                _: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                ticket = await self._admit(method, context)
                request = await self._receive(method, context, ticket)
                try:
                    async with asyncio.timeout(lifetime_s):
                        async for response in streaming(request, context):
                            yield response
                except TimeoutError:
                    return
                finally:
                    ticket.release()

            return grpc.stream_stream_rpc_method_handler(
                stream_call,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        bidirectional: Any = handler.stream_stream

        async def bidirectional_call(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            ticket = await self._admit(method, context)
            try:
                async with asyncio.timeout(lifetime_s):
                    async for response in bidirectional(requests, context):
                        yield response
            except TimeoutError:
                return
            finally:
                ticket.release()

        return grpc.stream_stream_rpc_method_handler(
            bidirectional_call,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _credential(context: grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
    """A digest of what the caller presents to prove who it is (its bearer token, its client
    certificate), or None when it presents neither."""
    token = str(dict(context.invocation_metadata() or ()).get("authorization", ""))
    certificates = context.auth_context().get("x509_pem_cert") or ()
    if not token and not certificates:
        return None
    digest = hashlib.sha256(token.encode())
    for certificate in certificates:
        digest.update(certificate)
    return digest.digest()


def _retry_after(error: CertfedError) -> tuple[tuple[str, str], ...]:
    if isinstance(error, RateLimitedError):
        return (("retry-after-ms", str(max(1, round(error.retry_after_s * 1000)))),)
    return ()


def build_server(
    services: Sequence[Service],
    ports: Sequence[Port],
    authorize: Authorizer,
    limits: Limits,
    rate_limit: RateLimitHook | None = None,
    metrics: RpcMetrics | None = None,
    *,
    health_statuses: health.HealthServicer | None = None,
    with_reflection: bool = True,
) -> RunningServer:
    """Build, bind and start a server; returns it with the port number bound for each Port.

    Without a `rate_limit` hook, each caller is held to the rates in `limits`. With `metrics`,
    every finished call is counted there. `health_statuses` shares another server's health
    statuses (a probe port); `with_reflection` False leaves reflection out.
    """
    workers = futures.ThreadPoolExecutor(limits.server_threads, thread_name_prefix="rpc-worker")
    streams = futures.ThreadPoolExecutor(limits.max_streams, thread_name_prefix="rpc-stream")
    interceptor = _Interceptor(
        authorize,
        rate_limit or RateLimiter.from_limits(limits),
        metrics,
        limits,
        workers,
        streams,
    )
    statuses = health_statuses or health.HealthServicer()
    names = [service.name for service in services]
    running = AsyncServer("rpc-loop")

    async def start() -> dict[str, int]:
        server = grpc.aio.server(
            migration_thread_pool=workers,
            interceptors=[interceptor],
            options=[
                ("grpc.max_receive_message_length", limits.max_message_bytes),
                ("grpc.max_send_message_length", limits.max_message_bytes),
                ("grpc.max_concurrent_streams", limits.max_calls_per_connection),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
        )

        def release_threads() -> None:
            workers.shutdown(wait=False, cancel_futures=True)
            streams.shutdown(wait=False, cancel_futures=True)

        running.attach(server, before_stop=[interceptor.stopping.set], after_stop=[release_threads])
        for service in services:
            service.register(service.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(HealthService(statuses), server)
        if with_reflection:
            reflection.enable_server_reflection(
                [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
            )
        bound: dict[str, int] = {}
        for port in ports:
            if port.server_credentials is None:
                bound[port.name] = server.add_insecure_port(port.address)
            else:
                bound[port.name] = server.add_secure_port(port.address, port.server_credentials)
            if bound[port.name] == 0:
                raise OSError(f"could not bind {port.name} port at {port.address}")
        await server.start()
        return bound

    try:
        bound = running.run(start())
    except BaseException:
        running.stop(grace=0)
        raise
    result = RunningServer(server=running, ports=bound, health=statuses, services=names)
    if health_statuses is None:
        result.set_serving(True)
    return result


def require(condition: bool, field_name: str, problem: str) -> None:
    """Raise InvalidInputError naming the field unless `condition` holds."""
    if not condition:
        raise InvalidInputError(field_name, problem)
