"""The reviewer's held attestations at the web desk, and the banner of a stale directory.

A real registry, Lanzhou (a paying office, with its `certfed web serve`) and Datong (a residence
agency that certifies in Datong only) as processes. Datong signs attestations about Lanzhou's
retirees with its own key and delivers them itself over mutual TLS: a death nobody asked about
and a walk-in it may not certify. Lanzhou keeps both for its reviewer, who finds them on the home
page, reads what they claim, and dismisses one and applies the other through "check your
answers" and a confirmation with the reference. Then the registry stops: every page says the
directory is stale, and the node's health service says it too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2, federation_pb2_grpc
from cli.launcher import LocalFederation, wait_until
from federation.envelopes import envelope_to_proto
from federation.timestamps import to_timestamp
from federation.transport import (
    TlsMaterial,
    anonymous_channel_credentials,
    node_tls_name,
    secure_channel,
)
from federation_node.links.directory_health import DIRECTORY_FRESH_HEALTH
from signing import dsse
from signing.keys import SigningKey
from tests.helpers.identities import resident, resident_id
from tests.helpers.locators import member_locator
from tests.helpers.nodes import DATONG, LANZHOU
from tests.integration.web_desk.desk_http import DeskBrowser

BANNER = 'id="directory-banner"'


@dataclass
class Held:
    local: LocalFederation
    url: str
    passwords: dict[str, str]
    beneficiary_id: str
    number: str
    # Datong's death report nobody asked about, and its alive walk-in outside its region.
    death_id: str
    walk_in_id: str

    def signed_in(self, operator: str) -> DeskBrowser:
        browser = DeskBrowser(self.url)
        answer = browser.sign_in(operator, self.passwords[operator])
        assert answer.status == 303, answer.text
        return browser

    def health(self, service: str) -> int:
        handle = self.local.nodes["lanzhou"]
        channel = secure_channel(
            f"127.0.0.1:{handle.desk_port}",
            node_tls_name("lanzhou"),
            anonymous_channel_credentials(handle.config.ca_certificate.read_bytes()),
            max_message_bytes=1 << 20,
        )
        with channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
        return int(answer.status)


def _deliver(
    local: LocalFederation,
    number: str,
    outcome: common_pb2.CertificationOutcome.ValueType,
    region: str = "140200",
) -> str:
    """An attestation Datong signs with its own key about a Lanzhou retiree, certified in
    `region`, delivered by Datong to Lanzhou; its id."""
    keys = local.nodes["datong"].config.data_dir / "keys"
    observed = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    attestation = attestation_pb2.CertificationAttestation(
        attestation_id=str(uuid.uuid4()),
        subject_locator=member_locator(local.nodes["datong"].config, number),
        paying_region="620102",
        paying_node_id="lanzhou",
        issuing_node_id="datong",
        certifying_region=region,
        certifying_agency="Datong centre",
        method=common_pb2.CERTIFICATION_METHOD_HOME_VISIT,
        outcome=outcome,
        observed_at=to_timestamp(observed),
        valid_until=to_timestamp(observed),
        evidence_digests=[bytes(32)],
        clerk_id="datong-clerk",
        reviewer_id="datong-reviewer",
        issued_at=to_timestamp(datetime.now(UTC)),
    )
    envelope = dsse.sign(
        attestation.SerializeToString(deterministic=True),
        dsse.ATTESTATION_PAYLOAD_TYPE,
        SigningKey.load(keys / "signing.key"),
    )
    caller = local.nodes["datong"].config
    tls = TlsMaterial.load(keys / "tls.pem", keys / "tls.key", caller.ca_certificate)
    with secure_channel(
        f"127.0.0.1:{local.nodes['lanzhou'].federation_port}",
        node_tls_name("lanzhou"),
        tls.channel_credentials(),
        max_message_bytes=4 << 20,
    ) as channel:
        federation_pb2_grpc.FederationServiceStub(channel).DeliverAttestation(
            federation_pb2.DeliverAttestationRequest(envelope=envelope_to_proto(envelope)),
            timeout=10,
        )
    return attestation.attestation_id


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Held]:
    workdir: Path = tmp_path_factory.mktemp("web-desk-held")
    with LocalFederation(workdir, sign_in=True) as local:
        local.start_registry()
        local.add_node(LANZHOU, settings={"cycle_hour_utc": -1})
        local.add_node(DATONG)
        number = resident_id("620102", date(1950, 6, 7), 21)
        with local.desk("lanzhou") as clerk:
            beneficiary_id = clerk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=resident(number),
                    residence_region="370202",
                    monthly_amount_fen=300_000,
                    valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
                )
            ).beneficiary.beneficiary_id
        death_id = _deliver(local, number, common_pb2.CERTIFICATION_OUTCOME_DECEASED)
        # Datong certifies in Datong only: a walk-in it says it saw in Qingdao is held.
        walk_in_id = _deliver(local, number, common_pb2.CERTIFICATION_OUTCOME_ALIVE, "370200")
        url = local.start_web_desk("lanzhou")
        passwords = local.nodes["lanzhou"].passwords
        yield Held(local, url, passwords, beneficiary_id, number, death_id, walk_in_id)


def test_the_reviewers_home_page_counts_the_held_attestations_and_lists_them(
    held: Held,
) -> None:
    browser = held.signed_in("reviewer")
    home = browser.get("/")
    assert home.status == 200
    card = re.search(
        r'<a href="/held"><span class="card-number">(\d+)</span> '
        r'<span class="card-label">Attestations from other offices held for review</span>',
        home.text,
    )
    assert card is not None, home.text
    assert card.group(1) == "2"
    listed = browser.get("/held")
    assert listed.status == 200
    for attestation_id in (held.death_id, held.walk_in_id):
        assert f'href="/held/{attestation_id}?issuer=' in listed.text
    assert "nobody here asked its issuer about" in listed.text
    # A clerk sees neither the card nor the list.
    clerk = held.signed_in("clerk")
    assert 'href="/held"' not in clerk.get("/").text
    assert clerk.get("/held").status == 403


def test_a_held_attestation_shows_what_it_claims_and_why_it_was_held(held: Held) -> None:
    browser = held.signed_in("reviewer")
    page = browser.get(f"/held/{held.death_id}")
    assert page.status == 200
    for shown in (
        held.death_id,
        "datong",
        "Home visit",
        "Deceased",
        "It reports a death, imprisonment or disappearance nobody here asked its issuer about",
        "Awaiting a decision",
        f'href="/beneficiaries/{held.beneficiary_id}"',
        'name="decision"',
    ):
        assert shown in page.text, shown
    walk_in = browser.get(f"/held/{held.walk_in_id}")
    assert "may not certify a walk-in here" in walk_in.text
    assert "Alive" in walk_in.text
    missing = browser.get(f"/held/{uuid.uuid4()}")
    assert missing.status == 404
    assert "Held attestation not found" in missing.text


def test_a_decision_needs_a_choice_and_a_reason(held: Held) -> None:
    browser = held.signed_in("reviewer")
    browser.get(f"/held/{held.death_id}")
    answer = browser.post(f"/held/{held.death_id}", {"step": "check"})
    assert answer.status == 400
    assert 'class="error-summary"' in answer.text
    assert "Choose whether to apply or dismiss the attestation" in answer.text
    assert "Say why you decide so" in answer.text
    long = browser.post(
        f"/held/{held.death_id}", {"step": "check", "decision": "dismiss", "reason": "x" * 501}
    )
    assert long.status == 400
    assert "The reason must be 500 characters or fewer" in long.text
    forged = browser.post(
        f"/held/{held.death_id}",
        {"step": "confirm", "decision": "dismiss", "reason": "no"},
        csrf=False,
    )
    assert forged.status == 403
    assert "Awaiting a decision" in browser.get(f"/held/{held.death_id}").text


def test_a_reviewer_dismisses_a_held_death_report_after_checking_the_answers(
    held: Held,
) -> None:
    browser = held.signed_in("reviewer")
    browser.get(f"/held/{held.death_id}")
    reason = "Datong was not asked; the family phoned: he is alive"
    check = browser.post(
        f"/held/{held.death_id}", {"step": "check", "decision": "dismiss", "reason": reason}
    )
    assert check.status == 200
    assert "Check your decision before it is recorded" in check.text
    assert "Dismiss it: the person" in check.text
    done = browser.post(
        f"/held/{held.death_id}", {"step": "confirm", "decision": "dismiss", "reason": reason}
    )
    assert done.status == 200
    assert "Attestation dismissed" in done.text
    assert f'<strong id="reference">{held.death_id}</strong>' in done.text
    page = browser.get(f"/held/{held.death_id}")
    assert "Dismissed" in page.text
    assert "Datong was not asked" in page.text
    assert 'name="decision"' not in page.text
    with held.local.desk("lanzhou", "admin") as admin:
        beneficiary = admin.stub.GetBeneficiary(
            desk_pb2.GetBeneficiaryRequest(beneficiary_id=held.beneficiary_id)
        ).beneficiary
    assert beneficiary.status == desk_pb2.BENEFICIARY_STATUS_ACTIVE
    # Deciding again is refused by the node, and the page says so.
    again = browser.post(
        f"/held/{held.death_id}", {"step": "confirm", "decision": "apply", "reason": "again"}
    )
    assert again.status == 409
    assert "This cannot be done now." in again.text
    assert "cannot be decided again" in again.text


def test_a_reviewer_applies_a_held_walk_in_and_the_pending_list_empties(held: Held) -> None:
    browser = held.signed_in("reviewer")
    browser.get(f"/held/{held.walk_in_id}")
    fields = {"decision": "apply", "reason": "checked with Datong by phone"}
    assert browser.post(f"/held/{held.walk_in_id}", {"step": "check", **fields}).status == 200
    done = browser.post(f"/held/{held.walk_in_id}", {"step": "confirm", **fields})
    assert done.status == 200, done.text
    assert "Attestation applied" in done.text
    assert f'<strong id="reference">{held.walk_in_id}</strong>' in done.text
    pending = browser.get("/held")
    assert "No attestation is held for review." in pending.text
    everything = browser.get("/held?show=all")
    assert f'href="/held/{held.walk_in_id}?issuer=' in everything.text
    assert "Applied" in everything.text


def test_the_command_line_lists_applies_and_dismisses_held_attestations(held: Held) -> None:
    third = _deliver(held.local, held.number, common_pb2.CERTIFICATION_OUTCOME_IMPRISONED)
    handle = held.local.nodes["lanzhou"]

    def desk(*arguments: str, operator: str = "reviewer") -> str:
        return held.local.certfed(
            "desk", "--config", str(handle.config_path), "held", *arguments,
            env={"CERTFED_OPERATOR_TOKEN": handle.tokens[operator], "COLUMNS": "400"},
        )  # fmt: skip

    pending = desk("list")
    assert third in pending
    assert held.death_id not in pending
    everything = desk("list", "--all-decisions", "--page-size", "2", "--all")
    for attestation_id in (held.death_id, held.walk_in_id, third):
        assert attestation_id in everything
    with pytest.raises(RuntimeError, match="reason"):
        desk("dismiss", third)
    with pytest.raises(RuntimeError, match=r"reviewer"):
        desk("dismiss", third, "--reason", "not mine to decide", operator="clerk")
    dismissed = desk("dismiss", third, "--reason", "Datong was never asked")
    assert "HOLD_DECISION_DISMISSED" in dismissed
    with pytest.raises(RuntimeError, match="cannot be decided again"):
        desk("apply", third, "--reason", "changed my mind")
    assert third not in desk("list")


def test_every_page_says_when_the_directory_is_stale_and_so_does_health(held: Held) -> None:
    # Last in this module: it stops the registry.
    browser = held.signed_in("reviewer")
    assert BANNER not in browser.get("/").text
    assert held.health(DIRECTORY_FRESH_HEALTH) == health_pb2.HealthCheckResponse.SERVING
    held.local.stop_registry()
    try:
        wait_until(
            lambda: (
                held.health(DIRECTORY_FRESH_HEALTH) == health_pb2.HealthCheckResponse.NOT_SERVING
            ),
            30,
            "the node to say its directory is stale",
        )
        home = wait_until(
            lambda: page if BANNER in (page := browser.get("/")).text else None,
            30,
            "the banner on the home page",
        )
        assert "has not been able to refresh the federation directory since" in home.text
        for path in ("/held", f"/held/{held.death_id}", f"/beneficiaries/{held.beneficiary_id}"):
            assert BANNER in browser.get(path).text, path
        admin = held.signed_in("admin")
        outbox = admin.get("/admin/outbox").text
        assert BANNER in outbox
        assert "See the federation status" in outbox
        chinese = DeskBrowser(held.url, accept_language="zh-Hans")
        chinese.sign_in("clerk", held.passwords["clerk"])
        assert "无法更新联盟目录" in chinese.get("/").text
    finally:
        held.local.start_registry()
    wait_until(
        lambda: held.health(DIRECTORY_FRESH_HEALTH) == health_pb2.HealthCheckResponse.SERVING,
        30,
        "a fresh directory",
    )
    wait_until(lambda: BANNER not in browser.get("/").text, 30, "the banner to go")
