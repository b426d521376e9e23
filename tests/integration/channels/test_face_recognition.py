"""Face recognition end to end: a provider's signed results reach a real paying office (a node
process on PostgreSQL, its desk over TLS) through the adapter's HTTPS callback and through a
pulled batch file, under the feed account bound to the provider.

Passing scores issue a face-recognition attestation and extend validity; scores below the
policy's thresholds list the person for another channel; an unsigned, forged, stale or replayed
result, and one by a helper whose relation the policy does not allow, is refused with a clear
answer and nothing changes. No identity number reaches a log, an answer or a rejects file.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import ssl
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.face_recognition import (
    CallbackServer,
    DeskResultRecorder,
    ProviderConfig,
    SignatureAlgorithm,
    signed_envelope,
    tls_context,
)
from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation
from cli.main import main
from federation.timestamps import to_timestamp
from tests.helpers.nodes import FOSHAN

from .conftest import APP, KIOSK, PROVIDERS, register, resident, self_signed

pytestmark = pytest.mark.postgres

KIOSK_KEY = Ed25519PrivateKey.generate()
APP_SECRET = b"an office secret shared with the app vendor, 40+ bytes"


def valid_until(office: LocalFederation, beneficiary_id: str) -> date:
    with office.desk(FOSHAN.node_id) as desk:
        person = desk.stub.GetBeneficiary(
            desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
        ).beneficiary
    moment: date = person.valid_until.ToDatetime(UTC).date()
    return moment


def result(provider: str, reference: str, serial: int, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "provider": provider,
        "reference": reference,
        "signed_at": now.isoformat(),
        "identity_type": "resident_id",
        "identity_number": resident(serial),
        "observed_at": (now - timedelta(minutes=2)).isoformat(),
        "liveness_score": 98.0,
        "match_score": 93.5,
        "helper_relation": "",
    }
    body.update(changes)
    return body


def kiosk_envelope(body: dict[str, Any]) -> bytes:
    return signed_envelope(body, KIOSK_KEY.sign)


def app_envelope(body: dict[str, Any]) -> bytes:
    return signed_envelope(
        body, lambda payload: hmac.new(APP_SECRET, payload, hashlib.sha256).digest()
    )


def post(url: str, envelope: bytes, client: ssl.SSLContext) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(  # noqa: S310 - the callback's own https URL
        url, data=envelope, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=client) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def face_attestations(office: LocalFederation, beneficiary_id: str) -> list[int]:
    with office.desk(FOSHAN.node_id) as desk:
        attestations = desk.stub.ListAttestations(
            desk_pb2.ListAttestationsRequest(direction=desk_pb2.DIRECTION_OUTBOUND, page_size=500)
        ).attestations
    return [a.method for a in attestations if a.beneficiary_id == beneficiary_id]


def test_the_callback_certifies_lists_and_refuses_as_the_policy_says(
    office: LocalFederation, tmp_path: Path
) -> None:
    certified = register(office, 1)
    helped = register(office, 2)
    below = register(office, 3)
    before = valid_until(office, certified)
    config = ProviderConfig(
        KIOSK, SignatureAlgorithm.ED25519, KIOSK_KEY.public_key().public_bytes_raw()
    )
    cert, key, client = self_signed(tmp_path)
    with (
        office.desk(FOSHAN.node_id, PROVIDERS) as feed,
        CallbackServer(config, DeskResultRecorder(feed), tls=tls_context(cert, key)) as server,
    ):
        assert server.url.startswith("https://")
        status, answer = post(server.url, kiosk_envelope(result(KIOSK, "K-1", 1)), client)
        assert (status, answer["outcome"]) == (200, "certified")
        after = valid_until(office, certified)
        assert after > before + timedelta(days=300)
        assert face_attestations(office, certified) == [
            common_pb2.CERTIFICATION_METHOD_FACE_RECOGNITION
        ]

        # A replay of the same signed result: refused, nothing changes.
        status, answer = post(server.url, kiosk_envelope(result(KIOSK, "K-1", 1)), client)
        assert (status, answer["outcome"]) == (409, "replayed")
        assert valid_until(office, certified) == after
        assert len(face_attestations(office, certified)) == 1

        # Unsigned, forged, for another provider's key, and stale: refused before the node.
        unsigned = json.dumps(
            {"payload": json.loads(kiosk_envelope(result(KIOSK, "K-2", 2)))["payload"]}
        )
        forged = signed_envelope(result(KIOSK, "K-3", 2), Ed25519PrivateKey.generate().sign)
        old = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        stale = kiosk_envelope(result(KIOSK, "K-4", 2, signed_at=old))
        for envelope, expected in (
            (unsigned.encode(), (401, "unsigned")),
            (forged, (401, "forged")),
            (stale, (422, "stale")),
        ):
            status, answer = post(server.url, envelope, client)
            assert (status, answer["outcome"]) == expected
            assert resident(2) not in answer["message"]

        # Certify for another: a child is not allowed by this policy, a spouse is.
        status, answer = post(
            server.url, kiosk_envelope(result(KIOSK, "K-5", 2, helper_relation="child")), client
        )
        assert (status, answer["outcome"]) == (422, "refused")
        assert "child" in answer["message"]
        assert face_attestations(office, helped) == []
        status, answer = post(
            server.url, kiosk_envelope(result(KIOSK, "K-6", 2, helper_relation="spouse")), client
        )
        assert (status, answer["outcome"]) == (200, "certified")
        assert face_attestations(office, helped) == [
            common_pb2.CERTIFICATION_METHOD_RELATIVE_ASSISTED
        ]

        # Below the thresholds: kept, nothing issued, the person listed for another channel.
        below_before = valid_until(office, below)
        status, answer = post(
            server.url, kiosk_envelope(result(KIOSK, "K-7", 3, liveness_score=62.0)), client
        )
        assert (status, answer["outcome"]) == (200, "below_threshold")
        assert valid_until(office, below) == below_before
        assert face_attestations(office, below) == []

    with office.desk(FOSHAN.node_id) as desk:
        follow_ups = desk.stub.ListFaceRecognitionFollowUps(
            desk_pb2.ListFaceRecognitionFollowUpsRequest()
        ).follow_ups
    listed = [item for item in follow_ups if item.beneficiary_id == below]
    assert [(item.provider, item.liveness_score) for item in listed] == [(KIOSK, 62.0)]
    assert certified not in {item.beneficiary_id for item in follow_ups}

    # The person certified by another channel leaves the list.
    with office.desk(FOSHAN.node_id, "feed") as feed:
        admitted = datetime.now(UTC) - timedelta(hours=1)
        feed.stub.RecordSignals(
            desk_pb2.RecordSignalsRequest(
                signals=[
                    desk_pb2.DataSignal(
                        source="hospital-admissions",
                        source_record_id="FR-ADM-3",
                        kind=desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION,
                        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                        identity_number=resident(3),
                        observed_at=to_timestamp(admitted),
                    )
                ]
            )
        )
    with office.desk(FOSHAN.node_id) as desk:
        follow_ups = desk.stub.ListFaceRecognitionFollowUps(
            desk_pb2.ListFaceRecognitionFollowUpsRequest()
        ).follow_ups
    assert below not in {item.beneficiary_id for item in follow_ups}

    log = office.nodes[FOSHAN.node_id].log_path.read_text(encoding="utf-8")
    assert all(resident(serial) not in log for serial in (1, 2, 3))


def test_a_pulled_batch_file_is_verified_line_by_line(
    office: LocalFederation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    certified = register(office, 11)
    register(office, 12)
    secret = tmp_path / "app.secret"
    secret.write_bytes(APP_SECRET)
    provider = tmp_path / "app.toml"
    provider.write_text(
        f'provider = "{APP}"\nalgorithm = "hmac-sha256"\nkey_file = "app.secret"\n',
        encoding="utf-8",
    )
    batch = tmp_path / "results.jsonl"
    lines = [
        app_envelope(result(APP, "A-1", 11)),
        signed_envelope(
            result(APP, "A-2", 12), lambda p: hmac.new(b"x" * 40, p, hashlib.sha256).digest()
        ),
        app_envelope(result(APP, "A-3", 12, match_score=40.0)),
        app_envelope(result(APP, "A-4", 99)),
        app_envelope(result(APP, "A-1", 11)),
    ]
    batch.write_bytes(b"\n".join(lines) + b"\n")
    handle = office.nodes[FOSHAN.node_id]
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", handle.tokens[PROVIDERS])
    code = main(
        ["adapter", "face-recognition", "import", str(batch), "--provider", str(provider),
         "--config", str(handle.config_path)]
    )  # fmt: skip
    assert code == 2
    with batch.with_suffix(".rejects.csv").open(encoding="utf-8", newline="") as rejects:
        rows = list(csv.reader(rejects))
    assert [row[0] for row in rows] == ["line", "2", "5"]
    assert rows[1][1].startswith("forged")
    assert rows[2][1].startswith("replayed")
    assert all(resident(serial) not in ",".join(row) for row in rows for serial in (11, 12))
    assert face_attestations(office, certified) == [
        common_pb2.CERTIFICATION_METHOD_FACE_RECOGNITION
    ]


def test_only_the_providers_feed_account_records_results(office: LocalFederation) -> None:
    register(office, 21)
    request = desk_pb2.RecordFaceRecognitionsRequest(
        results=[
            desk_pb2.FaceRecognitionResult(
                provider=KIOSK,
                provider_reference="K-21",
                identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                identity_number=resident(21),
                observed_at=to_timestamp(datetime.now(UTC) - timedelta(minutes=1)),
                liveness_score=99,
                match_score=99,
            )
        ]
    )
    # A clerk may not: results come only from a provider's feed account.
    with office.desk(FOSHAN.node_id) as desk, pytest.raises(grpc.RpcError) as refused:
        desk.stub.RecordFaceRecognitions(request)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A feed account bound to other sources (the hospitals') may not either.
    with office.desk(FOSHAN.node_id, "feed") as feed, pytest.raises(grpc.RpcError) as refused:
        feed.stub.RecordFaceRecognitions(request)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert KIOSK in (refused.value.details() or "")
