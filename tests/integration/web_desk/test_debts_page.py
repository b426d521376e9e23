"""The web desk's debts list on a real Lanzhou paying office and its `certfed web serve`
process: what people owe after a fraud (with the policy's fine) and what was recovered, in the
operator's language, and downloaded whole as formula-safe CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation
from federation.timestamps import to_timestamp
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU
from tests.integration.web_desk.desk_http import DeskBrowser


@dataclass
class Desk:
    url: str
    passwords: dict[str, str]
    number: str

    def signed_in(self, operator: str, accept_language: str = "en") -> DeskBrowser:
        browser = DeskBrowser(self.url, accept_language=accept_language)
        assert browser.sign_in(operator, self.passwords[operator]).status == 303
        return browser


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    workdir: Path = tmp_path_factory.mktemp("debts-page")
    with LocalFederation(workdir, sign_in=True) as local:
        local.start_registry()
        local.add_node(LANZHOU, settings={"cycle_hour_utc": -1})
        number = resident_id("620102", date(1950, 2, 3), 21)
        with local.desk("lanzhou") as clerk:
            beneficiary_id = clerk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=resident(number),
                    residence_region="620102",
                    monthly_amount_fen=250_000,
                    valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=300)),
                )
            ).beneficiary.beneficiary_id
        with local.desk("lanzhou", "reviewer") as reviewer:
            reviewer.stub.RecordFraud(
                desk_pb2.RecordFraudRequest(
                    beneficiary_id=beneficiary_id,
                    obtained_fen=100_000,
                    found_at=to_timestamp(datetime.now(UTC) - timedelta(days=2)),
                    reference="CASE-9",
                )
            )
        with local.desk("lanzhou", "clerk") as clerk:
            clerk.stub.RecordRecovery(
                desk_pb2.RecordRecoveryRequest(
                    beneficiary_id=beneficiary_id,
                    amount_fen=50_000,
                    received_at=to_timestamp(datetime.now(UTC) - timedelta(days=1)),
                    method=desk_pb2.RECOVERY_METHOD_REPAYMENT,
                    reference="=HYPERLINK(1)",
                )
            )
        url = local.start_web_desk("lanzhou")
        yield Desk(url, local.nodes["lanzhou"].passwords, number)


def test_the_debts_page_lists_the_balance_in_the_operators_language(desk: Desk) -> None:
    masked = desk.number[:2] + "*" * 14 + desk.number[-2:]
    page = desk.signed_in("clerk").get("/debts")
    assert page.status == 200
    assert masked in page.text
    assert desk.number not in page.text
    # 1,000 yuan obtained, twice that as the fine, 500 recovered.
    assert "2,500.00" in page.text
    chinese = desk.signed_in("reviewer", "zh-Hans").get("/debts")
    assert chinese.status == 200
    assert "待追回款项" in chinese.text


def test_the_debts_download_as_formula_safe_csv(desk: Desk) -> None:
    answer = desk.signed_in("admin").get("/debts?format=csv")
    assert answer.status == 200
    assert answer.header("content-type").startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.body.decode("utf-8-sig"))))
    assert rows[0] == ["Person", "Identity number", "Overpayment", "Fraud and fine", "Recovered",
                       "Balance"]  # fmt: skip
    [row] = rows[1:]
    assert row[2:] == ["0.00", "3000.00", "500.00", "2500.00"]
    for cell in (cell for row in rows for cell in row):
        assert not cell.startswith(("=", "+", "@")), cell
