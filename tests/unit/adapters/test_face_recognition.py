"""The face-recognition adapter's checks of a provider's signed results, and the policy's
face-recognition settings: what is verified, and every refusal named without the person."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.errors import MappingError
from adapters.face_recognition import (
    ForgedResultError,
    MalformedResultError,
    ProviderConfig,
    ResultRefusedError,
    SignatureAlgorithm,
    StaleResultError,
    UnsignedResultError,
    load_provider_config,
    signed_envelope,
    verify_result,
)
from certfed.v1 import common_pb2
from federation.errors import InvalidInputError
from federation_node.rules.policy import Policy, policy_from_mapping
from tests.helpers.identities import resident_id

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
NUMBER = resident_id("440604", date(1950, 3, 1), 7)
SECRET = b"s" * 40
PROVIDER_KEY = Ed25519PrivateKey.generate()


def body(**changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "provider": "kiosk",
        "reference": "R-1",
        "signed_at": (NOW - timedelta(seconds=30)).isoformat(),
        "identity_type": "resident_id",
        "identity_number": NUMBER,
        "observed_at": (NOW - timedelta(minutes=1)).isoformat(),
        "liveness_score": 97.5,
        "match_score": 91,
        "helper_relation": "",
    }
    result.update(changes)
    return result


def ed25519_config() -> ProviderConfig:
    return ProviderConfig(
        "kiosk", SignatureAlgorithm.ED25519, PROVIDER_KEY.public_key().public_bytes_raw()
    )


def hmac_config() -> ProviderConfig:
    return ProviderConfig("kiosk", SignatureAlgorithm.HMAC_SHA256, SECRET)


def hmac_sign(payload: bytes) -> bytes:
    return hmac.new(SECRET, payload, hashlib.sha256).digest()


def verify(config: ProviderConfig, envelope: bytes) -> Any:
    return verify_result(config, envelope, now=NOW, max_age=timedelta(minutes=10))


@pytest.mark.parametrize(
    ("config", "sign"),
    [(ed25519_config(), PROVIDER_KEY.sign), (hmac_config(), hmac_sign)],
    ids=["ed25519", "hmac-sha256"],
)
def test_a_signed_result_becomes_the_request_the_node_reads(
    config: ProviderConfig, sign: Any
) -> None:
    result = verify(config, signed_envelope(body(), sign))
    assert result.provider == "kiosk"
    assert result.provider_reference == "R-1"
    assert result.identity_type == common_pb2.IDENTITY_TYPE_RESIDENT_ID
    assert result.identity_number == NUMBER
    assert (result.liveness_score, result.match_score) == (97.5, 91.0)
    assert result.observed_at.ToDatetime(UTC) == NOW - timedelta(minutes=1)


def test_a_result_signed_by_another_key_is_refused_as_forged() -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(ForgedResultError, match="Ed25519"):
        verify(ed25519_config(), signed_envelope(body(), other.sign))
    with pytest.raises(ForgedResultError, match="HMAC"):
        verify(hmac_config(), signed_envelope(body(), PROVIDER_KEY.sign))


def test_a_payload_changed_after_signing_is_refused_as_forged() -> None:
    envelope = json.loads(signed_envelope(body(), PROVIDER_KEY.sign))
    envelope["payload"] = base64.b64encode(json.dumps(body(match_score=99)).encode("utf-8")).decode(
        "ascii"
    )
    with pytest.raises(ForgedResultError):
        verify(ed25519_config(), json.dumps(envelope).encode("utf-8"))


def test_a_result_for_another_provider_is_refused_as_forged() -> None:
    with pytest.raises(ForgedResultError, match="provider"):
        verify(hmac_config(), signed_envelope(body(provider="other-app"), hmac_sign))


def test_an_unsigned_result_is_refused() -> None:
    payload = base64.b64encode(json.dumps(body()).encode("utf-8")).decode("ascii")
    for envelope in ({"payload": payload}, {"payload": payload, "signature": ""}):
        with pytest.raises(UnsignedResultError):
            verify(ed25519_config(), json.dumps(envelope).encode("utf-8"))


@pytest.mark.parametrize(
    "signed_at", [NOW - timedelta(minutes=11), NOW + timedelta(minutes=5)], ids=["old", "future"]
)
def test_a_stale_result_is_refused(signed_at: datetime) -> None:
    with pytest.raises(StaleResultError):
        verify(hmac_config(), signed_envelope(body(signed_at=signed_at.isoformat()), hmac_sign))


@pytest.mark.parametrize(
    "changes",
    [
        {"liveness_score": 101},
        {"match_score": "high"},
        {"identity_type": "ssn"},
        {"observed_at": "2026-12-03 08:00"},
        {"reference": ""},
        {"extra": 1},
    ],
)
def test_a_malformed_result_is_refused_without_its_values(changes: dict[str, Any]) -> None:
    with pytest.raises(MalformedResultError) as refused:
        verify(hmac_config(), signed_envelope(body(**changes), hmac_sign))
    assert NUMBER not in str(refused.value)


def test_no_refusal_repeats_the_identity_number() -> None:
    envelopes = [
        signed_envelope(body(), Ed25519PrivateKey.generate().sign),
        signed_envelope(body(provider="x"), hmac_sign),
        signed_envelope(body(signed_at=(NOW - timedelta(days=1)).isoformat()), hmac_sign),
        b"not json " + NUMBER.encode(),
    ]
    for envelope in envelopes:
        with pytest.raises(ResultRefusedError) as refused:
            verify(hmac_config(), envelope)
        assert NUMBER not in str(refused.value)


def test_a_provider_config_reads_a_pem_key_and_refuses_what_it_does_not_know(
    tmp_path: Path,
) -> None:
    (tmp_path / "provider.pem").write_bytes(
        PROVIDER_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "kiosk.toml"
    path.write_text(
        'provider = "kiosk"\nalgorithm = "ed25519"\nkey_file = "provider.pem"\n'
        "callback_max_age_s = 300\n",
        encoding="utf-8",
    )
    config = load_provider_config(path)
    assert config.key == PROVIDER_KEY.public_key().public_bytes_raw()
    assert config.callback_max_age == timedelta(seconds=300)
    verify_result(
        config, signed_envelope(body(), PROVIDER_KEY.sign), now=NOW, max_age=config.callback_max_age
    )

    (tmp_path / "short.key").write_bytes(b"too-short")
    for text, setting in (
        ('provider = "kiosk"\nalgorithm = "rsa"\nkey_file = "provider.pem"\n', "algorithm"),
        ('provider = "kiosk"\nalgorithm = "hmac-sha256"\nkey_file = "short.key"\n', "key_file"),
        ('provider = "kiosk"\nalgorithm = "ed25519"\nkey_file = "provider.pem"\nx = 1\n', "x"),
        ('algorithm = "ed25519"\nkey_file = "provider.pem"\n', "provider"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(MappingError, match=setting):
            load_provider_config(path)


def test_the_policy_reads_face_recognition_thresholds_and_helper_relations() -> None:
    policy = policy_from_mapping(
        {
            "face_recognition": {
                "min_liveness_score": 80,
                "min_match_score": 70,
                "helper_relations": ["spouse", "child"],
            }
        }
    )
    assert (policy.face_min_liveness_score, policy.face_min_match_score) == (80, 70)
    assert policy.face_helper_relations == frozenset({"spouse", "child"})
    # By default nobody may certify for another person.
    assert Policy().face_helper_relations == frozenset()
    for table, key in (
        ({"min_liveness_score": 0}, "min_liveness_score"),
        ({"min_match_score": 101}, "min_match_score"),
        ({"helper_relations": ["neighbour"]}, "helper_relations"),
        ({"min_match_score": 85.5}, "min_match_score"),
    ):
        with pytest.raises(InvalidInputError, match=key):
            policy_from_mapping({"face_recognition": table})
