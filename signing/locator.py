"""Subject locators: the pseudonym that stands for a person in attestations and lookups.

Promises: the locator of an identity number is the first 32 bytes of the RFC 9497 OPRF output
(signing.oprf, ristretto255-SHA512) under the registry's locator key, over the identity kind and
the normalised number. The same person gives the same locator however a clerk typed the number,
different kinds never collide, and only the registry holds the key: a member computes a locator
by blinding the input (`locator_input`, `oprf.blind`), having the registry evaluate it, and
finalising (`locator_from_output`), so it can test a guess only through the registry, which
counts and limits every evaluation. Only numbers that pass validation get a locator.
"""

from __future__ import annotations

import hashlib

from signing import oprf
from signing.identity import IdentityKind, validate_identity_number

# A locator is 32 bytes: the OPRF's SHA-512 output cut to SHA-256's length, as stored and sent.
LOCATOR_SIZE = hashlib.sha256().digest_size


def locator_input(kind: IdentityKind, number: str) -> tuple[str, bytes]:
    """The normalised number and the OPRF input that names it, validating the number once."""
    normalised = validate_identity_number(kind, number)
    return normalised, normalised_input(kind, normalised)


def normalised_input(kind: IdentityKind, normalised: str) -> bytes:
    """The OPRF input naming a number `locator_input` has already validated and normalised."""
    # The kind and a NUL separator come first so equal digits of different kinds differ.
    return kind.value.encode("utf-8") + b"\x00" + normalised.encode("ascii")


def locator_from_output(output: bytes) -> bytes:
    """The locator for one OPRF output."""
    if len(output) != oprf.OUTPUT_SIZE:
        raise ValueError(f"an OPRF output has {oprf.OUTPUT_SIZE} bytes, this one has {len(output)}")
    return output[:LOCATOR_SIZE]


def locator_with_key(key: oprf.ServerKey, kind: IdentityKind, number: str) -> bytes:
    """The locator as the key holder (the registry) computes it, without blinding."""
    _, data = locator_input(kind, number)
    return locator_from_output(oprf.evaluate(key, data))
