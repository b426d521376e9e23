"""Life events across offices: a death, imprisonment or declaration of missing confirmed at this
office, announced to every other office that pays the same person.

A person may draw pensions from several offices (a duplicate the registry's locator index
shows); the office that learns of the end of entitlement (its feed, its desk) must not be the
only one that stops paying. When this office confirms one, its node issues a signed negative
attestation, in its transparency log like any other, to each other active paying office the
locator index names, by the route a walk-in several offices claim takes (certifying.py,
`also_paying`):

* recorded and approved at this office's desk (a clerk saw the death certificate, a reviewer
  approved): the certification goes to the other offices with the office's own, on approval;
* a negative data signal or a peer's report, confirmed by this office's reviewer
  (`Lifecycle.review_termination`): the confirmation issues one attestation for this office's own
  record (so the death is in its log and can be corrected, corrections.py) and one for each other
  office, except the offices whose own report about the person this office holds, which know.

A receiving office never terminates on it: a negative attestation that answers no request of
its own is held for its reviewer (attestation_review.py, `negative-without-request`), who applies
it (payment suspended, the termination proposed to a second reviewer) or dismisses it.

The registry is asked before the confirming transaction; when it cannot be reached the
confirmation stands, nothing is sent, and the audit record says so (`announced_to` empty,
`announce_failed`), so an operator can tell the other offices by other means.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2
from federation.errors import CertfedError
from federation.roles import PAYING_ROLE_NAMES, ROLE_NAMES
from federation_node.offices.context import NodeContext
from federation_node.offices.issuing import Finding, Issuer
from federation_node.store import attestations_store
from federation_node.store.models import Beneficiary, BeneficiaryState

log = structlog.get_logger("certfed.lifecycle")

# The outcome an attestation states for each end of entitlement.
STATUS_OUTCOMES: dict[BeneficiaryState, common_pb2.CertificationOutcome.ValueType] = {
    BeneficiaryState.DECEASED: common_pb2.CERTIFICATION_OUTCOME_DECEASED,
    BeneficiaryState.IMPRISONED: common_pb2.CERTIFICATION_OUTCOME_IMPRISONED,
    BeneficiaryState.DECLARED_MISSING: common_pb2.CERTIFICATION_OUTCOME_DECLARED_MISSING,
}


@dataclass(frozen=True)
class OtherOffices:
    """The other offices paying a person (node id to paying region), as the registry said."""

    offices: dict[str, str]
    # Why the registry could not be asked, if it could not.
    failure: str = ""


class LifeEvents:
    """Finds the other offices paying a person, and issues the announcements to them."""

    def __init__(self, context: NodeContext, locate: Callable[[bytes], list[str]]) -> None:
        self._context = context
        # Which nodes pay a person, by locator: the registry's index.
        self._locate = locate

    def other_offices(self, locator: bytes) -> OtherOffices:
        """Every other active paying office of the person; call it outside a transaction."""
        try:
            paying = set(self._locate(locator))
        except CertfedError as error:
            log.warning("life_event.registry_unreachable", error=type(error).__name__)
            return OtherOffices({}, type(error).__name__)
        paying.discard(self._context.node_id)
        directory = self._context.directory.current()
        offices: dict[str, str] = {}
        for node_id in sorted(paying):
            node = directory.find(node_id)
            if (
                node is not None
                and node.status == common_pb2.NODE_STATUS_ACTIVE
                and PAYING_ROLE_NAMES.intersection(ROLE_NAMES[role] for role in node.roles)
            ):
                offices[node.node_id] = node.region_codes[0]
        if offices:
            log.info("life_event.other_offices", count=len(offices))
        return OtherOffices(offices)

    def announce(
        self,
        session: Session,
        issuer: Issuer,
        beneficiary: Beneficiary,
        status: BeneficiaryState,
        effective_at: datetime,
        others: OtherOffices,
        *,
        clerk_id: str,
        reviewer_id: str,
        now: datetime,
    ) -> list[tuple[attestation_pb2.CertificationAttestation, str | None]]:
        """The attestations of a confirmed end of entitlement, unsigned: this office's own and
        one for each other office that did not report it here (module docstring). The caller
        issues them last in its transaction (`Issuer.issue`)."""
        reporters = attestations_store.end_reporters(
            session, beneficiary.beneficiary_id, list(STATUS_OUTCOMES.values())
        )
        own = Finding(
            subject_locator=beneficiary.subject_locator,
            paying_node_id=self._context.node_id,
            paying_region=beneficiary.paying_region,
            certifying_region=self._context.config.primary_region,
            # What this office's records show, reviewed by its reviewer.
            method=common_pb2.CERTIFICATION_METHOD_DATA_MATCH,
            outcome=STATUS_OUTCOMES[status],
            observed_at=effective_at,
            evidence_digests=(),
            clerk_id=clerk_id,
            reviewer_id=reviewer_id,
        )
        issued: list[tuple[attestation_pb2.CertificationAttestation, str | None]] = [
            (issuer.attestation(own, now), beneficiary.beneficiary_id)
        ]
        for node_id, region in sorted(others.offices.items()):
            if node_id in reporters:
                continue
            finding = dataclasses.replace(own, paying_node_id=node_id, paying_region=region)
            issued.append((issuer.attestation(finding, now), None))
        return issued


def announced_to(
    issued: Sequence[tuple[attestation_pb2.CertificationAttestation, str | None]], node_id: str
) -> list[str]:
    """The other offices an announcement goes to (for the audit record)."""
    return [a.paying_node_id for a, _ in issued if a.paying_node_id != node_id]
