"""The debts list of a paying office: what each person owes after a death or a fraud, what was
recovered and the balance, page by page or downloaded whole as CSV or Excel (formula-safe).
Read-only: recoveries are recorded through the desk API (`certfed desk recoveries record`)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import Response

from adapters.web_desk import labels
from adapters.web_desk.listing import csv_download, every_row, paged, xlsx_download
from adapters.web_desk.page import Page
from adapters.web_desk.pages.paying_office import LIST_VIEWS
from certfed.v1 import desk_pb2

DEBT_COLUMNS = (
    labels.N_("Person"),
    labels.N_("Identity number"),
    labels.N_("Overpayment"),
    labels.N_("Fraud and fine"),
    labels.N_("Recovered"),
    labels.N_("Balance"),
)


def debts(page: Page) -> Response:
    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.Debt], str]:
        answer = page.node.stub.ListDebts(
            desk_pb2.ListDebtsRequest(page_size=size, page_token=token)
        )
        return answer.debts, answer.next_page_token

    fmt = page.query("format")
    if fmt in ("csv", "xlsx"):
        rows = [
            [
                debt.beneficiary_id,
                debt.masked_identity_number,
                f"{debt.overpayment_fen / 100:.2f}",
                f"{debt.fraud_fen / 100:.2f}",
                f"{debt.recovered_fen / 100:.2f}",
                f"{debt.balance_fen / 100:.2f}",
            ]
            for debt in every_row(fetch)
        ]
        header = [page._(column) for column in DEBT_COLUMNS]
        download = csv_download if fmt == "csv" else xlsx_download
        return download("certfed-debts", header, rows)
    return page.render(
        "debts.html",
        view="debts",
        views=[(name, page._(label)) for name, (label, _q) in LIST_VIEWS.items()],
        title=page._("Debts: overpayments and frauds to recover"),
        paged=paged(page, "list:debts", fetch),
    )
