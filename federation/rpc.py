"""The one way certfed builds a gRPC server, and the interceptor every call passes through.

`build_server` takes the services, the ports with their TLS mode, and an authorizer; it registers
health checking and reflection, binds every port (port 0 picks a free one) and returns the server
with the ports it bound. The interceptor decides who the caller is and whether its role allows the
method (once, before the servicer runs), exposes the caller to the servicer through `caller()`,
maps certfed's errors to status codes, logs one line per call without request contents, and
counts each finished call with its status code and duration in the process's `RpcMetrics`
(health checking and reflection are neither logged nor counted).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.exc import DBAPIError

from federation.errors import CertfedError, InvalidInputError, RateLimitedError
from federation.limits import Limits
from federation.metrics import RpcMetrics
from federation.principal import ANONYMOUS, Principal, bind_caller
from federation.rate_limit import RateLimiter, peer_address
from signing.errors import InvalidIdentityNumberError, SigningError

log = structlog.get_logger("certfed.rpc")

# Methods anyone may call, whatever the port: health checking and reflection.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class Authorizer(Protocol):
    """Decides who calls `method` and whether that is allowed; raises a CertfedError if not."""

    def __call__(self, method: str, context: grpc.ServicerContext) -> Principal: ...


class RateLimitHook(Protocol):
    """Charges one call to the principal (and its network address); raises RateLimitedError."""

    def __call__(self, principal: Principal, peer_address: str) -> None: ...


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
    register: Callable[[Any, grpc.Server], None]


@dataclass
class RunningServer:
    server: grpc.Server
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
        self.server.stop(grace).wait()


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


class _Interceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        authorize: Authorizer,
        rate_limit: RateLimitHook | None,
        metrics: RpcMetrics | None,
    ) -> None:
        self._authorize = authorize
        self._rate_limit = rate_limit
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _enter(
        self, method: str, request: Any, context: grpc.ServicerContext
    ) -> tuple[Principal, str]:
        metadata = dict(context.invocation_metadata())
        request_id = str(metadata.get("x-request-id") or uuid.uuid4())[:64]
        principal = self._authorize(method, context)
        bind_caller(principal)
        if self._rate_limit is not None:
            self._rate_limit(principal, peer_address(context.peer()))
        if isinstance(request, _Undecodable):
            raise InvalidInputError(
                "request", f"is not a valid {method.rsplit('/', 1)[-1]} request message"
            )
        return principal, request_id

    def _observe(self, method: str, code: grpc.StatusCode, started: float) -> None:
        if self._metrics is not None:
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
            retry_ms = str(max(1, round(error.retry_after_s * 1000)))
            context.set_trailing_metadata((("retry-after-ms", retry_ms),))
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

    def _unary(
        self, method: str, inner: Callable[[Any, grpc.ServicerContext], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            principal, request_id = ANONYMOUS, "-"
            try:
                principal, request_id = self._enter(method, request, context)
                response = inner(request, context)
            except Exception as error:
                self._fail(method, context, error, principal, request_id, started)
                raise  # context.abort() has raised already; this keeps type checkers informed
            self._observe(method, grpc.StatusCode.OK, started)
            log.info(
                "rpc.ok",
                method=method,
                caller=principal.label,
                request_id=request_id,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
            return response

        return wrapped

    def _streaming(
        self, method: str, inner: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            principal, request_id = ANONYMOUS, "-"
            try:
                principal, request_id = self._enter(method, request, context)
                yield from inner(request, context)
            except GeneratorExit:
                # The caller went away (or its deadline passed) before the stream ended.
                self._observe(method, grpc.StatusCode.CANCELLED, started)
                raise
            except Exception as error:
                self._fail(method, context, error, principal, request_id, started)
                raise
            self._observe(method, grpc.StatusCode.OK, started)

        return wrapped


def build_server(
    services: Sequence[Service],
    ports: Sequence[Port],
    authorize: Authorizer,
    limits: Limits,
    rate_limit: RateLimitHook | None = None,
    metrics: RpcMetrics | None = None,
) -> RunningServer:
    """Build, bind and start a server; returns it with the port number bound for each Port.

    Without a `rate_limit` hook, each caller is held to the rates in `limits`. With `metrics`,
    every finished call is counted there.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.server_threads),
        interceptors=[
            _Interceptor(authorize, rate_limit or RateLimiter.from_limits(limits), metrics)
        ],
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    for service in services:
        service.register(service.servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [service.name for service in services]
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
    server.start()
    running = RunningServer(server=server, ports=bound, health=health_servicer, services=names)
    running.set_serving(True)
    return running


def require(condition: bool, field_name: str, problem: str) -> None:
    """Raise InvalidInputError naming the field unless `condition` holds."""
    if not condition:
        raise InvalidInputError(field_name, problem)
