"""Identity numbers: normalise, validate and mask the numbers that identify a retiree.

Promises: `normalise_identity_number` maps every way a clerk may type a number to one form, so
the same person always gets the same subject locator; `validate_identity_number` accepts a
number only if its format and check character are right and otherwise says, in words a clerk
can act on, what is wrong, without ever repeating the number (errors are logged, numbers are
personal data); `mask_identity_number` is the only form of a number fit for logs and screens.

Kinds and their rules:

- resident ID (mainland): GB 11643-1999, 18 characters: 6-digit region code (GB/T 2260) whose
  first two digits name a province, birth date YYYYMMDD, 3-digit sequence, and a check
  character by ISO 7064 MOD 11-2 ('X' standing for 10).
- HKID: 1 or 2 letters, 6 digits and a check character 0-9 or A. The Immigration Department
  publishes no specification of the check; the weighted MOD 11 scheme used here is the one
  documented publicly (e.g. Wikipedia, "Hong Kong identity card", section "Check digit") and
  reproduces genuine sample numbers such as A123456(3).
- Macau BIR: 8 digits, the first 1, 5 or 7, the last a check digit written in parentheses.
  No check algorithm for it is public, so only the format is checked.
- passport: 5 to 20 letters and digits; issuing states differ too much for more.
"""

from __future__ import annotations

import datetime
import enum
import re
import time
import unicodedata

from signing.errors import InvalidIdentityNumberError


class IdentityKind(enum.StrEnum):
    RESIDENT_ID = "resident_id"
    HKID = "hkid"
    MACAU_BIR = "macau_bir"
    PASSPORT = "passport"


# GB 11643-1999: first two digits of the region code; GB/T 2260 provinces, plus 71 Taiwan,
# 81 Hong Kong, 82 Macau (residence permits), 83 Taiwan residence permits, 91 foreigners'
# permanent residence (2023 format).
PROVINCE_CODES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
)
EARLIEST_BIRTH_YEAR = 1880

RESIDENT_ID_LENGTH = 18
_HKID_PATTERN = re.compile(r"[A-Z]{1,2}[0-9]{6}[0-9A]")
_MACAU_BIR_PATTERN = re.compile(r"[157][0-9]{7}")
_PASSPORT_PATTERN = re.compile(r"[A-Z0-9]{5,20}")
_DIGITS = frozenset("0123456789")
# ISO 7064 MOD 11-2: the weight of position i (1-based) of the first 17 is 2^(18 - i) mod 11.
_RESIDENT_ID_WEIGHTS = tuple(pow(2, 17 - index, 11) for index in range(17))
# The weighted sum read a few digits at a time: for each slice of the first 17 digits, every
# string of digits it can hold and what it adds. Six lookups instead of 17 multiplications (a
# feed validates every row's number, in the importer and again at the node).
_CHECK_SLICES = ((0, 3), (3, 6), (6, 9), (9, 12), (12, 15), (15, 17))


def _slice_sums(weights: tuple[int, ...]) -> dict[str, int]:
    sums = {"": 0}
    for weight in reversed(weights):
        sums = {
            digit + rest: int(digit) * weight + value
            for digit in "0123456789"
            for rest, value in sums.items()
        }
    return sums


_SLICE_SUMS = tuple(
    (start, end, _slice_sums(_RESIDENT_ID_WEIGHTS[start:end])) for start, end in _CHECK_SLICES
)
# UTC+14 (Kiribati's Line Islands): the first place each date begins.
_EARTH_AHEAD_OF_UTC = datetime.timedelta(hours=14)
_ONE_DAY = datetime.timedelta(days=1)

_RESIDENT_ID_CHECK_MISMATCH = (
    "the check character does not match the first 17 characters; re-read the number from the card"
)


def normalise_identity_number(kind: IdentityKind, number: str) -> str:
    """The canonical form of a number: no spaces or hyphens, upper case.

    NFKC first, because Chinese input methods type full-width digits, letters, brackets and
    spaces that look identical on screen. HKID and Macau BIR numbers lose the parentheses
    printed around their check character.
    """
    # ASCII is already in NFKC, and most numbers arrive as ASCII letters and digits.
    text = number if number.isascii() else unicodedata.normalize("NFKC", number)
    if not (text.isascii() and text.isalnum()):
        text = "".join(c for c in text if not c.isspace() and c != "-")
    if kind in (IdentityKind.HKID, IdentityKind.MACAU_BIR):
        text = text.replace("(", "").replace(")", "")
    return text.upper()


def validate_identity_number(
    kind: IdentityKind, number: str, *, today: datetime.date | None = None
) -> str:
    """Return the normalised number, or raise InvalidIdentityNumberError saying what is wrong.

    `today` bounds resident ID birth dates; it defaults to the latest date anywhere on Earth
    (UTC+14), so a date that is already today in China is never called future.
    """
    normalised = normalise_identity_number(kind, number)
    match kind:
        case IdentityKind.RESIDENT_ID:
            _validate_resident_id(normalised, today or _latest_date_on_earth())
        case IdentityKind.HKID:
            _validate_hkid(normalised)
        case IdentityKind.MACAU_BIR:
            _validate_macau_bir(normalised)
        case IdentityKind.PASSPORT:
            _validate_passport(normalised)
    return normalised


