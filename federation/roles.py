"""Node roles: the names used in configuration, SQL, principals and the CLI, and their proto values.

The same word means the same thing everywhere: `paying_office` in a node's configuration, in the
registry's tables and in a caller's principal is `ROLE_PAYING_OFFICE` on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable

from certfed.v1 import common_pb2

PAYING_OFFICE = "paying_office"
RESIDENCE_AGENCY = "residence_agency"
PARTNER_LIAISON = "partner_liaison"

ROLE_VALUES: dict[str, common_pb2.Role.ValueType] = {
    PAYING_OFFICE: common_pb2.ROLE_PAYING_OFFICE,
    RESIDENCE_AGENCY: common_pb2.ROLE_RESIDENCE_AGENCY,
    PARTNER_LIAISON: common_pb2.ROLE_PARTNER_LIAISON,
}
ROLE_NAMES: dict[common_pb2.Role.ValueType, str] = {v: k for k, v in ROLE_VALUES.items()}

# Roles whose holders pay pensions, and so publish locators and may hold duplicates.
PAYING_ROLE_NAMES = frozenset({PAYING_OFFICE, PARTNER_LIAISON})


def role_values(names: Iterable[str]) -> list[common_pb2.Role.ValueType]:
    return [ROLE_VALUES[name] for name in names]
