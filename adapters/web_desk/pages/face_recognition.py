"""The paying office's face-recognition follow-ups: people whose face recognition scored below
the policy's thresholds and who have not been certified since, for the office to certify by
another channel. One of the office's lists (the tabs of /lists), paged on the node.

A follow-up names the person by their id only, so each row's masked identity number and
validity come from the person's record: one call per person on the page, all sent at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from starlette.responses import Response

from adapters.web_desk import labels
from adapters.web_desk.listing import paged
from adapters.web_desk.page import Page
from adapters.web_desk.pages.paying_office import LIST_VIEWS
from certfed.v1 import desk_pb2
from federation.timestamps import optional_datetime

VIEW = "face-recognition"


def _people(page: Page, beneficiary_ids: set[str]) -> dict[str, desk_pb2.Beneficiary]:
    """The records of the people on the page; one the node no longer shows is left out."""
    asked = {
        beneficiary_id: page.node.stub.GetBeneficiary.future(
            desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
        )
        for beneficiary_id in sorted(beneficiary_ids)
    }
    people: dict[str, desk_pb2.Beneficiary] = {}
    for beneficiary_id, future in asked.items():
        try:
            people[beneficiary_id] = future.result().beneficiary
        except grpc.RpcError:
            continue
    return people


def follow_ups(page: Page) -> Response:
    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.FaceRecognitionFollowUp], str]:
        answer = page.node.stub.ListFaceRecognitionFollowUps(
            desk_pb2.ListFaceRecognitionFollowUpsRequest(page_size=size, page_token=token)
        )
        return answer.follow_ups, answer.next_page_token

    shown = paged(page, f"list:{VIEW}", fetch)
    return page.render(
        "face_recognition.html",
        view=VIEW,
        views=[(name, page._(label)) for name, (label, _q) in LIST_VIEWS.items()],
        title=page._("Face recognition did not pass"),
        paged=shown,
        people=_people(page, {row.beneficiary_id for row in shown.rows}),
        labels=labels,
        when=optional_datetime,
    )
