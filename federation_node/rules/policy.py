"""A paying office's entitlement rules: one TOML file per node, validated when the node starts.

The rules differ by region (docs/domain.md, Rules), so they are data, not code. `Policy` holds them
with the defaults docs/domain.md gives; `load_policy` reads `policy.toml` (the file is optional: an
absent file means the defaults) and refuses anything it does not understand with an error that
names the key, so a typo never silently falls back to a default. docs/policy.md documents every
key; deploy/policy.example.toml is a complete example.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.errors import InvalidInputError
from federation_node.rules.evidence import MEDIA_TYPES
from signing.errors import NoteError
from signing.note import COSIGNATURE_V1_TYPE, NoteVerifier

# Data-signal kinds (certfed.v1.SignalKind without its prefix, lower case).
ALIVE_SIGNAL_KINDS = (
    "hospital_admission",
    "hospital_discharge",
    "health_check",
    "medical_insurance_settlement",
    "travel_security_check",
    "bank_in_person",
    "border_crossing",
)
NEGATIVE_SIGNAL_KINDS = (
    "death_registration",
    "cremation",
    "court_declaration_of_death",
    "court_declaration_missing",
    "criminal_sentence",
)
MAX_VALIDITY_MONTHS = 24
MAX_WARNING_MONTHS = 12
# Reminders are counted from the expiry of validity; a year either side is as far as any
# schedule in use reaches.
MAX_REMINDER_OFFSET_DAYS = 366
# Evidence is kept at least a month (a reviewer must see it before approving) and at most a
# century; a file above 64 MiB is a video, not a capture or a scan.
MIN_EVIDENCE_RETENTION_DAYS = 30
MAX_EVIDENCE_RETENTION_DAYS = 36_500
MAX_EVIDENCE_BYTES = 64 * 1024 * 1024
# A certification observed longer ago than this before it is issued is not a current one; ten
# years is beyond any use.
MAX_CERTIFICATION_AGE_DAYS = 3650
# Retention periods (offices/retention.py) run from a day to a century.
MAX_RETENTION_DAYS = 36_500
# Who may do face recognition for a retiree ("certify for another", 给他人认证): the relations a
# provider reports, of which the policy allows some (none by default).
HELPER_RELATIONS = ("spouse", "child", "grandchild", "sibling", "other_relative", "guardian")
# Face-recognition scores run from 0 to 100.
# A change approved with many others moves an amount by at most this percent, whatever the
# policy says: a larger one deserves a reviewer's look on its own.
MAX_BULK_AMOUNT_CHANGE_PERCENT = 50
MAX_FACE_SCORE = 100
# Benefits obtained by fraud are repaid with a fine of two to five times the amount.
FRAUD_FINE_MULTIPLES = range(2, 6)


@dataclass(frozen=True)
class Policy:
    """One region's rules for the entitlement lifecycle (defaults: docs/domain.md, "Rules")."""

    # A certification is valid this many calendar months from the day it was observed: the
    # valid_until of every alive attestation the node issues (offices/issuing.py).
    validity_months: int = 12
    # After validity ends, this many months of warning before payment is suspended.
    warning_months: int = 3
    # Days relative to the end of validity on which a reminder is queued (negative: before).
    reminder_days: tuple[int, ...] = (-30, -7, 0, 30, 60)
    # A beneficiary is due this many days before validity ends; a due beneficiary living in a
    # region another node serves is sent to that node as an assistance request.
    assistance_lead_days: int = 60
    # An assistance request gives the residence agency at least this many days, even when the
    # end of validity is nearer.
    assistance_min_deadline_days: int = 14
    # Alive data-signal kinds that count as a data-match certification.
    extending_signal_kinds: frozenset[str] = field(
        default_factory=lambda: frozenset(ALIVE_SIGNAL_KINDS)
    )
    # Payment resumes this many months after the month of a certification that ends a
    # suspension ("the next month", docs/domain.md).
    resume_after_months: int = 1
    # Whether the months withheld during a suspension are paid back on resumption.
    back_pay: bool = True
    # Days within which a death must be reported by the family and by the unit or village.
    family_report_days: int = 7
    unit_report_days: int = 3
    # A person released from prison, or reappearing after being declared missing, is paid again
    # from this many months after the month they returned (0: that month itself), and is or is
    # not paid back the months since payment stopped (rules/restoration.py).
    release_resume_after_months: int = 1
    release_back_pay: bool = False
    reappearance_resume_after_months: int = 1
    reappearance_back_pay: bool = True
    # Files kept as evidence of certifications (offices/evidence.py): how long after their last
    # upload or use the daily cycle deletes them, their largest size and the accepted formats.
    evidence_retention_days: int = 1825
    evidence_max_bytes: int = 2 * 1024 * 1024
    evidence_media_types: frozenset[str] = field(default_factory=lambda: frozenset(MEDIA_TYPES))
    # A certification (received from a peer or recorded at this desk) whose observed_at lies more
    # than this many days before it is issued is refused (rules/plausibility.py).
    certification_max_age_days: int = 90
    # The witnesses whose cosignatures a peer's checkpoint needs before an attestation proven
    # against it is applied (tlog/witness_policy.py): note verifier keys of witnesses besides
    # the registry's (which always counts as one), and how many of them all must have cosigned.
    witnesses_required: int = 1
    witness_keys: tuple[str, ...] = ()
    # How long the daily cycle keeps personal data once its purpose is served
    # (offices/retention.py), in days: the sealed identity a peer sent with an assistance request
    # after the request closed; data signals (those that matched none of this office's people
    # sooner); messages delivered to peers and the registry; everything about a person the
    # office no longer pays, after their entitlement ended (the period the law requires).
    closed_request_identity_days: int = 30
    signal_retention_days: int = 1825
    unmatched_signal_days: int = 30
    delivered_message_days: int = 30
    former_beneficiary_days: int = 3650
    # Face recognition (offices/face_recognition.py): a result whose liveness and match scores
    # both reach these (0-100) certifies; one below either puts the person on the follow-up list.
    face_min_liveness_score: int = 90
    face_min_match_score: int = 85
    # Helper relations whose "certify for another" results are accepted (HELPER_RELATIONS).
    face_helper_relations: frozenset[str] = field(default_factory=frozenset)
    # Overpayment recovery (offices/recovery.py): the fine on a benefit obtained by fraud, as a
    # multiple of the amount obtained (which is repaid too).
    fraud_fine_multiple: int = 2
    # Monthly amounts (offices/monthly_amounts.py): a reviewer may approve many proposed amounts
    # at once (a roll's yearly adjustment) only when each moves its amount by at most this
    # percent of the amount before; a larger change is approved on its own.
    bulk_amount_change_percent: int = 10


