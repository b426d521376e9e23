"""Reminders from a real paying office (a node process on PostgreSQL) through the WeChat
template-message and Alibaba Cloud SMS notifiers, against a local server that speaks both
APIs: WeChat for the person who bound an account, SMS for the other, a gateway failure retried,
each reminder acknowledged once sent and never sent again; no identity number in any message."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation
from cli.main import main
from federation.timestamps import to_timestamp
from tests.helpers.gateways import (
    ALIYUN_KEY_ID,
    ALIYUN_SECRET,
    WECHAT_APP_ID,
    WECHAT_SECRET,
    AliyunSms,
    WeChat,
    serving,
)
from tests.helpers.nodes import FOSHAN

from .conftest import register, resident

WECHAT_PHONE = "13800138041"
SMS_PHONE = "13800138042"


def day_start(days_from_today: int) -> Timestamp:
    day = datetime.now(UTC).date() + timedelta(days=days_from_today)
    return to_timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))


def write_configs(folder: Path, url: str) -> tuple[Path, Path]:
    (folder / "aliyun.secret").write_text(ALIYUN_SECRET, encoding="utf-8")
    (folder / "wechat.secret").write_text(WECHAT_SECRET, encoding="utf-8")
    (folder / "bound.csv").write_text(f"phone,openid\n{WECHAT_PHONE},openid-41\n", encoding="utf-8")
    sms = folder / "sms.toml"
    sms.write_text(
        f'endpoint = "{url}/"\naccess_key_id = "{ALIYUN_KEY_ID}"\n'
        'access_key_secret_file = "aliyun.secret"\nsign_name = "佛山社保"\n'
        '[templates]\ndue = "SMS_1"\nwarning = "SMS_2"\noverdue = "SMS_3"\n',
        encoding="utf-8",
    )
    wechat = folder / "wechat.toml"
    wechat.write_text(
        f'api_base = "{url}"\napp_id = "{WECHAT_APP_ID}"\napp_secret_file = "wechat.secret"\n'
        'recipients_file = "bound.csv"\n'
        '[templates]\ndue = "T-due"\nwarning = "T-warn"\noverdue = "T-over"\n',
        encoding="utf-8",
    )
    return sms, wechat


def pending_phones(office: LocalFederation) -> set[str]:
    with office.desk(FOSHAN.node_id, "admin") as desk:
        reminders = desk.stub.ListReminders(desk_pb2.ListRemindersRequest()).reminders
    return {reminder.phone for reminder in reminders}


def test_reminders_go_by_wechat_or_sms_once_each_and_are_acknowledged(
    office: LocalFederation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    register(office, 41, valid_days=5, phone=WECHAT_PHONE)
    register(office, 42, valid_days=5, phone=SMS_PHONE)
    with office.desk(FOSHAN.node_id, "admin") as desk:
        assert desk.stub.RunCycle(desk_pb2.RunCycleRequest(day=day_start(-1))).ran
    assert {WECHAT_PHONE, SMS_PHONE} <= pending_phones(office)

    # The SMS gateway fails once (HTTP 503), then throttles once; WeChat's token is refreshed.
    sms_gateway, wechat_gateway = AliyunSms([503, "Throttling.User"]), WeChat([42001])
    handle = office.nodes[FOSHAN.node_id]
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", handle.tokens["admin"])
    with serving(aliyun=sms_gateway, wechat=wechat_gateway) as url:
        sms, wechat = write_configs(tmp_path, url)
        arguments = ["notify", "run", "--sms-config", str(sms), "--wechat-config", str(wechat),
                     "--config", str(handle.config_path)]  # fmt: skip
        # 2: other tests' people, registered without a phone, are reminded too.
        assert main(arguments) in (0, 2)
        assert not {WECHAT_PHONE, SMS_PHONE} & pending_phones(office)
        # A second run sends nothing again.
        assert main(arguments) in (0, 2)

    assert [message["touser"] for message in wechat_gateway.sent] == ["openid-41"]
    assert wechat_gateway.tokens_issued == 2
    assert [form["PhoneNumbers"] for form in sms_gateway.accepted] == [SMS_PHONE]
    assert len(sms_gateway.requests) == 3
    everything = json.dumps([wechat_gateway.sent, sms_gateway.requests], ensure_ascii=False)
    assert resident(41) not in everything
    assert resident(42) not in everything
    assert "梁淑芬" not in everything
