"""Errors of the federation, in a few families, each mapped to one gRPC status code.

Code raises the most specific error at the point where it knows what went wrong, with a message a
clerk or operator can act on, and never a raw identity number or name. The server interceptor
(`federation.rpc`) turns the family into the status code; no servicer catches these itself.
"""

from __future__ import annotations

import grpc


class CertfedError(Exception):
    """Base of every error certfed reports to a caller."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInputError(CertfedError):
    """A field of a request is missing, malformed or out of range; the message names the field."""

    status = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFoundError(CertfedError):
    """The thing a request names does not exist here."""

    status = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(CertfedError):
    """The request would create something that already exists with other content."""

    status = grpc.StatusCode.ALREADY_EXISTS


class PreconditionError(CertfedError):
    """The request is well formed but the state of the federation does not allow it now."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class UnauthenticatedError(CertfedError):
    """The caller did not prove who it is (no certificate, unknown certificate, bad token)."""

    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(CertfedError):
    """The caller is known but its role or status does not allow this call."""

    status = grpc.StatusCode.PERMISSION_DENIED


class RateLimitedError(CertfedError):
    """The caller sent more calls than its rate limit allows; it may retry after a pause."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(CertfedError):
    """A peer or the registry cannot be reached now; the same call may succeed later."""

    status = grpc.StatusCode.UNAVAILABLE


# Specific errors the flows name. Each says what a clerk can do about it.


class UnknownBeneficiaryError(NotFoundError):
    pass


class UnknownNodeError(NotFoundError):
    pass


class UnknownRequestError(NotFoundError):
    pass


class UnknownCertificationError(NotFoundError):
    pass


class UnknownAttestationError(NotFoundError):
    pass


class UnknownEvidenceError(NotFoundError):
    """No file with this SHA-256 is kept as evidence at this node."""


class NotOurBeneficiaryError(NotFoundError):
    """An attestation or request names a person this office does not pay."""


class UnservedRegionError(PreconditionError):
    """No active node in the federation serves a region."""


class AmbiguousRouteError(PreconditionError):
    """Several nodes serve a region equally and this office's configuration names none."""


class NodeNotActiveError(PreconditionError):
    """The node a flow needs is suspended or revoked."""


class NodeSuspendedError(NodeNotActiveError):
    """The node a flow needs is suspended: it may be reinstated, so messages to it wait."""


class DirectoryExpiredError(PreconditionError):
    """The cached signed directory is past expires_at and the registry cannot be reached."""


class DirectoryRollbackError(PreconditionError):
    """A directory older than the one already trusted was offered."""


class DirectoryVerificationError(PreconditionError):
    """A directory's signature or content did not verify against the root key."""


class DuplicateRequestError(AlreadyExistsError):
    pass


class AwaitingReviewError(PreconditionError):
    """A certification cannot be used before a reviewer approves it."""


class SeparationOfDutiesError(PermissionDeniedError):
    """The same operator tried to record and approve one certification."""


class AttestationRefusedError(PreconditionError):
    """An attestation failed verification against the directory."""


class UnknownSigningKeyError(AttestationRefusedError):
    """An attestation is signed by a key the receiver's directory does not list for the issuer:
    typically a key rotated in since the receiver's last refresh, so the sender should retry."""


# What a status code received from another certfed service means to the caller. The one table
# every client (registry client, log sync, dispatcher, adapters) reads; none keeps its own.

# The same call may well succeed in a moment, unchanged: the other side was not reached, or did
# not answer in time. Such a call changed nothing that a retry could duplicate, since every
# state-changing RPC is idempotent on its request or attestation id.
TRANSIENT_STATUSES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# The receiver will refuse the same message every time: retrying can only repeat the refusal.
# FAILED_PRECONDITION and RESOURCE_EXHAUSTED are not here: a suspended peer may be reinstated,
# a directory refreshed, a rate limit may pass.
PERMANENT_STATUSES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

_FAMILIES: dict[grpc.StatusCode, type[CertfedError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
}


class RemoteCallError(CertfedError):
    """A call to another service failed with a status no narrower certfed error describes."""

    def __init__(self, status: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status = status


def status_of(error: BaseException) -> grpc.StatusCode:
    """The status code of a failed gRPC call (UNKNOWN for anything that carries none)."""
    if isinstance(error, grpc.Call):
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.UNKNOWN


def is_transient(error: BaseException) -> bool:
    """True when the same call may succeed shortly (see TRANSIENT_STATUSES)."""
    return isinstance(error, grpc.RpcError) and status_of(error) in TRANSIENT_STATUSES


def is_retryable(code: grpc.StatusCode) -> bool:
    """True when a durable sender should keep the message and try again later."""
    return code not in PERMANENT_STATUSES


def from_status(code: grpc.StatusCode, details: str, *, call: str, peer: str) -> CertfedError:
    """The certfed error that a failed `call` to `peer` with `code` and `details` stands for.

    INVALID_ARGUMENT keeps the field the server named ("field: problem"); an unreachable peer
    says so with the call it was for; other families keep the server's message.
    """
    details = details or code.name.lower()
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        field_name, sep, problem = details.partition(": ")
        if sep:
            return InvalidInputError(field_name, problem)
        return InvalidInputError("request", details)
    if code in TRANSIENT_STATUSES:
        return UnavailableError(f"cannot reach {peer} for {call} ({code.name.lower()}): {details}")
    family = _FAMILIES.get(code)
    if family is not None:
        return family(details)
    return RemoteCallError(code, f"{call}: {details}")


def from_rpc_error(error: grpc.RpcError, *, call: str, peer: str) -> CertfedError:
    """`from_status` for a failed gRPC call."""
    details = error.details() if isinstance(error, grpc.Call) else ""
    return from_status(status_of(error), details or "", call=call, peer=peer)
