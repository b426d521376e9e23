"""Clients of the registry: `RegistryClient` for nodes and tools, `RegistryAdminClient` for
registry administrators.

Promises: every call carries a deadline (`Limits.call_timeout_s`) and reaches only a server whose
certificate, issued by the federation CA, names the registry (`registry.certfed`), whatever
address it is dialled at. A failed call raises the certfed error of its status code family
(UNAVAILABLE and DEADLINE_EXCEEDED as UnavailableError, INVALID_ARGUMENT as InvalidInputError
with the field the registry named, ...) carrying the registry's message, so callers handle
`CertfedError` only and never a raw `grpc.RpcError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import NoReturn, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certfed.v1 import common_pb2, log_pb2, registry_pb2, registry_pb2_grpc
from federation.enrolment_query import sign_enrolment_query
from federation.envelopes import envelope_from_proto, envelope_to_proto
from federation.errors import RateLimitedError, from_rpc_error, status_of
from federation.limits import Limits
from federation.timestamps import to_timestamp
from federation.transport import REGISTRY_TLS_NAME, secure_channel
from signing import dsse
from signing.keys import SigningKey

_Response = TypeVar("_Response")


def raise_for_rpc_error(error: grpc.RpcError, call: str) -> NoReturn:
    """Raise the certfed error for a failed registry call; the message names the call."""
    raise from_rpc_error(error, call=call, peer="the registry") from None


def _retry_after_s(error: grpc.RpcError) -> float | None:
    """The wait a refusal asked for in its retry-after-ms trailing metadata, in seconds."""
    if not isinstance(error, grpc.Call):
        return None
    for key, value in error.trailing_metadata() or ():
        if key == "retry-after-ms":
            try:
                return max(int(value), 1) / 1000
            except (TypeError, ValueError):
                return None
    return None


def _utc_day() -> str:
    return datetime.now(UTC).date().isoformat()


class _Connection:
    """One channel to one registry port, and the stub over it."""

    def __init__(self, endpoint: str, credentials: grpc.ChannelCredentials, limits: Limits) -> None:
        self.endpoint = endpoint
        self.channel = secure_channel(
            endpoint, REGISTRY_TLS_NAME, credentials, max_message_bytes=limits.max_message_bytes
        )
        self.stub = registry_pb2_grpc.RegistryServiceStub(self.channel)
        self.timeout = limits.call_timeout_s

    def call(self, name: str, method: Callable[..., _Response], request: object) -> _Response:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise_for_rpc_error(error, name)

    def close(self) -> None:
        self.channel.close()


class _Client:
    """One connection to the registry, closed by `close()` or at the end of a `with` block."""

    def __init__(
        self,
        endpoint: str,
        credentials: grpc.ChannelCredentials,
        limits: Limits | None = None,
    ) -> None:
        self._limits = limits or Limits()
        self._connection = _Connection(endpoint, credentials, self._limits)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._connection.close()

    def serving(self) -> bool:
        """Whether the registry answers a health check as SERVING now, on this client's own
        channel (so the next call finds the connection up); at most a second's wait."""
        connection = self._connection
        try:
            answer = health_pb2_grpc.HealthStub(connection.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=min(1.0, connection.timeout)
            )
        except grpc.RpcError:
            return False
        up: bool = answer.status == health_pb2.HealthCheckResponse.SERVING
        return up


@dataclass(frozen=True)
class DirectoryUpdate:
    """What GetDirectory answered: a newer directory (None when not modified) and the root
    rotations the caller has not followed yet, oldest first."""

    envelope: dsse.Envelope | None
    root_statements: tuple[dsse.Envelope, ...] = ()


