"""The id under which a node keeps a feed record: keyed, so it cannot be traced back.

A feed's record id may be anything its source chose, and a feed without one gets a content key
(adapters/feeds.py): an unkeyed SHA-256 of the signal's kind, identity number and date, which
anyone can recompute for every candidate number. The node therefore never stores nor signs the
id as sent: it keeps HMAC-SHA256 (RFC 2104) of the source and id under a key derived (HKDF,
RFC 5869) from its own HPKE private key, a secret no other member holds that every replica and
every backup of the node shares, so a feed imported twice still records each signal once.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing.keys import HpkeKey

# Marks a keyed id (67 characters, within the 128 a record id may have).
KEYED_PREFIX = "k1:"
_INFO = b"certfed/v1 feed-record-id"


@lru_cache(maxsize=4)
def feed_record_key(hpke: HpkeKey) -> bytes:
    """The node's key for feed record ids, derived from its HPKE private key."""
    secret = hpke.private_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def keyed_record_id(hpke: HpkeKey, source: str, record_id: str) -> str:
    """The id a feed record of `source` is kept and named under at this node."""
    message = f"{source}\x1f{record_id}".encode()
    digest = hmac.new(feed_record_key(hpke), message, hashlib.sha256).hexdigest()
    return KEYED_PREFIX + digest
