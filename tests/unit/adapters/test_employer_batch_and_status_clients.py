"""The employer-batch reader (a unit's CSV through its mapping) and the status endpoint's client
credentials: rows refused by line and column without their values; secrets kept only hashed,
revoked from the next check."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from adapters.employer_batch import batch_rows, load_batch_mapping
from adapters.errors import MappingError
from adapters.status_endpoint import ClientCredentials, add_client, revoke_client
from certfed.v1 import common_pb2
from federation.errors import InvalidInputError
from tests.helpers.identities import resident_id

NUMBER = resident_id("440604", date(1950, 1, 1), 3)


def mapping(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "unit.toml"
    path.write_text(
        '[columns]\nidentity_number = "身份证号码"\nconfirmed_on = "确认日期"\n'
        f'[file]\ndate_format = "%Y/%m/%d"\n{extra}',
        encoding="utf-8",
    )
    return path


def test_a_csv_list_becomes_rows_and_unreadable_rows_are_refused_by_line(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        f"身份证号码,确认日期\n{NUMBER},2026/12/01\n{NUMBER},01-12-2026\n,2026/12/01\n",
        encoding="utf-8",
    )
    refused: list[tuple[int, str]] = []
    rows = batch_rows(path, load_batch_mapping(mapping(tmp_path)), lambda *row: refused.append(row))
    assert [(row.line, row.identity_number) for row in rows] == [(2, NUMBER)]
    assert rows[0].identity_type == common_pb2.IDENTITY_TYPE_RESIDENT_ID
    assert [line for line, _ in refused] == [3, 4]
    assert all(NUMBER not in reason and "01-12-2026" not in reason for _, reason in refused)


def test_a_list_without_a_mapped_column_is_refused_whole(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(f"证件号,确认日期\n{NUMBER},2026/12/01\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="身份证号码"):
        batch_rows(path, load_batch_mapping(mapping(tmp_path)), lambda *_: None)


@pytest.mark.parametrize(
    ("extra", "setting"),
    [('identity_type = "ssn"\n', "identity_type"), ('sheets = "x"\n', "sheets")],
)
def test_a_mapping_with_an_unknown_value_or_setting_is_refused(
    tmp_path: Path, extra: str, setting: str
) -> None:
    with pytest.raises(MappingError, match=setting):
        load_batch_mapping(mapping(tmp_path, extra))


def test_client_secrets_are_kept_hashed_and_revoked_from_the_next_check(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    credential = add_client(clients, "portal")
    client_id, secret = credential.split(".", 1)
    assert secret not in clients.read_text(encoding="utf-8")
    checker = ClientCredentials(clients)
    assert checker.check(credential) == "portal"
    assert checker.check(f"{client_id}.wrong") is None
    assert checker.check("nobody." + secret) is None
    with pytest.raises(InvalidInputError, match="exists"):
        add_client(clients, "portal")
    revoke_client(clients, "portal")
    assert checker.check(credential) is None
