"""Moving an office's locators to the registry's OPRF (`certfed node relocate`).

Before locators came from the registry's oblivious PRF (signing/oprf.py), every member computed
them with one shared HMAC key. This re-derives the locator of every person the office holds:

* Each sealed identity is opened (it is bound to its old locator), its new locator computed
  through the registry in batches (federation_node/locators.py), the identity sealed again to
  the new locator, and the beneficiary, the office's own assistance requests and certifications
  that named the old locator moved to the new one (store/relocation_store.py).
* In the same transaction as each batch, one outbox message to the registry withdraws the
  batch's old locators and publishes the new ones (PublishLocators), so the registry's index is
  rebuilt once the node runs and its dispatcher delivers them; a duplicate entitlement two
  offices shared under the old locators is found again under the new ones.
* A person already erased has no identity left: only their old locator is withdrawn.
* A rerun skips everyone already moved (the locator computed equals the stored one), so an
  interrupted run is finished by running it again. Each batch leaves one audit record with counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import Engine

from certfed.v1 import attestation_pb2, registry_pb2
from federation.errors import PreconditionError
from federation.limits import LOCATOR_BATCH
from federation_node.keystore import NodeKeys
from federation_node.locators import Locators
from federation_node.rules.validation import IDENTITY_KINDS
from federation_node.store import audit, outbox, relocation_store
from federation_node.store.db import session_scope
from federation_node.store.models import REGISTRY_DESTINATION, OutboxKind
from signing import sealing
from signing.errors import UnsealError

log = structlog.get_logger("certfed.lifecycle")


@dataclass
class RelocationOutcome:
    moved: int = 0
    unchanged: int = 0
    erased_withdrawn: int = 0
    batches: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Move:
    person: relocation_store.Person
    identity: attestation_pb2.IdentityBundle | None


def relocate(
    engine: Engine,
    keys: NodeKeys,
    locators: Locators,
    actor: str,
    *,
    clock: Callable[[], datetime],
    batch_size: int = LOCATOR_BATCH,
) -> RelocationOutcome:
    outcome = RelocationOutcome()
    after = ""
    while True:
        with session_scope(engine) as session:
            people = relocation_store.people(session, after, batch_size)
        if not people:
            return outcome
        after = people[-1].beneficiary_id
        moves = [_Move(person, _identity(keys, person)) for person in people]
        identities = [
            (IDENTITY_KINDS[move.identity.identity_type], move.identity.identity_number)
            for move in moves
            if move.identity is not None
        ]
        locators.prefetch(identities)
        _apply(engine, keys, locators, actor, moves, outcome, clock())


def _identity(
    keys: NodeKeys, person: relocation_store.Person
) -> attestation_pb2.IdentityBundle | None:
    if not person.sealed_identity:
        return None
    try:
        plain = sealing.open_sealed(
            person.sealed_identity, keys.hpke, sealing.at_rest_info(person.subject_locator.hex())
        )
    except UnsealError:
        raise PreconditionError(
            f"the sealed identity of beneficiary {person.beneficiary_id} does not open with this "
            "node's key under its stored locator; nothing of its batch was changed"
        ) from None
    identity = attestation_pb2.IdentityBundle.FromString(plain)
    if identity.identity_type not in IDENTITY_KINDS:
        raise PreconditionError(
            f"beneficiary {person.beneficiary_id} holds an identity of an unknown type"
        )
    return identity


def _apply(
    engine: Engine,
    keys: NodeKeys,
    locators: Locators,
    actor: str,
    moves: list[_Move],
    outcome: RelocationOutcome,
    now: datetime,
) -> None:
    published: list[bytes] = []
    withdrawn: list[bytes] = []
    with session_scope(engine) as session:
        for move in moves:
            person = move.person
            if move.identity is None:
                withdrawn.append(person.subject_locator)
                outcome.erased_withdrawn += 1
                continue
            kind = IDENTITY_KINDS[move.identity.identity_type]
            _, new = locators.locate(kind, move.identity.identity_number)
            if new == person.subject_locator:
                outcome.unchanged += 1
                continue
            [sealed] = sealing.seal_many(
                [
                    (
                        move.identity.SerializeToString(deterministic=True),
                        sealing.at_rest_info(new.hex()),
                    )
                ],
                keys.hpke.public_raw,
            )
            relocation_store.move(session, person, new, sealed, now)
            withdrawn.append(person.subject_locator)
            published.append(new)
            outcome.moved += 1
        if published or withdrawn:
            message = registry_pb2.PublishLocatorsRequest(locators=published, withdrawn=withdrawn)
            outbox.enqueue(
                session,
                kind=OutboxKind.PUBLISH_LOCATORS,
                destination=REGISTRY_DESTINATION,
                subject_id=moves[0].person.beneficiary_id,
                payload=message.SerializeToString(),
                now=now,
            )
            audit.append(
                session,
                actor=actor,
                action="beneficiary.relocate",
                subject_type="batch",
                subject_id=moves[0].person.beneficiary_id,
                details={"moved": len(published), "withdrawn": len(withdrawn)},
                now=now,
            )
    outcome.batches.append(len(published))
    log.info("beneficiary.relocated", moved=len(published), withdrawn=len(withdrawn))