class RegistryClient(_Client):
    """What nodes and tools ask the registry, over one channel to one registry port.

    A node that is not enrolled yet dials the registry's enrolment port with
    `anonymous_channel_credentials(ca_pem)` (Enrol, GetEnrolment, GetDirectory); an enrolled
    node dials the mutual-TLS port with `TlsMaterial.channel_credentials()` for everything,
    including the locator calls.
    """

    # (UTC day, evaluations left that day) from the registry's latest EvaluateLocators answer.
    _locators_left: tuple[str, int] | None = None

    def replace_credentials(self, credentials: grpc.ChannelCredentials) -> None:
        """Use new client credentials (a renewed certificate) for every call from now on.

        Calls already under way finish on the old channel, which is closed once the longest
        call could have ended.
        """
        previous = self._connection
        self._connection = _Connection(previous.endpoint, credentials, self._limits)
        closer = threading.Timer(2 * self._limits.call_timeout_s, previous.close)
        closer.daemon = True
        closer.start()

    def enrol(self, application: dsse.Envelope) -> registry_pb2.EnrolResponse:
        connection = self._connection
        request = registry_pb2.EnrolRequest(application=envelope_to_proto(application))
        return connection.call("Enrol", connection.stub.Enrol, request)

    def get_enrolment(
        self, node_id: str, signing_key: SigningKey
    ) -> registry_pb2.GetEnrolmentResponse:
        """Where the node's enrolment stands; the query is signed with its `signing_key`, as only
        the applicant may read it."""
        connection = self._connection
        proof = sign_enrolment_query(node_id, signing_key, datetime.now(UTC))
        request = registry_pb2.GetEnrolmentRequest(node_id=node_id, proof=envelope_to_proto(proof))
        return connection.call("GetEnrolment", connection.stub.GetEnrolment, request)

    def get_directory(self, known_version: int) -> dsse.Envelope | None:
        """The latest signed directory, or None when `known_version` is the latest already."""
        return self.get_directory_update(known_version, "").envelope

    def get_directory_update(self, known_version: int, known_root_key_id: str) -> DirectoryUpdate:
        """The latest directory unless `known_version` is it, with the root rotations after
        `known_root_key_id`."""
        connection = self._connection
        request = registry_pb2.GetDirectoryRequest(
            known_version=known_version, known_root_key_id=known_root_key_id
        )
        response = connection.call("GetDirectory", connection.stub.GetDirectory, request)
        statements = tuple(envelope_from_proto(s) for s in response.root_statements)
        if response.not_modified:
            return DirectoryUpdate(None, statements)
        return DirectoryUpdate(envelope_from_proto(response.directory), statements)

    def get_key_history(self, node_id: str = "") -> dsse.Envelope:
        """The signed KeyHistory: every past signing key of `node_id` (empty: of every node)."""
        connection = self._connection
        request = registry_pb2.GetKeyHistoryRequest(node_id=node_id)
        response = connection.call("GetKeyHistory", connection.stub.GetKeyHistory, request)
        return envelope_from_proto(response.history)

    def rotate_signing_key(self, rotation: dsse.Envelope) -> registry_pb2.RotateSigningKeyResponse:
        connection = self._connection
        request = registry_pb2.RotateSigningKeyRequest(rotation=envelope_to_proto(rotation))
        return connection.call("RotateSigningKey", connection.stub.RotateSigningKey, request)

    def renew_certificate(self, csr_pem: bytes) -> registry_pb2.RenewCertificateResponse:
        connection = self._connection
        request = registry_pb2.RenewCertificateRequest(tls_csr_pem=csr_pem)
        return connection.call("RenewCertificate", connection.stub.RenewCertificate, request)

    def publish_locators(
        self, locators: list[bytes], withdrawn: list[bytes] | None = None
    ) -> registry_pb2.PublishLocatorsResponse:
        connection = self._connection
        request = registry_pb2.PublishLocatorsRequest(locators=locators, withdrawn=withdrawn or [])
        return connection.call("PublishLocators", connection.stub.PublishLocators, request)

    def evaluate_locators(self, blinded_elements: list[bytes]) -> list[bytes]:
        """The registry's OPRF evaluation of blinded elements, one per element, in order.

        A refusal for the registry's per-node rate (RESOURCE_EXHAUSTED with retry-after-ms) is
        waited out and retried while the wait fits in one call's deadline from the first
        attempt; otherwise, and for the daily quota, it raises RateLimitedError (the registry's
        message and its retry-after), which a node answers as RESOURCE_EXHAUSTED, never INTERNAL.
        """
        connection = self._connection
        request = registry_pb2.EvaluateLocatorsRequest(blinded_elements=blinded_elements)
        give_up_at = time.monotonic() + connection.timeout
        while True:
            try:
                response = connection.stub.EvaluateLocators(request, timeout=connection.timeout)
            except grpc.RpcError as error:
                if status_of(error) is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise_for_rpc_error(error, "EvaluateLocators")
                wait_s = _retry_after_s(error)
                details = error.details() if isinstance(error, grpc.Call) else None
                if wait_s is None or time.monotonic() + wait_s > give_up_at:
                    raise RateLimitedError(
                        "the registry refused EvaluateLocators for now: "
                        f"{details or 'rate limited'}",
                        retry_after_s=wait_s if wait_s is not None else 1.0,
                    ) from None
                time.sleep(wait_s)
                continue
            self._locators_left = (_utc_day(), int(response.remaining_today))
            return [bytes(element) for element in response.evaluated_elements]

    def locators_left_today(self) -> int | None:
        """Evaluations the registry said this node may still ask for today (UTC) in its latest
        answer; None before the day's first answer."""
        left = self._locators_left
        if left is None or left[0] != _utc_day():
            return None
        return left[1]

    def withdraw_locators(self, locators: list[bytes]) -> int:
        connection = self._connection
        request = registry_pb2.WithdrawLocatorsRequest(locators=locators)
        response = connection.call("WithdrawLocators", connection.stub.WithdrawLocators, request)
        return int(response.withdrawn)

    def locate(self, locator: bytes) -> list[str]:
        connection = self._connection
        response = connection.call(
            "Locate", connection.stub.Locate, registry_pb2.LocateRequest(locator=locator)
        )
        return list(response.paying_node_ids)

    def list_duplicates(self) -> list[registry_pb2.DuplicateEntitlement]:
        connection = self._connection
        response = connection.call(
            "ListDuplicates", connection.stub.ListDuplicates, registry_pb2.ListDuplicatesRequest()
        )
        return list(response.duplicates)

    def witness_checkpoint(
        self, note: bytes, old_size: int, consistency_proof: list[bytes]
    ) -> bytes:
        """Ask the registry witness to cosign a checkpoint note; returns the cosigned note."""
        connection = self._connection
        request = registry_pb2.WitnessCheckpointRequest(
            checkpoint=log_pb2.SignedCheckpoint(note=note),
            old_size=old_size,
            consistency_proof=consistency_proof,
        )
        response = connection.call("WitnessCheckpoint", connection.stub.WitnessCheckpoint, request)
        return bytes(response.checkpoint.note)


