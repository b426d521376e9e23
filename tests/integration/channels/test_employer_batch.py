"""Employer batches end to end on a real paying office (a node process on PostgreSQL): a unit's
CSV or XLSX list through its mapping, uploaded as one pending batch; the uploader cannot approve
it (not even an operator who also reviews); another reviewer's approval issues every row's
employer-batch attestation and extends validity; a rejection changes nothing."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from openpyxl import Workbook

from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation
from cli.main import main
from tests.helpers.nodes import FOSHAN

from .conftest import SENIOR, register, resident

MAPPING = """
[columns]
identity_number = "身份证号码"
confirmed_on = "确认日期"
[file]
identity_type = "resident_id"
date_format = "%Y/%m/%d"
"""


def valid_until(office: LocalFederation, beneficiary_id: str) -> date:
    with office.desk(FOSHAN.node_id) as desk:
        person = desk.stub.GetBeneficiary(
            desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
        ).beneficiary
    moment: date = person.valid_until.ToDatetime(UTC).date()
    return moment


def batch_attestations(office: LocalFederation) -> dict[str, int]:
    with office.desk(FOSHAN.node_id) as desk:
        attestations = desk.stub.ListAttestations(
            desk_pb2.ListAttestationsRequest(direction=desk_pb2.DIRECTION_OUTBOUND, page_size=500)
        ).attestations
    found: dict[str, int] = {}
    for attestation in attestations:
        if attestation.method == common_pb2.CERTIFICATION_METHOD_EMPLOYER_BATCH:
            found[attestation.beneficiary_id] = found.get(attestation.beneficiary_id, 0) + 1
    return found


def upload(
    office: LocalFederation, monkeypatch: pytest.MonkeyPatch, operator: str, path: Path
) -> int:
    handle = office.nodes[FOSHAN.node_id]
    mapping = path.parent / "unit.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", handle.tokens[operator])
    return main(
        ["adapter", "employer-batch", "upload", str(path), "--mapping", str(mapping),
         "--unit", "佛山市财政局", "--config", str(handle.config_path)]
    )  # fmt: skip


def pending_batch(office: LocalFederation, file_name: str) -> desk_pb2.EmployerBatch:
    with office.desk(FOSHAN.node_id, "reviewer") as desk:
        batches = desk.stub.ListEmployerBatches(
            desk_pb2.ListEmployerBatchesRequest(state=desk_pb2.EMPLOYER_BATCH_STATE_PENDING)
        ).batches
    (batch,) = [batch for batch in batches if batch.file_name == file_name]
    return batch


def rows_of(
    office: LocalFederation, batch_id: str, *, page_size: int, page_token: str = ""
) -> desk_pb2.GetEmployerBatchResponse:
    with office.desk(FOSHAN.node_id, "reviewer") as desk:
        answer: desk_pb2.GetEmployerBatchResponse = desk.stub.GetEmployerBatch(
            desk_pb2.GetEmployerBatchRequest(
                batch_id=batch_id, page_size=page_size, page_token=page_token
            )
        )
    return answer


def decide(
    office: LocalFederation, operator: str, batch_id: str, *, approve: bool, reason: str = ""
) -> desk_pb2.EmployerBatch:
    with office.desk(FOSHAN.node_id, operator) as desk:
        decided: desk_pb2.EmployerBatch = desk.stub.DecideEmployerBatch(
            desk_pb2.DecideEmployerBatchRequest(batch_id=batch_id, approve=approve, reason=reason)
        ).batch
    return decided


def test_a_csv_batch_is_approved_whole_by_a_reviewer_who_did_not_upload_it(
    office: LocalFederation,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = register(office, 51), register(office, 52)
    before = (valid_until(office, first), valid_until(office, second))
    confirmed = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y/%m/%d")
    path = tmp_path / "2026年12月名单.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(("序号", "姓名", "身份证号码", "确认日期"))
        writer.writerow(("1", "甲", resident(51), confirmed))
        writer.writerow(("2", "乙", resident(52), confirmed))
        writer.writerow(("3", "丙", resident(53)[:-1] + "0", confirmed))  # bad check digit
        writer.writerow(("4", "丁", resident(99), confirmed))  # not paid here
        writer.writerow(("5", "甲", resident(51), confirmed))  # twice
        writer.writerow(("6", "戊", resident(52), "2026-12-01"))  # not the unit's format
    assert upload(office, monkeypatch, SENIOR, path) == 2
    with path.with_suffix(".rejects.csv").open(encoding="utf-8", newline="") as stream:
        rejects = list(csv.reader(stream))
    assert sorted(int(row[0]) for row in rejects[1:]) == [4, 5, 6, 7]
    flat = ",".join(",".join(row) for row in rejects)
    assert all(resident(serial) not in flat for serial in (51, 52, 53, 99))

    batch = pending_batch(office, path.name)
    assert (batch.rows, batch.uploaded_by != "") == (2, True)
    assert (valid_until(office, first), valid_until(office, second)) == before

    # The uploader may not approve, though they also hold the reviewer role: nothing changes.
    with pytest.raises(grpc.RpcError) as refused:
        decide(office, SENIOR, batch.batch_id, approve=True)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "uploaded this batch" in (refused.value.details() or "")
    assert pending_batch(office, path.name).state == desk_pb2.EMPLOYER_BATCH_STATE_PENDING
    assert first not in batch_attestations(office)

    # The reviewer reads the rows before deciding: file lines, people masked, one per page.
    first_page = rows_of(office, batch.batch_id, page_size=1)
    assert first_page.batch.rows == 2
    assert first_page.next_page_token
    rest = rows_of(office, batch.batch_id, page_size=1, page_token=first_page.next_page_token)
    entries = [*first_page.entries, *rest.entries]
    assert not rest.next_page_token
    assert [(e.line, e.beneficiary_id) for e in entries] == [(2, first), (3, second)]
    assert all(e.masked_identity_number and not e.certification_id for e in entries)
    assert not {resident(51), resident(52)} & {e.masked_identity_number for e in entries}

    approved = decide(office, "reviewer", batch.batch_id, approve=True)
    assert approved.state == desk_pb2.EMPLOYER_BATCH_STATE_APPROVED
    assert (approved.issued, approved.skipped) == (2, 0)
    # Each row now names the certification it became.
    after = rows_of(office, batch.batch_id, page_size=10)
    assert all(e.certification_id and not e.skipped_reason for e in after.entries)
    # The same rows from the command line, masked.
    handle = office.nodes[FOSHAN.node_id]
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", handle.tokens["reviewer"])
    capsys.readouterr()
    shown = ["adapter", "employer-batch", "show", batch.batch_id]
    assert main([*shown, "--config", str(handle.config_path)]) == 0
    printed = capsys.readouterr().out
    assert "2 rows, approved" in printed
    assert all(entry.masked_identity_number in printed for entry in after.entries)
    assert resident(51) not in printed
    assert resident(52) not in printed
    with pytest.raises(grpc.RpcError) as unknown:
        rows_of(office, "00000000-0000-7000-8000-000000000000", page_size=10)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    issued = batch_attestations(office)
    assert (issued.get(first), issued.get(second)) == (1, 1)
    assert valid_until(office, first) > before[0] + timedelta(days=300)
    assert valid_until(office, second) > before[1] + timedelta(days=300)

    # Decided once: a second decision is refused.
    with pytest.raises(grpc.RpcError) as again:
        decide(office, "reviewer", batch.batch_id, approve=False, reason="late")
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_rejected_xlsx_batch_changes_nothing(
    office: LocalFederation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    person = register(office, 56)
    before = valid_until(office, person)
    path = tmp_path / "名单.xlsx"
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["身份证号码", "确认日期"])
    sheet.append([resident(56), datetime.now(UTC).date() - timedelta(days=1)])
    workbook.save(path)
    assert upload(office, monkeypatch, "clerk", path) == 0
    batch = pending_batch(office, path.name)
    assert batch.rows == 1

    with pytest.raises(grpc.RpcError) as no_reason:
        decide(office, "reviewer", batch.batch_id, approve=False)
    assert no_reason.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    rejected = decide(office, "reviewer", batch.batch_id, approve=False, reason="unsigned list")
    assert rejected.state == desk_pb2.EMPLOYER_BATCH_STATE_REJECTED
    assert rejected.reason == "unsigned list"
    assert valid_until(office, person) == before
    assert person not in batch_attestations(office)
