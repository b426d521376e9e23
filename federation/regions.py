"""Region codes (GB/T 2260 administrative divisions, HK and MO, and the ISO 3166-1 alpha-2 codes
of the countries abroad) and how specifically one served code covers a region. Plain functions
over strings, no I/O.

A 6-digit code names a province (`440000`), a prefecture (`440600`) or a county/district
(`620102`). A node serving a province covers every code in it; one serving a prefecture covers
its districts. Routing prefers the most specific cover. A country code (`CA`) names a retiree's
country of residence abroad and covers only itself; the overseas posts serve them.
"""

from __future__ import annotations

from federation.errors import InvalidInputError

SPECIAL_REGIONS = frozenset({"HK", "MO"})
# ISO 3166-1 alpha-2, the 249 officially assigned codes as the ISO 3166 Maintenance Agency
# publishes them (https://www.iso.org/obp/ui/#search, no change since 2020). Vendored: no
# dependency of the project carries the list.
_ISO_3166_ALPHA_2_TEXT = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
ISO_3166_ALPHA_2 = frozenset(_ISO_3166_ALPHA_2_TEXT.split())
# ISO codes of places that are not abroad: the mainland and Taiwan have GB/T 2260 codes (a
# person living there is given the 6-digit code), HK and MO are special regions.
NOT_ABROAD = {
    "CN": "CN is the mainland: use the 6-digit GB/T 2260 code of the region",
    "TW": "TW is Taiwan: use its GB/T 2260 code 710000",
    "HK": "HK is a special region, served by a partner liaison desk, not a post abroad",
    "MO": "MO is a special region, served by a partner liaison desk, not a post abroad",
}
COUNTRY_CODES = ISO_3166_ALPHA_2 - NOT_ABROAD.keys()
PROVINCE_PREFIXES = frozenset(
    {
        "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
        "65", "71", "81", "82", "91",
    }
)  # fmt: skip


def is_country_code(code: str) -> bool:
    """Whether `code` names a country abroad (an ISO 3166-1 code other than CN, TW, HK, MO)."""
    return code in COUNTRY_CODES


def validate_region_code(code: str, field_name: str = "region") -> str:
    """Return the code, or raise InvalidInputError saying what is wrong with it."""
    if code in SPECIAL_REGIONS or code in COUNTRY_CODES:
        return code
    if len(code) == 2 and code.isascii() and code.isalpha():
        return validate_country_code(code, field_name)
    if len(code) != 6 or not code.isdigit():
        raise InvalidInputError(
            field_name,
            f"{code[:12]!r} is not a region code: use the 6-digit GB/T 2260 code "
            "(e.g. 370200 for Qingdao), HK / MO, or the ISO 3166-1 code of a country abroad "
            "(e.g. CA for Canada)",
        )
    if code[:2] not in PROVINCE_PREFIXES:
        raise InvalidInputError(field_name, f"{code} does not start with a province code")
    return code


def validate_country_code(code: str, field_name: str = "region") -> str:
    """Return `code` if it names a country abroad, or raise InvalidInputError saying why not."""
    if code in COUNTRY_CODES:
        return code
    if code.upper() in COUNTRY_CODES:
        raise InvalidInputError(field_name, f"write the country code in capitals: {code.upper()}")
    if code in NOT_ABROAD:
        raise InvalidInputError(field_name, f"{NOT_ABROAD[code]}; it is not a country abroad")
    raise InvalidInputError(
        field_name,
        f"{code[:12]!r} is not an ISO 3166-1 alpha-2 country code (e.g. CA for Canada, "
        "ZW for Zimbabwe)",
    )


def province_of(code: str) -> str:
    return code if not code.isdigit() else code[:2] + "0000"


def coverage(served: str, region: str) -> int:
    """How specifically `served` covers `region`: 3 exact, 2 prefecture, 1 province, 0 none.
    A special region or a country covers only itself."""
    if served == region:
        return 3
    if not served.isdigit() or not region.isdigit():
        return 0
    if served.endswith("0000"):
        return 1 if served[:2] == region[:2] else 0
    if served.endswith("00"):
        return 2 if served[:4] == region[:4] else 0
    return 0
