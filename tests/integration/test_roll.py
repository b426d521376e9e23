"""The paying office's roll against a real node: imported from CSV and XLSX through the desk API,
malformed rows refused by line and column, re-imported without registering anyone twice, a
person's contact details and monthly amount changed (the amount under four eyes), and a person
found by identity number. No identity number or name reaches an error, a rejects file, the
audit trail or the node's log."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from openpyxl import Workbook

from adapters.roll import RollImportSummary
from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.launcher import LocalFederation, NodeHandle
from cli.main import main
from cli.operator_commands import create_operator, host_actor
from cli.roll_import import import_roll_file
from federation.desk_client import DeskClient
from federation.timestamps import to_datetime, to_timestamp
from federation_node.ids import new_id
from federation_node.store import db
from federation_node.store.models import AuditRecord, OperatorRole
from tests.helpers.audit_trail import chained_records
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU

HEADER = (
    "name", "id_type", "id_number", "scheme", "monthly_amount_fen", "payment_start",
    "valid_until", "residence_region", "phone",
)  # fmt: skip
NAME = "王秀英"


def number(serial: int, born: date = date(1950, 3, 1)) -> str:
    return resident_id("620102", born, serial)


def roll_row(serial: int, **changes: str) -> dict[str, str]:
    row = {
        "name": NAME,
        "id_type": "resident_id",
        "id_number": number(serial),
        "scheme": "employee",
        "monthly_amount_fen": "320000",
        "payment_start": "2012-07",
        "valid_until": "2027-06-30",
        "residence_region": "620102",
        "phone": "13800000000",
    }
    row.update(changes)
    return row


def write_roll(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def import_roll(desk: DeskClient, path: Path, mapping: str = "certfed_roll") -> RollImportSummary:
    return import_roll_file(
        desk,
        path,
        mapping_name=mapping,
        fmt=None,
        sheet=None,
        batch_size=40,
        rejects_path=path.with_suffix(".rejects.csv"),
        show_progress=False,
    )


def rejects(path: Path) -> list[dict[str, str]]:
    with path.with_suffix(".rejects.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def find(desk: DeskClient, serial: int) -> desk_pb2.FindBeneficiaryResponse:
    found: desk_pb2.FindBeneficiaryResponse = desk.stub.FindBeneficiary(
        desk_pb2.FindBeneficiaryRequest(
            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID, identity_number=number(serial)
        )
    )
    return found


class Office:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.handle: NodeHandle = local.nodes["lanzhou"]
        # One operator holding both roles: separation of duties must still stop them.
        engine = db.create_engine_for(self.handle.config.effective_database_url)
        try:
            with db.session_scope(engine) as session:
                _, self.both_roles = create_operator(
                    session,
                    label="Lanzhou clerk and reviewer",
                    roles=[OperatorRole.CLERK, OperatorRole.REVIEWER],
                    actor=host_actor(),
                    now=datetime.now(UTC),
                )
        finally:
            engine.dispose()

    def desk(self, operator: str = "clerk") -> DeskClient:
        return self.local.desk("lanzhou", operator)

    def desk_with_both_roles(self) -> DeskClient:
        return DeskClient(
            f"127.0.0.1:{self.handle.desk_port}",
            "lanzhou",
            self.handle.config.ca_certificate.read_bytes(),
            self.both_roles,
            self.local.limits,
        )

    def audit(self, action: str) -> list[dict[str, object]]:
        engine = db.create_engine_for(self.handle.config.effective_database_url)
        try:
            return [
                dict(record.details)
                for record in chained_records(engine, AuditRecord.action == action)
            ]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    with LocalFederation(tmp_path_factory.mktemp("roll")) as local:
        local.start_registry()
        local.add_node(LANZHOU)
        yield Office(local)


def test_a_roll_registers_everyone_once_and_a_reimport_applies_only_changes(
    office: Office, tmp_path: Path
) -> None:
    first = write_roll(tmp_path / "roll.csv", [roll_row(serial) for serial in range(100)])
    with office.desk() as desk:
        summary = import_roll(desk, first)
        assert (summary.rows, summary.created, summary.rejected) == (100, 100, 0)
        found = find(desk, 7)
        person = found.entitlement.beneficiary
        assert found.entitlement.monthly_amount_fen == 320_000
        assert person.scheme == desk_pb2.PENSION_SCHEME_EMPLOYEE
        assert person.payment_start_month == "2012-07"
        assert to_datetime(person.valid_until) == datetime(2027, 6, 30, tzinfo=UTC)
        assert person.residence_region == "620102"

        # The same file again: nobody registered twice, nothing changed.
        again = import_roll(desk, first)
        assert (again.created, again.updated, again.unchanged) == (0, 0, 100)

        # Row 7 moved and has a new phone; row 8's pension changes; a new person arrives.
        rows = [roll_row(serial) for serial in range(100)]
        rows[7] = roll_row(7, residence_region="620103", phone="13900000000")
        rows[8] = roll_row(8, monthly_amount_fen="335000")
        rows.append(roll_row(100))
        changed = import_roll(desk, write_roll(tmp_path / "roll-2.csv", rows))
        assert (changed.created, changed.updated, changed.unchanged) == (1, 1, 99)
        assert changed.amount_changes == 1
        moved = find(desk, 7).entitlement.beneficiary
        assert moved.residence_region == "620103"
        pending = find(desk, 8)
        # Until a reviewer approves, the old amount stays.
        assert pending.entitlement.monthly_amount_fen == 320_000
        assert pending.pending_amount_change.proposed_amount_fen == 335_000
        listed = desk.stub.ListBeneficiaries(desk_pb2.ListBeneficiariesRequest(page_size=10))
        assert listed.total_size >= 101

        # Importing the changed file again proposes nothing new and changes nothing.
        repeat = import_roll(desk, tmp_path / "roll-2.csv")
        assert (repeat.created, repeat.updated, repeat.unchanged) == (0, 0, 101)
        assert repeat.amount_changes == 1
    with office.desk("reviewer") as reviewer:
        approved = reviewer.stub.ReviewMonthlyAmount(
            desk_pb2.ReviewMonthlyAmountRequest(
                change_id=pending.pending_amount_change.change_id, approve=True
            )
        ).change
    assert approved.status == desk_pb2.AMOUNT_CHANGE_STATUS_APPROVED
    with office.desk() as desk:
        assert find(desk, 8).entitlement.monthly_amount_fen == 335_000
    imports = office.audit("beneficiary.roll_import")
    # Every batch is audited: who registered whom and which fields of whom changed.
    assert sum(len(details["created"]) for details in imports) == 101  # type: ignore[arg-type]
    assert any("residence_region+phone" in str(details["updated"]) for details in imports)
    text = repr(imports)
    for secret in (NAME, number(7), "13900000000"):
        assert secret not in text


def test_malformed_rows_are_refused_by_line_and_column_without_their_values(
    office: Office, tmp_path: Path
) -> None:
    bad_check = number(301)[:-1] + ("0" if number(301)[-1] != "0" else "1")
    path = tmp_path / "bad.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        writer.writerow(roll_row(300))  # line 2: good
        writer.writerow(roll_row(301, id_number=bad_check))  # line 3
        writer.writerow(roll_row(302, name=""))  # line 4
        writer.writerow(roll_row(303, residence_region="Lanzhou"))  # line 5
        writer.writerow(roll_row(304, monthly_amount_fen="3200.5"))  # line 6
        writer.writerow(roll_row(305, valid_until="30/06/2027"))  # line 7
        writer.writerow(roll_row(306, id_type="身份证"))  # line 8
        writer.writerow(roll_row(307, phone="call my daughter"))  # line 9
        writer.writerow(roll_row(300))  # line 10: the person of line 2 again
        writer.writerow(roll_row(308, scheme="military"))  # line 11
        writer.writerow(roll_row(309, payment_start="July 2012"))  # line 12
        writer.writerow(roll_row(310))  # line 13: good
    with office.desk() as desk:
        summary = import_roll(desk, path)
    assert (summary.rows, summary.created, summary.rejected) == (12, 2, 10)
    refused = {int(row["line"]): (row["column"], row["reason"]) for row in rejects(path)}
    assert {line: column for line, (column, _) in refused.items()} == {
        3: "id_number",
        4: "name",
        5: "residence_region",
        6: "monthly_amount_fen",
        7: "valid_until",
        8: "id_type",
        9: "phone",
        10: "id_number",
        11: "scheme",
        12: "payment_start",
    }
    assert "check character" in refused[3][1]
    text = path.with_suffix(".rejects.csv").read_text(encoding="utf-8")
    for secret in (bad_check, number(300), "Lanzhou", "call my daughter", "身份证", NAME):
        assert secret not in text


def test_an_xlsx_roll_in_the_core_systems_layout_imports_and_a_number_cell_is_refused(
    office: Office, tmp_path: Path
) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(
        ["姓名", "证件类型", "证件号码", "险种类型", "月发放金额", "待遇享受开始年月",
         "认证有效期截止日期", "居住地行政区划代码", "联系电话"]
    )  # fmt: skip
    sheet.append(
        [NAME, "居民身份证", number(400), "城乡居民基本养老保险", 215.5, "201801",
         datetime(2027, 1, 31), "620102", "13800000001"]
    )  # fmt: skip
    # An 18-digit number typed into a number cell: Excel has rounded it already.
    sheet.append(
        [NAME, "居民身份证", int(number(401)[:17]), "城乡居民基本养老保险", 215.5, "201801",
         None, 620102, ""]
    )  # fmt: skip
    path = tmp_path / "roll.xlsx"
    workbook.save(path)
    with office.desk() as desk:
        summary = import_roll(desk, path, "core_system")
        assert (summary.rows, summary.created, summary.rejected) == (2, 1, 1)
        [refused] = rejects(path)
        assert (refused["line"], refused["column"]) == ("3", "证件号码")
        assert "number" in refused["reason"]
        found = find(desk, 400)
    assert found.entitlement.monthly_amount_fen == 21_550
    assert found.entitlement.beneficiary.scheme == desk_pb2.PENSION_SCHEME_RESIDENT
    assert found.entitlement.beneficiary.payment_start_month == "2018-01"


@pytest.mark.parametrize(
    ("serial", "field_name", "change"),
    [
        (520, "valid_until", {"valid_until": to_timestamp(datetime(1, 1, 1, tzinfo=UTC))}),
        (521, "valid_until", {"valid_until": to_timestamp(datetime(9999, 12, 31, tzinfo=UTC))}),
        (522, "valid_until", {"valid_until": to_timestamp(datetime(1900, 6, 30, tzinfo=UTC))}),
        (523, "payment_start_month", {"payment_start_month": "0001-01"}),
        (524, "payment_start_month", {"payment_start_month": "9999-12"}),
    ],
)
def test_dates_that_break_the_year_are_refused_by_field_and_nothing_is_registered(
    office: Office, serial: int, field_name: str, change: dict[str, object]
) -> None:
    request = desk_pb2.RegisterBeneficiaryRequest(
        identity=common_identity(serial), residence_region="620102", **change
    )
    with office.desk() as desk:
        with pytest.raises(grpc.RpcError) as refused:
            desk.stub.RegisterBeneficiary(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_name in (refused.value.details() or "")
        assert "must be between 1950-01-01 and" in (refused.value.details() or "")
        with pytest.raises(grpc.RpcError) as missing:
            find(desk, serial)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_clerk_updates_residence_and_phone_and_the_change_is_audited(office: Office) -> None:
    with office.desk() as desk:
        registered = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=common_identity(500), residence_region="620102", monthly_amount_fen=1
            )
        ).beneficiary
        updated = desk.stub.UpdateBeneficiaryContact(
            desk_pb2.UpdateBeneficiaryContactRequest(
                beneficiary_id=registered.beneficiary_id,
                residence_region="370202",
                phone="13700000000",
            )
        )
        assert list(updated.changed_fields) == ["residence_region", "phone"]
        assert updated.beneficiary.residence_region == "370202"
        with pytest.raises(grpc.RpcError) as bad:
            desk.stub.UpdateBeneficiaryContact(
                desk_pb2.UpdateBeneficiaryContactRequest(
                    beneficiary_id=registered.beneficiary_id, residence_region="99"
                )
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "residence_region" in (bad.value.details() or "")
    with office.desk("admin") as admin:
        reminders = admin.stub.ListReminders(desk_pb2.ListRemindersRequest()).reminders
    assert all(r.beneficiary_id != registered.beneficiary_id for r in reminders)
    audited = [
        details
        for details in office.audit("beneficiary.update_contact")
        if details.get("residence_region") == "370202"
    ]
    assert audited
    assert audited[0]["changed"] == ["residence_region", "phone"]
    assert "13700000000" not in repr(office.audit("beneficiary.update_contact"))


def common_identity(serial: int) -> attestation_pb2.IdentityBundle:
    return resident(number(serial), NAME, phone="13800000002")


def test_a_new_amount_applies_only_when_another_operator_approves_it(office: Office) -> None:
    with office.desk() as desk:
        beneficiary_id = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=common_identity(600), residence_region="620102", monthly_amount_fen=200_000
            )
        ).beneficiary.beneficiary_id
    with office.desk_with_both_roles() as both:
        change = both.stub.ProposeMonthlyAmount(
            desk_pb2.ProposeMonthlyAmountRequest(
                beneficiary_id=beneficiary_id, monthly_amount_fen=210_000, reason="annual rise"
            )
        ).change
        assert change.status == desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED
        with pytest.raises(grpc.RpcError) as own:
            both.stub.ReviewMonthlyAmount(
                desk_pb2.ReviewMonthlyAmountRequest(change_id=change.change_id, approve=True)
            )
        assert own.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "separation of duties" in (own.value.details() or "")
        listed = both.stub.ListAmountChanges(
            desk_pb2.ListAmountChangesRequest(status=desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED)
        )
        assert change.change_id in [c.change_id for c in listed.changes]
    with office.desk() as clerk, pytest.raises(grpc.RpcError) as not_reviewer:
        clerk.stub.ReviewMonthlyAmount(
            desk_pb2.ReviewMonthlyAmountRequest(change_id=change.change_id, approve=True)
        )
    assert not_reviewer.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with office.desk("reviewer") as reviewer:
        with pytest.raises(grpc.RpcError) as no_reason:
            reviewer.stub.ReviewMonthlyAmount(
                desk_pb2.ReviewMonthlyAmountRequest(change_id=change.change_id, approve=False)
            )
        assert "reason" in (no_reason.value.details() or "")
        unchanged = reviewer.stub.FindBeneficiary(
            desk_pb2.FindBeneficiaryRequest(
                identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID, identity_number=number(600)
            )
        ).entitlement
        assert unchanged.monthly_amount_fen == 200_000
        reviewer.stub.ReviewMonthlyAmount(
            desk_pb2.ReviewMonthlyAmountRequest(change_id=change.change_id, approve=True)
        )
        with pytest.raises(grpc.RpcError) as twice:
            reviewer.stub.ReviewMonthlyAmount(
                desk_pb2.ReviewMonthlyAmountRequest(change_id=change.change_id, approve=True)
            )
        assert twice.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with office.desk() as desk:
        assert find(desk, 600).entitlement.monthly_amount_fen == 210_000


def test_a_person_is_found_by_identity_number_and_the_number_is_never_echoed(
    office: Office, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with office.desk() as desk:
        desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=common_identity(700), residence_region="620102"
            )
        )
        assert find(desk, 700).entitlement.beneficiary.masked_identity_number.startswith("62")
        with pytest.raises(grpc.RpcError) as unknown:
            find(desk, 701)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        wrong = number(702)[:-1] + ("0" if number(702)[-1] != "0" else "1")
        with pytest.raises(grpc.RpcError) as invalid:
            desk.stub.FindBeneficiary(
                desk_pb2.FindBeneficiaryRequest(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID, identity_number=wrong
                )
            )
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "identity_number" in (invalid.value.details() or "")
        assert wrong not in (invalid.value.details() or "")
    # At the terminal: the number comes from standard input, not the command line.
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", office.handle.tokens["clerk"])
    monkeypatch.setattr("sys.stdin", _Lines(number(700) + "\n"))
    assert main(["desk", "--config", str(office.handle.config_path), "find"]) == 0
    assert "masked_identity_number" in capsys.readouterr().out
    log = office.handle.log_path.read_text(encoding="utf-8")
    for secret in (number(700), number(701), wrong, NAME):
        assert secret not in log


class _Lines:
    def __init__(self, text: str) -> None:
        self._lines = text.splitlines(keepends=True)

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""


def test_the_command_line_imports_a_roll_and_registers_with_an_amount_and_validity(
    office: Office, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(office.handle.config_path)
    os.environ["CERTFED_OPERATOR_TOKEN"] = office.handle.tokens["clerk"]
    try:
        roll = write_roll(tmp_path / "cli.csv", [roll_row(800), roll_row(801, name="")])
        assert (
            main(["roll", "import", str(roll), "--config", config, "--mapping", "certfed_roll"])
            == 2
        )
        printed = capsys.readouterr().out
        assert "registered" in printed
        assert "rejected" in printed
        assert main(
            ["desk", "--config", config, "register", "--id-number", number(802), "--name", NAME,
             "--residence-region", "620102", "--monthly-amount", "3200.50",
             "--valid-until", "2027-03-31", "--scheme", "employee", "--payment-start", "2010-01"]
        ) == 0  # fmt: skip
        capsys.readouterr()
    finally:
        del os.environ["CERTFED_OPERATOR_TOKEN"]
    with office.desk() as desk:
        entitlement = find(desk, 802).entitlement
    assert entitlement.monthly_amount_fen == 320_050
    assert to_datetime(entitlement.beneficiary.valid_until) == datetime(2027, 3, 31, tzinfo=UTC)
    assert entitlement.beneficiary.payment_start_month == "2010-01"


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_a_roll_of_100000_rows_imports_into_a_node_on_postgresql(
    tmp_path: Path, postgres_url_factory: Callable[[], str]
) -> None:
    path = tmp_path / "big.csv"
    write_roll_of(path, 100_000)
    with LocalFederation(
        tmp_path / "federation", database_url_for=lambda _name: postgres_url_factory()
    ) as local:
        local.start_registry()
        local.add_node(LANZHOU)
        with local.desk("lanzhou") as desk:
            summary = import_roll_file(
                desk,
                path,
                mapping_name="certfed_roll",
                fmt=None,
                sheet=None,
                batch_size=5000,
                rejects_path=tmp_path / "big.rejects.csv",
                show_progress=False,
            )
            assert (summary.rows, summary.created, summary.rejected) == (100_000, 100_000, 0)
            listed = desk.stub.ListBeneficiaries(desk_pb2.ListBeneficiariesRequest(page_size=1))
            assert listed.total_size == 100_000
            found = desk.stub.FindBeneficiary(
                desk_pb2.FindBeneficiaryRequest(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                    identity_number=big_number(99_999),
                )
            )
            assert found.entitlement.monthly_amount_fen == 320_000
            again = import_roll_file(
                desk,
                path,
                mapping_name="certfed_roll",
                fmt=None,
                sheet=None,
                batch_size=5000,
                rejects_path=tmp_path / "big.rejects.csv",
                show_progress=False,
            )
            assert (again.created, again.updated, again.unchanged) == (0, 0, 100_000)


def big_number(index: int) -> str:
    return resident_id("620102", date(1930, 1, 1) + timedelta(days=index // 900), index % 900)


def write_roll_of(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        for index in range(rows):
            writer.writerow(roll_row(0, id_number=big_number(index)))


def _review(
    desk: DeskClient, change_ids: list[str], approve: bool = True, reason: str = ""
) -> desk_pb2.ReviewMonthlyAmountsResponse:
    answer: desk_pb2.ReviewMonthlyAmountsResponse = desk.stub.ReviewMonthlyAmounts(
        desk_pb2.ReviewMonthlyAmountsRequest(change_ids=change_ids, approve=approve, reason=reason)
    )
    return answer


def test_a_yearly_adjustment_is_approved_in_bulk_within_the_policys_bound(
    office: Office,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    serials = list(range(900, 930))
    with office.desk() as desk:
        import_roll(desk, write_roll(tmp_path / "roll.csv", [roll_row(s) for s in serials]))
        # The yearly rise: 3% for everyone, and a row whose amount rises 40% (a typo, or a
        # case that needs a look of its own).
        rows = [roll_row(s, monthly_amount_fen="329600") for s in serials[:-1]]
        rows.append(roll_row(serials[-1], monthly_amount_fen="448000"))
        assert import_roll(desk, write_roll(tmp_path / "rise.csv", rows)).amount_changes == 30
        changes = {s: find(desk, s).pending_amount_change.change_id for s in serials}
    ids = [changes[s] for s in serials]
    with office.desk() as clerk, pytest.raises(grpc.RpcError) as not_reviewer:
        _review(clerk, ids)
    assert not_reviewer.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with office.desk("reviewer") as reviewer:
        for change_ids, approve, code, words in (
            ([], True, grpc.StatusCode.INVALID_ARGUMENT, "at least one"),
            ([ids[0]] * 10_001, True, grpc.StatusCode.INVALID_ARGUMENT, "the limit is 10000"),
            ([ids[0], ids[0]], True, grpc.StatusCode.INVALID_ARGUMENT, "twice"),
            (ids[:2], False, grpc.StatusCode.INVALID_ARGUMENT, "reason"),
            ([*ids[:2], new_id()], True, grpc.StatusCode.NOT_FOUND, "nothing was decided"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                _review(reviewer, change_ids, approve)
            assert refused.value.code() == code
            assert words in (refused.value.details() or "")
        assert find(reviewer, 900).entitlement.monthly_amount_fen == 320_000
        answer = _review(reviewer, ids, reason="2027 adjustment")
        assert answer.decided == 29
        [left] = answer.left
        assert left.change_id == changes[929]
        assert "more than the 10%" in left.reason
        # Decided once: asked again, they are left with why.
        again = _review(reviewer, ids[:3])
        assert again.decided == 0
        assert ["approved" in change.reason for change in again.left] == [True] * 3
        assert find(reviewer, 900).entitlement.monthly_amount_fen == 329_600
        assert find(reviewer, 929).entitlement.monthly_amount_fen == 320_000
    # Separation of duties holds in bulk: an operator with both roles leaves their own proposal.
    with office.desk_with_both_roles() as both:
        import_roll(
            both, write_roll(tmp_path / "own.csv", [roll_row(901, monthly_amount_fen="330000")])
        )
        own = find(both, 901).pending_amount_change.change_id
        answer = _review(both, [own])
        assert answer.decided == 0
        assert "separation of duties" in answer.left[0].reason
    # One audit record per change decided, so each person's history shows it.
    audited = office.audit("entitlement.amount_approved")
    assert {changes[s] for s in serials[:-1]} <= {str(details["change_id"]) for details in audited}
    # The command line approves every proposal awaiting review and lists what it left.
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", office.handle.tokens["reviewer"])
    config = str(office.handle.config_path)
    assert main(["desk", "--config", config, "approve-amounts", "--reason", "2027 rise"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "approved: 1" in printed
    assert f"{changes[929]}: moves the amount from 320000 to 448000 fen" in printed
    with office.desk() as desk:
        assert find(desk, 901).entitlement.monthly_amount_fen == 330_000
        assert find(desk, 929).entitlement.monthly_amount_fen == 320_000
