"""The DeskService calls the web desk's pages are built on, each one page's worth in one call:
GetBeneficiaryOverview (the person's page), GetCertification (the reviewer's page) and
GetFederationStatus (the administrator's federation page). A real registry, a Lanzhou paying
office and a Qingdao residence agency as processes over mutual TLS, called over gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.launcher import LocalFederation, wait_until
from federation.timestamps import to_timestamp
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident_id
from tests.helpers.nodes import LANZHOU, QINGDAO_AGENCY

NAME = "Overview Person"
AMOUNT_FEN = 250_000


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@dataclass
class Office:
    local: LocalFederation
    # Suspended in July 2025, certified by a data match in August: resumed with back pay.
    resumed_id: str
    resumed_number: str
    # Lives in Qingdao; Lanzhou asked Qingdao to certify them.
    asked_id: str
    asked_number: str
    request_id: str

    def overview(
        self, operator: str, beneficiary_id: str
    ) -> desk_pb2.GetBeneficiaryOverviewResponse:
        with self.local.desk("lanzhou", operator) as desk:
            answer: desk_pb2.GetBeneficiaryOverviewResponse = desk.stub.GetBeneficiaryOverview(
                desk_pb2.GetBeneficiaryOverviewRequest(beneficiary_id=beneficiary_id)
            )
        return answer


def _person(number: str) -> attestation_pb2.IdentityBundle:
    return attestation_pb2.IdentityBundle(
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=number,
        full_name=NAME,
        phone="13800000000",
    )


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    with LocalFederation(tmp_path_factory.mktemp("desk-page-calls")) as local:
        local.start_registry()
        # The days are the test's; checkpoints come quickly so the witness's cosignature shows.
        local.add_node(LANZHOU, settings={"cycle_hour_utc": -1, "checkpoint_interval_s": 1})
        local.add_node(QINGDAO_AGENCY)
        resumed_number = resident_id("620102", date(1948, 1, 1), 1)
        asked_number = resident_id("620102", date(1949, 2, 2), 2)
        with local.desk("lanzhou") as clerk:
            resumed_id = clerk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=_person(resumed_number),
                    residence_region="620102",
                    monthly_amount_fen=AMOUNT_FEN,
                    valid_until=to_timestamp(at(2025, 4, 1)),
                )
            ).beneficiary.beneficiary_id
            asked_id = clerk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=_person(asked_number),
                    residence_region="370200",
                    monthly_amount_fen=AMOUNT_FEN,
                    valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=300)),
                )
            ).beneficiary.beneficiary_id
        with local.desk("lanzhou", "admin") as admin:
            admin.stub.RunCycle(desk_pb2.RunCycleRequest(day=to_timestamp(at(2025, 7, 1))))
        # The medical insurance feed, from the node's feed account.
        with local.desk("lanzhou", "feed") as feed:
            feed.stub.RecordSignals(
                desk_pb2.RecordSignalsRequest(
                    signals=[
                        desk_pb2.DataSignal(
                            source="medical-insurance",
                            source_record_id="r1",
                            kind=desk_pb2.SIGNAL_KIND_MEDICAL_INSURANCE_SETTLEMENT,
                            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                            identity_number=resumed_number,
                            observed_at=to_timestamp(at(2025, 8, 14)),
                        )
                    ]
                )
            )
        with local.desk("lanzhou") as clerk:
            request_id = clerk.stub.RequestCertification(
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=asked_id,
                    deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
                )
            ).request.request_id
        yield Office(local, resumed_id, resumed_number, asked_id, asked_number, request_id)


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    error = raised.value
    assert isinstance(error, grpc.Call)
    code: grpc.StatusCode = error.code()
    return code


def test_an_administrator_sees_the_persons_entitlement_attestations_and_back_pay(
    office: Office,
) -> None:
    seen = office.overview("admin", office.resumed_id)
    assert seen.beneficiary.beneficiary_id == office.resumed_id
    assert seen.entitlement.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
    assert seen.entitlement.monthly_amount_fen == AMOUNT_FEN
    [attestation] = seen.attestations
    assert seen.attestations_total == 1
    assert attestation.method == common_pb2.CERTIFICATION_METHOD_DATA_MATCH
    assert attestation.issuing_node_id == "lanzhou"
    assert attestation.beneficiary_id == office.resumed_id
    # Newest month first: resumed in September with July's and August's pay, suspended in July.
    actions = [(i.effective_month, i.action) for i in seen.payment_instructions]
    assert actions == [
        ("2025-09", desk_pb2.PAYMENT_ACTION_RESUME),
        ("2025-07", desk_pb2.PAYMENT_ACTION_SUSPEND),
    ]
    assert seen.back_pay_total_fen == 2 * AMOUNT_FEN
    # An administrator is not shown requests for assistance (ListAssistanceRequests is not theirs).
    assert not seen.open_requests


def test_a_clerk_sees_open_requests_but_no_payments(office: Office) -> None:
    for operator in ("clerk", "reviewer"):
        seen = office.overview(operator, office.asked_id)
        [request] = seen.open_requests
        assert request.request_id == office.request_id
        assert request.peer_node_id == "qingdao"
        assert request.direction == desk_pb2.DIRECTION_OUTBOUND
        assert not seen.attestations
        resumed = office.overview(operator, office.resumed_id)
        assert not resumed.payment_instructions
        assert resumed.back_pay_total_fen == 0
        assert not resumed.open_requests
        assert len(resumed.attestations) == 1


def test_the_overview_carries_no_identity_number_or_name(office: Office) -> None:
    for operator, beneficiary_id, number in (
        ("admin", office.resumed_id, office.resumed_number),
        ("clerk", office.asked_id, office.asked_number),
    ):
        wire = office.overview(operator, beneficiary_id).SerializeToString()
        assert number.encode() not in wire
        assert NAME.encode() not in wire
        masked = office.overview(operator, beneficiary_id).beneficiary.masked_identity_number
        assert masked.startswith(number[:2])
        assert "*" in masked


def test_an_unknown_or_malformed_beneficiary_id_is_refused_by_name(office: Office) -> None:
    with office.local.desk("lanzhou") as desk:
        unknown = "0190f0f0-0000-7000-8000-000000000000"

        def get(beneficiary_id: str) -> object:
            return desk.stub.GetBeneficiaryOverview(
                desk_pb2.GetBeneficiaryOverviewRequest(beneficiary_id=beneficiary_id)
            )

        assert _code(lambda: get(unknown)) is grpc.StatusCode.NOT_FOUND
        assert _code(lambda: get("not-an-id")) is grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: get("")) is grpc.StatusCode.INVALID_ARGUMENT


def test_a_reviewer_fetches_one_certification_with_its_evidence_and_recorder(
    office: Office,
) -> None:
    with office.local.desk("qingdao") as clerk:
        wait_until(
            lambda: any(
                r.request_id == office.request_id
                for r in clerk.stub.ListAssistanceRequests(
                    desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
                ).requests
            ),
            30,
            "the request in Qingdao's inbox",
        )
        digest = upload_capture(clerk)
        recorded = clerk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                request_id=office.request_id,
                method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC)),
                evidence_digests=[digest],
            )
        ).certification
        clerk_id = clerk.stub.WhoAmI(desk_pb2.WhoAmIRequest()).operator_id
    with office.local.desk("qingdao", "reviewer") as reviewer:
        found = reviewer.stub.GetCertification(
            desk_pb2.GetCertificationRequest(certification_id=recorded.certification_id)
        ).certification
        assert found == recorded
        assert found.clerk_id == clerk_id
        assert list(found.evidence_digests) == [digest]
        assert found.status == desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW
        missing = desk_pb2.GetCertificationRequest(
            certification_id="0190f0f0-0000-7000-8000-000000000000"
        )
        assert _code(lambda: reviewer.stub.GetCertification(missing)) is grpc.StatusCode.NOT_FOUND
        malformed = desk_pb2.GetCertificationRequest(certification_id="x")
        assert (
            _code(lambda: reviewer.stub.GetCertification(malformed))
            is grpc.StatusCode.INVALID_ARGUMENT
        )
    with office.local.desk("qingdao", "admin") as admin:
        request = desk_pb2.GetCertificationRequest(certification_id=recorded.certification_id)
        assert _code(lambda: admin.stub.GetCertification(request)) is (
            grpc.StatusCode.PERMISSION_DENIED
        )


def test_the_federation_status_shows_peers_and_the_cosigned_log(office: Office) -> None:
    with office.local.desk("lanzhou", "admin") as admin:

        def cosigned() -> desk_pb2.GetFederationStatusResponse | None:
            status: desk_pb2.GetFederationStatusResponse = admin.stub.GetFederationStatus(
                desk_pb2.GetFederationStatusRequest()
            )
            log = status.log
            done = log.tree_size and log.checkpoint_tree_size == log.tree_size
            return status if done else None

        status = wait_until(cosigned, 30, "the witness to cosign Lanzhou's log")
    directory = status.directory
    assert directory.version >= 1
    assert not directory.expired
    assert directory.signing_key_id
    assert 0 <= status.directory_age_seconds < 3600
    peers = {peer.node_id: peer for peer in status.peers}
    assert "lanzhou" not in peers, "the node itself is no peer"
    qingdao = peers["qingdao"]
    assert list(qingdao.roles) == [common_pb2.ROLE_RESIDENCE_AGENCY]
    assert list(qingdao.region_codes) == ["370200"]
    assert qingdao.status == common_pb2.NODE_STATUS_ACTIVE
    assert (qingdao.pending_messages, qingdao.dead_letters) == (0, 0)
    assert not status.peers_truncated
    log = status.log
    # The data-match attestation of the resumed person is in Lanzhou's own log.
    assert log.tree_size >= 1
    assert log.entries_not_cosigned == 0
    assert len(log.checkpoint_root_hash) == 32
    assert log.HasField("cosigned_at")
    assert log.witnessed_size == log.tree_size
    assert log.held_back_reason == ""
    with office.local.desk("lanzhou", "clerk") as clerk:
        request = desk_pb2.GetFederationStatusRequest()
        assert _code(lambda: clerk.stub.GetFederationStatus(request)) is (
            grpc.StatusCode.PERMISSION_DENIED
        )
