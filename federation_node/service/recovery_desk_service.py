"""The desk methods of overpayment recovery (the debts list, one person's debt, a recovery and a
fraud finding recorded) and of the death reports that came late. Mixed into `DeskServicer`; the
operations are in offices/recovery.py and offices/death_reports.py."""

from __future__ import annotations

import grpc

from certfed.v1 import desk_pb2
from federation.errors import InvalidInputError
from federation.principal import caller
from federation.timestamps import optional_datetime, to_timestamp
from federation_node.offices.context import Actor
from federation_node.offices.node import Node
from federation_node.rules.report_windows import DeathReporter
from federation_node.store.models import DeathReport, DebtEntry, DebtEntryKind, RecoveryMethod
from federation_node.store.recoveries import Debt

RECOVERY_METHODS = {
    desk_pb2.RECOVERY_METHOD_BANK_RETURN: RecoveryMethod.BANK_RETURN,
    desk_pb2.RECOVERY_METHOD_REPAYMENT: RecoveryMethod.REPAYMENT,
    desk_pb2.RECOVERY_METHOD_WITHHOLDING: RecoveryMethod.WITHHOLDING,
}
METHOD_VIEWS = {method: value for value, method in RECOVERY_METHODS.items()}
ENTRY_KINDS = {
    DebtEntryKind.FRAUD: desk_pb2.DEBT_ENTRY_KIND_FRAUD,
    DebtEntryKind.RECOVERY: desk_pb2.DEBT_ENTRY_KIND_RECOVERY,
}


def debt_view(debt: Debt) -> desk_pb2.Debt:
    return desk_pb2.Debt(
        beneficiary_id=debt.beneficiary_id,
        masked_identity_number=debt.masked_identity_number,
        overpayment_fen=debt.overpayment_fen,
        fraud_fen=debt.fraud_fen,
        recovered_fen=debt.recovered_fen,
        balance_fen=debt.balance_fen,
    )


def entry_view(entry: DebtEntry) -> desk_pb2.DebtEntry:
    return desk_pb2.DebtEntry(
        entry_id=entry.entry_id,
        kind=ENTRY_KINDS[entry.kind],
        amount_fen=entry.amount_fen,
        fine_fen=entry.fine_fen,
        method=(
            METHOD_VIEWS[entry.method]
            if entry.method is not None
            else desk_pb2.RECOVERY_METHOD_UNSPECIFIED
        ),
        occurred_at=to_timestamp(entry.occurred_at),
        reference=entry.reference,
        recorded_by=entry.recorded_by,
        recorded_at=to_timestamp(entry.recorded_at),
    )


REPORTER_VIEWS = {
    DeathReporter.FAMILY: desk_pb2.DEATH_REPORTER_FAMILY,
    DeathReporter.UNIT: desk_pb2.DEATH_REPORTER_UNIT,
    DeathReporter.VILLAGE: desk_pb2.DEATH_REPORTER_VILLAGE,
}


def late_report_view(report: DeathReport) -> desk_pb2.LateDeathReport:
    return desk_pb2.LateDeathReport(
        certification_id=report.certification_id,
        beneficiary_id=report.beneficiary_id or "",
        reporter=REPORTER_VIEWS[report.reporter],
        died_at=to_timestamp(report.died_at),
        reported_at=to_timestamp(report.reported_at),
        days_taken=report.days_taken,
        window_days=report.window_days,
    )


def _actor() -> Actor:
    return Actor("operator", caller().name)


class RecoveryDesk:
    """The recovery RPCs, for a servicer holding `_node`."""

    _node: Node

    def ListDebts(
        self, request: desk_pb2.ListDebtsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListDebtsResponse:
        debts, token = self._node.recoveries.list_debts(request.page_size, request.page_token)
        return desk_pb2.ListDebtsResponse(
            debts=[debt_view(debt) for debt in debts], next_page_token=token
        )

    def GetDebt(
        self, request: desk_pb2.GetDebtRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetDebtResponse:
        debt, entries = self._node.recoveries.debt(request.beneficiary_id)
        return desk_pb2.GetDebtResponse(
            debt=debt_view(debt), entries=[entry_view(entry) for entry in entries]
        )

    def RecordRecovery(
        self, request: desk_pb2.RecordRecoveryRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RecordRecoveryResponse:
        method = RECOVERY_METHODS.get(request.method)
        if method is None:
            raise InvalidInputError("method", "is required: bank_return, repayment or withholding")
        entry, debt = self._node.recoveries.record_recovery(
            _actor(),
            request.beneficiary_id,
            request.amount_fen,
            optional_datetime(request, "received_at"),
            method,
            request.reference,
        )
        return desk_pb2.RecordRecoveryResponse(entry=entry_view(entry), debt=debt_view(debt))

    def RecordFraud(
        self, request: desk_pb2.RecordFraudRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RecordFraudResponse:
        entry, debt = self._node.recoveries.record_fraud(
            _actor(),
            request.beneficiary_id,
            request.obtained_fen,
            optional_datetime(request, "found_at"),
            request.reference,
        )
        return desk_pb2.RecordFraudResponse(entry=entry_view(entry), debt=debt_view(debt))

    def ListLateDeathReports(
        self, request: desk_pb2.ListLateDeathReportsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListLateDeathReportsResponse:
        reports, token = self._node.death_reports.list_late(request.page_size, request.page_token)
        return desk_pb2.ListLateDeathReportsResponse(
            reports=[late_report_view(report) for report in reports], next_page_token=token
        )
