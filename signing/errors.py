"""The one exception family raised by `signing`.

Every failure the library can report is a `SigningError`, so a caller (a gRPC interceptor, the
CLI) can map the whole family in one place and the narrower classes where the outcome differs.
Messages never contain key material or an identity number: they are safe to log and to show.
"""

from __future__ import annotations


class SigningError(Exception):
    """Base of every error raised by the signing package."""


class InvalidKeyError(SigningError, ValueError):
    """Bytes that are not a usable public key (wrong length, not a curve point, small order)."""


class InvalidSignatureError(SigningError):
    """A signature by a key we know does not verify."""


class UnknownKeyError(SigningError):
    """No signature on the envelope was made by a key we know."""


class MalformedEnvelopeError(SigningError):
    """An envelope that is not well-formed DSSE JSON (syntax, fields, types, base64, size)."""


class PayloadTypeMismatchError(SigningError):
    """The envelope carries a different payload type from the one the caller expects."""


class UnsealError(SigningError):
    """HPKE open failed: wrong key, wrong info, truncated or tampered ciphertext."""


class KeyFileError(SigningError):
    """A key file that is unreadable, of the wrong key type, or open to group or others."""


class InvalidIdentityNumberError(SigningError, ValueError):
    """An identity number that fails its format or check-character rules.

    `reason` tells a clerk what to fix; like the message, it never repeats the number itself,
    because these errors end up in logs and the number is personal data.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LogError(SigningError):
    """A transparency-log operation refused: a bad size, index, hash or compact state."""


class InclusionProofError(LogError):
    """An inclusion proof that does not prove the leaf is in the tree (RFC 9162 2.1.3.2)."""


class ConsistencyProofError(LogError):
    """A consistency proof that does not prove one tree extends another (RFC 9162 2.1.4.2)."""


class NoteError(SigningError):
    """A signed note that is malformed, or carries no valid signature by the required key."""


class CheckpointError(NoteError):
    """Note text that is not a well-formed checkpoint (c2sp.org/tlog-checkpoint)."""
