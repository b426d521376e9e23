"""Subject locators: the keyed hash that stands for a person in attestations and lookups.

Promises: the locator of an identity number is HMAC-SHA256 under the federation locator key of
the identity kind and the normalised number, so the same person gives the same locator however
a clerk typed the number, different kinds never collide, and nobody without the key can test a
guess. Only numbers that pass validation get a locator.
"""

from __future__ import annotations

import hashlib
import hmac

from signing.identity import IdentityKind, validate_identity_number

LOCATOR_KEY_SIZE = 32
# A locator is an HMAC-SHA256 digest.
LOCATOR_SIZE = hashlib.sha256().digest_size


def subject_locator(locator_key: bytes, kind: IdentityKind, number: str) -> bytes:
    return locate(locator_key, kind, number)[1]


def locate(locator_key: bytes, kind: IdentityKind, number: str) -> tuple[str, bytes]:
    """The normalised number and its locator, validating the number once."""
    if len(locator_key) != LOCATOR_KEY_SIZE:
        raise ValueError(
            f"a locator key has {LOCATOR_KEY_SIZE} bytes, this one has {len(locator_key)}"
        )
    normalised = validate_identity_number(kind, number)
    # The kind and a NUL separator come first so equal digits of different kinds differ.
    message = kind.value.encode("utf-8") + b"\x00" + normalised.encode("ascii")
    return normalised, hmac.new(locator_key, message, hashlib.sha256).digest()
