"""An identity number typed at the desk, checked before it leaves the browser's POST: the rules
of signing/identity.py, with what is wrong said in the operator's language."""

from __future__ import annotations

from adapters.web_desk.labels import N_
from adapters.web_desk.page import Page
from signing.errors import InvalidIdentityNumberError
from signing.identity import (
    RESIDENT_ID_LENGTH,
    IdentityKind,
    hkid_check_character,
    normalise_identity_number,
    resident_id_check_character,
    validate_identity_number,
)

# What desk.js shows as the clerk types, keyed by the problem it finds.
LIVE_MESSAGES = {
    "length": N_("A mainland resident ID number has 18 characters."),
    "format": N_("Use 17 digits, then a digit or X."),
    "check": N_(
        "The check character does not match the other 17: re-read the number from the card."
    ),
}


def identity_problem(page: Page, kind: IdentityKind, number: str) -> str | None:
    """What is wrong with `number`, in the operator's language; None when it is valid."""
    if not number:
        return page._("Enter the identity number")
    try:
        validate_identity_number(kind, number)
    except InvalidIdentityNumberError:
        return page._(_problem(kind, normalise_identity_number(kind, number)))
    return None


def _problem(kind: IdentityKind, number: str) -> str:
    if kind is IdentityKind.RESIDENT_ID:
        if len(number) != RESIDENT_ID_LENGTH:
            return LIVE_MESSAGES["length"]
        if not (number[:17].isdigit() and (number[17].isdigit() or number[17] == "X")):
            return LIVE_MESSAGES["format"]
        if number[:17].isascii() and resident_id_check_character(number[:17]) != number[17]:
            return LIVE_MESSAGES["check"]
        return N_("The region code or the birth date in this number is not valid.")
    if kind is IdentityKind.HKID:
        body = number[:-1]
        if body[:1].isalpha() and len(number) in (8, 9) and body[-6:].isdigit():
            try:
                if hkid_check_character(body) != number[-1]:
                    return N_(
                        "The check character does not match the rest of the number: "
                        "re-read the number from the card."
                    )
            except ValueError:
                pass
        return N_(
            "A Hong Kong identity card number is 1 or 2 letters, 6 digits and a check character."
        )
    if kind is IdentityKind.MACAU_BIR:
        return N_("A Macau identity card number has 8 digits and starts with 1, 5 or 7.")
    return N_("A passport number has 5 to 20 letters and digits.")
