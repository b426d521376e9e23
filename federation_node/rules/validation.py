"""Checks on what callers send, each raising InvalidInputError that names the field.

Servicers call these before any domain operation, so bad input never reaches the store.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from certfed.v1 import attestation_pb2, common_pb2
from federation.errors import InvalidInputError
from federation.limits import Limits
from federation.regions import validate_region_code
from signing.identity import IdentityKind, validate_identity_number
from signing.locator import LOCATOR_SIZE

IDENTITY_KINDS = {
    common_pb2.IDENTITY_TYPE_RESIDENT_ID: IdentityKind.RESIDENT_ID,
    common_pb2.IDENTITY_TYPE_HKID: IdentityKind.HKID,
    common_pb2.IDENTITY_TYPE_MACAU_BIR: IdentityKind.MACAU_BIR,
    common_pb2.IDENTITY_TYPE_PASSPORT: IdentityKind.PASSPORT,
}
IDENTITY_TYPES = {kind: value for value, kind in IDENTITY_KINDS.items()}
_NODE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
DIGEST_BYTES = 32
MAX_SEQUENCE = 2**31 - 1
# Control characters other than line breaks and tabs, and DEL.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def require_id(value: str, field_name: str) -> str:
    """A UUID chosen by a node (request, attestation, certification, beneficiary ids).

    Only the canonical lowercase hyphenated form is accepted: `uuid.UUID` also parses braces,
    a `urn:uuid:` prefix and upper case, and one id spelled two ways would be two rows.
    """
    if not value:
        raise InvalidInputError(field_name, "is required")
    try:
        canonical = str(uuid.UUID(value))
    except ValueError as error:
        raise InvalidInputError(field_name, "is not a UUID") from error
    if canonical != value:
        raise InvalidInputError(field_name, "must be a UUID in lowercase hyphenated form")
    return value


def require_node_id(value: str, field_name: str) -> str:
    if not _NODE_ID.match(value):
        raise InvalidInputError(field_name, "is not a node id (lowercase letters, digits, '-')")
    return value


def require_text(value: str, field_name: str, limits: Limits, *, required: bool = False) -> str:
    if required and not value.strip():
        raise InvalidInputError(field_name, "is required")
    if len(value) > limits.max_text_length:
        raise InvalidInputError(
            field_name, f"is {len(value)} characters long; the limit is {limits.max_text_length}"
        )
    # Line breaks and tabs belong in a note; other control characters do not, and NUL cannot be
    # stored in a PostgreSQL text column at all.
    if _CONTROL_CHARACTERS.search(value):
        raise InvalidInputError(field_name, "must not contain control characters")
    return value


def require_count(count: int, field_name: str, limit: int) -> None:
    """A repeated field holds at most `limit` items."""
    if count > limit:
        raise InvalidInputError(field_name, f"has {count} items; the limit is {limit}")


def require_sequence(value: int, field_name: str) -> int:
    """A per-request counter; stored in a 32-bit signed column."""
    if value > MAX_SEQUENCE:
        raise InvalidInputError(field_name, f"is above {MAX_SEQUENCE}")
    return value


def require_region(value: str, field_name: str) -> str:
    if not value:
        raise InvalidInputError(field_name, "is required")
    return validate_region_code(value, field_name)


def require_locator(value: bytes, field_name: str = "subject_locator") -> bytes:
    if len(value) != LOCATOR_SIZE:
        raise InvalidInputError(field_name, f"must be {LOCATOR_SIZE} bytes, got {len(value)}")
    return value


def require_enum(value: int, enum_type: object, field_name: str) -> int:
    names = getattr(enum_type, "values")()  # noqa: B009 - protobuf enum wrapper
    if value == 0 or value not in names:
        raise InvalidInputError(field_name, "is missing or not a known value")
    return value


def require_methods(values: list[int], field_name: str) -> list[int]:
    """Certification methods, each known and listed once (which also bounds the count)."""
    seen: list[int] = []
    for index, value in enumerate(values):
        require_enum(value, common_pb2.CertificationMethod, f"{field_name}[{index}]")
        if value in seen:
            raise InvalidInputError(f"{field_name}[{index}]", "lists a method twice")
        seen.append(value)
    return seen


def require_digests(values: list[bytes], limits: Limits) -> list[bytes]:
    if len(values) > limits.max_evidence_digests:
        raise InvalidInputError(
            "evidence_digests", f"at most {limits.max_evidence_digests} digests per certification"
        )
    for index, digest in enumerate(values):
        if len(digest) != DIGEST_BYTES:
            raise InvalidInputError(
                f"evidence_digests[{index}]", "must be a 32-byte SHA-256 digest"
            )
    return values


def require_past(moment: datetime, field_name: str, now: datetime, limits: Limits) -> datetime:
    """A time that has happened: refuse the future beyond the allowed clock skew."""
    if moment > now + timedelta(seconds=limits.max_clock_skew_s):
        raise InvalidInputError(field_name, "is in the future")
    return moment


# The earliest date a current validity or a payment start may carry: records older than this
# are typing errors (0001-01-01, 1900), and such dates broke date arithmetic downstream.
EARLIEST_RECORD_DATE = datetime(1950, 1, 1, tzinfo=UTC)


def require_record_date(
    moment: datetime, field_name: str, *, latest: datetime, what: str
) -> datetime:
    """A date from an office's records, between EARLIEST_RECORD_DATE and `latest`."""
    if not EARLIEST_RECORD_DATE <= moment <= latest:
        raise InvalidInputError(
            field_name,
            f"must be between {EARLIEST_RECORD_DATE:%Y-%m-%d} and {latest:%Y-%m-%d} ({what})",
        )
    return moment


