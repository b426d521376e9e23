"""What the security tests share: every RPC of every certfed service, read from the generated
descriptors (so a new RPC is covered without touching a test), and a way to call any of them with
any credentials and any bytes.

Fixtures
--------
``rpc`` (session scope)
    An ``RpcCatalogue``: ``methods(service)`` lists a service's methods, ``call(...)`` sends a
    message or raw bytes to one of them and returns the status code it ended with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf import message_factory

from certfed.v1 import desk_pb2, federation_pb2, registry_pb2

SERVICES: dict[str, _descriptor.ServiceDescriptor] = {
    "RegistryService": registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    "FederationService": federation_pb2.DESCRIPTOR.services_by_name["FederationService"],
    "DeskService": desk_pb2.DESCRIPTOR.services_by_name["DeskService"],
}
# How long a call in these tests may take; a streaming RPC that is allowed and keeps following
# (Subscribe) ends by this deadline, which counts as allowed.
CALL_TIMEOUT_S = 5.0


def _identity(data: bytes) -> bytes:
    return data


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    path: str
    request_class: type[_message.Message]
    server_streaming: bool

    @property
    def label(self) -> str:
        return f"{self.service}.{self.name}"


class RpcCatalogue:
    def methods(self, service: str) -> list[Method]:
        descriptor = SERVICES[service]
        return [
            Method(
                service=service,
                name=method.name,
                path=f"/{descriptor.full_name}/{method.name}",
                request_class=message_factory.GetMessageClass(method.input_type),
                server_streaming=method.server_streaming,
            )
            for method in descriptor.methods
        ]

    def all_methods(self) -> list[Method]:
        return [method for service in SERVICES for method in self.methods(service)]

    def call(
        self,
        channel: grpc.Channel,
        method: Method,
        request: _message.Message | bytes,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float = CALL_TIMEOUT_S,
    ) -> tuple[grpc.StatusCode, str]:
        """Send one request (a message, or raw bytes as they are) and return (code, details).

        A unary call's code is its final status; a streaming call's is the status it ended with,
        or OK once it has produced a first response (the stream is then cancelled).
        """
        payload = request if isinstance(request, bytes) else request.SerializeToString()
        try:
            if method.server_streaming:
                stream = channel.unary_stream(
                    method.path,
                    request_serializer=_identity,
                    response_deserializer=_identity,
                )(payload, metadata=tuple(metadata), timeout=timeout)
                try:
                    next(iter(stream))
                except StopIteration:
                    pass
                finally:
                    stream.cancel()
            else:
                channel.unary_unary(
                    method.path,
                    request_serializer=_identity,
                    response_deserializer=_identity,
                )(payload, metadata=tuple(metadata), timeout=timeout)
        except grpc.RpcError as error:
            code = error.code()
            if code is grpc.StatusCode.CANCELLED and method.server_streaming:
                return grpc.StatusCode.OK, ""
            return code, error.details() or ""
        return grpc.StatusCode.OK, ""


@pytest.fixture(scope="session")
def rpc() -> RpcCatalogue:
    return RpcCatalogue()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking `method` runs once per RPC of every service, named Service.Method."""
    if "method" in metafunc.fixturenames:
        methods = RpcCatalogue().all_methods()
        metafunc.parametrize("method", methods, ids=[m.label for m in methods])
