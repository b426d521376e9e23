"""A rogue paying office cannot make a residence agency certify the wrong person, nor divert a
walk-in from the office that pays them.

Anshan is a paying office enrolled and approved like any other; it calls Qingdao's
FederationService and the registry with its own certificate. Foshan pays the retiree; Qingdao,
a residence agency, certifies them. Real node processes on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import common_pb2, desk_pb2, federation_pb2, registry_pb2
from cli.launcher import LocalFederation, NodeSpec, wait_until
from federation.desk_client import DeskClient
from federation.timestamps import to_datetime, to_timestamp
from signing import sealing
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import FOSHAN as VICTIM
from tests.helpers.nodes import QINGDAO_AGENCY as AGENCY
from tests.helpers.nodes import database_url_for
from tests.helpers.rogue_member import RogueMember

# Sorts before "foshan": the walk-in routing this replaces picked the lowest node id.
ROGUE = NodeSpec("anshan", "Anshan office", ("210300",), ("paying_office",))
BORN = date(1949, 10, 1)


class Federation:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.rogue = RogueMember(local, "anshan")
        self.serial = 0

    def desk(self, node_id: str, operator: str = "clerk") -> DeskClient:
        return self.local.desk(node_id, operator)

    def number(self) -> str:
        self.serial += 1
        return resident_id("440604", BORN, self.serial)

    def person(self) -> tuple[str, str]:
        """A Foshan beneficiary living in Qingdao, published: (beneficiary id, identity number)."""
        number = self.number()
        with self.desk("foshan") as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(
                desk_pb2.RegisterBeneficiaryRequest(
                    identity=resident(number),
                    residence_region="370202",
                    monthly_amount_fen=280_000,
                    valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
                )
            ).beneficiary.beneficiary_id
        self.local.await_outbox_drained("foshan")
        return beneficiary_id, number

    def valid_until(self, beneficiary_id: str) -> datetime:
        with self.desk("foshan") as desk:
            beneficiary = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
            ).beneficiary
        return to_datetime(beneficiary.valid_until)

    def inbox(self) -> set[str]:
        with self.desk("qingdao") as desk:
            requests = desk.stub.ListAssistanceRequests(
                desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
            ).requests
        return {r.request_id for r in requests}

    def request(self, request_id: str, sealed_number: str, locator: bytes) -> None:
        """Anshan asks Qingdao to certify the person `sealed_number`, under `locator`."""
        now = datetime.now(UTC)
        message = federation_pb2.RequestAssistanceRequest(
            request_id=request_id,
            paying_node_id="anshan",
            paying_region="210300",
            residence_region="370202",
            subject_locator=locator,
            sealed_identity=sealing.seal(
                resident(sealed_number).SerializeToString(deterministic=True),
                self.rogue.hpke_public_key("qingdao"),
                sealing.request_info(request_id),
            ),
            deadline=to_timestamp(now + timedelta(days=10)),
            requested_at=to_timestamp(now),
        )
        with self.rogue.peer("qingdao") as stub:
            stub.RequestAssistance(message, timeout=10)


@pytest.fixture(scope="module", params=["postgres"])
def federation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp("rogue-paying-office")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        with LocalFederation(workdir, database_url_for=urls, max_backoff_s=0.5) as local:
            local.start_registry()
            for spec in (VICTIM, AGENCY, ROGUE):
                local.add_node(spec)
            yield Federation(local)


def test_a_request_under_another_persons_locator_is_refused_and_not_stored(
    federation: Federation,
) -> None:
    beneficiary_id, victim_number = federation.person()
    before = federation.valid_until(beneficiary_id)
    accomplice = federation.number()
    forged_id = "0190f5d6-0000-7000-8000-00000000a001"
    # Identity of someone the rogue can bring to Qingdao, locator of Foshan's retiree: approved,
    # Qingdao would sign "this locator is alive".
    with pytest.raises(grpc.RpcError) as refused:
        federation.request(forged_id, accomplice, federation.rogue.locator(victim_number))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert "subject_locator" in details
    assert "identity sealed in the request" in details
    assert victim_number not in details
    assert accomplice not in details
    assert forged_id not in federation.inbox()
    assert federation.valid_until(beneficiary_id) == before

    # The same member asking honestly (its own locator for the identity it seals) is heard.
    honest_id = "0190f5d6-0000-7000-8000-00000000a002"
    federation.request(honest_id, accomplice, federation.rogue.locator(accomplice))
    assert honest_id in federation.inbox()


def test_a_walk_in_goes_to_every_office_that_published_the_person(
    federation: Federation,
) -> None:
    beneficiary_id, number = federation.person()
    before = federation.valid_until(beneficiary_id)
    # Anshan publishes the locator of a person Foshan pays, as if it paid them too.
    with federation.rogue.registry() as registry:
        registry.PublishLocators(
            registry_pb2.PublishLocatorsRequest(locators=[federation.rogue.locator(number)]),
            timeout=10,
        )

    with federation.desk("qingdao") as desk:
        recorded = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                walk_in=resident(number),
                method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC) - timedelta(minutes=1)),
                evidence_digests=[upload_capture(desk)],
            )
        ).certification
    # The clerk is told that two offices claim the person, and which.
    assert list(recorded.paying_node_ids) == ["anshan", "foshan"]
    assert recorded.several_paying_offices
    with federation.desk("qingdao", "reviewer") as desk:
        approved = desk.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=recorded.certification_id)
        ).certification
    assert list(approved.paying_node_ids) == ["anshan", "foshan"]

    # Foshan, which pays the person, got its attestation and applied it.
    wait_until(
        lambda: federation.valid_until(beneficiary_id) > before,
        30,
        "the walk-in's attestation applied at Foshan",
    )
    with federation.desk("qingdao") as desk:
        issued = desk.stub.ListAttestations(
            desk_pb2.ListAttestationsRequest(direction=desk_pb2.DIRECTION_OUTBOUND, page_size=500)
        ).attestations
    sent_to = sorted(a.paying_node_id for a in issued if a.observed_at == recorded.observed_at)
    assert sent_to == ["anshan", "foshan"]