def require_future(moment: datetime, field_name: str, now: datetime) -> datetime:
    if moment <= now:
        raise InvalidInputError(field_name, "is in the past; give a date still to come")
    return moment


def identity_kind(bundle: attestation_pb2.IdentityBundle, field_name: str) -> IdentityKind:
    kind = IDENTITY_KINDS.get(bundle.identity_type)
    if kind is None:
        raise InvalidInputError(f"{field_name}.identity_type", "is missing or not a known type")
    return kind


def normalised_identity(
    bundle: attestation_pb2.IdentityBundle, field_name: str, limits: Limits
) -> tuple[IdentityKind, str]:
    """The identity's kind and normalised number; raises naming what is wrong with it."""
    kind = identity_fields(bundle, field_name, limits)
    return kind, validate_identity_number(kind, bundle.identity_number)


def identity_fields(
    bundle: attestation_pb2.IdentityBundle, field_name: str, limits: Limits
) -> IdentityKind:
    """The identity's kind, its name given and its texts within limits; the number is the
    caller's to validate (`normalised_identity`, or signing.locator.locate)."""
    kind = identity_kind(bundle, field_name)
    require_text(bundle.full_name, f"{field_name}.full_name", limits, required=True)
    require_text(bundle.phone, f"{field_name}.phone", limits)
    require_text(bundle.address, f"{field_name}.address", limits)
    return kind


def checked_identity(
    bundle: attestation_pb2.IdentityBundle, field_name: str, limits: Limits
) -> tuple[IdentityKind, str]:
    """An identity as a peer sends it: type and number valid, other fields within limits.

    Unlike a desk registration the name may be absent: cross-border minimisation may leave a
    partner only the fields its certification form needs.
    """
    kind = identity_kind(bundle, field_name)
    for name in ("full_name", "phone", "address"):
        require_text(getattr(bundle, name), f"{field_name}.{name}", limits)
    return kind, validate_identity_number(kind, bundle.identity_number)


def page_size(requested: int, limits: Limits) -> int:
    if requested == 0:
        return limits.default_page_size
    if requested > limits.max_page_size:
        raise InvalidInputError("page_size", f"at most {limits.max_page_size}")
    return requested
