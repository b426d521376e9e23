"""Cross-border data minimisation: which identity fields an assistance request carries, by the
role of the node it goes to.

A residence agency inside the mainland system certifies the person on the paying office's
behalf and may need everything to find them (name, number, phone, address). A partner liaison
desk (Macau, Hong Kong) is across a border and under another data-protection law (Macau Law
8/2005, Hong Kong PDPO): it receives only what its certification form needs. Each node's
configuration says, per role, which IdentityBundle fields go out:

    [minimisation]
    partner_liaison = ["identity_type", "identity_number", "full_name"]

The identity type and number are always needed (the receiver checks the person against them)
and cannot be left out. When the receiving node holds several roles the strictest list applies
(the intersection), so adding a role to a node never widens what crosses a border.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from certfed.v1 import attestation_pb2, common_pb2
from federation.errors import InvalidInputError
from federation.roles import ROLE_NAMES

IDENTITY_FIELDS = ("identity_type", "identity_number", "full_name", "phone", "address")
REQUIRED_FIELDS = ("identity_type", "identity_number")


@dataclass(frozen=True)
class MinimisationConfig:
    """IdentityBundle fields sent to a node of each role; see the module docstring."""

    paying_office: tuple[str, ...] = IDENTITY_FIELDS
    residence_agency: tuple[str, ...] = IDENTITY_FIELDS
    partner_liaison: tuple[str, ...] = ("identity_type", "identity_number", "full_name")
    # A consulate abroad: what its certification form (审核表) names, nothing more.
    overseas_post: tuple[str, ...] = ("identity_type", "identity_number", "full_name")

    def validate(self) -> None:
        for role in fields(self):
            allowed: tuple[str, ...] = getattr(self, role.name)
            for name in allowed:
                if name not in IDENTITY_FIELDS:
                    raise InvalidInputError(
                        f"minimisation.{role.name}",
                        f"{name!r} is not an identity field; use {', '.join(IDENTITY_FIELDS)}",
                    )
            for name in REQUIRED_FIELDS:
                if name not in allowed:
                    raise InvalidInputError(
                        f"minimisation.{role.name}",
                        f"{name} is always sent; the receiver cannot check the person without it",
                    )

    def fields_for(self, roles: Iterable[common_pb2.Role.ValueType]) -> frozenset[str]:
        """The fields a node holding `roles` receives: the strictest of its roles' lists."""
        allowed = frozenset(IDENTITY_FIELDS)
        for role in roles:
            name = ROLE_NAMES.get(role)
            if name is not None:
                allowed &= frozenset(getattr(self, name))
        return allowed


def minimised(
    identity: attestation_pb2.IdentityBundle,
    roles: Iterable[common_pb2.Role.ValueType],
    config: MinimisationConfig,
) -> attestation_pb2.IdentityBundle:
    """A copy of `identity` holding only the fields a node with `roles` may receive."""
    allowed = config.fields_for(roles)
    sent = attestation_pb2.IdentityBundle()
    for name in IDENTITY_FIELDS:
        if name in allowed:
            setattr(sent, name, getattr(identity, name))
    return sent
