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


class NotOurBeneficiaryError(NotFoundError):
    """An attestation or request names a person this office does not pay."""


class UnservedRegionError(PreconditionError):
    """No active node in the federation serves a region."""


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
