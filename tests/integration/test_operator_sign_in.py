"""Operators sign in with a user name and password over real gRPC, on SQLite and PostgreSQL.

One federation per database engine: a registry and two nodes as processes. `qingdao` keeps the
default session times with a small per-address limit; `datong` has sessions of seconds, for the
idle and absolute expiry. Every test signs in from its own client address (the field a web desk
fills in), so one test's failures never lock another's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation, NodeHandle, wait_until
from cli.operator_commands import create_operator, host_actor
from federation_node.store import db
from federation_node.store.models import OperatorRole
from tests.helpers.commands import certfed
from tests.helpers.nodes import DATONG, database_url_for
from tests.helpers.nodes import QINGDAO as OFFICE
from tests.helpers.sign_in import (
    desk_channel,
    metric_sample,
    metrics_text,
    refusal,
    sign_in,
    who_am_i,
    whole_audit_trail,
)

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
FAILURES = 'certfed_operator_sign_in_failures_total{{reason="{}"}}'
ADDRESSES = (f"198.51.100.{n}" for n in itertools.count(1))
USER_NAMES = (f"counter{n}" for n in itertools.count(1))


@dataclass
class Desks:
    local: LocalFederation
    office: NodeHandle
    short: NodeHandle
    passwords: list[str]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def desks(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Desks]:
    workdir: Path = tmp_path_factory.mktemp("sign-in")
    with LocalFederation(
        workdir, database_url_for=database_url_for(request), metrics=True
    ) as local:
        local.start_registry()
        office = local.add_node(
            OFFICE, settings={"operator_sessions": {"max_failed_per_address": 3}}
        )
        short = local.add_node(
            DATONG,
            settings={"operator_sessions": {"idle_minutes": 0.05, "lifetime_hours": 0.002}},
        )
        yield Desks(local, office, short, [])


def _add(
    desks: Desks, node: NodeHandle | None = None, role: int = desk_pb2.OPERATOR_ROLE_CLERK
) -> tuple[str, str, str]:
    """A new operator added by the node's administrator: (operator id, user name, password)."""
    node = node or desks.office
    user_name, password = next(USER_NAMES), f"long enough {len(desks.passwords)} 秘密"
    desks.passwords.append(password)
    channel = desk_channel(node)
    try:
        added = channel.client(node.tokens["admin"]).stub.AddOperator(
            desk_pb2.AddOperatorRequest(
                label="counter", user_name=user_name, password=password, roles=[role]
            )
        )
    finally:
        channel.close()
    return added.operator.operator_id, user_name, password


