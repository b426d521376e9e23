"""C2SP signed notes, transparency-log checkpoints and witness cosignatures, byte for byte.

Implements c2sp.org/signed-note (Ed25519 note signatures, type 0x01, and verifier keys),
c2sp.org/tlog-checkpoint (the checkpoint body) and c2sp.org/tlog-cosignature (timestamped
Ed25519 cosignatures, type 0x04). Promises, each a point implementations have got wrong:

- the signatures are the lines after the LAST blank line, and the text keeps its final newline;
- a signature counts only when both its key name and its 4-byte key id match a known key;
  signatures by unknown keys are ignored, a signature by a known key that fails to verify
  refuses the whole note, and a note without a valid signature by the required key is refused;
- a cosignature carries key id || 8-byte big-endian timestamp || signature and signs
  "cosignature/v1\\ntime <t>\\n" followed by the checkpoint text.

Malformed input raises `NoteError` (`CheckpointError` for a bad checkpoint body).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from signing.errors import CheckpointError, InvalidSignatureError, NoteError, SigningError
from signing.keys import SigningKey, VerifyKey

# c2sp.org/signed-note "Signature types".
ED25519_SIGNATURE_TYPE = 0x01
COSIGNATURE_V1_TYPE = 0x04

KEY_ID_SIZE = 4
ED25519_SIGNATURE_SIZE = 64
TIMESTAMP_SIZE = 8
ROOT_HASH_SIZE = 32
MAX_TREE_SIZE = 2**64 - 1
# c2sp.org/tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1.
MAX_TIMESTAMP = 2**63 - 1

# The spec asks verifiers to accept at least 16 signatures and to bound their number; a
# checkpoint with a hundred cosignatures is still a few kilobytes.
MAX_NOTE_SIGNATURES = 100
MAX_NOTE_BYTES = 65_536

_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_COSIGNATURE_HEADER = b"cosignature/v1\n"


def _b64decode(text: str, what: str, error: type[NoteError] = NoteError) -> bytes:
    # Standard alphabet with padding (RFC 4648 section 4), and canonical: the encoding of the
    # decoded bytes must give back the same text, so one value has one spelling.
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise error(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"{what} is not canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_text_characters(text: str, what: str, error: type[NoteError] = NoteError) -> None:
    # c2sp.org/signed-note "Format": no ASCII control characters other than newline.
    for character in text:
        if character < " " and character != "\n":
            raise error(f"{what} contains control character U+{ord(character):04X}")


def _check_key_name(name: str) -> None:
    # c2sp.org/signed-note "Format": non-empty, no Unicode spaces, no plus.
    if not name:
        raise NoteError("key name is empty")
    if "+" in name or any(character.isspace() for character in name):
        raise NoteError("key name must not contain spaces or '+'")
    _check_text_characters(name, "key name")


def note_key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """SHA-256(key name || 0x0A || signature type || public key)[:4] (c2sp.org/signed-note)."""
    material = name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key
    return hashlib.sha256(material).digest()[:KEY_ID_SIZE]


def cosignature_message(checkpoint_text: bytes, timestamp: int) -> bytes:
    """The message an Ed25519 cosignature signs (c2sp.org/tlog-cosignature)."""
    return _COSIGNATURE_HEADER + b"time %d\n" % timestamp + checkpoint_text


def _check_signature_type(signature_type: int) -> None:
    if signature_type not in (ED25519_SIGNATURE_TYPE, COSIGNATURE_V1_TYPE):
        raise NoteError(
            f"signature type 0x{signature_type:02x} is not supported; "
            "only Ed25519 (0x01) and Ed25519 cosignatures (0x04) are"
        )


@dataclass(frozen=True)
class NoteVerifier:
    """A known key: name, Ed25519 public key and signature type, which fix the key id."""

    name: str
    public_key: VerifyKey
    signature_type: int = ED25519_SIGNATURE_TYPE
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        _check_signature_type(self.signature_type)
        object.__setattr__(
            self, "key_id", note_key_id(self.name, self.signature_type, self.public_key.raw)
        )

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse `<name>+<hex key id>+<base64(type || public key)>`, checking the key id."""
        name, plus, rest = vkey.partition("+")
        key_id_hex, plus_again, key_b64 = rest.partition("+")
        if not plus or not plus_again:
            raise NoteError("a verifier key has the form <name>+<key id>+<key>")
        if not _HEX_KEY_ID.fullmatch(key_id_hex):
            raise NoteError("verifier key id must be 8 lowercase hexadecimal digits")
        key_material = _b64decode(key_b64, "verifier key")
        if not key_material:
            raise NoteError("verifier key is empty")
        signature_type, raw_public_key = key_material[0], key_material[1:]
        _check_signature_type(signature_type)
        try:
            public_key = VerifyKey.from_raw(raw_public_key)
        except SigningError as error:
            raise NoteError(f"verifier key: {error}") from None
        verifier = cls(name, public_key, signature_type)
        if verifier.key_id.hex() != key_id_hex:
            raise NoteError("verifier key id does not match its name and key")
        return verifier

    def to_vkey(self) -> str:
        material = bytes([self.signature_type]) + self.public_key.raw
        return f"{self.name}+{self.key_id.hex()}+{_b64encode(material)}"

    def verify(self, text: bytes, signature: bytes) -> None:
        """Check `signature` (the bytes after the key id) over the note text."""
        if self.signature_type == COSIGNATURE_V1_TYPE:
            if len(signature) != TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE:
                raise NoteError(f"cosignature by {self.name} has the wrong length")
            timestamp = int.from_bytes(signature[:TIMESTAMP_SIZE], "big")
            if timestamp > MAX_TIMESTAMP:
                raise NoteError(f"cosignature by {self.name} has a timestamp above 2^63 - 1")
            message = cosignature_message(text, timestamp)
            signature = signature[TIMESTAMP_SIZE:]
        else:
            if len(signature) != ED25519_SIGNATURE_SIZE:
                raise NoteError(f"signature by {self.name} has the wrong length")
            message = text
        try:
            self.public_key.verify(signature, message)
        except InvalidSignatureError:
            raise NoteError(f"signature by key {self.name} does not verify") from None


