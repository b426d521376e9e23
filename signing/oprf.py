"""The oblivious PRF of RFC 9497, suite ristretto255-SHA512, OPRF mode (0x00).

What this module promises:

* A client `blind`s an input with a fresh random scalar; the server, holding a key the client
  never sees, answers `blind_evaluate` on the blinded element without learning the input; the
  client `finalize`s with its blind and gets `Evaluate(key, input)`, a 64-byte SHA-512 output,
  which the server alone could also compute (`evaluate`) and the client alone could not.
* Every function is a direct transcription of RFC 9497 section 3.3.1 and 4.1, checked against
  the RFC's Appendix A.1.1 vectors (tests/vectors/rfc9497_ristretto255_sha512_oprf.json).
* The group arithmetic is libsodium's (crypto_core_ristretto255_*, crypto_scalarmult_ristretto255),
  reached through pysodium; this module only hashes and frames bytes. An element that does not
  decode, or decodes to the identity, is refused with `InvalidElementError` (RFC 9497 2.1,
  DeserializeElement), as is an input that hashes to the identity (`Blind`'s InvalidInputError).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import pysodium  # type: ignore[import-untyped]

from signing.errors import InvalidKeyError, SigningError

SUITE = b"ristretto255-SHA512"
MODE_OPRF = 0x00
# RFC 9497 3.1: "OPRFV1-" || I2OSP(mode, 1) || "-" || identifier.
CONTEXT_STRING = b"OPRFV1-" + bytes([MODE_OPRF]) + b"-" + SUITE

ELEMENT_SIZE = 32
SCALAR_SIZE = 32
OUTPUT_SIZE = hashlib.sha512().digest_size
# RFC 9380 5.3.1 for SHA-512: the input block size (r_in_bytes) and the output length (b_in_bytes).
_SHA512_BLOCK = 128
_SHA512_DIGEST = 64
# hash_to_ristretto255 (RFC 9380 appendix B) and HashToScalar both expand to 64 uniform bytes.
_UNIFORM_BYTES = 64
_MAX_INPUT = 0xFFFF
_SCALAR_ONE = (1).to_bytes(SCALAR_SIZE, "little")


class OprfError(SigningError):
    """An OPRF operation was refused."""


class InvalidElementError(OprfError, ValueError):
    """Bytes that are not the encoding of a non-identity ristretto255 element."""


class InvalidInputError(OprfError, ValueError):
    """An input the OPRF cannot blind: too long to frame, or hashing to the identity."""


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def expand_message_xmd(message: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 5.3.1 with SHA-512."""
    ell = -(-length // _SHA512_DIGEST)
    if ell > 255 or length > 0xFFFF or len(dst) > 255:
        raise OprfError("expand_message_xmd: requested length or domain separation tag too long")
    dst_prime = dst + _i2osp(len(dst), 1)
    z_pad = bytes(_SHA512_BLOCK)
    b_0 = hashlib.sha512(z_pad + message + _i2osp(length, 2) + b"\x00" + dst_prime).digest()
    b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    uniform = b_i
    for i in range(2, ell + 1):
        chained = bytes(x ^ y for x, y in zip(b_0, b_i, strict=True))
        b_i = hashlib.sha512(chained + _i2osp(i, 1) + dst_prime).digest()
        uniform += b_i
    return uniform[:length]


def hash_to_group(message: bytes) -> bytes:
    """RFC 9497 4.1: hash_to_ristretto255 with DST "HashToGroup-" || contextString."""
    uniform = expand_message_xmd(message, b"HashToGroup-" + CONTEXT_STRING, _UNIFORM_BYTES)
    element: bytes = pysodium.crypto_core_ristretto255_from_hash(uniform)
    return element


def hash_to_scalar(message: bytes, dst: bytes = b"HashToScalar-" + CONTEXT_STRING) -> bytes:
    """RFC 9497 4.1: 64 uniform bytes, read little-endian and reduced modulo the group order."""
    uniform = expand_message_xmd(message, dst, _UNIFORM_BYTES)
    scalar: bytes = pysodium.crypto_core_ristretto255_scalar_reduce(uniform)
    return scalar


def _multiply(scalar: bytes, element: bytes) -> bytes:
    """scalar * element; refuses an element that does not decode or a product that is the
    identity (libsodium answers -1 for both)."""
    if len(element) != ELEMENT_SIZE:
        raise InvalidElementError(
            f"a ristretto255 element has {ELEMENT_SIZE} bytes, this one has {len(element)}"
        )
    try:
        product: bytes = pysodium.crypto_scalarmult_ristretto255(scalar, element)
    except ValueError:
        raise InvalidElementError(
            "not the encoding of a ristretto255 element other than the identity"
        ) from None
    return product


@dataclass(frozen=True)
class ServerKey:
    """The server's private scalar skS; never printed."""

    scalar: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.scalar) != SCALAR_SIZE or not any(self.scalar):
            raise InvalidKeyError(f"an OPRF key is a non-zero {SCALAR_SIZE}-byte scalar")
        if pysodium.crypto_core_ristretto255_scalar_reduce(self.scalar + bytes(32)) != self.scalar:
            raise InvalidKeyError("an OPRF key is a scalar below the ristretto255 group order")