# Every key the file may hold: section -> key -> (Policy field, expected type).
_KEYS: dict[str, dict[str, tuple[str, type]]] = {
    "validity": {
        "period_months": ("validity_months", int),
        "warning_months": ("warning_months", int),
    },
    "reminders": {"days": ("reminder_days", list)},
    "assistance": {
        "lead_days": ("assistance_lead_days", int),
        "min_deadline_days": ("assistance_min_deadline_days", int),
    },
    "signals": {"extend_validity": ("extending_signal_kinds", list)},
    "payments": {
        "resume_after_months": ("resume_after_months", int),
        "back_pay": ("back_pay", bool),
    },
    "deaths": {
        "family_report_days": ("family_report_days", int),
        "unit_report_days": ("unit_report_days", int),
    },
    "restoration": {
        "release_resume_after_months": ("release_resume_after_months", int),
        "release_back_pay": ("release_back_pay", bool),
        "reappearance_resume_after_months": ("reappearance_resume_after_months", int),
        "reappearance_back_pay": ("reappearance_back_pay", bool),
    },
    "evidence": {
        "retention_days": ("evidence_retention_days", int),
        "max_bytes": ("evidence_max_bytes", int),
        "media_types": ("evidence_media_types", list),
    },
    "certifications": {"max_age_days": ("certification_max_age_days", int)},
    "witnesses": {
        "required": ("witnesses_required", int),
        "keys": ("witness_keys", list),
    },
    "retention": {
        "closed_request_identity_days": ("closed_request_identity_days", int),
        "signal_days": ("signal_retention_days", int),
        "unmatched_signal_days": ("unmatched_signal_days", int),
        "delivered_message_days": ("delivered_message_days", int),
        "former_beneficiary_days": ("former_beneficiary_days", int),
    },
    "face_recognition": {
        "min_liveness_score": ("face_min_liveness_score", int),
        "min_match_score": ("face_min_match_score", int),
        "helper_relations": ("face_helper_relations", list),
    },
    "recovery": {"fraud_fine_multiple": ("fraud_fine_multiple", int)},
    "amounts": {"bulk_change_percent": ("bulk_amount_change_percent", int)},
}


