"""The retiree status endpoint against a real paying office (a node process, its desk over TLS):
a portal with its own client credential asks, in a POST body over HTTPS, for one person's
state, certified-until and next due date and how they may certify, and gets nothing more;
unknown and revoked credentials, a query string, GET and a flood are refused."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from adapters.face_recognition import tls_context
from adapters.status_endpoint import (
    ClientCredentials,
    DeskStatuses,
    EndpointSettings,
    StatusServer,
    add_client,
    revoke_client,
)
from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation
from federation.rate_limit import Rate
from tests.helpers.nodes import FOSHAN

from .conftest import STATUS_SERVICE, register, resident, self_signed

HOW = ("face_recognition_app", "counter")


def call(
    url: str,
    client: ssl.SSLContext,
    credential: str,
    body: dict[str, Any] | None,
    *,
    method: str = "POST",
) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(  # noqa: S310 - the endpoint's own https URL
        url,
        data=json.dumps(body).encode("utf-8") if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {credential}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=client) as response:  # noqa: S310
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), dict(error.headers)


def test_a_portal_reads_one_persons_status_and_nothing_more(
    office: LocalFederation, tmp_path: Path
) -> None:
    person = register(office, 61, valid_days=30)
    with office.desk(FOSHAN.node_id) as desk:
        until = (
            desk.stub.GetBeneficiary(desk_pb2.GetBeneficiaryRequest(beneficiary_id=person))
            .beneficiary.valid_until.ToDatetime(UTC)
            .date()
        )
    clients = tmp_path / "clients.toml"
    portal = add_client(clients, "portal")
    mini_program = add_client(clients, "mini-program")
    assert portal.split(".", 1)[1] not in clients.read_text(encoding="utf-8")
    cert, key, tls_client = self_signed(tmp_path)
    identity = {"identity_type": "resident_id", "identity_number": resident(61)}
    settings = EndpointSettings(how_to_certify=HOW, client_rate=Rate(per_second=0.01, burst=6))
    with (
        office.desk(FOSHAN.node_id, STATUS_SERVICE) as desk,
        StatusServer(
            ClientCredentials(clients), DeskStatuses(desk), settings, tls=tls_context(cert, key)
        ) as server,
    ):
        status, body, _ = call(server.url, tls_client, portal, identity)
        assert status == 200
        assert body == {
            "state": body["state"],
            "certified_until": until.isoformat(),
            "next_due": (until - timedelta(days=60)).isoformat(),
            "how_to_certify": list(HOW),
        }
        assert body["state"] in ("active", "due")

        # Unknown person, a forged credential, the identity in a URL, GET: refused.
        stranger = {"identity_type": "resident_id", "identity_number": resident(98)}
        assert call(server.url, tls_client, portal, stranger)[0] == 404
        assert call(server.url, tls_client, portal.split(".")[0] + ".guess", identity)[0] == 401
        query = f"{server.url}?identity_number={resident(61)}"
        assert call(query, tls_client, portal, identity)[0] == 400
        assert call(server.url, tls_client, portal, None, method="GET")[0] == 405

        # Revoked: refused from the next call; the other system is unaffected.
        revoke_client(clients, "portal")
        assert call(server.url, tls_client, portal, identity)[0] == 401
        assert call(server.url, tls_client, mini_program, identity)[0] == 200

        # Each client's own rate: a burst of 6 calls (1 spent above), then 429 with Retry-After.
        answers = [call(server.url, tls_client, mini_program, identity) for _ in range(6)]
        assert [status for status, _, _ in answers] == [200] * 5 + [429]
        assert int(answers[5][2]["Retry-After"]) >= 1

    log = office.nodes[FOSHAN.node_id].log_path.read_text(encoding="utf-8")
    assert resident(61) not in log