def derive_key_pair(seed: bytes, info: bytes) -> ServerKey:
    """RFC 9497 3.2.1 DeriveKeyPair (the private half; OPRF mode publishes no public key)."""
    if len(seed) != SCALAR_SIZE:
        raise InvalidKeyError(f"an OPRF seed has {SCALAR_SIZE} bytes, this one has {len(seed)}")
    if len(info) > _MAX_INPUT:
        raise InvalidKeyError("OPRF key info longer than 65535 bytes")
    derive_input = seed + _i2osp(len(info), 2) + info
    dst = b"DeriveKeyPair" + CONTEXT_STRING
    for counter in range(256):
        scalar = hash_to_scalar(derive_input + _i2osp(counter, 1), dst)
        if any(scalar):
            return ServerKey(scalar)
    raise InvalidKeyError("DeriveKeyPair found no non-zero scalar in 256 tries")


def generate_key() -> ServerKey:
    """A fresh server key from 32 random bytes (RFC 9497 3.2: DeriveKeyPair over a random seed)."""
    return derive_key_pair(secrets.token_bytes(SCALAR_SIZE), b"certfed locator key")


def random_blind() -> bytes:
    """A uniformly random non-zero scalar (RFC 9497 3.3.1 Blind: RandomScalar)."""
    while True:
        blind: bytes = pysodium.crypto_core_ristretto255_scalar_random()
        if any(blind):
            return blind


def _check_input(data: bytes) -> None:
    if len(data) > _MAX_INPUT:
        raise InvalidInputError("an OPRF input has at most 65535 bytes")


def blind(data: bytes, blind_scalar: bytes | None = None) -> tuple[bytes, bytes]:
    """RFC 9497 3.3.1 Blind: (blind, blindedElement). `blind_scalar` is for test vectors only."""
    _check_input(data)
    scalar = random_blind() if blind_scalar is None else blind_scalar
    element = hash_to_group(data)
    try:
        blinded = _multiply(scalar, element)
    except InvalidElementError:
        # The only way a valid hash_to_group element times a non-zero scalar is the identity.
        raise InvalidInputError("the input hashes to the identity element") from None
    return scalar, blinded


def blind_evaluate(key: ServerKey, blinded_element: bytes) -> bytes:
    """RFC 9497 3.3.1 BlindEvaluate: skS * blindedElement, for an element sent by a client."""
    return _multiply(key.scalar, blinded_element)


def finalize(data: bytes, blind_scalar: bytes, evaluated_element: bytes) -> bytes:
    """RFC 9497 3.3.1 Finalize: unblind the server's answer and hash it with the input."""
    _check_input(data)
    inverse: bytes = pysodium.crypto_core_ristretto255_scalar_invert(blind_scalar)
    unblinded = _multiply(inverse, evaluated_element)
    return _output(data, unblinded)


def finalize_many(
    inputs: Sequence[bytes], blind_scalars: Sequence[bytes], evaluated_elements: Sequence[bytes]
) -> list[bytes]:
    """`finalize` for a batch, one output per input in order, with the blinds inverted together
    (`invert_many`): the same outputs as finalising one by one, for a fraction of the work."""
    if not len(inputs) == len(blind_scalars) == len(evaluated_elements):
        raise OprfError(
            f"{len(inputs)} inputs, {len(blind_scalars)} blinds and "
            f"{len(evaluated_elements)} evaluated elements do not pair up"
        )
    for data in inputs:
        _check_input(data)
    return [
        _output(data, _multiply(inverse, element))
        for data, inverse, element in zip(
            inputs, invert_many(blind_scalars), evaluated_elements, strict=True
        )
    ]


def invert_many(scalars: Sequence[bytes]) -> list[bytes]:
    """The inverse of every non-zero scalar, with a single inversion and three multiplications
    each (Montgomery's trick: invert the product, then peel the factors off one by one)."""
    prefixes: list[bytes] = []
    product = _SCALAR_ONE
    for scalar in scalars:
        if len(scalar) != SCALAR_SIZE or not any(scalar):
            raise OprfError(f"a blind is a non-zero {SCALAR_SIZE}-byte scalar")
        prefixes.append(product)
        product = pysodium.crypto_core_ristretto255_scalar_mul(product, scalar)
    if not any(product):
        # Only a factor that is zero modulo the group order (an unreduced blind) gets here.
        raise OprfError("a blind is zero modulo the ristretto255 group order")
    inverse: bytes = pysodium.crypto_core_ristretto255_scalar_invert(product)
    inverses = [b""] * len(scalars)
    for index in range(len(scalars) - 1, -1, -1):
        inverses[index] = pysodium.crypto_core_ristretto255_scalar_mul(inverse, prefixes[index])
        inverse = pysodium.crypto_core_ristretto255_scalar_mul(inverse, scalars[index])
    return inverses


def evaluate(key: ServerKey, data: bytes) -> bytes:
    """RFC 9497 3.3.1 Evaluate: the same output, computed by the key holder in one step."""
    _check_input(data)
    element = hash_to_group(data)
    return _output(data, _multiply(key.scalar, element))


def _output(data: bytes, unblinded: bytes) -> bytes:
    hash_input = _i2osp(len(data), 2) + data + _i2osp(len(unblinded), 2) + unblinded + b"Finalize"
    return hashlib.sha512(hash_input).digest()
