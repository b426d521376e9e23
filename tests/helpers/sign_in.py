"""Calling a node's desk as a signed-in operator would, for the sign-in and web desk tests."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import grpc
import pytest

from certfed.v1 import desk_pb2, desk_pb2_grpc
from cli.launcher import NodeHandle
from federation.desk_client import DeskChannel


def desk_channel(node: NodeHandle) -> DeskChannel:
    return DeskChannel(
        f"127.0.0.1:{node.desk_port}", node.spec.node_id, node.config.ca_certificate.read_bytes()
    )


def sign_in(
    channel: DeskChannel, user_name: str, password: str, address: str
) -> desk_pb2.SignInResponse:
    return channel.anonymous.SignIn(
        desk_pb2.SignInRequest(user_name=user_name, password=password, client_address=address)
    )


def refusal(call: Callable[..., object], *args: object) -> tuple[grpc.StatusCode, str]:
    """The status code and message a call that must fail ended with."""
    with pytest.raises(grpc.RpcError) as refused:
        call(*args)
    return refused.value.code(), refused.value.details() or ""


def who_am_i(channel: DeskChannel, token: str) -> desk_pb2.WhoAmIResponse:
    return channel.client(token).stub.WhoAmI(desk_pb2.WhoAmIRequest())


def whole_audit_trail(admin: desk_pb2_grpc.DeskServiceStub) -> list[desk_pb2.AuditRecordView]:
    records: list[desk_pb2.AuditRecordView] = []
    token = ""
    while True:
        page = admin.ListAuditRecords(
            desk_pb2.ListAuditRecordsRequest(page_size=500, page_token=token)
        )
        records.extend(page.records)
        token = page.next_page_token
        if not token:
            return records


def metrics_text(node: NodeHandle) -> str:
    with urllib.request.urlopen(node.metrics_url, timeout=10) as response:  # noqa: S310
        return str(response.read().decode("utf-8"))


def metric_sample(metrics: str, series: str) -> float:
    """The value of one series (name and labels, as exposed) in a /metrics page."""
    line = next(line for line in metrics.splitlines() if line.startswith(series + " "))
    return float(line.rsplit(" ", 1)[1])
