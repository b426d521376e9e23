"""Alibaba Cloud SMS and WeChat template-message notifiers against local servers that speak the
same APIs: what is sent, retries of what a retry can change, refusals of what it cannot, the
WeChat token refreshed on 40001/42001, and never a name or identity number in a message."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from adapters.aliyun_sms import AliyunSmsConfig, AliyunSmsNotifier, load_aliyun_sms_config
from adapters.errors import GatewayUnavailableError, MappingError, NotificationRefusedError
from adapters.notifiers import (
    Notification,
    Notifier,
    WebhookRetry,
    notification_text,
    run_notifications,
)
from adapters.wechat_templates import (
    FirstOf,
    WeChatConfig,
    WeChatTemplateNotifier,
    load_wechat_config,
)
from federation.errors import InvalidInputError
from tests.helpers.gateways import (
    ALIYUN_KEY_ID,
    ALIYUN_SECRET,
    WECHAT_APP_ID,
    WECHAT_SECRET,
    AliyunSms,
    WeChat,
    serving,
)
from tests.helpers.reminders import Reminders, reminder

FAST = WebhookRetry(attempts=4, initial_s=0.01, max_backoff_s=0.05, jitter_s=0.01, max_delay_s=5)
TEMPLATES = {"due": "SMS_1001", "warning": "SMS_1002", "overdue": "SMS_1003"}
PHONE = "13800138000"


def notification(reminder_id: str = "rem-1", kind: str = "due", to: str = PHONE) -> Notification:
    valid_until = date(2027, 1, 31)
    return Notification(
        reminder_id,
        kind,
        to,
        "佛山社保",
        valid_until,
        notification_text(kind, "佛山社保", valid_until),
    )


def sms(url: str, secret: str = ALIYUN_SECRET) -> AliyunSmsNotifier:
    return AliyunSmsNotifier(
        AliyunSmsConfig(
            access_key_id=ALIYUN_KEY_ID,
            access_key_secret=secret,
            sign_name="佛山社保",
            templates=TEMPLATES,
            endpoint=f"{url}/",
            retry=FAST,
        )
    )


def wechat(url: str, recipients: dict[str, str] | None = None) -> WeChatTemplateNotifier:
    return WeChatTemplateNotifier(
        WeChatConfig(
            app_id=WECHAT_APP_ID,
            app_secret=WECHAT_SECRET,
            templates={"due": "TPL-due", "warning": "TPL-warn", "overdue": "TPL-over"},
            recipients={PHONE: "openid-abc"} if recipients is None else recipients,
            api_base=url,
            retry=FAST,
        )
    )


def test_sms_sends_a_signed_sendsms_with_the_template_and_the_reminder_as_outid() -> None:
    gateway = AliyunSms()
    with serving(aliyun=gateway) as url:
        sms(url).send(notification())
    (sent,) = gateway.accepted
    assert sent["PhoneNumbers"] == PHONE
    assert sent["TemplateCode"] == "SMS_1001"
    assert sent["OutId"] == "rem-1"
    assert json.loads(sent["TemplateParam"]) == {"office": "佛山社保", "date": "2027-01-31"}


def test_sms_retries_server_errors_and_throttling_with_a_fresh_signature() -> None:
    gateway = AliyunSms([503, "Throttling.User", "isv.BUSINESS_LIMIT_CONTROL"])
    with serving(aliyun=gateway) as url:
        sms(url).send(notification())
    assert len(gateway.requests) == 4
    assert len(gateway.accepted) == 1
    assert len({request["SignatureNonce"] for request in gateway.requests}) == 4


def test_sms_refuses_at_once_what_a_retry_cannot_fix() -> None:
    gateway = AliyunSms(["isv.MOBILE_NUMBER_ILLEGAL"])
    with serving(aliyun=gateway) as url:
        with pytest.raises(
            NotificationRefusedError, match=r"isv\.MOBILE_NUMBER_ILLEGAL"
        ) as refused:
            sms(url).send(notification())
        assert PHONE not in str(refused.value)
        # A wrong secret: the gateway answers SignatureDoesNotMatch with HTTP 400.
        with pytest.raises(NotificationRefusedError, match="HTTP 400"):
            sms(url, secret="wrong").send(notification("rem-2"))
    assert len(gateway.requests) == 2


def test_sms_gives_up_after_the_bounded_attempts() -> None:
    gateway = AliyunSms([503] * 10)
    with serving(aliyun=gateway) as url, pytest.raises(GatewayUnavailableError, match="4 attempts"):
        sms(url).send(notification())
    assert len(gateway.requests) == 4


def test_wechat_sends_a_template_message_with_a_token_it_keeps() -> None:
    gateway = WeChat()
    with serving(wechat=gateway) as url:
        notifier = wechat(url)
        notifier.send(notification("rem-1"))
        notifier.send(notification("rem-2", kind="overdue"))
    assert gateway.tokens_issued == 1
    first, second = gateway.sent
    assert first["touser"] == "openid-abc"
    assert first["template_id"] == "TPL-due"
    assert first["client_msg_id"] == "rem-1"
    assert first["data"]["keyword1"] == {"value": "佛山社保"}
    assert first["data"]["keyword2"] == {"value": "2027-01-31"}
    assert second["template_id"] == "TPL-over"


@pytest.mark.parametrize("errcode", [40001, 42001])
def test_wechat_fetches_a_new_token_when_the_old_one_is_invalid_or_expired(errcode: int) -> None:
    gateway = WeChat()
    with serving(wechat=gateway) as url:
        notifier = wechat(url)
        notifier.send(notification("rem-1"))
        gateway.script = [errcode]
        notifier.send(notification("rem-2"))
    assert gateway.tokens_issued == 2
    assert [message["client_msg_id"] for message in gateway.sent] == ["rem-1", "rem-2"]


def test_wechat_retries_a_busy_system_and_refuses_an_unfollowed_account() -> None:
    gateway = WeChat([-1, 45009])
    with serving(wechat=gateway) as url:
        notifier = wechat(url)
        notifier.send(notification("rem-1"))
        assert gateway.sends == 3
        gateway.script = [43004]
        with pytest.raises(NotificationRefusedError, match="43004"):
            notifier.send(notification("rem-2"))
    assert [message["client_msg_id"] for message in gateway.sent] == ["rem-1"]


def test_wechat_with_a_wrong_secret_stops_with_a_clear_error() -> None:
    gateway = WeChat()
    with serving(wechat=gateway) as url:
        notifier = WeChatTemplateNotifier(
            WeChatConfig(
                app_id=WECHAT_APP_ID,
                app_secret="wrong",
                templates={"due": "a", "warning": "b", "overdue": "c"},
                recipients={PHONE: "openid-abc"},
                api_base=url,
                retry=FAST,
            )
        )
        with pytest.raises(GatewayUnavailableError, match="40125") as stopped:
            notifier.send(notification())
    assert "wrong" not in str(stopped.value)


def test_a_person_without_wechat_gets_the_sms_instead() -> None:
    sms_gateway, wechat_gateway = AliyunSms(), WeChat()
    with serving(aliyun=sms_gateway, wechat=wechat_gateway) as url:
        notifier = FirstOf([wechat(url), sms(url)])
        notifier.send(notification("rem-1"))
        notifier.send(notification("rem-2", to="13900139000"))
    assert [m["client_msg_id"] for m in wechat_gateway.sent] == ["rem-1"]
    assert [m["OutId"] for m in sms_gateway.accepted] == ["rem-2"]


def test_first_of_flushes_every_notifier_it_chains() -> None:
    flushed: list[str] = []

    class Buffered(Notifier):
        def __init__(self, name: str) -> None:
            self.name = name

        def send(self, notification: Notification) -> None:
            raise NotificationRefusedError(f"{self.name} takes nothing")

        def flush(self) -> None:
            flushed.append(self.name)

    FirstOf([Buffered("wechat"), Buffered("sms")]).flush()
    assert flushed == ["wechat", "sms"]


def test_the_configs_read_their_secrets_from_files_and_refuse_unknown_settings(
    tmp_path: Path,
) -> None:
    (tmp_path / "aliyun.secret").write_text(ALIYUN_SECRET + "\n", encoding="utf-8")
    (tmp_path / "wechat.secret").write_text(WECHAT_SECRET, encoding="utf-8")
    (tmp_path / "bound.csv").write_text(f"phone,openid\n{PHONE},openid-abc\n", encoding="utf-8")
    sms_path = tmp_path / "sms.toml"
    sms_path.write_text(
        f'access_key_id = "{ALIYUN_KEY_ID}"\naccess_key_secret_file = "aliyun.secret"\n'
        'sign_name = "佛山社保"\n'
        '[templates]\ndue = "SMS_1"\nwarning = "SMS_2"\noverdue = "SMS_3"\n',
        encoding="utf-8",
    )
    assert load_aliyun_sms_config(sms_path).access_key_secret == ALIYUN_SECRET
    wechat_path = tmp_path / "wechat.toml"
    wechat_path.write_text(
        f'app_id = "{WECHAT_APP_ID}"\napp_secret_file = "wechat.secret"\n'
        'recipients_file = "bound.csv"\n[templates]\ndue = "a"\nwarning = "b"\noverdue = "c"\n',
        encoding="utf-8",
    )
    assert load_wechat_config(wechat_path).recipients == {PHONE: "openid-abc"}
    sms_path.write_text(
        'endpoint = "http://sms.example.com/"\n' + sms_path.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    with pytest.raises(InvalidInputError, match="endpoint"):
        load_aliyun_sms_config(sms_path)
    wechat_path.write_text('app_id = "x"\nsecret = "inline"\n', encoding="utf-8")
    with pytest.raises(MappingError, match="secret"):
        load_wechat_config(wechat_path)


def test_wechat_then_sms_eight_at_once_share_one_token_and_never_reuse_a_nonce() -> None:
    aliyun, wechat_api = AliyunSms(), WeChat()
    bound = {f"1380013{i:04}": f"openid-{i}" for i in range(0, 40, 2)}
    source = Reminders([reminder(f"rem-{i:02}", phone=f"1380013{i:04}") for i in range(40)])
    with serving(aliyun=aliyun, wechat=wechat_api) as url:
        both = FirstOf([wechat(url, recipients=bound), sms(url)])
        summary = run_notifications(source, both, office="佛山社保", page_size=10, concurrency=8)
    assert (summary.sent, summary.acknowledged, summary.refused) == (40, 40, 0)
    # Threads that found no token at once waited for the one fetch instead of each fetching.
    assert wechat_api.tokens_issued == 1
    assert sorted(m["touser"] for m in wechat_api.sent) == sorted(bound.values())
    # Everyone else by SMS, each signed with a nonce of its own (the gateway refuses a reuse).
    assert sorted(r["PhoneNumbers"] for r in aliyun.accepted) == [
        f"1380013{i:04}" for i in range(1, 40, 2)
    ]
    assert len(aliyun.requests) == 20
