"""What a node keys with a secret of its own: the ids it keeps feed records under, and the
index of its roll that feed rows are matched through.

A feed's record id may be anything its source chose, and a feed without one gets a content key
(adapters/feeds.py): an unkeyed SHA-256 of the signal's kind, identity number and date, which
anyone can recompute for every candidate number. The node therefore never stores nor signs the
id as sent: it keeps HMAC-SHA256 (RFC 2104) of the source and id under a key derived (HKDF,
RFC 5869) from its own HPKE private key, a secret no other member holds that every replica and
every backup of the node shares, so a feed imported twice still records each signal once.

A feed row names a person by identity number, and most rows of a city's feed are about people
the office does not pay. Matching them through federation locators would cost a registry OPRF
evaluation per row, against the node's daily quota; instead each beneficiary carries a roll key,
HMAC-SHA256 of the locator's input (the identity kind and normalised number) under another key
derived the same way, and a row is matched by computing that in microseconds. Like the record
ids, roll keys mean nothing outside this node and never leave it."""

from __future__ import annotations

import hmac
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing.identity import IdentityKind
from signing.keys import HpkeKey
from signing.locator import locator_input

# Marks a keyed id (67 characters, within the 128 a record id may have).
KEYED_PREFIX = "k1:"
_RECORD_ID_INFO = b"certfed/v1 feed-record-id"
_ROLL_KEY_INFO = b"certfed/v1 roll-key"


@lru_cache(maxsize=8)
def _derived_key(hpke: HpkeKey, info: bytes) -> bytes:
    """A key of the node's for one purpose (`info`), derived from its HPKE private key."""
    secret = hpke.private_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def keyed_record_id(hpke: HpkeKey, source: str, record_id: str) -> str:
    """The id a feed record of `source` is kept and named under at this node."""
    message = f"{source}\x1f{record_id}".encode()
    # hmac.digest: OpenSSL's one-shot HMAC, a third of the cost of an hmac.HMAC object.
    return KEYED_PREFIX + hmac.digest(_derived_key(hpke, _RECORD_ID_INFO), message, "sha256").hex()


def roll_key(hpke: HpkeKey, kind: IdentityKind, number: str) -> bytes:
    """The key of a person in this node's roll index: HMAC-SHA256 of the locator's input (the
    identity kind and normalised number). Raises InvalidIdentityNumberError for a number that
    does not validate."""
    _, data = locator_input(kind, number)
    return roll_key_of(hpke, data)


def roll_key_of(hpke: HpkeKey, locator_input: bytes) -> bytes:
    """`roll_key` of a locator's input (signing.locator.locator_input) already made."""
    return hmac.digest(_derived_key(hpke, _ROLL_KEY_INFO), locator_input, "sha256")
