"""Region codes (GB/T 2260 administrative divisions, plus HK and MO) and how specifically one
served code covers a region. Plain functions over strings, no I/O.

A 6-digit code names a province (`440000`), a prefecture (`440600`) or a county/district
(`620102`). A node serving a province covers every code in it; one serving a prefecture covers
its districts. Routing prefers the most specific cover.
"""

from __future__ import annotations

from federation.errors import InvalidInputError

SPECIAL_REGIONS = frozenset({"HK", "MO"})
PROVINCE_PREFIXES = frozenset(
    {
        "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
        "65", "71", "81", "82", "91",
    }
)  # fmt: skip


def validate_region_code(code: str, field_name: str = "region") -> str:
    """Return the code, or raise InvalidInputError saying what is wrong with it."""
    if code in SPECIAL_REGIONS:
        return code
    if len(code) != 6 or not code.isdigit():
        raise InvalidInputError(
            field_name,
            f"{code[:12]!r} is not a region code: use the 6-digit GB/T 2260 code "
            "(e.g. 370200 for Qingdao) or HK / MO",
        )
    if code[:2] not in PROVINCE_PREFIXES:
        raise InvalidInputError(field_name, f"{code} does not start with a province code")
    return code


def province_of(code: str) -> str:
    return code if code in SPECIAL_REGIONS else code[:2] + "0000"


def coverage(served: str, region: str) -> int:
    """How specifically `served` covers `region`: 3 exact, 2 prefecture, 1 province, 0 none."""
    if served == region:
        return 3
    if served in SPECIAL_REGIONS or region in SPECIAL_REGIONS:
        return 0
    if served.endswith("0000"):
        return 1 if served[:2] == region[:2] else 0
    if served.endswith("00"):
        return 2 if served[:4] == region[:4] else 0
    return 0