def load_policy(path: Path) -> Policy:
    """The policy in `path`, or the defaults when there is no such file."""
    if not path.exists():
        return Policy()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise InvalidInputError("policy", f"{path} is not valid TOML: {error}") from error
    return policy_from_mapping(raw, path.name)


def policy_from_mapping(raw: dict[str, Any], source: str = "policy.toml") -> Policy:
    values: dict[str, Any] = {}
    for section, table in raw.items():
        keys = _KEYS.get(section)
        if keys is None:
            raise InvalidInputError(section, f"unknown section in {source}")
        if not isinstance(table, dict):
            raise InvalidInputError(section, f"must be a table ([{section}]) in {source}")
        for key, value in table.items():
            name = f"{section}.{key}"
            if key not in keys:
                raise InvalidInputError(name, f"unknown setting in {source}")
            target, expected = keys[key]
            # bool is an int in Python; a policy that says `period_months = true` is a typo.
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise InvalidInputError(name, f"must be {_type_name(expected)}")
            values[target] = _list_value(name, value) if isinstance(value, list) else value
    policy = Policy(**values)
    validate_policy(policy)
    return policy


def _type_name(expected: type) -> str:
    return {int: "a whole number", bool: "true or false", list: "a list"}[expected]


def _list_value(name: str, value: list[Any]) -> Any:
    if name == "reminders.days":
        if not all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            raise InvalidInputError(name, "must list whole numbers of days")
        return tuple(sorted(set(value)))
    if name == "witnesses.keys":
        if not all(isinstance(item, str) and item.strip() for item in value):
            raise InvalidInputError(name, "must list witness note verifier keys as strings")
        return tuple(dict.fromkeys(item.strip() for item in value))
    if name == "evidence.media_types":
        if not all(isinstance(item, str) for item in value):
            raise InvalidInputError(name, "must list media types as strings")
        return frozenset(value)
    if name == "face_recognition.helper_relations":
        if not all(isinstance(item, str) for item in value):
            raise InvalidInputError(name, "must list relations as strings")
        return frozenset(value)
    if not all(isinstance(item, str) for item in value):
        raise InvalidInputError(name, "must list signal kinds as strings")
    return frozenset(value)


