"""Checking a node's signed application: proof of possession and every field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certfed.v1 import common_pb2, directory_pb2
from federation.errors import InvalidInputError
from federation.limits import Limits
from federation.timestamps import to_timestamp
from federation.transport import PeerKind, certificate_request, generate_tls_key
from registry.applications import validate_application
from signing import dsse
from signing.keys import HpkeKey, SigningKey

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SIGNING = SigningKey.generate()
HPKE = HpkeKey.generate()
TLS_KEY = generate_tls_key()


def _envelope(
    key: SigningKey = SIGNING, payload_type: str = dsse.ENROLMENT_PAYLOAD_TYPE, **overrides: Any
) -> dsse.Envelope:
    fields: dict[str, Any] = {
        "node_id": "foshan-paying",
        "display_name": "Foshan social insurance",
        "region_codes": ["440600"],
        "roles": [common_pb2.ROLE_PAYING_OFFICE],
        "endpoint": "foshan.example.org:7500",
        "signing_public_key": SIGNING.public_key.raw,
        "hpke_public_key": HPKE.public_raw,
        "tls_csr_pem": certificate_request(PeerKind.NODE, "foshan-paying", TLS_KEY),
        "applied_at": to_timestamp(NOW),
    }
    fields.update(overrides)
    payload = directory_pb2.NodeApplication(**fields).SerializeToString()
    return dsse.sign(payload, payload_type, key)


def test_well_formed_application_signed_by_its_own_key_is_accepted() -> None:
    application = validate_application(_envelope(), Limits(), NOW)
    assert application.node_id == "foshan-paying"
    assert application.roles == ("paying_office",)
    assert application.region_codes == ("440600",)
    assert application.applied_at == NOW


def test_digest_ignores_the_randomised_csr_signature_and_the_application_time() -> None:
    first = validate_application(_envelope(), Limits(), NOW)
    again = validate_application(
        _envelope(applied_at=to_timestamp(NOW - timedelta(hours=1))), Limits(), NOW
    )
    assert first.tls_csr_pem != again.tls_csr_pem
    assert first.digest == again.digest
    other_endpoint = validate_application(_envelope(endpoint="b.example.org:1"), Limits(), NOW)
    assert other_endpoint.digest != first.digest


def test_application_signed_by_another_key_is_refused() -> None:
    with pytest.raises(InvalidInputError) as refused:
        validate_application(_envelope(key=SigningKey.generate()), Limits(), NOW)
    assert refused.value.field == "application.signatures"


def test_envelope_of_another_payload_type_is_refused() -> None:
    with pytest.raises(InvalidInputError) as refused:
        validate_application(_envelope(payload_type=dsse.ATTESTATION_PAYLOAD_TYPE), Limits(), NOW)
    assert refused.value.field == "application.payload_type"


def test_payload_that_does_not_parse_is_refused() -> None:
    envelope = dsse.sign(b"\xff\xff\xff", dsse.ENROLMENT_PAYLOAD_TYPE, SIGNING)
    with pytest.raises(InvalidInputError) as refused:
        validate_application(envelope, Limits(), NOW)
    assert refused.value.field == "application.payload"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"node_id": "ab"}, "application.node_id"),
        ({"node_id": "-leading-dash"}, "application.node_id"),
        ({"node_id": "x" * 64}, "application.node_id"),
        ({"display_name": ""}, "application.display_name"),
        ({"display_name": "tab\there"}, "application.display_name"),
        ({"display_name": "x" * 513}, "application.display_name"),
        ({"region_codes": []}, "application.region_codes"),
        ({"region_codes": ["440600", "440600"]}, "application.region_codes"),
        ({"region_codes": ["440600", "44"]}, "application.region_codes[1]"),
        ({"roles": []}, "application.roles"),
        ({"roles": [common_pb2.ROLE_UNSPECIFIED]}, "application.roles[0]"),
        ({"roles": [1, 1]}, "application.roles[1]"),
        ({"endpoint": "host"}, "application.endpoint"),
        ({"endpoint": "host:0"}, "application.endpoint"),
        ({"endpoint": "bad host:80"}, "application.endpoint"),
        ({"signing_public_key": b"\x01" * 31}, "application.signing_public_key"),
        ({"hpke_public_key": b""}, "application.hpke_public_key"),
        ({"hpke_public_key": b"\x00" * 32}, "application.hpke_public_key"),
        ({"tls_csr_pem": b"junk"}, "tls_csr_pem"),
        (
            {"tls_csr_pem": certificate_request(PeerKind.NODE, "someone-else", TLS_KEY)},
            "tls_csr_pem",
        ),
        ({"applied_at": to_timestamp(NOW + timedelta(hours=1))}, "application.applied_at"),
    ],
)
def test_bad_field_is_refused_naming_it(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        validate_application(_envelope(**overrides), Limits(), NOW)
    assert refused.value.field.endswith(field)


def test_missing_application_time_is_refused() -> None:
    application = directory_pb2.NodeApplication(
        node_id="foshan-paying",
        display_name="Foshan",
        region_codes=["440600"],
        roles=[common_pb2.ROLE_PAYING_OFFICE],
        endpoint="foshan.example.org:7500",
        signing_public_key=SIGNING.public_key.raw,
        hpke_public_key=HPKE.public_raw,
        tls_csr_pem=certificate_request(PeerKind.NODE, "foshan-paying", TLS_KEY),
    )
    envelope = dsse.sign(application.SerializeToString(), dsse.ENROLMENT_PAYLOAD_TYPE, SIGNING)
    with pytest.raises(InvalidInputError) as refused:
        validate_application(envelope, Limits(), NOW)
    assert refused.value.field == "application.applied_at"


def test_bracketed_ipv6_endpoint_is_accepted() -> None:
    application = validate_application(_envelope(endpoint="[::1]:7500"), Limits(), NOW)
    assert application.endpoint == "[::1]:7500"