class RegistryAdminClient(_Client):
    """A registry administrator's calls, over mTLS with an administrator certificate
    (`credentials`: the administrator's `TlsMaterial.channel_credentials()`)."""

    def approve(
        self,
        node_id: str,
        *,
        signing_key_fingerprint: str,
        tls_key_fingerprint: str,
        allow_second_node_for_region: bool = False,
    ) -> int:
        """Approve a pending enrolment whose key fingerprints the administrator confirmed (as the
        office sent them out of band); returns the directory version that lists the node."""
        connection = self._connection
        response = connection.call(
            "ApproveEnrolment",
            connection.stub.ApproveEnrolment,
            registry_pb2.ApproveEnrolmentRequest(
                node_id=node_id,
                signing_key_fingerprint=signing_key_fingerprint,
                tls_key_fingerprint=tls_key_fingerprint,
                allow_second_node_for_region=allow_second_node_for_region,
            ),
        )
        return int(response.directory_version)

    def set_status(
        self,
        node_id: str,
        status: common_pb2.NodeStatus.ValueType,
        reason: str,
        effective_at: datetime | None = None,
    ) -> int:
        """Suspend, reinstate (NODE_STATUS_ACTIVE) or revoke; returns the new directory version."""
        request = registry_pb2.SetNodeStatusRequest(node_id=node_id, status=status, reason=reason)
        if effective_at is not None:
            request.effective_at.CopyFrom(to_timestamp(effective_at))
        connection = self._connection
        response = connection.call("SetNodeStatus", connection.stub.SetNodeStatus, request)
        return int(response.directory_version)

    def list_nodes(self) -> list[registry_pb2.NodeSummary]:
        connection = self._connection
        response = connection.call(
            "ListNodes", connection.stub.ListNodes, registry_pb2.ListNodesRequest()
        )
        return list(response.nodes)

    def get_directory(self, known_version: int = 0) -> dsse.Envelope | None:
        connection = self._connection
        response = connection.call(
            "GetDirectory",
            connection.stub.GetDirectory,
            registry_pb2.GetDirectoryRequest(known_version=known_version),
        )
        if response.not_modified:
            return None
        return envelope_from_proto(response.directory)

    def retire_signing_key(self, node_id: str, key_id: str) -> int:
        """End a node's signing key now; returns the new directory version."""
        connection = self._connection
        response = connection.call(
            "RetireSigningKey",
            connection.stub.RetireSigningKey,
            registry_pb2.RetireSigningKeyRequest(node_id=node_id, key_id=key_id),
        )
        return int(response.directory_version)

    def revoke_signing_key(
        self, node_id: str, key_id: str, reason: str, effective_at: datetime | None = None
    ) -> int:
        """Revoke a node's signing key from `effective_at` (default now)."""
        request = registry_pb2.RevokeSigningKeyRequest(
            node_id=node_id, key_id=key_id, reason=reason
        )
        if effective_at is not None:
            request.effective_at.CopyFrom(to_timestamp(effective_at))
        connection = self._connection
        response = connection.call("RevokeSigningKey", connection.stub.RevokeSigningKey, request)
        return int(response.directory_version)

    def list_admin_certificates(self) -> list[registry_pb2.AdminCertificate]:
        connection = self._connection
        response = connection.call(
            "ListAdminCertificates",
            connection.stub.ListAdminCertificates,
            registry_pb2.ListAdminCertificatesRequest(),
        )
        return list(response.certificates)

    def revoke_admin_certificate(self, sha256: str, reason: str) -> None:
        connection = self._connection
        request = registry_pb2.RevokeAdminCertificateRequest(sha256=sha256, reason=reason)
        connection.call("RevokeAdminCertificate", connection.stub.RevokeAdminCertificate, request)

    def rotate_root(self, current_root_key_id: str) -> registry_pb2.RotateRootKeyResponse:
        connection = self._connection
        response: registry_pb2.RotateRootKeyResponse = connection.call(
            "RotateRootKey",
            connection.stub.RotateRootKey,
            registry_pb2.RotateRootKeyRequest(current_root_key_id=current_root_key_id),
        )
        return response
