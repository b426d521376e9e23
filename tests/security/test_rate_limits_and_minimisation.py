"""Per-caller rate limits and cross-border minimisation, on real node processes.

Qingdao runs with small limits so a flood is quick to cause; Lanzhou (paying) sends requests to
Qingdao (residence agency) and to the Macau desk (partner liaison), whose clerks then open them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import attestation_pb2, desk_pb2, federation_pb2
from cli.launcher import LocalFederation, wait_until
from federation.timestamps import to_timestamp
from federation.transport import TlsMaterial, node_tls_name, secure_channel
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import FOSHAN as FLOODER
from tests.helpers.nodes import LANZHOU as PAYING
from tests.helpers.nodes import MACAU as PARTNER
from tests.helpers.nodes import QINGDAO_AGENCY as RESIDENCE

LIMITS = {"peer_calls_per_s": 5, "peer_burst": 10, "operator_calls_per_s": 5, "operator_burst": 20}
MINIMISATION = {"partner_liaison": ["identity_type", "identity_number", "full_name"]}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    workdir: Path = tmp_path_factory.mktemp("limits")
    with LocalFederation(workdir) as federation:
        federation.start_registry()
        federation.add_node(FLOODER, start=False)
        federation.add_node(RESIDENCE, settings={"limits": LIMITS})
        federation.add_node(PARTNER)
        federation.add_node(PAYING, settings={"minimisation": MINIMISATION})
        yield federation


def _peer_stub(local: LocalFederation, caller: str, target: str) -> grpc.Channel:
    config = local.nodes[caller].config
    tls = TlsMaterial.load(
        config.data_dir / "keys" / "tls.pem",
        config.data_dir / "keys" / "tls.key",
        config.ca_certificate,
    )
    return secure_channel(
        f"127.0.0.1:{local.nodes[target].federation_port}",
        node_tls_name(target),
        tls.channel_credentials(),
        max_message_bytes=4 << 20,
    )


def _request_assistance(channel: grpc.Channel) -> grpc.RpcError:
    call = channel.unary_unary(
        "/certfed.v1.FederationService/RequestAssistance",
        request_serializer=federation_pb2.RequestAssistanceRequest.SerializeToString,
        response_deserializer=federation_pb2.RequestAssistanceResponse.FromString,
    )
    try:
        call(federation_pb2.RequestAssistanceRequest(), timeout=5)
    except grpc.RpcError as error:
        return error
    raise AssertionError("an empty request was accepted")


def test_a_flooding_peer_is_refused_with_when_to_retry_and_others_are_not_slowed(
    local: LocalFederation,
) -> None:
    flooder = _peer_stub(local, FLOODER.node_id, RESIDENCE.node_id)
    calm = _peer_stub(local, PAYING.node_id, RESIDENCE.node_id)
    try:
        codes = [_request_assistance(flooder) for _ in range(40)]
        exhausted = [e for e in codes if e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED]
        # The burst of 10 passes to validation (INVALID_ARGUMENT), the rest is refused.
        assert len(exhausted) >= 20
        assert codes[0].code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "node:foshan is over its limit of 5 calls/s (burst 10); retry in" in (
            exhausted[0].details() or ""
        )
        assert dict(exhausted[0].trailing_metadata() or ())["retry-after-ms"].isdigit()
        # The other peer, calling at once, still reaches validation every time.
        for _ in range(5):
            assert _request_assistance(calm).code() is grpc.StatusCode.INVALID_ARGUMENT
        # And the flooder is served again once it waits as told.
        wait_until(
            lambda: _request_assistance(flooder).code() is grpc.StatusCode.INVALID_ARGUMENT,
            5,
            "the flooder's bucket to refill",
        )
    finally:
        flooder.close()
        calm.close()


def test_a_flooding_operator_does_not_slow_another_operator(local: LocalFederation) -> None:
    with (
        local.desk(RESIDENCE.node_id, "clerk") as clerk,
        local.desk(RESIDENCE.node_id, "reviewer") as reviewer,
    ):
        refusals = []
        for _ in range(60):
            try:
                clerk.stub.WhoAmI(desk_pb2.WhoAmIRequest())
            except grpc.RpcError as error:
                refusals.append((error.code(), error.details() or ""))
        assert all(code is grpc.StatusCode.RESOURCE_EXHAUSTED for code, _ in refusals)
        assert all("retry in" in details for _, details in refusals)
        refused = len(refusals)
        assert refused >= 30
        assert reviewer.stub.WhoAmI(desk_pb2.WhoAmIRequest()).roles


def _person(serial: int) -> attestation_pb2.IdentityBundle:
    return resident(
        resident_id("620102", date(1948, 1, 1), serial),
        "Chan Tai Man",
        phone="+853 2800 0000",
        address="Rua do Campo 1, Macau",
    )


def _identity_seen_by(
    local: LocalFederation, certifier: str, serial: int, residence: str
) -> object:
    with local.desk(PAYING.node_id) as desk:
        beneficiary = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=_person(serial), residence_region=residence
            ),
        ).beneficiary
        request_id = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary.beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
            ),
        ).request.request_id
    with local.desk(certifier) as desk:

        def opened() -> desk_pb2.GetAssistanceRequestResponse | None:
            try:
                return desk.stub.GetAssistanceRequest(
                    desk_pb2.GetAssistanceRequestRequest(request_id=request_id),
                )
            except grpc.RpcError as error:
                if error.code() in (
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                ):
                    return None
                raise

        return wait_until(opened, 30, f"the request at {certifier}").identity


def test_a_partner_liaison_receives_only_the_fields_its_form_needs(local: LocalFederation) -> None:
    identity = _identity_seen_by(local, PARTNER.node_id, 1, "MO")
    assert identity.full_name == "Chan Tai Man"  # type: ignore[attr-defined]
    assert identity.identity_number == _person(1).identity_number  # type: ignore[attr-defined]
    assert identity.phone == ""  # type: ignore[attr-defined]
    assert identity.address == ""  # type: ignore[attr-defined]


def test_a_residence_agency_receives_every_field(local: LocalFederation) -> None:
    identity = _identity_seen_by(local, RESIDENCE.node_id, 2, "370202")
    assert identity.phone == "+853 2800 0000"  # type: ignore[attr-defined]
    assert identity.address == "Rua do Campo 1, Macau"  # type: ignore[attr-defined]