def validate_policy(policy: Policy) -> None:
    """Refuse rules that cannot be applied; the error names the key in the file."""
    if not 1 <= policy.witnesses_required <= len(policy.witness_keys) + 1:
        raise InvalidInputError(
            "witnesses.required",
            f"must be between 1 and {len(policy.witness_keys) + 1} (the registry's witness and "
            "the keys listed)",
        )
    for position, vkey in enumerate(policy.witness_keys):
        _require_witness_key(vkey, f"witnesses.keys[{position}]")
    if not 1 <= policy.validity_months <= MAX_VALIDITY_MONTHS:
        raise InvalidInputError(
            "validity.period_months", f"must be between 1 and {MAX_VALIDITY_MONTHS}"
        )
    if not 0 <= policy.warning_months <= MAX_WARNING_MONTHS:
        raise InvalidInputError(
            "validity.warning_months", f"must be between 0 and {MAX_WARNING_MONTHS}"
        )
    for offset in policy.reminder_days:
        if abs(offset) > MAX_REMINDER_OFFSET_DAYS:
            raise InvalidInputError(
                "reminders.days",
                f"{offset} is more than {MAX_REMINDER_OFFSET_DAYS} days from the end of validity",
            )
    # The lead time must fit in the shortest validity period (28 days a month), or a person
    # would be due again on the day they are certified.
    if not 0 <= policy.assistance_lead_days < policy.validity_months * 28:
        raise InvalidInputError(
            "assistance.lead_days",
            f"must be at least 0 and shorter than the validity period "
            f"({policy.validity_months} months)",
        )
    if not 1 <= policy.assistance_min_deadline_days <= 365:
        raise InvalidInputError("assistance.min_deadline_days", "must be between 1 and 365")
    unknown = sorted(policy.extending_signal_kinds - set(ALIVE_SIGNAL_KINDS))
    if unknown:
        raise InvalidInputError(
            "signals.extend_validity",
            f"{unknown[0]!r} is not an alive signal kind; use {', '.join(ALIVE_SIGNAL_KINDS)}",
        )
    if not 1 <= policy.resume_after_months <= 3:
        raise InvalidInputError("payments.resume_after_months", "must be between 1 and 3")
    for key, months in (
        ("restoration.release_resume_after_months", policy.release_resume_after_months),
        ("restoration.reappearance_resume_after_months", policy.reappearance_resume_after_months),
    ):
        if not 0 <= months <= 3:
            raise InvalidInputError(key, "must be between 0 and 3")
    for key, days in (
        ("deaths.family_report_days", policy.family_report_days),
        ("deaths.unit_report_days", policy.unit_report_days),
    ):
        if not 1 <= days <= 90:
            raise InvalidInputError(key, "must be between 1 and 90 days")
    if (
        not MIN_EVIDENCE_RETENTION_DAYS
        <= policy.evidence_retention_days
        <= (MAX_EVIDENCE_RETENTION_DAYS)
    ):
        raise InvalidInputError(
            "evidence.retention_days",
            f"must be between {MIN_EVIDENCE_RETENTION_DAYS} and {MAX_EVIDENCE_RETENTION_DAYS}",
        )
    if not 1 <= policy.evidence_max_bytes <= MAX_EVIDENCE_BYTES:
        raise InvalidInputError(
            "evidence.max_bytes", f"must be between 1 and {MAX_EVIDENCE_BYTES} bytes"
        )
    if not 1 <= policy.certification_max_age_days <= MAX_CERTIFICATION_AGE_DAYS:
        raise InvalidInputError(
            "certifications.max_age_days",
            f"must be between 1 and {MAX_CERTIFICATION_AGE_DAYS} days",
        )
    for key, days in (
        ("retention.closed_request_identity_days", policy.closed_request_identity_days),
        ("retention.signal_days", policy.signal_retention_days),
        ("retention.unmatched_signal_days", policy.unmatched_signal_days),
        ("retention.delivered_message_days", policy.delivered_message_days),
        ("retention.former_beneficiary_days", policy.former_beneficiary_days),
    ):
        if not 1 <= days <= MAX_RETENTION_DAYS:
            raise InvalidInputError(key, f"must be between 1 and {MAX_RETENTION_DAYS} days")
    for key, score in (
        ("face_recognition.min_liveness_score", policy.face_min_liveness_score),
        ("face_recognition.min_match_score", policy.face_min_match_score),
    ):
        if not 1 <= score <= MAX_FACE_SCORE:
            raise InvalidInputError(key, f"must be between 1 and {MAX_FACE_SCORE}")
    if policy.fraud_fine_multiple not in FRAUD_FINE_MULTIPLES:
        raise InvalidInputError(
            "recovery.fraud_fine_multiple",
            f"must be between {FRAUD_FINE_MULTIPLES[0]} and {FRAUD_FINE_MULTIPLES[-1]}",
        )
    if not 0 <= policy.bulk_amount_change_percent <= MAX_BULK_AMOUNT_CHANGE_PERCENT:
        raise InvalidInputError(
            "amounts.bulk_change_percent",
            f"must be between 0 and {MAX_BULK_AMOUNT_CHANGE_PERCENT} (0: every change on its own)",
        )
    unknown_relations = sorted(policy.face_helper_relations - set(HELPER_RELATIONS))
    if unknown_relations:
        raise InvalidInputError(
            "face_recognition.helper_relations",
            f"{unknown_relations[0]!r} is not a relation; use {', '.join(HELPER_RELATIONS)}",
        )
    unknown_types = sorted(policy.evidence_media_types - set(MEDIA_TYPES))
    if unknown_types or not policy.evidence_media_types:
        raise InvalidInputError(
            "evidence.media_types",
            f"list one or more of {', '.join(MEDIA_TYPES)}"
            + (f"; {unknown_types[0]!r} is not one of them" if unknown_types else ""),
        )


def _require_witness_key(vkey: str, name: str) -> None:
    try:
        verifier = NoteVerifier.from_vkey(vkey)
    except NoteError as error:
        raise InvalidInputError(name, f"is not a note verifier key: {error}") from None
    if verifier.signature_type != COSIGNATURE_V1_TYPE:
        raise InvalidInputError(name, "is not a witness cosignature key (type 0x04)")