@dataclass(frozen=True, eq=False)
class NoteSigner:
    """A private key with its note name and signature type."""

    name: str
    signing_key: SigningKey = field(repr=False)
    signature_type: int = ED25519_SIGNATURE_TYPE

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        _check_signature_type(self.signature_type)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.signing_key.public_key, self.signature_type)

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def _line(self, signature: bytes) -> bytes:
        return f"{_SIGNATURE_PREFIX}{self.name} {_b64encode(self.key_id + signature)}\n".encode()


def _check_note_text(text: bytes) -> str:
    if not text.endswith(b"\n"):
        raise NoteError("note text must end with a newline")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("note text is not valid UTF-8") from None
    _check_text_characters(decoded, "note text")
    return decoded


def sign_note(text: bytes, signer: NoteSigner) -> bytes:
    """The note: `text`, a blank line and the signer's Ed25519 signature line."""
    if signer.signature_type != ED25519_SIGNATURE_TYPE:
        raise NoteError("sign_note makes Ed25519 note signatures; cosign makes cosignatures")
    _check_note_text(text)
    return text + b"\n" + signer._line(signer.signing_key.sign(text))


@dataclass(frozen=True)
class NoteSignature:
    """One parsed signature line: key name, key id and the signature bytes after the id."""

    name: str
    key_id: bytes
    signature: bytes


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise NoteError("a signature line must start with an em dash and a space")
    name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    if not space:
        raise NoteError("a signature line has a key name, a space and a signature")
    _check_key_name(name)
    if " " in encoded:
        raise NoteError("a signature line has extra text after the signature")
    raw = _b64decode(encoded, f"signature by {name}")
    if len(raw) <= KEY_ID_SIZE:
        raise NoteError(f"signature by {name} is too short")
    return NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def split_note(note: bytes) -> tuple[bytes, list[NoteSignature]]:
    """Split a note into its text and parsed signature lines, without verifying any."""
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError(f"note is larger than {MAX_NOTE_BYTES} bytes")
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("note is not valid UTF-8") from None
    _check_text_characters(decoded, "note")
    # c2sp.org/signed-note "Format": the text is separated from the signatures by the LAST
    # empty line; the text includes its final newline, not the separating blank line.
    split = note.rfind(b"\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, signature_block = note[: split + 1], note[split + 2 :]
    if not signature_block:
        raise NoteError("note has no signature lines")
    if not signature_block.endswith(b"\n"):
        raise NoteError("note's last signature line must end with a newline")
    lines = signature_block[:-1].decode("utf-8").split("\n")
    if len(lines) > MAX_NOTE_SIGNATURES:
        raise NoteError(f"note has more than {MAX_NOTE_SIGNATURES} signatures")
    return text, [_parse_signature_line(line) for line in lines]


def open_note(
    note: bytes, verifiers: Sequence[NoteVerifier], *, required: NoteVerifier
) -> tuple[bytes, list[str]]:
    """Verify a note; return its text and the names of the keys whose signatures verified.

    `required` counts as known even when absent from `verifiers`; the note is refused unless
    it carries a valid signature by it.
    """
    text, signatures = split_note(note)
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in [*verifiers, required]:
        slot = (verifier.name, verifier.key_id)
        if slot in known and known[slot] != verifier:
            raise NoteError(f"two different known keys share name and key id {verifier.name}")
        known[slot] = verifier
    verified: set[tuple[str, bytes]] = set()
    names: list[str] = []
    for signature in signatures:
        match = known.get((signature.name, signature.key_id))
        if match is None:
            # Unknown key, even if it shares the name or the id (not both) with a known one.
            continue
        match.verify(text, signature.signature)
        verified.add((match.name, match.key_id))
        if match.name not in names:
            names.append(match.name)
    if (required.name, required.key_id) not in verified:
        raise NoteError(f"note has no valid signature by {required.name}")
    return text, names


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head as a note body (c2sp.org/tlog-checkpoint)."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin:
            raise CheckpointError("checkpoint origin is empty")
        for what, line in [
            ("origin", self.origin),
            *(("extension line", e) for e in self.extensions),
        ]:
            if not line:
                raise CheckpointError(f"checkpoint {what} is empty")
            if "\n" in line:
                raise CheckpointError(f"checkpoint {what} contains a newline")
            _check_text_characters(line, f"checkpoint {what}", CheckpointError)
        if not 0 <= self.tree_size <= MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {self.tree_size} is out of range")
        if len(self.root_hash) != ROOT_HASH_SIZE:
            raise CheckpointError(
                f"checkpoint root hash has {len(self.root_hash)} bytes, not {ROOT_HASH_SIZE}"
            )

    def to_text(self) -> bytes:
        lines = [self.origin, str(self.tree_size), _b64encode(self.root_hash), *self.extensions]
        return "".join(f"{line}\n" for line in lines).encode("utf-8")

    @classmethod
    def parse(cls, text: bytes) -> Checkpoint:
        """Parse a checkpoint body strictly: three lines, then non-empty extension lines."""
        if not text.endswith(b"\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError("checkpoint text is not valid UTF-8") from None
        lines = decoded[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                "a checkpoint has an origin line, a tree size line and a root hash line"
            )
        origin, size_line, root_line, *extensions = lines
        if not _DECIMAL.fullmatch(size_line):
            raise CheckpointError("checkpoint tree size is not a decimal without leading zeroes")
        root_hash = _b64decode(root_line, "checkpoint root hash", CheckpointError)
        return cls(origin, int(size_line), root_hash, tuple(extensions))


def open_checkpoint(
    note: bytes, verifiers: Sequence[NoteVerifier], *, required: NoteVerifier
) -> tuple[Checkpoint, list[str]]:
    """`open_note`, then parse the text as a checkpoint."""
    text, names = open_note(note, verifiers, required=required)
    return Checkpoint.parse(text), names


def cosign(checkpoint_text: bytes, witness_signer: NoteSigner, timestamp: int) -> bytes:
    """The witness's cosignature line for the checkpoint text (c2sp.org/tlog-cosignature)."""
    if witness_signer.signature_type != COSIGNATURE_V1_TYPE:
        raise NoteError("a cosignature needs a signer of type 0x04 (cosignature/v1)")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} is out of range")
    Checkpoint.parse(checkpoint_text)
    signature = witness_signer.signing_key.sign(cosignature_message(checkpoint_text, timestamp))
    return witness_signer._line(timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature)


def verify_cosignature(
    checkpoint_text: bytes, signature_line: bytes, verifier: NoteVerifier
) -> int:
    """Check one cosignature line by `verifier` over the checkpoint text; return its timestamp."""
    if verifier.signature_type != COSIGNATURE_V1_TYPE:
        raise NoteError("a cosignature is checked with a verifier of type 0x04 (cosignature/v1)")
    if not signature_line.endswith(b"\n"):
        raise NoteError("a cosignature line must end with a newline")
    try:
        line = signature_line[:-1].decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("cosignature line is not valid UTF-8") from None
    if "\n" in line:
        raise NoteError("a cosignature line is one line")
    signature = _parse_signature_line(line)
    if signature.name != verifier.name or not hmac.compare_digest(
        signature.key_id, verifier.key_id
    ):
        raise NoteError(f"the line is not a cosignature by {verifier.name}")
    verifier.verify(checkpoint_text, signature.signature)
    return int.from_bytes(signature.signature[:TIMESTAMP_SIZE], "big")
