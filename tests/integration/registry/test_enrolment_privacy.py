"""Only the applicant reads where its enrolment stands: a stranger, or another member, asking
about a node id gets the same NOT_FOUND whether or not it applied, against a real registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from certfed.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from federation.enrolment_query import sign_enrolment_query
from federation.envelopes import envelope_to_proto
from federation.errors import NotFoundError
from federation.transport import REGISTRY_TLS_NAME, anonymous_channel_credentials, secure_channel
from signing.keys import SigningKey
from tests.integration.registry.conftest import EnrolledFactory, NodeFactory, RunningRegistry


def _refusal(registry: RunningRegistry, request: registry_pb2.GetEnrolmentRequest) -> str:
    channel = secure_channel(
        registry.enrol_endpoint,
        REGISTRY_TLS_NAME,
        anonymous_channel_credentials(registry.ca_pem),
        max_message_bytes=1 << 20,
    )
    with channel, pytest.raises(grpc.RpcError) as refused:
        registry_pb2_grpc.RegistryServiceStub(channel).GetEnrolment(request, timeout=10)
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    return (
        (refused.value.details() or "")
        .replace("qingdao-applicant", "NODE")
        .replace("never-applied", "NODE")
    )


def test_enrolment_status_is_readable_only_by_its_applicant(
    registry: RunningRegistry, make_node: NodeFactory, enrolled_node: EnrolledFactory
) -> None:
    applicant = make_node("qingdao-applicant", region_codes=("370200",))
    member, _ = enrolled_node("foshan-member")
    now = datetime.now(UTC)
    with registry.anonymous() as anonymous:
        anonymous.enrol(applicant.application())
        assert (
            anonymous.get_enrolment(applicant.node_id, applicant.signing_key).status
            == common_pb2.NODE_STATUS_PENDING
        )
        with pytest.raises(NotFoundError):
            anonymous.get_enrolment(applicant.node_id, member.signing_key)

    unknown = _refusal(registry, registry_pb2.GetEnrolmentRequest(node_id="never-applied"))
    refusals = {
        "no proof": registry_pb2.GetEnrolmentRequest(node_id=applicant.node_id),
        "another member's key": registry_pb2.GetEnrolmentRequest(
            node_id=applicant.node_id,
            proof=envelope_to_proto(
                sign_enrolment_query(applicant.node_id, member.signing_key, now)
            ),
        ),
        "a proof for another node id": registry_pb2.GetEnrolmentRequest(
            node_id=applicant.node_id,
            proof=envelope_to_proto(
                sign_enrolment_query("foshan-member", applicant.signing_key, now)
            ),
        ),
        "a stale proof, replayed": registry_pb2.GetEnrolmentRequest(
            node_id=applicant.node_id,
            proof=envelope_to_proto(
                sign_enrolment_query(
                    applicant.node_id, applicant.signing_key, now - timedelta(hours=1)
                )
            ),
        ),
        "a random key": registry_pb2.GetEnrolmentRequest(
            node_id=applicant.node_id,
            proof=envelope_to_proto(
                sign_enrolment_query(applicant.node_id, SigningKey.generate(), now)
            ),
        ),
    }
    for what, request in refusals.items():
        # The same words as for a node id that never applied: nothing tells them apart.
        assert _refusal(registry, request) == unknown, what
