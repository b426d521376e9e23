"""C2SP signed notes, checkpoints and cosignatures against the Go and C2SP vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from signing.errors import CheckpointError, NoteError
from signing.keys import SigningKey
from signing.note import (
    COSIGNATURE_V1_TYPE,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    cosign,
    cosignature_message,
    open_checkpoint,
    open_note,
    sign_note,
    split_note,
    verify_cosignature,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "signed_note.json").read_text()
)
TEXT = VECTORS["text"].encode()
PETER_SIG = VECTORS["peter_signature_line"].encode()
ENOCH_SIG = VECTORS["enoch_signature_line"].encode()
PETER = NoteVerifier.from_vkey(VECTORS["peter_vkey"])
ENOCH = NoteVerifier.from_vkey(VECTORS["enoch_vkey"])
ROOT = bytes(range(32))


def peter_signer() -> NoteSigner:
    # Go's private key format: PRIVATE+KEY+<name>+<key id>+base64(0x01 || Ed25519 seed).
    material = base64.b64decode(VECTORS["peter_skey"].split("+", 4)[4])
    assert material[0] == 0x01
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(material[1:]))
    return NoteSigner("PeterNeumann", key)


def log_signer(name: str = "certfed.node/node-a") -> NoteSigner:
    return NoteSigner(name, SigningKey.generate())


def witness_signer() -> NoteSigner:
    return NoteSigner("certfed.registry/fed-1", SigningKey.generate(), COSIGNATURE_V1_TYPE)


def test_vector_file_names_its_sources() -> None:
    assert "sumdb/note/note_test.go" in VECTORS["source"]
    assert "c2sp.org/tlog-cosignature" in VECTORS["source"]


def test_verifier_keys_round_trip_with_go_key_ids() -> None:
    assert PETER.key_id.hex() == "c74f20a3"
    assert ENOCH.key_id.hex() == "af0cfe78"
    assert PETER.to_vkey() == VECTORS["peter_vkey"]
    assert peter_signer().verifier == PETER


def test_native_cosigner_verifier_key_uses_type_0x04_in_its_key_id() -> None:
    cosigner = NoteVerifier.from_vkey(VECTORS["cosigner_vkey"])
    assert cosigner.signature_type == COSIGNATURE_V1_TYPE
    assert cosigner.to_vkey() == VECTORS["cosigner_vkey"]


@pytest.mark.parametrize("vkey", VECTORS["bad_vkeys"])
def test_go_bad_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.from_vkey(vkey)


def test_every_substring_and_byte_change_of_a_verifier_key_is_refused() -> None:
    # Go's TestNewVerifier manglings.
    vkey = VECTORS["peter_vkey"]
    for start in range(len(vkey)):
        for end in range(start + 1, len(vkey) + 1):
            if (start, end) != (0, len(vkey)):
                with pytest.raises(NoteError):
                    NoteVerifier.from_vkey(vkey[start:end])
    for position in range(len(vkey)):
        changed = vkey[:position] + chr(ord(vkey[position]) + 1) + vkey[position + 1 :]
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(changed)


def test_sign_note_reproduces_go_signature_byte_for_byte() -> None:
    assert sign_note(TEXT, peter_signer()) == TEXT + b"\n" + PETER_SIG


def test_open_verifies_known_and_ignores_unknown_signatures() -> None:
    note = TEXT + b"\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, [], required=PETER) == (TEXT, ["PeterNeumann"])
    assert open_note(note, [PETER], required=ENOCH) == (TEXT, ["PeterNeumann", "EnochRoot"])


def test_note_without_the_required_signature_is_refused() -> None:
    with pytest.raises(NoteError, match="no valid signature by EnochRoot"):
        open_note(TEXT + b"\n" + PETER_SIG, [PETER], required=ENOCH)


def test_signature_with_the_right_name_but_another_key_id_is_ignored() -> None:
    impostor = NoteSigner("PeterNeumann", SigningKey.generate())
    note = sign_note(TEXT, impostor)
    with pytest.raises(NoteError, match="no valid signature by PeterNeumann"):
        open_note(note, [], required=PETER)


def test_signature_with_the_right_key_id_but_another_name_is_ignored() -> None:
    renamed = PETER_SIG.replace(b"PeterNeumann", b"CarmenSandiego")
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(TEXT + b"\n" + renamed, [], required=PETER)


def test_bad_signature_by_a_known_key_refuses_the_note() -> None:
    lengthened = PETER_SIG[:60] + b"ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match="wrong length"):
        open_note(TEXT + b"\n" + lengthened, [], required=PETER)
    swapped = PETER_SIG[:60] + (b"B" if PETER_SIG[60:61] == b"A" else b"A") + PETER_SIG[61:]
    with pytest.raises(NoteError, match="does not verify"):
        open_note(TEXT + b"\n" + swapped, [], required=PETER)
    other_text = TEXT.replace(b"problem", b"puzzle")
    with pytest.raises(NoteError, match="does not verify"):
        open_note(other_text + b"\n" + PETER_SIG, [], required=PETER)


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + b"\n",
        TEXT + b"\n" + PETER_SIG[:-1],
        b"\x01" + TEXT + b"\n" + PETER_SIG,
        b"\xff" + TEXT + b"\n" + PETER_SIG,
        TEXT + b"\n" + PETER_SIG.replace(b"PeterNeumann", b"Bad Name"),
        TEXT + b"\n" + PETER_SIG + b"Unexpected line.\n",
        TEXT + b"\n" + PETER_SIG[:-1] + b" extra\n",
        TEXT + b"\n" + PETER_SIG.replace(b"AM=", b"A!="),
        TEXT + b"\n" + PETER_SIG * 101,
    ],
    ids=[
        "no-signatures",
        "blank-line-only",
        "no-final-newline",
        "control-character",
        "not-utf8",
        "space-in-key-name",
        "unexpected-line",
        "extra-text-on-line",
        "bad-base64",
        "too-many-signatures",
    ],
)
def test_malformed_notes_are_refused(note: bytes) -> None:
    # Go's TestOpen "Invalid encoded message syntax" cases, and ours.
    with pytest.raises(NoteError):
        open_note(note, [], required=PETER)


def test_signatures_follow_the_last_blank_line() -> None:
    text = b"first paragraph\n\nsecond paragraph\n"
    signer = log_signer()
    note = sign_note(text, signer)
    assert open_note(note, [], required=signer.verifier) == (text, [signer.name])
    assert split_note(note)[0] == text


def test_sign_note_refuses_text_without_final_newline() -> None:
    with pytest.raises(NoteError, match="end with a newline"):
        sign_note(b"abc", peter_signer())


def test_two_different_known_keys_with_the_same_name_and_id_are_ambiguous() -> None:
    twin = NoteVerifier.__new__(NoteVerifier)
    object.__setattr__(twin, "name", PETER.name)
    object.__setattr__(twin, "public_key", ENOCH.public_key)
    object.__setattr__(twin, "signature_type", PETER.signature_type)
    object.__setattr__(twin, "key_id", PETER.key_id)
    with pytest.raises(NoteError, match="share name and key id"):
        open_note(TEXT + b"\n" + PETER_SIG, [twin], required=PETER)


def test_checkpoint_text_is_byte_exact() -> None:
    checkpoint = Checkpoint(
        "example.com/behind-the-sofa",
        20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
    )
    assert checkpoint.to_text() == VECTORS["spec_checkpoint_text"].encode()
    assert Checkpoint.parse(checkpoint.to_text()) == checkpoint


@given(
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1), max_size=3
    ),
)
def test_checkpoint_round_trips(size: int, root: bytes, extensions: list[str]) -> None:
    checkpoint = Checkpoint("certfed.node/node-a", size, root, tuple(extensions))
    assert Checkpoint.parse(checkpoint.to_text()) == checkpoint


@pytest.mark.parametrize(
    "text",
    [
        b"origin\n5\n",
        b"origin\n5\n" + base64.b64encode(ROOT) + b"\n\n",
        b"origin\n5\n" + base64.b64encode(ROOT),
        b"origin\n05\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n+5\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n18446744073709551616\n" + base64.b64encode(ROOT) + b"\n",
        b"origin\n5\n" + base64.b64encode(ROOT[:31]) + b"\n",
        b"origin\n5\n" + base64.b64encode(ROOT).rstrip(b"=") + b"\n",
        b"\n5\n" + base64.b64encode(ROOT) + b"\n",
    ],
    ids=[
        "two-lines",
        "empty-extension-line",
        "no-final-newline",
        "leading-zero",
        "plus-sign",
        "size-above-uint64",
        "short-hash",
        "unpadded-base64",
        "empty-origin",
    ],
)
def test_malformed_checkpoints_are_refused(text: bytes) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


def test_open_checkpoint_parses_the_verified_text() -> None:
    signer = log_signer()
    checkpoint = Checkpoint(signer.name, 3, ROOT)
    note = sign_note(checkpoint.to_text(), signer)
    assert open_checkpoint(note, [], required=signer.verifier) == (checkpoint, [signer.name])


def test_spec_cosignature_line_frames_key_id_and_timestamp() -> None:
    _, signatures = split_note(
        VECTORS["spec_checkpoint_text"].encode() + b"\n" + VECTORS["spec_cosignature_line"].encode()
    )
    (signature,) = signatures
    assert signature.name == "witness.example.com/w1"
    assert signature.key_id.hex() == VECTORS["spec_cosignature_key_id"]
    assert len(signature.signature) == 8 + 64
    assert int.from_bytes(signature.signature[:8], "big") == VECTORS["spec_cosignature_timestamp"]
    message = cosignature_message(VECTORS["spec_checkpoint_text"].encode(), 1679315147)
    assert message == VECTORS["spec_cosignature_message"].encode()


def test_cosignature_round_trip() -> None:
    log, witness = log_signer(), witness_signer()
    text = Checkpoint(log.name, 10, ROOT).to_text()
    note = sign_note(text, log)
    line = cosign(text, witness, 1_700_000_000)
    assert verify_cosignature(text, line, witness.verifier) == 1_700_000_000
    # The witness's line appended to the note verifies as a note signature too.
    cosigned = note + line
    assert open_note(cosigned, [log.verifier], required=witness.verifier) == (
        text,
        [log.name, witness.name],
    )


def test_cosignature_with_changed_time_or_text_is_refused() -> None:
    witness = witness_signer()
    text = Checkpoint("certfed.node/node-a", 10, ROOT).to_text()
    line = cosign(text, witness, 1_700_000_000)
    prefix, encoded = line[:-1].rsplit(b" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[4:12] = (1_700_000_001).to_bytes(8, "big")
    changed_time = prefix + b" " + base64.b64encode(bytes(raw)) + b"\n"
    with pytest.raises(NoteError, match="does not verify"):
        verify_cosignature(text, changed_time, witness.verifier)
    other_text = Checkpoint("certfed.node/node-a", 11, ROOT).to_text()
    with pytest.raises(NoteError, match="does not verify"):
        verify_cosignature(other_text, line, witness.verifier)


def test_cosignature_key_id_differs_from_note_key_id_of_the_same_key() -> None:
    key = SigningKey.generate()
    as_log = NoteSigner("certfed.registry/fed-1", key)
    as_witness = NoteSigner("certfed.registry/fed-1", key, COSIGNATURE_V1_TYPE)
    assert as_log.key_id != as_witness.key_id
    text = Checkpoint("certfed.node/node-a", 1, ROOT).to_text()
    # A cosignature is not a note signature by the 0x01 key: it is ignored, so refused here.
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(text + b"\n" + cosign(text, as_witness, 5), [], required=as_log.verifier)


def test_cosignature_by_another_witness_is_refused() -> None:
    text = Checkpoint("certfed.node/node-a", 1, ROOT).to_text()
    line = cosign(text, witness_signer(), 5)
    with pytest.raises(NoteError, match="not a cosignature by"):
        verify_cosignature(text, line, witness_signer().verifier)


def test_cosign_refuses_a_note_signer_and_a_non_checkpoint() -> None:
    with pytest.raises(NoteError, match="type 0x04"):
        cosign(Checkpoint("o", 1, ROOT).to_text(), log_signer(), 5)
    with pytest.raises(CheckpointError):
        cosign(b"not a checkpoint\n", witness_signer(), 5)
    with pytest.raises(NoteError, match="out of range"):
        cosign(Checkpoint("o", 1, ROOT).to_text(), witness_signer(), 2**63)


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\there"])
def test_bad_key_names_are_refused(name: str) -> None:
    with pytest.raises(NoteError, match="key name"):
        NoteSigner(name, SigningKey.generate())
