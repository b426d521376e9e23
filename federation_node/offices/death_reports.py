"""Report windows: a death recorded at the desk names who reported it (the family, the work unit
or the village committee); the report is late when it reached the office after that reporter's
window (rules/report_windows.py), counted from the date of death to the day the clerk recorded
it. Late reports are listed for the office; what follows from one (a fine) is the case
officer's matter, not the node's.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from certfed.v1 import common_pb2, desk_pb2
from federation.errors import InvalidInputError
from federation_node.offices.context import NodeContext
from federation_node.rules import report_windows
from federation_node.rules.policy import Policy
from federation_node.rules.report_windows import DeathReporter
from federation_node.rules.validation import page_size
from federation_node.store import death_reports
from federation_node.store.models import Certification, DeathReport

REPORTERS = {
    desk_pb2.DEATH_REPORTER_FAMILY: DeathReporter.FAMILY,
    desk_pb2.DEATH_REPORTER_UNIT: DeathReporter.UNIT,
    desk_pb2.DEATH_REPORTER_VILLAGE: DeathReporter.VILLAGE,
}


def reporter_of(request: desk_pb2.RecordCertificationRequest, outcome: int) -> DeathReporter | None:
    """The reporter a clerk named, refused on anything but a death."""
    if request.death_reporter == desk_pb2.DEATH_REPORTER_UNSPECIFIED:
        return None
    reporter = REPORTERS.get(request.death_reporter)
    if reporter is None:
        raise InvalidInputError("death_reporter", "must be family, unit or village")
    if outcome != common_pb2.CERTIFICATION_OUTCOME_DECEASED:
        raise InvalidInputError("death_reporter", "is given for a death only")
    return reporter


def record(
    session: Session,
    policy: Policy,
    certification: Certification,
    reporter: DeathReporter,
    beneficiary_id: str | None,
    now: datetime,
) -> DeathReport:
    """The report behind a recorded death, in the caller's transaction."""
    report = DeathReport(
        certification_id=certification.certification_id,
        beneficiary_id=beneficiary_id,
        reporter=reporter,
        died_at=certification.observed_at,
        reported_at=now,
        days_taken=report_windows.days_taken(certification.observed_at, now),
        window_days=report_windows.window_days(reporter, policy),
        late=report_windows.late(reporter, certification.observed_at, now, policy),
    )
    death_reports.add(session, report)
    return report


class DeathReports:
    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def list_late(self, requested_size: int, page_token: str) -> tuple[list[DeathReport], str]:
        size = page_size(requested_size, self._context.config.limits)
        with self._context.session() as session:
            return death_reports.late_page(session, size, page_token)
