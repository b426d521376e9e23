"""Optional OpenTelemetry tracing of certfed's calls, with the trace context in gRPC metadata.

Off by default: nothing is recorded or exported, and every hook below costs one check of a
module flag, unless the standard variable `OTEL_TRACES_EXPORTER` names an exporter:

    OTEL_TRACES_EXPORTER=otlp        OTLP over gRPC; OTEL_EXPORTER_OTLP_ENDPOINT (and the other
                                     OTEL_EXPORTER_OTLP_* variables) say where and how
    OTEL_TRACES_EXPORTER=console     one JSON object per finished span on standard output
    OTEL_TRACES_EXPORTER=otlp,console  both; `none` (or unset) leaves tracing off

`OTEL_SDK_DISABLED=true` turns it off whatever the exporter; `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]` and `OTEL_BSP_*` are read by the SDK as
usual. A process calls `configure` once as it starts; the first hook configures it otherwise.

The trace context travels in gRPC metadata as W3C `traceparent` (and `tracestate`): the server
handler wrapper (`traced`, applied by the server interceptor in `federation.rpc`) continues the
caller's trace, and the client interceptor on every channel certfed opens
(`federation.transport.secure_channel`) sends the current one. Work that leaves the call that
caused it, a message queued in the outbox and delivered later by the dispatcher, or an
assistance request answered days later by a reviewer's approval, is joined to the trace it
started in through `remember` (when the message is queued or the request received) and
`resumed` (when it is delivered or answered). So one assistance round trip across two offices,
desk call, delivery, the agency's answer and the attestation's delivery back, is one trace.

What is remembered is kept in this process's memory (the latest `REMEMBERED` keys): a message
delivered by another replica, or after a restart, starts a trace of its own, linked to nothing.
Tracing is a diagnostic aid; nothing depends on it.

Promises: span names and attributes carry RPC service and method names, status codes, outbox
message kinds and node ids, never an identity number, a name, a locator or a request's content.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from federation.errors import InvalidInputError

EXPORTER_VARIABLE = "OTEL_TRACES_EXPORTER"
# How many queued messages and open requests keep the trace they started in.
REMEMBERED = 100_000

_propagator = TraceContextTextMapPropagator()
_lock = threading.Lock()
_configured = False
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
_remembered: OrderedDict[str, otel_context.Context] = OrderedDict()


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def _exporters(names: str) -> list[tuple[SpanExporter, bool]]:
    """The exporters OTEL_TRACES_EXPORTER names, each with whether to batch its spans."""
    chosen: list[tuple[SpanExporter, bool]] = []
    for name in (part.strip().lower() for part in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "console":
            # Unbatched: a span is on standard output as soon as it ends.
            chosen.append((ConsoleSpanExporter(out=sys.stdout, formatter=_one_line), False))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter,
            )

            chosen.append((OTLPSpanExporter(), True))
        else:
            raise InvalidInputError(
                EXPORTER_VARIABLE, f"{name!r} is not an exporter certfed has: otlp, console, none"
            )
    return chosen


def configure(
    service_name: str,
    attributes: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Set tracing up from the OTEL_* variables, once per process; whether it is on.

    `service_name` is used unless OTEL_SERVICE_NAME gives another; `attributes` are added to
    the resource (e.g. the node id). Raises InvalidInputError for an exporter name it lacks.
    """
    global _configured, _provider, _tracer
    env = os.environ if environ is None else environ
    with _lock:
        if _configured:
            return _tracer is not None
        _configured = True
        disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        exporters = [] if disabled else _exporters(env.get(EXPORTER_VARIABLE, ""))
        if not exporters:
            return False
        resource = Resource.create(
            {
                "service.name": env.get("OTEL_SERVICE_NAME") or service_name,
                **(attributes or {}),
            }
        )
        provider = TracerProvider(resource=resource)
        for exporter, batched in exporters:
            processor = BatchSpanProcessor(exporter) if batched else SimpleSpanProcessor(exporter)
            provider.add_span_processor(processor)
        _provider = provider
        _tracer = provider.get_tracer("certfed")
        return True


def _active_tracer() -> trace.Tracer | None:
    if not _configured:
        configure("certfed")
    return _tracer


def enabled() -> bool:
    return _active_tracer() is not None


def shutdown() -> None:
    """Export what is still buffered; called as a process stops (the SDK also does at exit)."""
    if _provider is not None:
        _provider.shutdown()


# Work that outlives a call: queued messages, open requests.


