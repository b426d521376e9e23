"""Registering the people a paying office pays, one at a time from the desk or a batch, and the
registry's word on who else pays them.

A registration is checked and sealed as a roll row is (roll.py), stored with its entitlement,
audited, and announced to the registry's locator index by an outbox message in the same
transaction: all or none per call. The registry answers with the locators some other office
pays too; each such person is flagged as a possible duplicate entitlement (audited, with the
offices named), for this office's clerks to look into. Nothing else changes on that word alone.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlmodel import Session

from certfed.v1 import desk_pb2, registry_pb2
from federation.errors import InvalidInputError
from federation.roles import PAYING_ROLE_NAMES
from federation_node.locators import Located
from federation_node.offices import roll
from federation_node.offices.context import Actor, NodeContext
from federation_node.rules.validation import IDENTITY_KINDS
from federation_node.store import audit, beneficiaries, entitlements_store, outbox
from federation_node.store.db import session_scope
from federation_node.store.models import REGISTRY_DESTINATION, Beneficiary, OutboxKind

# What storing registrations answers: the ORM row of one, or the rows of a batch as stored.
_Added = TypeVar("_Added", Beneficiary, beneficiaries.Registered)


def _add_one(
    session: Session, new: list[beneficiaries.NewBeneficiary], now: datetime
) -> list[Beneficiary]:
    [person] = new
    return [beneficiaries.add(session, **dataclasses.asdict(person), now=now)]


@dataclass(frozen=True)
class _Checked:
    new: beneficiaries.NewBeneficiary
    amount: int


class Registration:
    """Who this office pays: people registered, their locators published to the registry."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def register_beneficiary(
        self, actor: Actor, request: desk_pb2.RegisterBeneficiaryRequest
    ) -> Beneficiary:
        # A clerk's registration is the desk's work: it may use the evaluations a bulk
        # registration leaves (locator_reserve).
        [added] = self._register(actor, [request], "", _add_one, keep=0)
        return added

    def register_beneficiaries(
        self, actor: Actor, requests: Sequence[desk_pb2.RegisterBeneficiaryRequest]
    ) -> list[beneficiaries.Registered]:
        """Register a batch of people (an office's roll), all or none, publishing their
        locators to the registry in one message instead of one per person."""
        limits = self._context.config.limits
        if not requests:
            raise InvalidInputError("beneficiaries", "give at least one beneficiary")
        if len(requests) > limits.max_repeated:
            raise InvalidInputError(
                "beneficiaries", f"has {len(requests)} items; the limit is {limits.max_repeated}"
            )
        return self._register(
            actor,
            requests,
            "beneficiaries[{index}].",
            beneficiaries.add_batch,
            keep=self._context.config.locator_reserve,
        )

    def _register(
        self,
        actor: Actor,
        requests: Sequence[desk_pb2.RegisterBeneficiaryRequest],
        prefix: str,
        store: Callable[[Session, list[beneficiaries.NewBeneficiary], datetime], list[_Added]],
        *,
        keep: int,
    ) -> list[_Added]:
        """Check, seal and `store` the people, open their entitlements, audit, and queue their
        locators for the registry, in one transaction; refused when it would leave fewer than
        `keep` of today's locator evaluations."""
        self._context.require_role(PAYING_ROLE_NAMES, "pay pensions")
        now = self._context.now()
        # The locators of people already on the roll by roll key (they are refused below at no
        # registry cost), the others' from the registry in a few calls, not one per person.
        located = self._context.locators.prefetch(
            (
                (kind, request.identity.identity_number)
                for request in requests
                if (kind := IDENTITY_KINDS.get(request.identity.identity_type)) is not None
            ),
            known=functools.partial(roll.on_the_roll, self._context),
            keep=keep,
        )
        prepared = self._checked(requests, prefix, located)
        publish = registry_pb2.PublishLocatorsRequest(
            locators=[p.new.subject_locator for p in prepared]
        )
        with session_scope(self._context.engine) as session:
            added = store(session, [p.new for p in prepared], now)
            entitlements_store.open_many(
                session,
                [(b.beneficiary_id, p.amount) for b, p in zip(added, prepared, strict=True)],
                now,
            )
            first = added[0]
            if len(added) == 1:
                details: dict[str, str | int | bool | list[str] | None] = {
                    "residence_region": first.residence_region,
                    "paying_region": first.paying_region,
                }
            else:
                details = {"beneficiary_ids": [b.beneficiary_id for b in added]}
            audit.append(
                session,
                actor=actor.label,
                action="beneficiary.register" if len(added) == 1 else "beneficiary.register_batch",
                subject_type="beneficiary",
                subject_id=first.beneficiary_id,
                details=details,
                now=now,
            )
            outbox.enqueue(
                session,
                kind=OutboxKind.PUBLISH_LOCATORS,
                destination=REGISTRY_DESTINATION,
                subject_id=first.beneficiary_id,
                payload=publish.SerializeToString(),
                now=now,
            )
        self._context.on_enqueued()
        return added

    def _checked(
        self,
        requests: Sequence[desk_pb2.RegisterBeneficiaryRequest],
        prefix: str,
        located: Located,
    ) -> list[_Checked]:
        """Registrations checked and sealed, ready to store; errors name `prefix` (with the
        request's index) + the field.

        The checks and the sealing are the roll's, so a person registered one by one and one
        imported with the roll are held alike: a batch's identities are sealed together."""
        context = self._context
        entries = [
            roll.checked_entry(context, request, prefix.format(index=index), located=located)
            for index, request in enumerate(requests)
        ]
        sealed = roll.seal_identities(
            context, [(entry.identity, entry.locator) for entry in entries]
        )
        return [
            _Checked(entry.new_beneficiary(context, sealed_identity), entry.amount_fen)
            for entry, sealed_identity in zip(entries, sealed, strict=True)
        ]

    def record_duplicates(self, duplicates: list[registry_pb2.DuplicateEntitlement]) -> int:
        """Flag the people the registry says another office pays too; how many were flagged
        (people this office pays)."""
        flagged = 0
        if not duplicates:
            return 0
        with session_scope(self._context.engine) as session:
            for duplicate in duplicates:
                if beneficiaries.flag_duplicate(session, duplicate.locator):
                    flagged += 1
                    audit.append(
                        session,
                        actor="node:registry",
                        action="beneficiary.possible_duplicate",
                        subject_type="locator",
                        subject_id=duplicate.locator.hex()[:16],
                        details={"paying_node_ids": sorted(duplicate.paying_node_ids)},
                        now=self._context.now(),
                    )
        return flagged
