"""Personal data kept only as long as the office's policy says (China's personal information
protection law, art. 19 and 47): what the daily cycle deletes, and erasing one person on request.

What this module promises:

* `run` is called by the daily cycle, in its transaction, so a day's deletions happen once
  whatever the number of replicas. It drops the sealed identity a peer sent with an assistance
  request once the request has been closed `retention.closed_request_identity_days`; deletes
  data signals after `retention.signal_days` (`retention.unmatched_signal_days` for those that
  matched nobody this office pays) and alive signals entered at the desk `retention.signal_days`
  after a reviewer decided them, messages delivered to peers and the registry after
  `retention.delivered_message_days`, evidence files after `evidence.retention_days`; and erases
  people whose entitlement ended `retention.former_beneficiary_days` ago (docs/policy.md).
* An erased person's locator is withdrawn from the registry's locator index: the withdrawal is
  queued in the outbox in the erasure's own transaction, so it reaches the registry however
  long the registry is away, and the federation no longer finds this office paying them.
* Nothing that work in progress needs goes: an open assistance request, a certification or a
  termination awaiting review, a held attestation, an overpayment to recover
  (store/retention_store.py). Attestations, the transparency log and the audit chain are never
  touched: they hold locators and hashes, not identities.
* Each run leaves one audit record with counts only; each erasure on request one record naming
  the beneficiary id (an internal id, never an identity number) and what went.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine
from sqlmodel import Session

from certfed.v1 import registry_pb2
from federation.errors import PreconditionError
from federation_node.rules.policy import Policy
from federation_node.store import audit, beneficiaries, outbox, retention_store
from federation_node.store.db import lock_and_refresh, session_scope
from federation_node.store.models import REGISTRY_DESTINATION, Beneficiary, OutboxKind

log = structlog.get_logger("certfed.lifecycle")


@dataclass(frozen=True)
class RetentionOutcome:
    """What one run deleted, by kind."""

    request_identities_erased: int
    signals_deleted: int
    messages_deleted: int
    evidence_deleted: int
    people_erased: int


def run(
    session: Session, policy: Policy, actor: str, day: datetime, now: datetime
) -> RetentionOutcome:
    """Delete what the policy's periods say is due on `day`, in the caller's transaction."""

    def before(days: int) -> datetime:
        return day - timedelta(days=days)

    people = 0
    erased = retention_store.PersonErased(0, 0, 0, 0, 0)
    for beneficiary_id in retention_store.former_beneficiaries(
        session, before(policy.former_beneficiary_days)
    ):
        person = beneficiaries.get(session, beneficiary_id)
        lock_and_refresh(session, person)
        if retention_store.erasure_blockers(session, person):
            continue
        erased = _sum(erased, retention_store.erase_person(session, person, now))
        _withdraw_locator(session, person, now)
        people += 1
    expired = retention_store.delete_evidence(session, before(policy.evidence_retention_days))
    for digest in expired:
        # One record per file, as for every other read or change of a file (offices/evidence.py).
        audit.append(
            session,
            actor=actor,
            action="evidence.delete",
            subject_type="evidence",
            subject_id=digest,
            details={"retention_days": policy.evidence_retention_days},
            now=now,
        )
    outcome = RetentionOutcome(
        request_identities_erased=erased.request_identities
        + retention_store.erase_closed_request_identities(
            session, before(policy.closed_request_identity_days)
        ),
        signals_deleted=erased.signals
        + retention_store.delete_signals(
            session,
            recorded_before=before(policy.signal_retention_days),
            unmatched_before=before(policy.unmatched_signal_days),
        )
        + retention_store.delete_decided_pending_signals(
            session, before(policy.signal_retention_days)
        ),
        messages_deleted=erased.messages
        + retention_store.delete_delivered_messages(session, before(policy.delivered_message_days)),
        evidence_deleted=erased.evidence + len(expired),
        people_erased=people,
    )
    audit.append(
        session,
        actor=actor,
        action="retention.run",
        subject_type="cycle",
        subject_id=day.date().isoformat(),
        details=dict(asdict(outcome)),
        now=now,
    )
    if any(asdict(outcome).values()):
        log.info("retention.ran", **asdict(outcome))
    return outcome


def erase(
    engine: Engine, actor: str, beneficiary_id: str, now: datetime
) -> retention_store.PersonErased:
    """Erase one person now, on their request (or the law's), in its own transaction.

    Refused with the reasons while work in progress still needs their data, or while the office
    still pays them (payment needs their identity)."""
    with session_scope(engine) as session:
        person = beneficiaries.get(session, beneficiary_id)
        lock_and_refresh(session, person)
        blockers = retention_store.erasure_blockers(session, person)
        if blockers:
            raise PreconditionError(
                f"beneficiary {beneficiary_id} cannot be erased yet: {'; '.join(blockers)}"
            )
        erased = retention_store.erase_person(session, person, now)
        _withdraw_locator(session, person, now)
        audit.append(
            session,
            actor=actor,
            action="beneficiary.erase",
            subject_type="beneficiary",
            subject_id=beneficiary_id,
            details=dict(asdict(erased)),
            now=now,
        )
    log.info("beneficiary.erased", beneficiary_id=beneficiary_id, **asdict(erased))
    return erased


def _withdraw_locator(session: Session, person: Beneficiary, now: datetime) -> None:
    """Queue the withdrawal of an erased person's locator from the registry's index."""
    withdrawal = registry_pb2.PublishLocatorsRequest(withdrawn=[person.subject_locator])
    outbox.enqueue(
        session,
        kind=OutboxKind.PUBLISH_LOCATORS,
        destination=REGISTRY_DESTINATION,
        subject_id=person.beneficiary_id,
        payload=withdrawal.SerializeToString(),
        now=now,
    )


def _sum(
    left: retention_store.PersonErased, right: retention_store.PersonErased
) -> retention_store.PersonErased:
    return retention_store.PersonErased(
        *(a + b for a, b in zip(asdict(left).values(), asdict(right).values(), strict=True))
    )