def test_an_operator_signs_in_works_and_signs_out(desks: Desks) -> None:
    operator_id, user_name, password = _add(desks)
    channel = desk_channel(desks.office)
    try:
        signed_in = sign_in(channel, user_name.upper(), password, next(ADDRESSES))
        assert signed_in.operator_id == operator_id
        assert signed_in.session_token.startswith("ses-")
        assert list(signed_in.roles) == [desk_pb2.OPERATOR_ROLE_CLERK]
        assert signed_in.idle_timeout_seconds == 15 * 60
        lifetime = signed_in.expires_at.ToDatetime(UTC) - datetime.now(UTC)
        assert timedelta(hours=9, minutes=59) < lifetime <= timedelta(hours=10)
        client = channel.client(signed_in.session_token)
        client.stub.SetOperatorPreferences(desk_pb2.SetOperatorPreferencesRequest(locale="pt"))
        who = client.stub.WhoAmI(desk_pb2.WhoAmIRequest())
        assert (who.operator_id, who.user_name, who.label, who.locale) == (
            operator_id, user_name, "counter", "pt",
        )  # fmt: skip
        assert who.session_expires_at == signed_in.expires_at
        assert who.token_expires_at.ToDatetime(UTC) > datetime.now(UTC) + timedelta(days=364)
        assert set(who.node_roles) == {
            common_pb2.ROLE_RESIDENCE_AGENCY, common_pb2.ROLE_PAYING_OFFICE,
        }  # fmt: skip
        code, _ = refusal(
            client.stub.SetOperatorPreferences, desk_pb2.SetOperatorPreferencesRequest(locale="fr")
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        client.stub.SignOut(desk_pb2.SignOutRequest())
        code, details = refusal(who_am_i, channel, signed_in.session_token)
        assert (code, details) == (UNAUTHENTICATED, "this session was signed out; sign in again")
        # A bearer token has no session to end.
        code, _ = refusal(
            channel.client(desks.office.tokens["clerk"]).stub.SignOut, desk_pb2.SignOutRequest()
        )
        assert code is grpc.StatusCode.FAILED_PRECONDITION
    finally:
        channel.close()


def test_wrong_password_and_unknown_user_get_the_same_answer(desks: Desks) -> None:
    _, user_name, password = _add(desks)
    channel = desk_channel(desks.office)
    try:
        wrong = refusal(sign_in, channel, user_name, password + "!", next(ADDRESSES))
        unknown = refusal(sign_in, channel, "nobody-here", password, next(ADDRESSES))
    finally:
        channel.close()
    assert wrong == unknown == (UNAUTHENTICATED, "wrong user name or password")


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(desks: Desks) -> None:
    _, user_name, password = _add(desks)
    channel = desk_channel(desks.office)
    try:
        for _ in range(5):  # each from another address: the account's limit, not an address's
            code, _ = refusal(sign_in, channel, user_name, "not the password", next(ADDRESSES))
            assert code is UNAUTHENTICATED
        code, details = refusal(sign_in, channel, user_name, password, next(ADDRESSES))
    finally:
        channel.close()
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many failed sign-ins for this account; try again after" in details
    assert "(in 15 minutes)" in details
    metrics = metrics_text(desks.office)
    assert (
        metric_sample(metrics, 'certfed_operator_sign_in_failures_total{reason="wrong_password"}')
        >= 5
    )
    assert (
        metric_sample(metrics, 'certfed_operator_sign_in_failures_total{reason="account_locked"}')
        >= 1
    )


def test_failures_from_one_address_are_limited_across_accounts(desks: Desks) -> None:
    _, user_name, password = _add(desks)
    address = next(ADDRESSES)
    channel = desk_channel(desks.office)
    try:
        for guess in ("first-guess", "second-guess", "third-guess"):  # max_failed_per_address=3
            code, _ = refusal(sign_in, channel, guess, "not the password", address)
            assert code is UNAUTHENTICATED
        code, details = refusal(sign_in, channel, user_name, password, address)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many failed sign-ins for this address" in details
        # The account itself is not locked: from another address it signs in.
        assert sign_in(channel, user_name, password, next(ADDRESSES)).session_token
    finally:
        channel.close()


def test_a_disabled_operators_session_is_refused_at_once(desks: Desks) -> None:
    operator_id, user_name, password = _add(desks)
    channel = desk_channel(desks.office)
    try:
        token = sign_in(channel, user_name, password, next(ADDRESSES)).session_token
        assert who_am_i(channel, token).operator_id == operator_id
        admin = channel.client(desks.office.tokens["admin"])
        disabled = admin.stub.DisableOperator(
            desk_pb2.DisableOperatorRequest(operator_id=operator_id)
        )
        assert disabled.operator.disabled
        assert refusal(who_am_i, channel, token) == (
            grpc.StatusCode.PERMISSION_DENIED, f"operator {operator_id} is disabled",
        )  # fmt: skip
        code, _ = refusal(sign_in, channel, user_name, password, next(ADDRESSES))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        admin_id = desks.office.operator_ids["admin"]
        code, details = refusal(
            admin.stub.DisableOperator, desk_pb2.DisableOperatorRequest(operator_id=admin_id)
        )
        assert code is grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot disable themselves" in details
    finally:
        channel.close()


def test_a_password_reset_ends_the_operators_sessions(desks: Desks) -> None:
    operator_id, user_name, password = _add(desks)
    new_password = "a brand new passphrase"
    desks.passwords.append(new_password)
    channel = desk_channel(desks.office)
    try:
        token = sign_in(channel, user_name, password, next(ADDRESSES)).session_token
        admin = channel.client(desks.office.tokens["admin"])
        admin.stub.ResetOperatorPassword(
            desk_pb2.ResetOperatorPasswordRequest(
                operator_id=operator_id, new_password=new_password
            )
        )
        code, details = refusal(who_am_i, channel, token)
        assert code is UNAUTHENTICATED
        assert "password was reset" in details
        code, _ = refusal(sign_in, channel, user_name, password, next(ADDRESSES))
        assert code is UNAUTHENTICATED
        assert sign_in(channel, user_name, new_password, next(ADDRESSES)).operator_id == operator_id
        listed = admin.stub.ListOperators(desk_pb2.ListOperatorsRequest()).operators
        mine = next(summary for summary in listed if summary.operator_id == operator_id)
        assert mine.user_name == user_name
        assert mine.HasField("last_sign_in_at")
    finally:
        channel.close()


def test_a_session_ends_after_its_idle_time(desks: Desks) -> None:
    operator_id, user_name, password = _add(desks, desks.short)
    channel = desk_channel(desks.short)
    try:
        token = sign_in(channel, user_name, password, next(ADDRESSES)).session_token
        assert who_am_i(channel, token).operator_id == operator_id

        def idle_refused() -> str | None:
            try:
                who_am_i(channel, token)
            except grpc.RpcError as error:
                return f"{error.code().name}: {error.details()}"
            return None

        # Waiting without a call, up to well past the 3 s idle time.
        started = datetime.now(UTC)
        ended = wait_until(_after(started, 3.2, idle_refused), 15, "the idle session to end")
        assert ended == (
            "UNAUTHENTICATED: this session ended after 3 seconds without activity; sign in again"
        )
    finally:
        channel.close()


def test_a_session_ends_at_its_lifetime_however_busy(desks: Desks) -> None:
    _, user_name, password = _add(desks, desks.short)
    channel = desk_channel(desks.short)
    try:
        signed_in = sign_in(channel, user_name, password, next(ADDRESSES))
        lifetime = signed_in.expires_at.ToDatetime(UTC) - datetime.now(UTC)
        assert lifetime <= timedelta(seconds=7.2)

        def lifetime_refused() -> str | None:
            try:
                who_am_i(channel, signed_in.session_token)  # a call well within the idle time
            except grpc.RpcError as error:
                return f"{error.code().name}: {error.details()}"
            return None

        ended = wait_until(lifetime_refused, 20, "the session's lifetime to end")
        assert ended.startswith("UNAUTHENTICATED: this session reached its limit of 7.2 seconds")
        assert datetime.now(UTC) >= signed_in.expires_at.ToDatetime(UTC)
    finally:
        channel.close()


def _after(
    started: datetime, seconds: float, check: Callable[[], str | None]
) -> Callable[[], str | None]:
    """`check`, answering None until `seconds` have passed since `started` (no call before)."""

    def delayed() -> str | None:
        if datetime.now(UTC) - started < timedelta(seconds=seconds):
            return None
        return check()

    return delayed


def test_an_expired_bearer_token_is_refused_plainly(desks: Desks) -> None:
    engine = db.create_engine_for(desks.office.config.effective_database_url)
    try:
        with db.session_scope(engine) as session:
            operator, token = create_operator(
                session,
                label="old script",
                roles=[OperatorRole.CLERK],
                actor=host_actor(),
                now=datetime.now(UTC) - timedelta(days=31),
                token_days=30,
            )
    finally:
        engine.dispose()
    channel = desk_channel(desks.office)
    try:
        code, details = refusal(who_am_i, channel, token)
    finally:
        channel.close()
    assert code is UNAUTHENTICATED
    assert f"the token of operator {operator.operator_id} expired on" in details


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"user_name": "", "password": "whatever password"}, "user_name: is required"),
        ({"user_name": "someone", "password": ""}, "password: is required"),
        ({"user_name": "someone", "password": "p" * 257}, "password: is at most 256"),
        ({"user_name": "x" * 65, "password": "whatever password"}, "user_name: is at most 64"),
    ],
)
def test_bad_sign_in_input_is_refused_by_name(
    desks: Desks, request_fields: dict[str, str], field: str
) -> None:
    channel = desk_channel(desks.office)
    try:
        code, details = refusal(channel.anonymous.SignIn, desk_pb2.SignInRequest(**request_fields))
    finally:
        channel.close()
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(field)


