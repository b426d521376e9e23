"""Desk lists are paged by cursor end to end: every item once across pages, whatever is inserted
between them, and at the terminal one page with how many more, `--all` and `--csv`."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation
from cli.main import main
from federation.desk_client import DeskClient
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU

FIRST = 250


class Office:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0
        # The people registered before any test pages through the list.
        self.first = self.register(FIRST)

    def register(self, count: int) -> list[str]:
        people = []
        for _ in range(count):
            self.serial += 1
            born = date(1940, 1, 1) + timedelta(days=self.serial // 900)
            people.append(
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=resident(resident_id("620102", born, self.serial % 900)),
                    residence_region="620102",
                    monthly_amount_fen=100_000,
                )
            )
        with self.local.desk("lanzhou") as desk:
            added = desk.stub.RegisterBeneficiaries(
                desk_pb2.RegisterBeneficiariesRequest(beneficiaries=people)
            ).beneficiaries
        return [person.beneficiary_id for person in added]


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(tmp_path_factory.mktemp("paging")) as local:
            local.start_registry()
            local.add_node(LANZHOU)
            yield Office(local)


def _beneficiary_page(desk: DeskClient, token: str) -> desk_pb2.ListBeneficiariesResponse:
    page: desk_pb2.ListBeneficiariesResponse = desk.stub.ListBeneficiaries(
        desk_pb2.ListBeneficiariesRequest(page_size=100, page_token=token)
    )
    return page


def test_a_list_of_250_returns_each_once_across_pages_despite_inserts_between_them(
    office: Office,
) -> None:
    first = office.first
    seen: list[str] = []
    with office.local.desk("lanzhou", "reviewer") as desk:
        page = _beneficiary_page(desk, "")
        assert page.total_size == FIRST
        pages = 1
        while True:
            seen += [b.beneficiary_id for b in page.beneficiaries]
            if not page.next_page_token:
                break
            # Others register people while the clerk pages through the list.
            late = office.register(10)
            page = _beneficiary_page(desk, page.next_page_token)
            assert page.total_size == 0, "counted on the first page only"
            pages += 1
        assert len(seen) == len(set(seen)), "no item twice"
        assert set(first) <= set(seen), "every item that was there when paging began"
        assert seen[: len(first)] == first, "in the order they were registered"
        assert late[-1] in seen, "items inserted meanwhile come after, at the end"
        assert pages >= 3

        entitlements: list[str] = []
        token = ""
        while True:
            response = desk.stub.ListEntitlements(
                desk_pb2.ListEntitlementsRequest(
                    state=desk_pb2.ENTITLEMENT_STATE_ACTIVE, page_size=70, page_token=token
                )
            )
            if not token:
                assert response.total_size == len(seen)
            entitlements += [e.beneficiary.beneficiary_id for e in response.entitlements]
            office.register(3)
            token = response.next_page_token
            if not token:
                break
    assert len(entitlements) == len(set(entitlements))
    assert set(seen) <= set(entitlements)


def test_the_terminal_prints_a_page_with_how_many_more_and_writes_all_to_csv(
    office: Office,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    handle = office.local.nodes["lanzhou"]
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", handle.tokens["reviewer"])
    monkeypatch.setenv("COLUMNS", "250")
    config = str(handle.config_path)
    with office.local.desk("lanzhou", "reviewer") as desk:
        total = desk.stub.ListBeneficiaries(desk_pb2.ListBeneficiariesRequest()).total_size
    assert main(["desk", "--config", config, "beneficiaries", "--page-size", "100"]) == 0
    printed = capsys.readouterr().out
    assert f"100 of {total:,}; {total - 100:,} more" in printed
    assert "--page-token" in printed
    token = printed.split("--page-token ")[1].split(",")[0].strip()
    assert main(["desk", "--config", config, "beneficiaries", "--page-token", token]) == 0
    assert "more" in capsys.readouterr().out
    out = tmp_path / "beneficiaries.csv"
    assert main(["desk", "--config", config, "beneficiaries", "--csv", str(out)]) == 0
    with out.open(encoding="utf-8") as opened:
        rows = list(csv.DictReader(opened))
    assert len(rows) == total
    assert len({row["beneficiary_id"] for row in rows}) == total
    assert main(["desk", "--config", config, "beneficiaries", "--all"]) == 0
    assert f"{total:,} rows" in capsys.readouterr().out
    # A list the node does not count says there are more without a number.
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", handle.tokens["admin"])
    assert main(["desk", "--config", config, "outbox", "--page-size", "1", "--state", "all"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "more: use --all" in last or "no more" in last
