"""An employer's batch list at the desk: its uploader (who also reviews) is offered no decision,
and when they forge one the node refuses it and the desk says why, nothing changed; another
reviewer approves it after the check step, and the confirmation counts the people certified.
Each step is saved as a screenshot."""

from __future__ import annotations

import pytest

from certfed.v1 import desk_pb2
from cli.demo import LANZHOU
from tests.browser.desk_federation import DeskFederation
from tests.browser.desk_page import OpenDesk
from tests.helpers.channel_records import upload_employer_batch


def _state(federation: DeskFederation, batch_id: str) -> int:
    with federation.local.desk(LANZHOU.node_id, "reviewer") as desk:
        batches = desk.stub.ListEmployerBatches(
            desk_pb2.ListEmployerBatchesRequest(page_size=500)
        ).batches
    [found] = [batch for batch in batches if batch.batch_id == batch_id]
    return int(found.state)


@pytest.mark.parametrize("locale", ["en", "zh-Hans"])
def test_the_uploader_is_refused_and_another_reviewer_approves_after_checking(
    locale: str, desk_federation: DeskFederation, open_desk: OpenDesk
) -> None:
    people = [desk_federation.register(LANZHOU, residence_region="620102") for _ in range(2)]
    batch = upload_employer_batch(
        desk_federation.local,
        LANZHOU.node_id,
        "senior",
        f"batch-{locale}.csv",
        [person.identity_number for person in people],
    )
    page = f"/employer-batches/{batch.batch_id}"

    uploader = open_desk(LANZHOU.node_id, locale)
    uploader.sign_in("senior", desk_federation.password(LANZHOU.node_id, "senior"))
    uploader.open(page)
    assert uploader.has("#four-eyes")
    assert not uploader.has("#continue")
    uploader.submit_forged(
        page,
        {"csrf_token": uploader.csrf_token(), "step": "confirm", "decision": "approve"},
    )
    assert uploader.alert(), f"no message shown on {uploader.path}"
    assert not uploader.has("#reference")
    uploader.screenshot("employer-batch-refused")
    assert _state(desk_federation, batch.batch_id) == desk_pb2.EMPLOYER_BATCH_STATE_PENDING

    reviewer = open_desk(LANZHOU.node_id, locale)
    reviewer.sign_in("reviewer", desk_federation.password(LANZHOU.node_id, "reviewer"))
    reviewer.open(page)
    reviewer.press("continue")
    assert reviewer.alert(), "a decision must be chosen"
    reviewer.screenshot("employer-batch-errors")
    reviewer.choose("decision", "approve")
    reviewer.press("continue")
    assert reviewer.has("#confirm")
    reviewer.screenshot("employer-batch-check")
    assert _state(desk_federation, batch.batch_id) == desk_pb2.EMPLOYER_BATCH_STATE_PENDING
    reviewer.press("confirm")
    assert reviewer.text("#reference") == batch.batch_id
    reviewer.screenshot("employer-batch-approved")
    assert _state(desk_federation, batch.batch_id) == desk_pb2.EMPLOYER_BATCH_STATE_APPROVED
