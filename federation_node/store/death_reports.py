"""Death reports recorded at the desk (who reported, when, within their window or not): the
only writer of death_report, and the list of late ones."""

from __future__ import annotations

from sqlmodel import Session, col, select

from federation_node.store.db import keyset_page
from federation_node.store.models import DeathReport


def add(session: Session, report: DeathReport) -> None:
    session.add(report)


def late_page(session: Session, page_size: int, page_token: str) -> tuple[list[DeathReport], str]:
    """The late reports, in certification-id order (the order they were recorded in)."""
    return keyset_page(
        session,
        select(DeathReport).where(col(DeathReport.late).is_(True)),
        key=col(DeathReport.certification_id),
        key_of=lambda row: row.certification_id,
        page_size=page_size,
        page_token=page_token,
    )
