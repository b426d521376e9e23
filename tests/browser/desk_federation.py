"""The federation the browser tests run against, as the tests use it: each office's desk URL
and operators' passwords, new operators and retirees made for one test, and the check that no
identity number a test used ever reached a URL or a log."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation, NodeSpec
from federation.timestamps import to_timestamp
from tests.helpers.identities import resident, resident_id


@dataclass(frozen=True)
class Person:
    """A synthetic retiree registered at a paying office for the browser tests."""

    identity_number: str
    beneficiary_id: str
    payer: NodeSpec


@dataclass
class DeskFederation:
    local: LocalFederation
    # Identity numbers of everyone a test registered, to look for in URLs and logs.
    identity_numbers: set[str] = field(default_factory=set)
    _serial: int = 0

    def url(self, node_id: str) -> str:
        return self.local.nodes[node_id].web_url

    def password(self, node_id: str, account: str) -> str:
        return self.local.nodes[node_id].passwords[account]

    def add_operator(self, node_id: str, label: str, *roles: str) -> tuple[str, str, str]:
        """A new operator with a password, added by the office's administrator: (operator id,
        user name, password)."""
        self._serial += 1
        user_name = f"{label}{self._serial}"
        password = secrets.token_urlsafe(12)
        role_values = [desk_pb2.OperatorRole.Value(f"OPERATOR_ROLE_{r.upper()}") for r in roles]
        with self.local.desk(node_id, "admin") as admin:
            added = admin.stub.AddOperator(
                desk_pb2.AddOperatorRequest(
                    label=f"browser test {user_name}",
                    user_name=user_name,
                    password=password,
                    roles=role_values,
                )
            )
        return added.operator.operator_id, user_name, password

    def register(self, payer: NodeSpec, residence_region: str, valid_for_days: int = 20) -> Person:
        """A new retiree of `payer`, living in `residence_region`, due for certification."""
        self._serial += 1
        number = resident_id(payer.region_codes[0], date(1950, 1, 1), self._serial)
        with self.local.desk(payer.node_id) as desk:
            registered = desk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=resident(number, "Browser Test Retiree", phone="13800000000"),
                    residence_region=residence_region,
                    valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=valid_for_days)),
                    monthly_amount_fen=320_000,
                )
            )
        self.identity_numbers.add(number)
        return Person(number, registered.beneficiary.beneficiary_id, payer)

    def logs(self) -> dict[Path, str]:
        """Every log the federation's processes (registry, nodes, web desks) wrote so far."""
        return {
            path: path.read_text(encoding="utf-8", errors="replace")
            for path in self.local.workdir.rglob("*.log")
        }


def assert_no_identity_number_leaked(federation: DeskFederation, urls: list[str]) -> None:
    """No identity number registered by the tests in any URL a browser requested, nor in any
    log line of the registry, the nodes or the web desks."""
    assert urls, "no request was recorded"
    for number in federation.identity_numbers:
        for url in urls:
            assert number not in url, f"an identity number travelled in {url}"
        for path, text in federation.logs().items():
            assert number not in text, f"an identity number ({number[:4]}...) is in {path}"
