"""Every main page of the desk, in each of its four languages: it renders, passes the axe-core
check (no serious or critical violation), and is saved as a screenshot under the run's
`screenshots/` folder (`<page>-<locale>.png`), for people to look at."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from certfed.v1 import common_pb2, desk_pb2
from cli.demo import LANZHOU, MACAU, QINGDAO
from cli.launcher import wait_until
from federation.timestamps import to_timestamp
from tests.browser.desk_federation import DeskFederation
from tests.browser.desk_page import LOCALES, OpenDesk
from tests.helpers.channel_records import (
    face_recognition_feed,
    record_failed_face_recognition,
    upload_employer_batch,
)
from tests.helpers.evidence import upload_capture

FACE_PROVIDER = "lanzhou-kiosk"


@dataclass(frozen=True)
class Records:
    """One of each thing a page shows: a person Lanzhou pays, their request to Qingdao, a
    certification at Qingdao awaiting review, and at Lanzhou a person whose face recognition
    did not pass, an employer's batch awaiting a reviewer, a debt after a fraud and a new
    monthly amount awaiting review."""

    beneficiary_id: str
    request_id: str
    certification_id: str
    batch_id: str
    amount_change_id: str


@pytest.fixture(scope="module")
def records(desk_federation: DeskFederation) -> Records:
    local = desk_federation.local
    asked = desk_federation.register(LANZHOU, residence_region="370202")
    with local.desk(LANZHOU.node_id) as desk:
        request_id = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=asked.beneficiary_id,
                deadline=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
                acceptable_methods=[common_pb2.CERTIFICATION_METHOD_ON_SITE],
            )
        ).request.request_id
    own = desk_federation.register(QINGDAO, residence_region="370202")
    with local.desk(QINGDAO.node_id) as desk:
        certification_id = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                beneficiary_id=own.beneficiary_id,
                method=common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC)),
                evidence_digests=[upload_capture(desk, shade=3)],
            )
        ).certification.certification_id
        inbound = desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
        wait_until(
            lambda: any(
                r.request_id == request_id
                for r in desk.stub.ListAssistanceRequests(inbound).requests
            ),
            30,
            "the request to reach Qingdao",
        )
    failed = desk_federation.register(LANZHOU, residence_region="620102")
    feed = face_recognition_feed(local, LANZHOU.node_id, FACE_PROVIDER)
    record_failed_face_recognition(local, LANZHOU.node_id, feed, failed.identity_number, "PAGES-1")
    listed = [desk_federation.register(LANZHOU, residence_region="620102") for _ in range(2)]
    batch = upload_employer_batch(
        local,
        LANZHOU.node_id,
        "clerk",
        "2026年12月在职退休人员名单.xlsx",
        [person.identity_number for person in listed],
    )
    owing = desk_federation.register(LANZHOU, residence_region="620102")
    with local.desk(LANZHOU.node_id, "reviewer") as desk:
        desk.stub.RecordFraud(
            desk_pb2.RecordFraudRequest(
                beneficiary_id=owing.beneficiary_id,
                obtained_fen=100_000,
                found_at=to_timestamp(datetime.now(UTC) - timedelta(days=2)),
                reference="CASE-PAGES-1",
            )
        )
    with local.desk(LANZHOU.node_id) as desk:
        change = desk.stub.ProposeMonthlyAmount(
            desk_pb2.ProposeMonthlyAmountRequest(
                beneficiary_id=owing.beneficiary_id, monthly_amount_fen=329_600, reason="2027 rise"
            )
        ).change
    return Records(
        asked.beneficiary_id, request_id, certification_id, batch.batch_id, change.change_id
    )


def _pages(records: Records) -> dict[tuple[str, str], dict[str, str]]:
    """(office, operator) -> {screenshot name: path}."""
    person = f"/beneficiaries/{records.beneficiary_id}"
    request = f"/requests/{records.request_id}"
    return {
        (LANZHOU.node_id, "clerk"): {
            "home-paying-office": "/",
            "find": "/beneficiaries/find",
            "beneficiary": person,
            "assistance": f"{person}/assistance",
            **{f"list-{view}": f"/lists/{view}" for view in ("due", "warning", "suspended")},
            **{f"list-{view}": f"/lists/{view}" for view in ("overpayments", "duplicates")},
            "report": "/lists/report",
            "debts": "/debts",
            "list-face-recognition": "/lists/face-recognition",
            "employer-batches": "/employer-batches",
            "amount-changes": "/amount-changes",
        },
        (LANZHOU.node_id, "reviewer"): {
            "held": "/held",
            "employer-batches-all": "/employer-batches?show=all",
            "employer-batch": f"/employer-batches/{records.batch_id}",
            "amount-changes-all": "/amount-changes?show=all",
            "amount-change": f"/amount-changes/{records.amount_change_id}",
        },
        (QINGDAO.node_id, "clerk"): {
            "home-agency": "/",
            "inbox": "/inbox",
            "request": request,
            "certify": f"{request}/certify",
            "walk-in": "/walk-in",
        },
        (QINGDAO.node_id, "reviewer"): {
            "reviews": "/reviews",
            "certification": f"/certifications/{records.certification_id}",
        },
        (QINGDAO.node_id, "admin"): {
            "admin-operators": "/admin/operators",
            "admin-new-operator": "/admin/operators/new",
            "admin-outbox": "/admin/outbox",
            "admin-federation": "/admin/federation",
            "admin-audit": "/admin/audit",
        },
        (MACAU.node_id, "clerk"): {"forms": "/forms"},
    }


@pytest.mark.parametrize("locale", list(LOCALES))
def test_every_main_page_renders_accessibly_in_each_language(
    locale: str, records: Records, desk_federation: DeskFederation, open_desk: OpenDesk
) -> None:
    visitor = open_desk(LANZHOU.node_id, locale)
    visitor.open("/sign-in")
    if visitor.page.get_attribute("html", "lang") != locale:
        visitor.set_language(locale)
    assert visitor.page.get_attribute("html", "lang") == locale
    assert visitor.screenshot("sign-in").stat().st_size > 0
    for (office, operator), pages in _pages(records).items():
        desk = open_desk(office, locale)
        desk.sign_in(operator, desk_federation.password(office, operator))
        for name, path in pages.items():
            answer = desk.open(path)
            assert answer.status == 200, f"{path} answered {answer.status}"
            assert desk.page.get_attribute("html", "lang") == locale
            assert desk.page.title(), f"{path} has no title"
            assert desk.screenshot(name).stat().st_size > 0
