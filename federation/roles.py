"""Node roles: the names used in configuration, SQL, principals and the CLI, and their proto values.

The same word means the same thing everywhere: `paying_office` in a node's configuration, in the
registry's tables and in a caller's principal is `ROLE_PAYING_OFFICE` on the wire.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from certfed.v1 import common_pb2
from federation.errors import InvalidInputError
from federation.regions import is_country_code, validate_country_code

PAYING_OFFICE = "paying_office"
RESIDENCE_AGENCY = "residence_agency"
PARTNER_LIAISON = "partner_liaison"
# A consulate or embassy: certifies the retirees living in the countries it serves.
OVERSEAS_POST = "overseas_post"

ROLE_VALUES: dict[str, common_pb2.Role.ValueType] = {
    PAYING_OFFICE: common_pb2.ROLE_PAYING_OFFICE,
    RESIDENCE_AGENCY: common_pb2.ROLE_RESIDENCE_AGENCY,
    PARTNER_LIAISON: common_pb2.ROLE_PARTNER_LIAISON,
    OVERSEAS_POST: common_pb2.ROLE_OVERSEAS_POST,
}
ROLE_NAMES: dict[common_pb2.Role.ValueType, str] = {v: k for k, v in ROLE_VALUES.items()}

# Roles whose holders pay pensions, and so publish locators and may hold duplicates.
PAYING_ROLE_NAMES = frozenset({PAYING_OFFICE, PARTNER_LIAISON})


def role_values(names: Iterable[str]) -> list[common_pb2.Role.ValueType]:
    return [ROLE_VALUES[name] for name in names]


def check_served_regions(roles: Collection[str], codes: Iterable[str], field_name: str) -> None:
    """Raise InvalidInputError unless the roles fit the (already valid) region codes: an overseas
    post serves countries abroad and nothing else, and only an overseas post serves a country
    abroad. `field_name` names the list of codes in the message."""
    overseas = OVERSEAS_POST in roles
    for index, code in enumerate(codes):
        where = f"{field_name}[{index}]"
        if overseas:
            validate_country_code(code, where)
        elif is_country_code(code):
            raise InvalidInputError(
                where,
                f"{code} is a country abroad: only a node in the {OVERSEAS_POST} role "
                "(a consulate or embassy) serves one",
            )
