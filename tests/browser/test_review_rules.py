"""The operator who recorded a certification does not approve it: the desk offers them no
approve button, and when they forge the POST the node refuses it and the desk says why."""

from __future__ import annotations

from datetime import UTC, datetime

from certfed.v1 import common_pb2, desk_pb2
from cli.demo import QINGDAO
from federation.timestamps import to_timestamp
from tests.browser.desk_federation import DeskFederation
from tests.browser.desk_page import OpenDesk
from tests.helpers.evidence import upload_capture


def _recorded_by_senior(federation: DeskFederation) -> str:
    """Qingdao's senior clerk (who also reviews) certifies one of Qingdao's own retirees."""
    person = federation.register(QINGDAO, residence_region="370202")
    with federation.local.desk(QINGDAO.node_id, "senior") as desk:
        recorded = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=person.beneficiary_id,
                method=common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC)),
                evidence_digests=[upload_capture(desk, shade=7)],
            )
        )
    certification_id: str = recorded.certification.certification_id
    return certification_id


def _status(federation: DeskFederation, certification_id: str) -> int:
    with federation.local.desk(QINGDAO.node_id, "reviewer") as desk:
        listed = desk.stub.ListCertifications(desk_pb2.ListCertificationsRequest()).certifications
    [found] = [c for c in listed if c.certification_id == certification_id]
    return int(found.status)


def test_recorder_is_offered_no_approve_button_and_a_forged_approval_is_refused(
    desk_federation: DeskFederation, open_desk: OpenDesk
) -> None:
    certification_id = _recorded_by_senior(desk_federation)
    page = f"/certifications/{certification_id}"

    # Another reviewer is offered the button: the page does have one to withhold.
    other = open_desk(QINGDAO.node_id)
    other.sign_in("reviewer", desk_federation.password(QINGDAO.node_id, "reviewer"))
    other.open(page)
    assert other.has("#approve")

    recorder = open_desk(QINGDAO.node_id)
    recorder.sign_in("senior", desk_federation.password(QINGDAO.node_id, "senior"))
    recorder.open(page)
    assert not recorder.has("#approve")
    assert not recorder.has(f"form[action='{page}/approve']")

    recorder.submit_forged(f"{page}/approve", {"csrf_token": recorder.csrf_token()})
    refusal = recorder.alert()
    assert refusal, f"no message shown on {recorder.path}"
    assert not recorder.has("#reference")  # no confirmation page
    assert (
        _status(desk_federation, certification_id) == desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW
    )
