"""A clerk's connection to their node's DeskService: TLS pinned to the node's certificate name,
the operator token on every call, a deadline on every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from certfed.v1 import desk_pb2_grpc
from federation.limits import Limits
from federation.transport import anonymous_channel_credentials, node_tls_name, secure_channel

T = TypeVar("T")


class DeskClient:
    def __init__(
        self,
        endpoint: str,
        node_id: str,
        ca_certificate_pem: bytes,
        token: str,
        limits: Limits | None = None,
    ) -> None:
        self._limits = limits or Limits()
        self._channel = secure_channel(
            endpoint,
            node_tls_name(node_id),
            anonymous_channel_credentials(ca_certificate_pem),
            max_message_bytes=self._limits.max_message_bytes,
        )
        self._stub = desk_pb2_grpc.DeskServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    def call(self, method: str, request: Any) -> Any:
        """Call DeskService.<method> with the operator token and the configured deadline."""
        rpc: Callable[..., Any] = getattr(self._stub, method)
        return rpc(request, metadata=self._metadata, timeout=self._limits.call_timeout_s)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> DeskClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def describe_rpc_error(error: grpc.RpcError) -> str:
    """One line a clerk can read: the status and the server's message."""
    code = error.code()
    return f"{code.name if code else 'UNKNOWN'}: {error.details() or 'no details'}"