def mask_identity_number(kind: IdentityKind, number: str) -> str:
    """Normalised number with all but the first 2 and last 2 characters as '*'.

    Works on invalid numbers too, since those are the ones most often logged. Four characters
    or fewer are masked entirely.
    """
    normalised = normalise_identity_number(kind, number)
    if len(normalised) <= 4:
        return "*" * len(normalised)
    return normalised[:2] + "*" * (len(normalised) - 4) + normalised[-2:]


def resident_id_check_character(first_17: str) -> str:
    """GB 11643-1999 check character of the first 17 digits (ISO 7064 MOD 11-2)."""
    if len(first_17) != RESIDENT_ID_LENGTH - 1 or not (first_17.isascii() and first_17.isdigit()):
        raise ValueError("the check character is computed over exactly 17 digits")
    total = 0
    for start, end, sums in _SLICE_SUMS:
        total += sums[first_17[start:end]]
    check = (12 - total % 11) % 11
    return "X" if check == 10 else str(check)


def hkid_check_character(body: str) -> str:
    """HKID check character of the letters and 6 digits before it."""
    if not re.fullmatch(r"[A-Z]{1,2}[0-9]{6}", body):
        raise ValueError("the HKID check character is computed over 1 or 2 letters and 6 digits")
    # A one-letter prefix is padded with a space, which counts 36; letters count A=10 .. Z=35;
    # weights 9 down to 2 over the 8 positions.
    values = [36] if len(body) == 7 else []
    values += [ord(c) - ord("A") + 10 if c.isalpha() else int(c) for c in body]
    total = sum(value * weight for value, weight in zip(values, range(9, 1, -1), strict=True))
    check = (11 - total % 11) % 11
    return "A" if check == 10 else str(check)


# The latest date on Earth and the Unix time (seconds) at which it ends: it changes once a day,
# and a feed validates thousands of numbers a second.
_latest_date: tuple[datetime.date, float] = (datetime.date.min, 0.0)


def _latest_date_on_earth() -> datetime.date:
    global _latest_date
    day, ends_at = _latest_date
    now = time.time()
    if now < ends_at:
        return day
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC) + _EARTH_AHEAD_OF_UTC
    day = moment.date()
    midnight = datetime.datetime.combine(day, datetime.time(), datetime.UTC)
    _latest_date = (day, now + (midnight + _ONE_DAY - moment).total_seconds())
    return day


def _validate_resident_id(number: str, today: datetime.date) -> None:
    if len(number) != RESIDENT_ID_LENGTH:
        raise InvalidIdentityNumberError(
            f"a resident ID number has {RESIDENT_ID_LENGTH} characters, this one has {len(number)}"
        )
    first_17 = number[:17]
    if not (first_17.isascii() and first_17.isdigit()):
        for position, character in enumerate(first_17, start=1):
            if character == "X":
                raise InvalidIdentityNumberError("only the last character may be X")
            if character not in _DIGITS:
                raise InvalidIdentityNumberError(f"character {position} is not a digit")
    if number[17] not in _DIGITS and number[17] != "X":
        raise InvalidIdentityNumberError("the last character must be a digit or X")
    if int(number[:2]) not in PROVINCE_CODES:
        raise InvalidIdentityNumberError("characters 1-2 are not a valid province code")
    try:
        birth_date = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidIdentityNumberError("characters 7-14 are not a valid birth date") from None
    if birth_date.year < EARLIEST_BIRTH_YEAR:
        raise InvalidIdentityNumberError(f"the birth date is before {EARLIEST_BIRTH_YEAR}")
    if birth_date > today:
        raise InvalidIdentityNumberError("the birth date is in the future")
    if resident_id_check_character(number[:17]) != number[17]:
        raise InvalidIdentityNumberError(_RESIDENT_ID_CHECK_MISMATCH)


def _validate_hkid(number: str) -> None:
    if len(number) not in (8, 9):
        raise InvalidIdentityNumberError(
            "an HKID number has 8 or 9 characters (1 or 2 letters, 6 digits, check character), "
            f"this one has {len(number)}"
        )
    if not _HKID_PATTERN.fullmatch(number):
        raise InvalidIdentityNumberError(
            "an HKID number is 1 or 2 letters, then 6 digits, then a check character 0-9 or A"
        )
    if hkid_check_character(number[:-1]) != number[-1]:
        raise InvalidIdentityNumberError(
            "the check character does not match the rest of the number; "
            "re-read the number from the card"
        )


def _validate_macau_bir(number: str) -> None:
    if len(number) != 8:
        raise InvalidIdentityNumberError(
            f"a Macau BIR number has 8 digits, this one has {len(number)} characters"
        )
    if not set(number) <= _DIGITS:
        raise InvalidIdentityNumberError("a Macau BIR number has digits only")
    if not _MACAU_BIR_PATTERN.fullmatch(number):
        raise InvalidIdentityNumberError("a Macau BIR number starts with 1, 5 or 7")


def _validate_passport(number: str) -> None:
    if not 5 <= len(number) <= 20:
        raise InvalidIdentityNumberError(
            f"a passport number has 5 to 20 characters, this one has {len(number)}"
        )
    if not _PASSPORT_PATTERN.fullmatch(number):
        raise InvalidIdentityNumberError("a passport number has letters A-Z and digits only")
