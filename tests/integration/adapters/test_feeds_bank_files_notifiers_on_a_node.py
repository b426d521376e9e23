"""Feeds, bank files and reminders against a real paying office: the adapter-to-node path.

A hospital feed extends validity (data-match attestations), a rerun imports nothing twice, a
death registration suspends payment and shows up in the month's bank file, and the daily cycle's
reminders go out through the outbox file and a real HTTP gateway, acknowledged once sent."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.arguments import EXIT_BAD_ARGUMENT
from cli.bench.webhook_gateway import WebhookGateway
from cli.feed_import import import_feed_file
from cli.launcher import LocalFederation
from cli.main import main
from federation.timestamps import to_timestamp
from tests.helpers.identities import resident_id

from .conftest import FOSHAN

TODAY = datetime.now(UTC).date()


def resident(serial: int) -> str:
    return resident_id("440604", date(1948, 7, 15), serial)


def day_start(days_from_today: int) -> Timestamp:
    day = TODAY + timedelta(days=days_from_today)
    return to_timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))


def register(office: LocalFederation, serial: int, *, valid_days: int, phone: str = "") -> str:
    with office.desk(FOSHAN.node_id) as desk:
        answer = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                    identity_number=resident(serial),
                    full_name="陈大文",
                    phone=phone,
                ),
                residence_region="440604",
                valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=valid_days)),
                monthly_amount_fen=320_000,
            ),
        )
    beneficiary_id: str = answer.beneficiary.beneficiary_id
    return beneficiary_id


def cli(office: LocalFederation, monkeypatch: pytest.MonkeyPatch, operator: str, *args: str) -> int:
    handle = office.nodes[FOSHAN.node_id]
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", handle.tokens[operator])
    return main([*args, "--config", str(handle.config_path)])


def import_quietly(office: LocalFederation, path: Path, mapping: str) -> tuple[int, ...]:
    # Feeds run under the node's feed account, bound to the shipped mappings' sources.
    with office.desk(FOSHAN.node_id, "feed") as desk:
        summary = import_feed_file(
            desk,
            path,
            mapping_name=mapping,
            source=None,
            fmt=None,
            batch_size=2,
            rejects_path=path.with_suffix(".rejects.csv"),
            show_progress=False,
        )
    return (
        summary.applied,
        summary.duplicates,
        summary.unknown_persons,
        summary.ignored,
        summary.rejected,
    )


def test_a_hospital_feed_extends_validity_once_and_rejects_bad_rows(
    office: LocalFederation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = register(office, 1, valid_days=20)
    second = register(office, 2, valid_days=20)
    admitted = (TODAY - timedelta(days=3)).isoformat()
    feed = tmp_path / "admissions.csv"
    with feed.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("admission_no", "id_number", "hospital", "admission_date"))
        writer.writerow(("ADM1", resident(1), "佛山市第一人民医院", admitted))
        writer.writerow(("ADM2", resident(2)[:-1] + "Y", "佛山市第一人民医院", admitted))
        writer.writerow(("ADM3", resident(2), "佛山市第一人民医院", "2025/06/23"))
        writer.writerow(("ADM4", resident(99), "佛山市第一人民医院", admitted))
        writer.writerow(("ADM5", resident(2), "佛山市第一人民医院", admitted))
    assert (
        cli(office, monkeypatch, "feed", "feed", "import", str(feed), "--mapping",
            "hospital_admissions", "--batch-size", "2")
        == 2
    )  # fmt: skip
    with feed.with_suffix(".rejects.csv").open(encoding="utf-8", newline="") as handle:
        rejects = list(csv.reader(handle))
    assert [row[0] for row in rejects] == ["line", "3", "4"]
    assert all(resident(2)[:-1] not in row[1] for row in rejects)

    with office.desk(FOSHAN.node_id) as desk:
        person = desk.stub.GetBeneficiary(
            desk_pb2.GetBeneficiaryRequest(beneficiary_id=first)
        ).beneficiary
        attestations = desk.stub.ListAttestations(
            desk_pb2.ListAttestationsRequest(direction=desk_pb2.DIRECTION_OUTBOUND),
        ).attestations
    assert person.valid_until.ToDatetime(UTC).date() > TODAY + timedelta(days=300)
    data_matches = [
        a.beneficiary_id
        for a in attestations
        if a.method == common_pb2.CERTIFICATION_METHOD_DATA_MATCH
        and a.beneficiary_id in (first, second)
    ]
    assert sorted(data_matches) == sorted([first, second])

    # The same file again: every recorded row is a duplicate, nothing is applied twice.
    applied, duplicates, unknown, ignored, rejected = import_quietly(
        office, feed, "hospital_admissions"
    )
    assert (applied, duplicates, unknown, ignored, rejected) == (0, 3, 0, 0, 2)


def test_a_jsonl_feed_without_record_ids_is_keyed_by_content(
    office: LocalFederation, tmp_path: Path
) -> None:
    register(office, 10, valid_days=20)
    checked_at = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0).isoformat()
    feed = tmp_path / "checks.jsonl"
    feed.write_text(
        "\n".join(
            json.dumps({"id_type": kind, "id_number": number, "checked_at": checked_at})
            for kind, number in (("ID", resident(10)), ("ID", resident(10)), ("ID", resident(98)))
        ),
        encoding="utf-8",
    )
    assert import_quietly(office, feed, "travel_security_checks") == (1, 1, 1, 0, 0)
    assert import_quietly(office, feed, "travel_security_checks") == (0, 3, 0, 0, 0)


def test_a_death_registration_suspends_payment_in_the_months_bank_file(
    office: LocalFederation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deceased = register(office, 20, valid_days=100)
    feed = tmp_path / "deaths.csv"
    feed.write_text(
        "注销编号,公民身份号码,姓名,死亡日期\n"
        f"D-2025-0001,{resident(20)},陈大文,{(TODAY - timedelta(days=1)).isoformat()}\n",
        encoding="utf-8",
    )
    assert import_quietly(office, feed, "death_registrations") == (1, 0, 0, 0, 0)

    month = f"{TODAY:%Y-%m}"
    out = tmp_path / "bank"
    arguments = ("bank", "export", "--month", month, "--bank", "ICBC-4406", "--out-dir", str(out))
    assert cli(office, monkeypatch, "admin", *arguments) == 0
    written = out / f"payments-ICBC-4406-{month}.csv"
    content = written.read_bytes()
    rows = list(csv.DictReader(content.decode("utf-8").splitlines()))
    suspended = [row for row in rows if row["beneficiary_id"] == deceased]
    assert len(suspended) == 1
    assert suspended[0]["action"] == "suspend"
    assert suspended[0]["effective_month"] == month
    assert suspended[0]["masked_identity_number"].startswith("44")
    assert resident(20) not in content.decode("utf-8")
    # The same month again: byte-identical, untouched.
    assert cli(office, monkeypatch, "admin", *arguments) == 0
    assert written.read_bytes() == content
    # A clerk may not read payment instructions.
    assert cli(office, monkeypatch, "clerk", *arguments) == 1


@pytest.fixture
def gateway() -> Iterator[WebhookGateway]:
    with WebhookGateway(statuses=[503]) as running:
        yield running


def test_reminders_go_out_once_through_the_outbox_file_and_the_webhook(
    office: LocalFederation,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    gateway: WebhookGateway,
) -> None:
    # The node ran today's cycle when it started; the cycles of past days not yet run catch up.
    register(office, 30, valid_days=5, phone="13800138030")
    register(office, 31, valid_days=20, phone="13800138031")
    with office.desk(FOSHAN.node_id, "admin") as desk:
        ran = desk.stub.RunCycle(desk_pb2.RunCycleRequest(day=day_start(-1)))
        waiting = desk.stub.ListReminders(desk_pb2.ListRemindersRequest()).reminders
    assert ran.ran
    phones = {r.phone for r in waiting}
    assert {"13800138030", "13800138031"} <= phones

    outbox = tmp_path / "sms.jsonl"
    assert cli(office, monkeypatch, "admin", "notify", "run", "--outbox-file", str(outbox)) in (
        0,
        2,
    )
    lines = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]
    sent_to = {line["to"] for line in lines}
    assert {"13800138030", "13800138031"} <= sent_to
    for line in lines:
        assert line["text"].startswith("【Foshan office】")
        assert all(resident(serial) not in line["text"] for serial in (30, 31))
    with office.desk(FOSHAN.node_id, "admin") as desk:
        left = desk.stub.ListReminders(desk_pb2.ListRemindersRequest()).reminders
    assert not {r.phone for r in left} & {"13800138030", "13800138031"}

    # An earlier day's cycle reminds another person; the gateway answers 503 once, then 200.
    register(office, 32, valid_days=4, phone="13800138032")
    with office.desk(FOSHAN.node_id, "admin") as desk:
        assert desk.stub.RunCycle(desk_pb2.RunCycleRequest(day=day_start(-2))).ran
    for bad in (["--concurrency", "0"], ["--concurrency", "65"], ["--max-per-second", "0"]):
        with pytest.raises(SystemExit) as refused:
            cli(office, monkeypatch, "admin", "notify", "run", "--webhook", gateway.url, *bad)
        assert refused.value.code == EXIT_BAD_ARGUMENT
    assert gateway.requests == []
    options = ["--concurrency", "4", "--max-per-second", "200"]
    assert (
        cli(office, monkeypatch, "admin", "notify", "run", "--webhook", gateway.url, *options) == 0
    )
    to_32 = [body for _, body in gateway.requests if body["to"] == "13800138032"]
    assert len(to_32) == 2
    assert to_32[0]["reminder_id"] == to_32[1]["reminder_id"]
    with office.desk(FOSHAN.node_id, "admin") as desk:
        left = desk.stub.ListReminders(desk_pb2.ListRemindersRequest()).reminders
    assert "13800138032" not in {r.phone for r in left}
