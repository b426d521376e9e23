"""Retirees abroad, on real processes over mutual TLS with PostgreSQL: the registry, the Lanzhou
paying office and the embassy in Canada (an overseas post serving CA). A request for a Lanzhou
retiree living in Canada reaches the embassy, which exports the certification form (审核表),
records the certification with the returned scan as evidence, and Lanzhou applies the
attestation once it is proven in the embassy's witnessed log. An unknown country is refused, and
the embassy takes no request for a country it does not serve."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2, federation_pb2_grpc
from cli.launcher import LocalFederation, NodeSpec, wait_until
from cli.main import main
from federation.timestamps import to_datetime, to_timestamp
from federation.transport import TlsMaterial, node_tls_name, secure_channel
from signing import dsse
from tests.helpers.identities import resident_id
from tests.helpers.nodes import LANZHOU

POST = NodeSpec("ottawa-embassy", "Embassy in Canada", ("CA",), ("overseas_post",))
# What the retiree signs before the consular officer, scanned: a PDF as the post's scanner saves it.
SCAN = b"%PDF-1.4\n% returned certification form, signed and sealed\n%%EOF\n"


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, postgres_url_factory: Callable[[], str]
) -> Iterator[LocalFederation]:
    workdir = tmp_path_factory.mktemp("overseas")
    with LocalFederation(
        workdir, database_url_for=lambda _node_id: postgres_url_factory(), max_backoff_s=0.5
    ) as local:
        local.start_registry()
        for spec in (LANZHOU, POST):
            local.add_node(spec)
        yield local


def register(federation: LocalFederation, serial: int, residence: str) -> str:
    with federation.desk(LANZHOU.node_id) as desk:
        answer = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                    identity_number=resident_id("620102", date(1949, 8, 1), serial),
                    full_name="张卫国",
                ),
                residence_region=residence,
            )
        )
    beneficiary_id: str = answer.beneficiary.beneficiary_id
    return beneficiary_id


def inbox(federation: LocalFederation) -> list[str]:
    with federation.desk(POST.node_id) as desk:
        requests = desk.stub.ListAssistanceRequests(
            desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
        ).requests
    return [r.request_id for r in requests]


@pytest.mark.postgres
def test_a_retiree_in_canada_is_certified_by_the_post_and_applied_at_the_paying_office(
    federation: LocalFederation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    beneficiary_id = register(federation, 1, "CA")
    with federation.desk(LANZHOU.node_id) as desk:
        request = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=60)),
            )
        ).request
    assert request.peer_node_id == POST.node_id
    assert request.residence_region == "CA"
    wait_until(lambda: request.request_id in inbox(federation), 30, "the request at the embassy")

    # The post's clerk prints the form for the retiree.
    form = tmp_path / "form.csv"
    post = federation.nodes[POST.node_id]
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", post.tokens["clerk"])
    command = ["forms", "overseas", request.request_id, "--out", str(form)]
    assert main([*command, "--config", str(post.config_path)]) == 0
    lines = list(csv.reader(io.StringIO(form.read_text(encoding="utf-8-sig"))))
    rows = {line[0]: line[1] for line in lines[2:]}
    assert rows["协查编号 / Request ID"] == request.request_id
    assert rows["居住国家 / Country of residence (ISO 3166-1)"] == "CA"
    assert rows["证件号码 / ID number"] == resident_id("620102", date(1949, 8, 1), 1)

    # The form comes back signed; its scan is the evidence of the certification.
    with federation.desk(POST.node_id) as desk:
        digest = desk.stub.UploadEvidence(
            desk_pb2.UploadEvidenceRequest(media_type="application/pdf", content=SCAN)
        ).evidence.sha256
        certification = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                request_id=request.request_id,
                method=common_pb2.CERTIFICATION_METHOD_CONSULATE,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC) - timedelta(minutes=5)),
                evidence_digests=[digest],
            )
        ).certification
    with federation.desk(POST.node_id, "reviewer") as reviewer:
        attestation_id = reviewer.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=certification.certification_id)
        ).certification.attestation_id

    def applied() -> datetime | None:
        with federation.desk(LANZHOU.node_id) as desk:
            found = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
            ).beneficiary
        return to_datetime(found.valid_until) if found.HasField("valid_until") else None

    valid_until = wait_until(applied, 60, "Lanzhou to apply the embassy's attestation")
    assert valid_until > datetime.now(UTC) + timedelta(days=300)
    with federation.desk(LANZHOU.node_id) as desk:
        sent = desk.stub.GetAssistanceRequest(
            desk_pb2.GetAssistanceRequestRequest(request_id=request.request_id)
        ).request
        exported = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=attestation_id)
        )
    assert sent.status == common_pb2.ASSISTANCE_STATUS_COMPLETED
    attestation = attestation_pb2.CertificationAttestation.FromString(
        dsse.Envelope.from_json(exported.dsse_json).payload
    )
    assert attestation.issuing_node_id == POST.node_id
    assert attestation.certifying_region == "CA"
    assert attestation.method == common_pb2.CERTIFICATION_METHOD_CONSULATE
    assert list(attestation.evidence_digests) == [digest]


@pytest.mark.postgres
def test_an_unknown_country_code_is_refused_and_nothing_is_registered(
    federation: LocalFederation,
) -> None:
    with federation.desk(LANZHOU.node_id) as desk:
        before = desk.stub.ListBeneficiaries(desk_pb2.ListBeneficiariesRequest()).beneficiaries
    with pytest.raises(grpc.RpcError) as refused:
        register(federation, 2, "XQ")
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "XQ" in (refused.value.details() or "")
    assert "ISO 3166-1" in (refused.value.details() or "")
    assert resident_id("620102", date(1949, 8, 1), 2) not in (refused.value.details() or "")
    with federation.desk(LANZHOU.node_id) as desk:
        after = desk.stub.ListBeneficiaries(desk_pb2.ListBeneficiariesRequest()).beneficiaries
    assert len(after) == len(before)


@pytest.mark.postgres
def test_the_post_takes_no_request_for_a_country_it_does_not_serve(
    federation: LocalFederation,
) -> None:
    # No post serves the United States: Lanzhou's desk says so and sends nothing.
    beneficiary_id = register(federation, 3, "US")
    with federation.desk(LANZHOU.node_id) as desk, pytest.raises(grpc.RpcError) as refused:
        desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=60)),
            )
        )
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "US" in (refused.value.details() or "")

    # A request for Zimbabwe sent to the embassy in Canada anyway is refused by the embassy.
    held = inbox(federation)
    caller = federation.nodes[LANZHOU.node_id].config
    tls = TlsMaterial.load(
        caller.data_dir / "keys" / "tls.pem",
        caller.data_dir / "keys" / "tls.key",
        caller.ca_certificate,
    )
    channel = secure_channel(
        f"127.0.0.1:{federation.nodes[POST.node_id].federation_port}",
        node_tls_name(POST.node_id),
        tls.channel_credentials(),
        max_message_bytes=4 << 20,
    )
    with channel, pytest.raises(grpc.RpcError) as refused:
        federation_pb2_grpc.FederationServiceStub(channel).RequestAssistance(
            federation_pb2.RequestAssistanceRequest(
                request_id=str(uuid.uuid4()),
                paying_node_id=LANZHOU.node_id,
                paying_region="620102",
                residence_region="ZW",
            ),
            timeout=10,
        )
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "ZW" in (refused.value.details() or "")
    assert inbox(federation) == held