def remember(key: str) -> None:
    """Keep the current trace context under `key` (a message or request id), to be resumed."""
    if _tracer is None:
        return
    current = otel_context.get_current()
    if not trace.get_current_span(current).get_span_context().is_valid:
        return
    with _lock:
        _remembered[key] = current
        _remembered.move_to_end(key)
        while len(_remembered) > REMEMBERED:
            _remembered.popitem(last=False)


@contextmanager
def resumed(key: str, name: str, attributes: Mapping[str, str] | None = None) -> Iterator[None]:
    """A span `name` in the trace remembered under `key` (linked to the current one, if any);
    a span of its own when nothing is remembered; nothing at all when tracing is off."""
    tracer = _tracer
    if tracer is None:
        yield
        return
    with _lock:
        parent = _remembered.get(key)
    current = trace.get_current_span().get_span_context()
    links = [trace.Link(current)] if parent is not None and current.is_valid else []
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.INTERNAL,
        links=links,
        attributes=dict(attributes or {}),
    ):
        yield


# The server side: continue the caller's trace.


def _rpc_attributes(full_method: str) -> dict[str, str]:
    service, _, method = full_method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


class _ServerSpans:
    """Wraps a servicer method so that it runs in a span continuing the caller's trace."""

    def __init__(self, tracer: trace.Tracer, method: str) -> None:
        self._tracer = tracer
        self._method = method

    @contextmanager
    def _span(self, context: grpc.ServicerContext) -> Iterator[trace.Span]:
        metadata = context.invocation_metadata() or ()
        carrier = {key: value for key, value in metadata if isinstance(value, str)}
        with self._tracer.start_as_current_span(
            self._method.lstrip("/"),
            context=_propagator.extract(carrier),
            kind=SpanKind.SERVER,
            attributes=_rpc_attributes(self._method),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except GeneratorExit:
                span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.CANCELLED.name)
                raise
            except Exception as error:
                # The status code is chosen by the interceptor from the error; its type says it.
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise

    def unary(
        self, inner: Callable[[Any, grpc.ServicerContext], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def traced(request: Any, context: grpc.ServicerContext) -> Any:
            with self._span(context):
                return inner(request, context)

        return traced

    def streaming(
        self, inner: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def traced(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._span(context):
                yield from inner(request, context)

        return traced


Handler = TypeVar("Handler", bound="grpc.RpcMethodHandler[Any, Any] | None")


def traced(method: str, handler: Handler) -> Handler:
    """`handler` (a server's synchronous handler of `method`), its unary-request servicer run
    in a span that continues the caller's trace; `handler` itself when tracing is off, for
    health checking and reflection, and for methods that stream their requests."""
    tracer = _active_tracer()
    if tracer is None or handler is None or method.startswith("/grpc."):
        return handler
    if handler.request_streaming:
        return handler
    spans = _ServerSpans(tracer, method)
    if handler.unary_unary is not None:
        wrapped: Any = handler._replace(unary_unary=spans.unary(handler.unary_unary))  # type: ignore[attr-defined]
        return cast(Handler, wrapped)
    if handler.unary_stream is not None:
        wrapped = handler._replace(unary_stream=spans.streaming(handler.unary_stream))  # type: ignore[attr-defined]
        return cast(Handler, wrapped)
    return handler


# The client side: send the current trace with every call.


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(
        self, details: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]
    ) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class _ClientTracing(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
):
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def _call(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        method = str(details.method)
        span = self._tracer.start_span(
            method.lstrip("/"), kind=SpanKind.CLIENT, attributes=_rpc_attributes(method)
        )
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(span))
        metadata = (*(details.metadata or ()), *carrier.items())
        try:
            call = continuation(_ClientCallDetails(details, metadata), request)
        except BaseException:
            span.set_status(Status(StatusCode.ERROR))
            span.end()
            raise

        def finished(done: Any) -> None:
            code = done.code()
            if isinstance(code, grpc.StatusCode):
                span.set_attribute("rpc.grpc.status_code", code.name)
                if code is not grpc.StatusCode.OK:
                    span.set_status(Status(StatusCode.ERROR, code.name))
            span.end()

        # A call that has finished already runs the callback at once.
        call.add_done_callback(finished)
        return call

    def intercept_unary_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return self._call(continuation, client_call_details, request)


def instrument_channel(channel: grpc.Channel) -> grpc.Channel:
    """`channel`, sending the current trace context with every call when tracing is on."""
    tracer = _active_tracer()
    if tracer is None:
        return channel
    return grpc.intercept_channel(channel, _ClientTracing(tracer))
