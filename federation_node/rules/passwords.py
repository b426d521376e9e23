"""Operators' passwords and user names: what is accepted, and how a password is kept.

A password is kept only as a scrypt hash (RFC 7914), a memory-hard function, so a stolen
database costs an attacker memory as well as time for every guess. scrypt comes with Python
(hashlib, over OpenSSL), so no new dependency is needed; argon2id would need one for no gain
that matters at these parameters. The parameters are OWASP's scrypt setting with the memory of
N=2^15 (32 MiB) and p=3, equivalent in cost to its N=2^17, p=1, but with a quarter of the
memory per guess on the node, which serves several sign-ins at once.

The hash string names its parameters: `scrypt$ln=15,r=8,p=3$<salt>$<hash>` (base64 without
padding), so stronger parameters can be adopted later and older hashes still verify
(`needs_rehash` says when to replace one at the next sign-in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass

from federation.errors import InvalidInputError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
MAX_USER_NAME_LENGTH = 64
# The desk's languages; "" leaves the choice to the desk (its default, Simplified Chinese).
LOCALES = ("zh-Hans", "zh-Hant", "en", "pt")
_USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
_SCHEME = "scrypt"


@dataclass(frozen=True)
class ScryptParameters:
    log2_n: int
    r: int
    p: int
    salt_bytes: int = 16
    hash_bytes: int = 32

    @property
    def memory_bytes(self) -> int:
        """What one hash needs: 128 * r * N bytes (RFC 7914 section 2)."""
        return 128 * self.r * (1 << self.log2_n)


CURRENT = ScryptParameters(log2_n=15, r=8, p=3)
# At most this many hashes at once in a process, so a burst of sign-ins needs at most this many
# times the memory of one (64 MiB), and waits for it rather than exhausting the host.
_CONCURRENT_HASHES = threading.BoundedSemaphore(2)
# Hashed with when there is no hash to verify against (an unknown user name, an operator without
# a password: `verify_password(password, "")`), so those answers take as long as a wrong one.
DUMMY_SALT = bytes(CURRENT.salt_bytes)
# A stored hash naming parameters beyond these is refused rather than computed: the hash
# strings are the node's own, and a forged one must not make a sign-in allocate gigabytes.
_MAX_LOG2_N = 20
_MAX_R = 16
_MAX_P = 16


def require_password(password: str, field_name: str = "password") -> str:
    """A password the node accepts: 12 to 256 characters; refused by name otherwise."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(
            field_name, f"must be at least {MIN_PASSWORD_LENGTH} characters long"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInputError(field_name, f"must be at most {MAX_PASSWORD_LENGTH} characters")
    return password


def normalised_user_name(user_name: str) -> str:
    """User names compare without regard to case and surrounding spaces."""
    return user_name.strip().lower()


def require_user_name(user_name: str, field_name: str = "user_name") -> str:
    """A user name: 3 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit."""
    name = normalised_user_name(user_name)
    if not _USER_NAME.match(name):
        raise InvalidInputError(
            field_name,
            "must be 3 to 64 characters: letters a-z, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return name


def require_locale(locale: str, field_name: str = "locale") -> str:
    if locale and locale not in LOCALES:
        raise InvalidInputError(field_name, f"must be one of {', '.join(LOCALES)}, or empty")
    return locale


def hash_password(password: str, parameters: ScryptParameters = CURRENT) -> str:
    """The string to store for `password`, with a fresh salt."""
    salt = secrets.token_bytes(parameters.salt_bytes)
    digest = _scrypt(password, salt, parameters)
    settings = f"ln={parameters.log2_n},r={parameters.r},p={parameters.p}"
    return f"{_SCHEME}${settings}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash (constant-time comparison).

    A malformed stored string never matches; the work done is the same as for a wrong password.
    """
    parsed = _parse(stored)
    if parsed is None:
        _scrypt(password, DUMMY_SALT, CURRENT)
        return False
    parameters, salt, expected = parsed
    return hmac.compare_digest(_scrypt(password, salt, parameters), expected)


def needs_rehash(stored: str) -> bool:
    """Whether the hash was made with other parameters than the current ones."""
    parsed = _parse(stored)
    return parsed is None or parsed[0] != CURRENT


def parameters_of(stored: str) -> ScryptParameters | None:
    parsed = _parse(stored)
    return parsed[0] if parsed else None


def _scrypt(password: str, salt: bytes, parameters: ScryptParameters) -> bytes:
    with _CONCURRENT_HASHES:
        return hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=1 << parameters.log2_n,
            r=parameters.r,
            p=parameters.p,
            maxmem=2 * parameters.memory_bytes,
            dklen=parameters.hash_bytes,
        )


def _parse(stored: str) -> tuple[ScryptParameters, bytes, bytes] | None:
    scheme, _, rest = stored.partition("$")
    settings, _, rest = rest.partition("$")
    encoded_salt, _, encoded_hash = rest.partition("$")
    if scheme != _SCHEME or not encoded_salt or not encoded_hash:
        return None
    try:
        values = dict(item.split("=", 1) for item in settings.split(","))
        log2_n, r, p = int(values["ln"]), int(values["r"]), int(values["p"])
        salt, digest = _unb64(encoded_salt), _unb64(encoded_hash)
    except (KeyError, ValueError, binascii.Error):
        return None
    if not (1 <= log2_n <= _MAX_LOG2_N and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return None
    if len(salt) < 8 or not 16 <= len(digest) <= 64:
        return None
    return ScryptParameters(log2_n, r, p, len(salt), len(digest)), salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode((text + "=" * (-len(text) % 4)).encode("ascii"), validate=True)
