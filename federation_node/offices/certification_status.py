"""A retiree's certification status, as the office's portal or mini program shows it to them
(through the status service, adapters/status_endpoint.py): the entitlement state, the date the
current certification runs to, and the day the office starts seeking the next; nothing else
about the person (no name, no amount, no history).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from certfed.v1 import desk_pb2
from federation.errors import InvalidInputError, UnknownBeneficiaryError
from federation_node.offices.context import NodeContext
from federation_node.rules.entitlement import EntitlementState
from federation_node.rules.validation import IDENTITY_KINDS
from federation_node.store import beneficiaries, entitlements_store
from signing.errors import InvalidIdentityNumberError


@dataclass(frozen=True)
class Status:
    state: EntitlementState
    certified_until: datetime | None
    next_due: datetime | None


class CertificationStatuses:
    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def status(self, request: desk_pb2.GetCertificationStatusRequest) -> Status:
        kind = IDENTITY_KINDS.get(request.identity_type)
        if kind is None:
            raise InvalidInputError("identity_type", "is missing or not a known type")
        try:
            locator = self._context.locators.subject_locator(kind, request.identity_number)
        except InvalidIdentityNumberError as error:
            raise InvalidInputError("identity_number", error.reason) from None
        with self._context.session() as session:
            person = beneficiaries.by_locator(session, locator)
            if person is None:
                raise UnknownBeneficiaryError("this office pays nobody with that identity")
            entitlement = entitlements_store.get(session, person.beneficiary_id)
        until = person.valid_until
        lead = timedelta(days=self._context.policy.assistance_lead_days)
        return Status(entitlement.state, until, until - lead if until is not None else None)
