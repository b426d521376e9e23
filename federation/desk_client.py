"""A clerk's connection to their node's DeskService: TLS pinned to the node's certificate name,
the operator token on every call, a deadline on every call.

`DeskClient.stub` is the generated `DeskServiceStub`, so every call is a typed method
(`desk.stub.RecordSignals(request)`) whose request and response types mypy checks; the token and
the default deadline are added by a client interceptor, not by each caller.

A process that acts for many operators at once (the web desk) opens one `DeskChannel` and takes
a `DeskClient` per operator session from it (`channel.client(session_token)`): every session
shares the one TLS connection, and each call carries its own session's token. Its `anonymous`
stub, without a token, serves the one call that needs none (SignIn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

from certfed.v1 import desk_pb2_grpc
from federation.limits import Limits
from federation.transport import anonymous_channel_credentials, node_tls_name, secure_channel

Metadata = Sequence[tuple[str, str | bytes]]


class _ClientCallDetails(grpc.ClientCallDetails):
    """The details of one call, rebuilt with the operator token and a deadline."""

    def __init__(
        self, details: grpc.ClientCallDetails, metadata: Metadata, timeout_s: float
    ) -> None:
        self.method = details.method
        self.timeout = timeout_s if details.timeout is None else details.timeout
        self.metadata = (*(details.metadata or ()), *metadata)
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class _OperatorCalls(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the operator's token to every call, and the configured deadline where none is set."""

    def __init__(self, client: DeskClient, token: str, timeout_s: float) -> None:
        self._client = client
        self._metadata: Metadata = (("authorization", f"Bearer {token}"),)
        self._timeout_s = timeout_s

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        if self._client.on_call is not None:
            self._client.on_call()
        return _ClientCallDetails(details, self._metadata, self._timeout_s)

    def intercept_unary_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return continuation(self._details(client_call_details), request)


class _DeadlineCalls(grpc.UnaryUnaryClientInterceptor):
    """Adds the configured deadline where none is set (calls without a token)."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s

    def intercept_unary_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return continuation(_ClientCallDetails(client_call_details, (), self._timeout_s), request)


class DeskChannel:
    """One TLS connection to a node's desk, shared by every operator a process acts for."""

    def __init__(
        self,
        endpoint: str,
        node_id: str,
        ca_certificate_pem: bytes,
        limits: Limits | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.channel = secure_channel(
            endpoint,
            node_tls_name(node_id),
            anonymous_channel_credentials(ca_certificate_pem),
            max_message_bytes=self.limits.max_message_bytes,
        )
        # For the calls that carry no token (SignIn).
        self.anonymous = desk_pb2_grpc.DeskServiceStub(
            grpc.intercept_channel(self.channel, _DeadlineCalls(self.limits.call_timeout_s))
        )

    def client(self, token: str) -> DeskClient:
        """A client whose every call carries `token`; closing it leaves the channel open."""
        return DeskClient.on_channel(self, token)

    def close(self) -> None:
        self.channel.close()


class DeskClient:
    def __init__(
        self,
        endpoint: str,
        node_id: str,
        ca_certificate_pem: bytes,
        token: str,
        limits: Limits | None = None,
    ) -> None:
        self._bind(DeskChannel(endpoint, node_id, ca_certificate_pem, limits), token, owns=True)

    @classmethod
    def on_channel(cls, channel: DeskChannel, token: str) -> DeskClient:
        """A client over a shared channel, which it does not close."""
        client = cls.__new__(cls)
        client._bind(channel, token, owns=False)
        return client

    def _bind(self, channel: DeskChannel, token: str, *, owns: bool) -> None:
        self._desk_channel = channel
        self._owns_channel = owns
        self._limits = channel.limits
        # Called before every call, e.g. by a benchmark counting the calls a flow takes.
        self.on_call: Callable[[], object] | None = None
        operator_channel = grpc.intercept_channel(
            channel.channel, _OperatorCalls(self, token, self._limits.call_timeout_s)
        )
        self.stub = desk_pb2_grpc.DeskServiceStub(operator_channel)

    @property
    def limits(self) -> Limits:
        """The node's limits this client was made with (page sizes, repeated fields)."""
        return self._limits

    def close(self) -> None:
        if self._owns_channel:
            self._desk_channel.close()

    def __enter__(self) -> DeskClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def describe_rpc_error(error: grpc.RpcError) -> str:
    """One line a clerk can read: the status and the server's message."""
    code = error.code()
    return f"{code.name if code else 'UNKNOWN'}: {error.details() or 'no details'}"