@pytest.mark.parametrize(
    ("password", "problem"), [("short", "at least 12"), ("p" * 257, "at most 256")]
)
def test_a_password_outside_the_policy_is_refused(
    desks: Desks, password: str, problem: str
) -> None:
    channel = desk_channel(desks.office)
    try:
        admin = channel.client(desks.office.tokens["admin"])
        add = desk_pb2.AddOperatorRequest(
            label="x",
            user_name="policy-check",
            password=password,
            roles=[desk_pb2.OPERATOR_ROLE_CLERK],
        )
        code, details = refusal(admin.stub.AddOperator, add)
    finally:
        channel.close()
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details == f"password: must be {problem} characters" + (
        " long" if "least" in problem else ""
    )


def test_the_cli_adds_an_operator_who_signs_in_and_sets_a_password(desks: Desks) -> None:
    config = str(desks.office.config_path)
    user_name, password = next(USER_NAMES), "typed at the host, once"
    desks.passwords.append(password)
    added = certfed(
        "node", "add-operator", "--config", config, "--label", "counter 9", "--role", "reviewer",
        "--user-name", user_name, "--password-stdin", "--token-days", "30", stdin=password + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    operator_id = added.stdout.split()[1]
    channel = desk_channel(desks.office)
    try:
        assert sign_in(channel, user_name, password, next(ADDRESSES)).operator_id == operator_id
        short = certfed(
            "node",
            "set-password",
            "--config",
            config,
            operator_id,
            "--password-stdin",
            stdin="too short\n",
        )
        assert short.returncode != 0
        assert "at least 12" in short.stdout + short.stderr
        reset = certfed(
            "node",
            "set-password",
            "--config",
            config,
            operator_id,
            "--password-stdin",
            stdin="the second one, typed\n",
        )
        assert reset.returncode == 0, reset.stdout + reset.stderr
        assert sign_in(channel, user_name, "the second one, typed", next(ADDRESSES)).session_token
    finally:
        channel.close()
    assert password not in added.stdout + added.stderr


def test_the_audit_trail_records_sign_ins_without_secrets(desks: Desks) -> None:
    operator_id, user_name, password = _add(desks)
    channel = desk_channel(desks.office)
    try:
        refusal(sign_in, channel, "unknown-person", password, next(ADDRESSES))
        sign_in(channel, user_name, password, next(ADDRESSES))
        admin = channel.client(desks.office.tokens["admin"]).stub

        def sign_ins() -> desk_pb2.ListAuditRecordsResponse | None:
            page = admin.ListAuditRecords(
                desk_pb2.ListAuditRecordsRequest(
                    subject_id=operator_id, action_prefix="operator.sign_in"
                )
            )
            return page if page.total_size >= 1 else None

        page = wait_until(sign_ins, 15, "the sign-in to be chained")
        assert page.chain_verified
        # Verified up to the newest record by this call; re-read whole when the node started.
        assert page.chain_verified_through == page.chain_newest >= page.total_size
        assert page.HasField("chain_full_check_time")
        assert [record.action for record in page.records] == ["operator.sign_in"]
        first = admin.ListAuditRecords(desk_pb2.ListAuditRecordsRequest(page_size=2))
        second = admin.ListAuditRecords(
            desk_pb2.ListAuditRecordsRequest(page_size=2, page_token=first.next_page_token)
        )
        assert first.total_size > 4
        assert first.records[0].seq > first.records[1].seq > second.records[0].seq
        trail = whole_audit_trail(admin)
    finally:
        channel.close()
    failed = [r for r in trail if r.action == "operator.sign_in_failed"]
    assert failed
    written = "\n".join(r.details_json + r.subject_id + r.actor for r in trail)
    written += desks.office.log_path.read_text(encoding="utf-8")
    for secret in [*desks.passwords, "unknown-person", "not the password"]:
        assert secret not in written
    assert user_name not in desks.office.log_path.read_text(encoding="utf-8")
