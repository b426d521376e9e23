"""Employer batches at the paying office: a unit (工作单位) that employed civil-service retirees
confirms them alive in a batch list; a clerk uploads it, and a reviewer who is not the uploader
approves or rejects the batch as a whole (separation of duties, 处理权与审核权分离).

* Upload: each row naming one of this office's active people, with a plausible date (the paying
  office's own check, rules/plausibility.py), becomes a pending row of the batch: an
  employer-batch certification awaiting review. A row naming nobody this office pays, someone
  whose entitlement ended, someone on an earlier row, or an implausible date is answered with
  the reason and left out; a file with no usable row records nothing.
* Approval: for every row, a certification (method EMPLOYER_BATCH, clerk the uploader,
  reviewer the approver) is recorded, approved and issued through `Issuer`, and applied
  through the paying office's one apply path, all in one transaction. A row whose person was
  certified later by another channel or whose entitlement ended since the upload is skipped
  with the reason; the rest issue.
* Rejection records the decision and reason; nothing else changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation.errors import (
    InvalidInputError,
    PreconditionError,
    SeparationOfDutiesError,
)
from federation.roles import PAYING_ROLE_NAMES
from federation.timestamps import to_datetime, to_timestamp
from federation_node.offices.context import Actor, NodeContext
from federation_node.offices.issuing import Finding, Issuer
from federation_node.offices.paying_office import PayingOffice
from federation_node.rules.validation import (
    IDENTITY_KINDS,
    identity_kind,
    require_id,
    require_past,
    require_text,
)
from federation_node.store import audit, beneficiaries, certifications, employer_batches
from federation_node.store.db import session_scope
from federation_node.store.models import (
    BeneficiaryState,
    EmployerBatch,
    EmployerBatchRow,
    EmployerBatchState,
)
from signing.errors import InvalidIdentityNumberError

MAX_UNIT_LENGTH = 128
MAX_FILE_NAME_LENGTH = 255
STATES = {
    EmployerBatchState.PENDING: desk_pb2.EMPLOYER_BATCH_STATE_PENDING,
    EmployerBatchState.APPROVED: desk_pb2.EMPLOYER_BATCH_STATE_APPROVED,
    EmployerBatchState.REJECTED: desk_pb2.EMPLOYER_BATCH_STATE_REJECTED,
}


class EmployerBatches:
    """Uploads, lists and decides employers' batch lists."""

    def __init__(self, context: NodeContext, issuer: Issuer, paying_office: PayingOffice) -> None:
        self._context = context
        self._issuer = issuer
        self._paying_office = paying_office

    def upload(
        self, actor: Actor, request: desk_pb2.UploadEmployerBatchRequest
    ) -> tuple[desk_pb2.EmployerBatch, list[desk_pb2.EmployerBatchRowResult]]:
        context = self._context
        context.require_role(PAYING_ROLE_NAMES, "pay pensions, so it has no retirees to certify")
        limits = context.config.limits
        unit = require_text(request.unit, "unit", limits, required=True).strip()
        if len(unit) > MAX_UNIT_LENGTH:
            raise InvalidInputError("unit", f"is longer than {MAX_UNIT_LENGTH}")
        file_name = require_text(request.file_name, "file_name", limits, required=True)
        if len(file_name) > MAX_FILE_NAME_LENGTH:
            raise InvalidInputError("file_name", f"is longer than {MAX_FILE_NAME_LENGTH}")
        if len(request.file_sha256) != 32:
            raise InvalidInputError("file_sha256", "must be the file's SHA-256 (32 bytes)")
        if not request.rows:
            raise InvalidInputError("rows", "give at least one row")
        if len(request.rows) > limits.max_repeated:
            raise InvalidInputError(
                "rows", f"has {len(request.rows)} items; the limit is {limits.max_repeated}"
            )
        now = context.now()
        context.locators.prefetch(
            (kind, row.identity_number)
            for row in request.rows
            if (kind := IDENTITY_KINDS.get(row.identity_type)) is not None
        )
        results: list[desk_pb2.EmployerBatchRowResult] = []
        accepted: list[tuple[int, str, datetime]] = []
        with session_scope(context.engine) as session:
            seen: dict[str, int] = {}
            for index, row in enumerate(request.rows):
                try:
                    beneficiary_id, observed_at = self._row(session, index, row, seen, now)
                except (InvalidInputError, PreconditionError) as error:
                    results.append(
                        desk_pb2.EmployerBatchRowResult(line=row.line, message=str(error))
                    )
                    continue
                seen[beneficiary_id] = row.line
                accepted.append((row.line, beneficiary_id, observed_at))
                results.append(
                    desk_pb2.EmployerBatchRowResult(
                        line=row.line, accepted=True, beneficiary_id=beneficiary_id
                    )
                )
            if not accepted:
                raise PreconditionError(
                    f"no row of {file_name} names a person this office can certify; "
                    "nothing was recorded (each row's reason is in the rejects)"
                )
            batch = employer_batches.add(
                session,
                unit=unit,
                file_name=file_name,
                file_sha256=request.file_sha256.hex(),
                uploaded_by=actor.name,
                rows=accepted,
                now=now,
            )
            audit.append(
                session,
                actor=actor.label,
                action="employer_batch.upload",
                subject_type="employer_batch",
                subject_id=batch.batch_id,
                details={
                    "unit": unit,
                    "rows": len(accepted),
                    "refused": len(results) - len(accepted),
                },
                now=now,
            )
            view = batch_view(batch, len(accepted))
        return view, results

    def _row(
        self,
        session: Session,
        index: int,
        row: desk_pb2.EmployerBatchRow,
        seen: dict[str, int],
        now: datetime,
    ) -> tuple[str, datetime]:
        name = f"rows[{index}]"
        bundle = attestation_pb2.IdentityBundle(
            identity_type=row.identity_type, identity_number=row.identity_number
        )
        kind = identity_kind(bundle, name)
        try:
            _, locator = self._context.locators.locate(kind, row.identity_number)
        except InvalidIdentityNumberError as error:
            raise InvalidInputError("identity_number", str(error)) from None
        if not row.HasField("observed_at"):
            raise InvalidInputError("observed_at", "is required")
        observed_at = require_past(
            to_datetime(row.observed_at), "observed_at", now, self._context.config.limits
        )
        beneficiary = beneficiaries.by_locator(session, locator)
        if beneficiary is None:
            raise PreconditionError("no beneficiary of this office has this identity")
        if beneficiary.status is not BeneficiaryState.ACTIVE:
            raise PreconditionError(f"entitlement has ended ({beneficiary.status.value})")
        if beneficiary.beneficiary_id in seen:
            raise PreconditionError(
                f"the same person is on line {seen[beneficiary.beneficiary_id]} already"
            )
        self._paying_office.require_plausible_observation(
            session, beneficiary, observed_at, issued_at=now
        )
        return beneficiary.beneficiary_id, observed_at

    def decide(
        self, actor: Actor, batch_id: str, approve: bool, reason: str
    ) -> desk_pb2.EmployerBatch:
        require_id(batch_id, "batch_id")
        reason = require_text(reason, "reason", self._context.config.limits, required=not approve)
        now = self._context.now()
        issued: list[tuple[attestation_pb2.CertificationAttestation, str | None]] = []
        with session_scope(self._context.engine) as session:
            batch = employer_batches.pending(session, batch_id)
            if batch.uploaded_by == actor.name:
                raise SeparationOfDutiesError(
                    "you uploaded this batch; a different reviewer must "
                    f"{'approve' if approve else 'reject'} it"
                )
            rows = employer_batches.rows_of(session, batch_id)
            if approve:
                for row in rows:
                    attestation = self._certify(session, batch, row, actor, now)
                    if attestation is not None:
                        issued.append((attestation, row.beneficiary_id))
                batch.issued = len(issued)
                batch.skipped = len(rows) - len(issued)
            state = EmployerBatchState.APPROVED if approve else EmployerBatchState.REJECTED
            employer_batches.decide(session, batch, state, actor.name, reason, now)
            audit.append(
                session,
                actor=actor.label,
                action=f"employer_batch.{state.value}",
                subject_type="employer_batch",
                subject_id=batch_id,
                details={
                    "uploaded_by": batch.uploaded_by,
                    "rows": len(rows),
                    "issued": batch.issued,
                    "skipped": batch.skipped,
                },
                now=now,
            )
            view = batch_view(batch, len(rows))
            # Last, and all at once: one append to the log for the batch (Issuer.issue).
            self._issuer.issue(session, issued, now=now)
        if issued:
            self._issuer.issued()
        return view

    def _certify(
        self,
        session: Session,
        batch: EmployerBatch,
        row: EmployerBatchRow,
        actor: Actor,
        now: datetime,
    ) -> attestation_pb2.CertificationAttestation | None:
        """One row of an approved batch certified, or None (and the row's skipped reason set)
        when it can no longer be."""
        beneficiary = beneficiaries.get(session, row.beneficiary_id)
        if beneficiary.status is not BeneficiaryState.ACTIVE:
            row.skipped_reason = f"entitlement has ended ({beneficiary.status.value})"
            session.add(row)
            return None
        try:
            self._paying_office.require_plausible_observation(
                session, beneficiary, row.observed_at, issued_at=now
            )
        except (InvalidInputError, PreconditionError) as error:
            row.skipped_reason = str(error)
            session.add(row)
            return None
        certification = certifications.record(
            session,
            request_id=None,
            subject_locator=beneficiary.subject_locator,
            paying_node_id=self._context.node_id,
            paying_region=beneficiary.paying_region,
            certifying_region=beneficiary.paying_region,
            method=common_pb2.CERTIFICATION_METHOD_EMPLOYER_BATCH,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=row.observed_at,
            evidence_digests=[],
            note=f"employer batch {batch.batch_id} ({batch.unit}), line {row.line}",
            clerk_id=batch.uploaded_by,
            now=now,
        )
        finding = Finding(
            subject_locator=beneficiary.subject_locator,
            paying_node_id=self._context.node_id,
            paying_region=beneficiary.paying_region,
            certifying_region=beneficiary.paying_region,
            method=common_pb2.CERTIFICATION_METHOD_EMPLOYER_BATCH,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=row.observed_at,
            evidence_digests=[],
            clerk_id=batch.uploaded_by,
            reviewer_id=actor.name,
        )
        attestation = self._issuer.attestation(finding, now)
        certifications.approve(session, certification, actor.name, attestation.attestation_id, now)
        self._paying_office.apply_issued(session, attestation, now)
        row.certification_id = certification.certification_id
        session.add(row)
        return attestation

    def list_batches(
        self, state: EmployerBatchState | None, page_size: int, page_token: str
    ) -> tuple[list[desk_pb2.EmployerBatch], str]:
        with self._context.session() as session:
            batches, token = employer_batches.page(session, state, page_size, page_token)
            views = [
                batch_view(batch, employer_batches.row_count(session, batch.batch_id))
                for batch in batches
            ]
        return views, token

    def get_batch(
        self, batch_id: str, page_size: int, page_token: str
    ) -> tuple[desk_pb2.EmployerBatch, list[desk_pb2.EmployerBatchEntry], str]:
        """One batch and a page of its rows, each person by the masked number the desk shows."""
        require_id(batch_id, "batch_id")
        with self._context.session() as session:
            batch = employer_batches.get(session, batch_id)
            rows, token = employer_batches.rows_page(session, batch_id, page_size, page_token)
            people = beneficiaries.by_ids(session, (row.beneficiary_id for row in rows))
            entries = [
                entry_view(row, people[row.beneficiary_id].masked_identity_number) for row in rows
            ]
            view = batch_view(batch, employer_batches.row_count(session, batch_id))
        return view, entries, token


def entry_view(row: EmployerBatchRow, masked_identity_number: str) -> desk_pb2.EmployerBatchEntry:
    return desk_pb2.EmployerBatchEntry(
        line=row.line,
        beneficiary_id=row.beneficiary_id,
        masked_identity_number=masked_identity_number,
        observed_at=to_timestamp(row.observed_at),
        certification_id=row.certification_id or "",
        skipped_reason=row.skipped_reason,
    )


def batch_view(batch: EmployerBatch, rows: int) -> desk_pb2.EmployerBatch:
    view = desk_pb2.EmployerBatch(
        batch_id=batch.batch_id,
        unit=batch.unit,
        file_name=batch.file_name,
        state=STATES[batch.state],
        uploaded_by=batch.uploaded_by,
        uploaded_at=to_timestamp(batch.uploaded_at),
        decided_by=batch.decided_by or "",
        reason=batch.reason,
        rows=rows,
        issued=batch.issued,
        skipped=batch.skipped,
    )
    if batch.decided_at is not None:
        view.decided_at.CopyFrom(to_timestamp(batch.decided_at))
    return view
