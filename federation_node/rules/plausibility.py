"""When a certification's `observed_at` is believable: the bounds every attestation's observation
date must keep, at the desk that issues it and at the paying office that applies it.

A certification records when a person was seen (alive, or found dead, imprisoned or missing).
The date decides money: validity runs from it, and an overpayment is counted from it. So it is
refused when it cannot be true or cannot be current:

* in the future (beyond the allowed clock skew);
* before the birth date a resident ID number carries (GB 11643, characters 7-14);
* more than the paying office's `certifications.max_age_days` before the attestation was issued
  (or, at the desk, before today): an old observation is not a current certification; and an
  attestation issued longer ago than that is stale when it arrives, so a backdated `issued_at`
  cannot carry an old observation in;
* before the person's last certification known here (the latest alive certification applied,
  or, for a person whose validity came from the office's roll, that validity less the office's
  period): a later certification already supersedes it.

Pure: plain values in, `InvalidInputError` naming the field out. The error never repeats the
birth date nor the identity number it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from federation.errors import InvalidInputError
from federation_node.rules.entitlement import add_months
from signing.identity import IdentityKind


@dataclass(frozen=True)
class ObservationBounds:
    """What an observation date is checked against; None where it is not known."""

    # The time the certification is issued (the attestation's issued_at, or now at the desk).
    issued_at: datetime
    # How far before issued_at an observation may lie (the policy's certifications.max_age_days).
    max_age: timedelta
    # How far into the future a clock may run ahead (limits.max_clock_skew_s).
    clock_skew: timedelta
    now: datetime
    born: date | None = None
    last_certified: datetime | None = None


def birth_date(kind: IdentityKind, number: str) -> date | None:
    """The birth date a validated identity number carries: a resident ID's characters 7-14
    (GB 11643-1999); None for other kinds, which carry none."""
    if kind is not IdentityKind.RESIDENT_ID:
        return None
    return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def last_certification(
    latest_applied: datetime | None, valid_until: datetime | None, validity_months: int
) -> datetime | None:
    """The person's last certification as far as the office knows: the latest alive
    certification it applied, or the start of the validity its records hold (validity runs
    `validity_months` from the last certification), whichever is later."""
    known = [latest_applied] if latest_applied is not None else []
    if valid_until is not None:
        known.append(add_months(valid_until, -validity_months))
    return max(known, default=None)


def require_plausible_observation(
    observed_at: datetime, field_name: str, bounds: ObservationBounds
) -> datetime:
    """`observed_at` if it keeps every bound (module docstring), else InvalidInputError."""
    if observed_at > bounds.now + bounds.clock_skew:
        raise InvalidInputError(field_name, "is in the future")
    if bounds.born is not None and observed_at.date() < bounds.born:
        raise InvalidInputError(
            field_name, "is before the birth date the person's identity number carries"
        )
    if bounds.issued_at < bounds.now - bounds.max_age:
        raise InvalidInputError(
            "issued_at",
            f"is more than {bounds.max_age.days} days ago; a certification that old is not "
            "current, certify the person again",
        )
    earliest = bounds.issued_at - bounds.max_age
    if observed_at < earliest:
        raise InvalidInputError(
            field_name,
            f"is more than {bounds.max_age.days} days before the certification was issued "
            f"(the earliest accepted is {earliest:%Y-%m-%d}); certify the person again",
        )
    # By the day: two certifications on one day may arrive in either order.
    if bounds.last_certified is not None and observed_at.date() < bounds.last_certified.date():
        raise InvalidInputError(
            field_name,
            f"is before the person's last certification ({bounds.last_certified:%Y-%m-%d}), "
            "which supersedes it",
        )
    return observed_at
