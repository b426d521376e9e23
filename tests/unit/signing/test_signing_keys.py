"""Keys: key ids, public key checks, signing, PEM and 0600 private key files."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signing.errors import InvalidKeyError, InvalidSignatureError, KeyFileError, SigningError
from signing.keys import HpkeKey, SigningKey, VerifyKey, key_id, write_private_file

# RFC 8032 7.1 TEST 1 public key.
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
# RFC 8032 7.1 TEST 1: the secret key (seed) and the signature of the empty message.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
# Small-order encodings: identity, order 2 (y = p - 1), order 4 (y = 0) and order 8.
SMALL_ORDER_KEYS = [
    bytes.fromhex("01" + "00" * 31),
    bytes.fromhex("ec" + "ff" * 30 + "7f"),
    bytes(32),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
]


def test_key_id_is_lowercase_hex_sha256_of_the_raw_public_key() -> None:
    assert key_id(RFC8032_PUBLIC) == hashlib.sha256(RFC8032_PUBLIC).hexdigest()
    assert VerifyKey.from_raw(RFC8032_PUBLIC).key_id == key_id(RFC8032_PUBLIC)


def test_key_id_refuses_a_key_of_the_wrong_length() -> None:
    with pytest.raises(InvalidKeyError):
        key_id(b"\x01" * 31)


def test_signing_key_id_matches_its_public_key() -> None:
    key = SigningKey.generate()
    assert key.key_id == key_id(key.public_key.raw)
    assert len(key.public_key.raw) == 32


def test_signature_verifies_and_a_changed_message_does_not() -> None:
    key = SigningKey.generate()
    signature = key.sign(b"message")
    key.public_key.verify(signature, b"message")
    with pytest.raises(InvalidSignatureError):
        key.public_key.verify(signature, b"messagE")


def test_signature_is_rfc8032s() -> None:
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET))
    assert key.public_key.raw == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIGNATURE


@pytest.mark.parametrize("size", [0, 1, 64, 600, 70_000])
def test_signature_is_the_one_openssl_makes(size: int) -> None:
    # Ed25519 is deterministic: libsodium's signature is OpenSSL's, byte for byte.
    key = SigningKey.generate()
    message = os.urandom(size)
    assert key.sign(message) == key.private_key.sign(message)


@pytest.mark.parametrize("raw", [b"", b"\x01" * 31, b"\x01" * 33])
def test_verify_key_refuses_wrong_length(raw: bytes) -> None:
    with pytest.raises(SigningError):
        VerifyKey.from_raw(raw)


@pytest.mark.parametrize("raw", SMALL_ORDER_KEYS, ids=lambda raw: raw[:2].hex())
def test_verify_key_refuses_small_order_points(raw: bytes) -> None:
    with pytest.raises(InvalidKeyError, match="small-order"):
        VerifyKey.from_raw(raw)


def test_verify_key_refuses_bytes_that_are_not_a_curve_point() -> None:
    # y = 2 has no x on edwards25519 (u/v is not a square mod p).
    with pytest.raises(InvalidKeyError, match="not a point"):
        VerifyKey.from_raw(bytes([2]) + bytes(31))


def test_verify_key_refuses_non_canonical_encoding() -> None:
    # y = p, which must be written as 0.
    with pytest.raises(InvalidKeyError, match="canonical"):
        VerifyKey.from_raw(bytes.fromhex("ed" + "ff" * 30 + "7f"))


def test_verify_key_accepts_generated_and_rfc8032_keys() -> None:
    for _ in range(20):
        VerifyKey.from_raw(SigningKey.generate().public_key.raw)
    assert VerifyKey.from_raw(RFC8032_PUBLIC).raw == RFC8032_PUBLIC


def test_signing_key_pem_round_trip_keeps_the_key() -> None:
    key = SigningKey.generate()
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert SigningKey.from_pem(pem).public_key == key.public_key


def test_signing_key_repr_does_not_show_the_private_key() -> None:
    assert "private_key" not in repr(SigningKey.generate())


def test_saved_key_file_has_mode_0600_and_loads(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "node.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).public_key == key.public_key
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]


def test_save_replaces_an_existing_world_readable_file_with_a_0600_one(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    SigningKey.generate().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        write_private_file(tmp_path / "secret", b"data")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_load_refuses_a_key_file_open_to_group_or_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    SigningKey.generate().save(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        SigningKey.load(path)


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        SigningKey.load(tmp_path / "absent.key")


def test_load_refuses_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError):
        SigningKey.load(directory)


def test_load_refuses_a_pem_that_is_not_ed25519(tmp_path: Path) -> None:
    ec_pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "ec.key"
    write_private_file(path, ec_pem)
    with pytest.raises(KeyFileError, match="not an Ed25519"):
        SigningKey.load(path)


def test_signing_key_load_refuses_an_hpke_key_and_vice_versa(tmp_path: Path) -> None:
    HpkeKey.generate().save(tmp_path / "hpke.key")
    SigningKey.generate().save(tmp_path / "signing.key")
    with pytest.raises(KeyFileError):
        SigningKey.load(tmp_path / "hpke.key")
    with pytest.raises(KeyFileError):
        HpkeKey.load(tmp_path / "signing.key")


def test_from_pem_refuses_garbage() -> None:
    with pytest.raises(KeyFileError):
        SigningKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_hpke_key_save_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    key = HpkeKey.generate()
    path = tmp_path / "hpke.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert HpkeKey.load(path).public_raw == key.public_raw
    assert len(key.public_raw) == 32
    assert HpkeKey.from_pem(key.to_pem()).public_raw == key.public_raw


def test_hpke_key_load_refuses_a_world_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "hpke.key"
    HpkeKey.generate().save(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError):
        HpkeKey.load(path)


def test_load_refuses_a_fifo_instead_of_hanging(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    os.mkfifo(path, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        SigningKey.load(path)


def test_load_follows_a_symlink_to_a_0600_file(tmp_path: Path) -> None:
    key = SigningKey.generate()
    key.save(tmp_path / "real.key")
    (tmp_path / "link.key").symlink_to(tmp_path / "real.key")
    assert SigningKey.load(tmp_path / "link.key").public_key == key.public_key
