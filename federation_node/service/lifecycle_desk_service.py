"""The desk methods of the paying office's year: bulk registration and the roll, data signals,
termination review, entitlement lists, the daily cycle, payment instructions and closed months,
reminders, monthly amount changes and the report.

Mixed into `DeskServicer`; thin like the rest of it: validate the fields, call one lifecycle
operation or store query, map the result. The operations are in federation_node/offices/.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from sqlmodel import Session

from certfed.v1 import common_pb2, desk_pb2
from federation.errors import InvalidInputError
from federation.principal import caller
from federation.timestamps import optional_datetime
from federation_node.offices.context import Actor
from federation_node.offices.node import Node
from federation_node.offices.roll import open_identity
from federation_node.rules.entitlement import month_label, parse_month
from federation_node.rules.validation import page_size, require_id
from federation_node.service.lifecycle_views import (
    AMOUNT_CHANGE_FILTERS,
    STATE_FILTERS,
    amount_change_view,
    entitlement_view,
    instruction_view,
    reminder_view,
    upsert_result_view,
)
from federation_node.service.views import beneficiary_view
from federation_node.store import (
    amount_changes,
    entitlements_store,
    payments_store,
    reminders_store,
    reports_store,
)
from federation_node.store.db import session_scope
from federation_node.store.entitlements_store import EntitlementFilter
from federation_node.store.models import OperatorRole


def _actor() -> Actor:
    return Actor("operator", caller().name)


class LifecycleDesk:
    """The lifecycle RPCs, for a servicer holding `_node`."""

    _node: Node

    def RegisterBeneficiaries(
        self, request: desk_pb2.RegisterBeneficiariesRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RegisterBeneficiariesResponse:
        added = self._node.registration.register_beneficiaries(
            _actor(), list(request.beneficiaries)
        )
        return desk_pb2.RegisterBeneficiariesResponse(
            beneficiaries=[beneficiary_view(b) for b in added]
        )

    def RecordSignals(
        self, request: desk_pb2.RecordSignalsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RecordSignalsResponse:
        # A feed account's signals apply for its sources; a person's alive ones wait for a
        # second person (offices/pending_signals.py).
        feed_account = OperatorRole.FEED.value in caller().roles
        results = self._node.data_signals.record_signals(
            _actor(), list(request.signals), feed_account=feed_account
        )
        return desk_pb2.RecordSignalsResponse(results=results)

    def ListPendingSignals(
        self, request: desk_pb2.ListPendingSignalsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListPendingSignalsResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        views, token = self._node.data_signals.list_pending(
            size, request.page_token, pending_only=request.pending_only
        )
        return desk_pb2.ListPendingSignalsResponse(signals=views, next_page_token=token)

    def DecidePendingSignal(
        self, request: desk_pb2.DecidePendingSignalRequest, context: grpc.ServicerContext
    ) -> desk_pb2.DecidePendingSignalResponse:
        require_id(request.pending_signal_id, "pending_signal_id")
        view = self._node.data_signals.decide_pending(
            _actor(), request.pending_signal_id, request.approve, request.reason
        )
        return desk_pb2.DecidePendingSignalResponse(signal=view)

    def ReviewTermination(
        self, request: desk_pb2.ReviewTerminationRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ReviewTerminationResponse:
        entitlement, beneficiary = self._node.lifecycle.review_termination(
            _actor(), request.beneficiary_id, request.confirm, request.reason
        )
        return desk_pb2.ReviewTerminationResponse(
            entitlement=entitlement_view(entitlement, beneficiary)
        )

    def ListEntitlements(
        self, request: desk_pb2.ListEntitlementsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListEntitlementsResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        state = None
        if request.state:
            state = STATE_FILTERS.get(request.state)
            if state is None:
                raise InvalidInputError("state", "is not a known entitlement state")
        which = EntitlementFilter(state, request.with_overpayment, request.possible_duplicate)
        with self._node.context.session() as session:
            rows, token = entitlements_store.page(session, which, size, request.page_token)
            total = entitlements_store.count(session, which) if not request.page_token else 0
        return desk_pb2.ListEntitlementsResponse(
            entitlements=[entitlement_view(e, b) for e, b in rows],
            next_page_token=token,
            total_size=total,
        )

    def RunCycle(
        self, request: desk_pb2.RunCycleRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RunCycleResponse:
        day = optional_datetime(request, "day")
        outcome = self._node.daily_cycle.run_cycle(
            _actor(), day.astimezone(UTC).date() if day else None
        )
        return desk_pb2.RunCycleResponse(
            ran=outcome.ran,
            became_due=outcome.became_due,
            requests_sent=outcome.requests_sent,
            reminders_queued=outcome.reminders_queued,
            warned=outcome.warned,
            suspended=outcome.suspended,
            skipped_beneficiary_ids=outcome.skipped,
        )

    def ListPaymentInstructions(
        self, request: desk_pb2.ListPaymentInstructionsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListPaymentInstructionsResponse:
        try:
            parse_month(request.month)
        except ValueError:
            raise InvalidInputError(
                "month", "must be a month written YYYY-MM, e.g. 2025-07"
            ) from None
        size = page_size(request.page_size, self._node.context.config.limits)
        with self._node.context.session() as session:
            rows, token = payments_store.page_for_month(
                session, request.month, size, request.page_token
            )
            total = (
                payments_store.count_for_month(session, request.month)
                if not request.page_token
                else 0
            )
        return desk_pb2.ListPaymentInstructionsResponse(
            instructions=[instruction_view(i, b) for i, b in rows],
            next_page_token=token,
            total_size=total,
        )

    def ListReminders(
        self, request: desk_pb2.ListRemindersRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListRemindersResponse:
        office = self._node.context
        size = page_size(request.page_size, office.config.limits)
        with Session(office.engine) as session:
            reminders, token = reminders_store.waiting(session, size, request.page_token)
        # Unsealed here for the notifier only, which is why the RPC is admin-only. A roll's
        # identities are sealed a batch to one key: `data_keys` opens each batch's key once.
        data_keys: dict[bytes, bytes] = {}
        views = [
            reminder_view(
                reminder,
                open_identity(
                    office, reminder.sealed_identity, reminder.subject_locator, data_keys
                ).phone,
            )
            for reminder in reminders
        ]
        return desk_pb2.ListRemindersResponse(reminders=views, next_page_token=token)

    def AcknowledgeReminders(
        self, request: desk_pb2.AcknowledgeRemindersRequest, context: grpc.ServicerContext
    ) -> desk_pb2.AcknowledgeRemindersResponse:
        limits = self._node.context.config.limits
        if len(request.reminder_ids) > limits.max_page_size:
            raise InvalidInputError(
                "reminder_ids", f"acknowledge at most {limits.max_page_size} at once"
            )
        ids = [
            require_id(value, f"reminder_ids[{index}]")
            for index, value in enumerate(request.reminder_ids)
        ]
        with session_scope(self._node.context.engine) as session:
            count = reminders_store.acknowledge(session, ids, self._node.context.now())
        return desk_pb2.AcknowledgeRemindersResponse(acknowledged=count)

    def GetReport(
        self, request: desk_pb2.GetReportRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetReportResponse:
        start = optional_datetime(request, "from")
        end = optional_datetime(request, "to") or datetime.now(UTC)
        if start is not None and start >= end:
            raise InvalidInputError("from", "must be before to")
        with Session(self._node.context.engine) as session:
            certified, by_method = reports_store.certifications_by_method(
                session, self._node.context.node_id, start, end
            )
            return desk_pb2.GetReportResponse(
                beneficiaries=reports_store.beneficiary_count(session),
                certified=certified,
                by_method=[
                    desk_pb2.MethodShare(
                        method=common_pb2.CertificationMethod.ValueType(method), count=count
                    )
                    for method, count in sorted(by_method.items())
                ],
                overpayments_fen=reports_store.overpayments_total(session),
                possible_duplicates=reports_store.possible_duplicates(session),
            )

    # The roll.

    def UpsertBeneficiaries(
        self, request: desk_pb2.UpsertBeneficiariesRequest, context: grpc.ServicerContext
    ) -> desk_pb2.UpsertBeneficiariesResponse:
        rows = self._node.roll.upsert(_actor(), list(request.beneficiaries))
        return desk_pb2.UpsertBeneficiariesResponse(results=[upsert_result_view(r) for r in rows])

    def FindBeneficiary(
        self, request: desk_pb2.FindBeneficiaryRequest, context: grpc.ServicerContext
    ) -> desk_pb2.FindBeneficiaryResponse:
        entitlement, beneficiary, pending = self._node.roll.find(request)
        response = desk_pb2.FindBeneficiaryResponse(
            entitlement=entitlement_view(entitlement, beneficiary)
        )
        if pending is not None:
            response.pending_amount_change.CopyFrom(amount_change_view(pending))
        return response

    def UpdateBeneficiaryContact(
        self, request: desk_pb2.UpdateBeneficiaryContactRequest, context: grpc.ServicerContext
    ) -> desk_pb2.UpdateBeneficiaryContactResponse:
        beneficiary, changed = self._node.roll.update_contact(_actor(), request)
        return desk_pb2.UpdateBeneficiaryContactResponse(
            beneficiary=beneficiary_view(beneficiary), changed_fields=changed
        )

    def ProposeMonthlyAmount(
        self, request: desk_pb2.ProposeMonthlyAmountRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ProposeMonthlyAmountResponse:
        change = self._node.monthly_amounts.propose(_actor(), request)
        return desk_pb2.ProposeMonthlyAmountResponse(change=amount_change_view(change))

    def ReviewMonthlyAmount(
        self, request: desk_pb2.ReviewMonthlyAmountRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ReviewMonthlyAmountResponse:
        change = self._node.monthly_amounts.review(_actor(), request)
        return desk_pb2.ReviewMonthlyAmountResponse(change=amount_change_view(change))

    def ReviewMonthlyAmounts(
        self, request: desk_pb2.ReviewMonthlyAmountsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ReviewMonthlyAmountsResponse:
        decided, left = self._node.monthly_amounts.review_many(_actor(), request)
        return desk_pb2.ReviewMonthlyAmountsResponse(
            decided=decided,
            left=[
                desk_pb2.LeftAmountChange(change_id=one.change_id, reason=one.reason, kind=one.kind)
                for one in left
            ],
        )

    def GetAmountChange(
        self, request: desk_pb2.GetAmountChangeRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetAmountChangeResponse:
        change_id = require_id(request.change_id, "change_id")
        with self._node.context.session() as session:
            change = amount_changes.get(session, change_id)
            return desk_pb2.GetAmountChangeResponse(change=amount_change_view(change))

    def ListAmountChanges(
        self, request: desk_pb2.ListAmountChangesRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListAmountChangesResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        state = None
        if request.status:
            state = AMOUNT_CHANGE_FILTERS.get(request.status)
            if state is None:
                raise InvalidInputError("status", "is not a known amount change status")
        with self._node.context.session() as session:
            rows, token = amount_changes.page(session, state, size, request.page_token)
            total = amount_changes.count(session, state) if not request.page_token else 0
        return desk_pb2.ListAmountChangesResponse(
            changes=[amount_change_view(c) for c in rows], next_page_token=token, total_size=total
        )

    def ClosePaymentMonth(
        self, request: desk_pb2.ClosePaymentMonthRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ClosePaymentMonthResponse:
        newly, first_open = self._node.lifecycle.close_payment_month(_actor(), request.month)
        return desk_pb2.ClosePaymentMonthResponse(
            month=request.month, newly_closed=newly, first_open_month=month_label(first_open)
        )
