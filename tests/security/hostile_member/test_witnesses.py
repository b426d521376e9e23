"""A node cannot show two histories, even with the registry's witness on its side.

Foshan witnesses the other members' logs. Qingdao (a residence agency) asks it to cosign its
checkpoints besides the registry. Lanzhou's policy names Foshan's witness key and requires two
cosignatures (the registry's and Foshan's); Foshan itself keeps the default, the registry's
alone. Each test runs against real node processes on PostgreSQL:

- a split view: Qingdao, with its own signing key, shows an office an attestation in a log that
  is not the one the federation sees, cosigned by the registry witness (its operator colluding:
  the test signs with the registry's witness key). Foshan, which requires only the registry,
  applies it: that is the attack. Lanzhou, which requires a second witness, keeps it stored and
  unapplied, and nothing about the person changes there;
- an attestation Lanzhou cannot yet prove (Foshan, the second witness, is down) is stored and
  not applied, and is applied by itself once Foshan is back and has cosigned;
- Foshan as a witness refuses a checkpoint inconsistent with the one it cosigned before.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2, log_pb2
from cli import launcher
from cli.launcher import LocalFederation, wait_until
from federation.envelopes import envelope_to_proto
from federation.timestamps import to_datetime, to_timestamp
from federation.witness_protocol import log_origin
from federation_node.rules.entitlement import add_months, month_label
from signing import dsse, merkle, note
from tests.helpers.evidence import upload_capture
from tests.helpers.identities import resident, resident_id
from tests.helpers.locators import member_locator
from tests.helpers.nodes import FOSHAN as WITNESS
from tests.helpers.nodes import LANZHOU as OFFICE
from tests.helpers.nodes import QINGDAO_AGENCY as ISSUER
from tests.helpers.nodes import database_url_for
from tests.helpers.rogue_member import RogueMember
from tests.helpers.split_view import node_signing_key, registry_witness, split_view

BORN = date(1952, 3, 4)
# How long an attestation that can never be proven is watched before concluding it was not
# applied: several of the inclusion prover's retries (0.1 s, 0.2 s, 0.4 s, ...).
WATCH_S = 3.0


@dataclass(frozen=True)
class Snapshot:
    """What an applied attestation would change about a beneficiary at an office."""

    valid_until: datetime | None
    state: int
    instructions: tuple[tuple[int, str, int], ...]


class Federation:
    def __init__(self, local: LocalFederation) -> None:
        self.local = local
        self.serial = 0

    def person(self, office: str, paying_region: str) -> tuple[str, str]:
        """A beneficiary of `office` living in Qingdao: (beneficiary id, identity number)."""
        self.serial += 1
        number = resident_id(paying_region, BORN, self.serial)
        request = desk_pb2.RegisterBeneficiaryRequest(
            identity=resident(number),
            residence_region="370202",
            monthly_amount_fen=250_000,
            valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
        )
        with self.local.desk(office) as desk:
            beneficiary_id: str = desk.stub.RegisterBeneficiary(request).beneficiary.beneficiary_id
        return beneficiary_id, number

    def snapshot(self, office: str, beneficiary_id: str) -> Snapshot:
        with self.local.desk(office, "admin") as desk:
            beneficiary = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
            ).beneficiary
            instructions = []
            today = datetime.now(UTC).date()
            for month in (today, add_months(today.replace(day=1), 1)):
                listed = desk.stub.ListPaymentInstructions(
                    desk_pb2.ListPaymentInstructionsRequest(month=month_label(month))
                ).instructions
                instructions += [
                    (i.action, i.effective_month, i.overpayment_fen)
                    for i in listed
                    if i.beneficiary_id == beneficiary_id
                ]
        with self.local.desk(office, "reviewer") as desk:
            entitlements = desk.stub.ListEntitlements(
                desk_pb2.ListEntitlementsRequest(page_size=500)
            ).entitlements
        [entitlement] = [e for e in entitlements if e.beneficiary.beneficiary_id == beneficiary_id]
        return Snapshot(
            to_datetime(beneficiary.valid_until) if beneficiary.HasField("valid_until") else None,
            entitlement.state,
            tuple(sorted(instructions)),
        )

    def walk_in(self, office: str, paying_region: str, number: str) -> dsse.Envelope:
        """An alive walk-in certified at Qingdao, signed with Qingdao's key, never logged."""
        observed = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        attestation = attestation_pb2.CertificationAttestation(
            attestation_id=str(uuid.uuid4()),
            subject_locator=member_locator(self.local.nodes["qingdao"].config, number),
            paying_region=paying_region,
            paying_node_id=office,
            issuing_node_id="qingdao",
            certifying_region="370200",
            certifying_agency="Qingdao centre",
            method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=to_timestamp(observed),
            valid_until=to_timestamp(observed + timedelta(days=365)),
            evidence_digests=[bytes(32)],
            clerk_id="clerk-1",
            reviewer_id="reviewer-1",
            issued_at=to_timestamp(datetime.now(UTC)),
        )
        return RogueMember(self.local, "qingdao").sign(attestation)

    def deliver(
        self, office: str, envelope: dsse.Envelope, inclusion: federation_pb2.LogInclusion
    ) -> federation_pb2.DeliverAttestationResponse:
        with RogueMember(self.local, "qingdao").peer(office) as stub:
            response: federation_pb2.DeliverAttestationResponse = stub.DeliverAttestation(
                federation_pb2.DeliverAttestationRequest(
                    envelope=envelope_to_proto(envelope), inclusion=inclusion
                ),
                timeout=10,
            )
        return response


@pytest.fixture(scope="module", params=["postgres"])
def federation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    urls = database_url_for(request)
    workdir: Path = tmp_path_factory.mktemp("witnesses")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTFED_NODE_CYCLE_HOUR_UTC", "-1")
        # Five processes start here; on a loaded machine they need longer than the default.
        patch.setattr(launcher, "READY_TIMEOUT_S", 120.0)
        with LocalFederation(workdir, database_url_for=urls, max_backoff_s=0.5) as local:
            local.start_registry()
            foshan = local.add_node(WITNESS)
            vkey = (foshan.config.data_dir / "witness.vkey").read_text().strip()
            office = local.add_node(OFFICE, start=False)
            (office.config.data_dir / "policy.toml").write_text(
                f'[witnesses]\nrequired = 2\nkeys = ["{vkey}"]\n', encoding="utf-8"
            )
            local.start_node(OFFICE.node_id)
            local.add_node(ISSUER, settings={"ask_witnesses": [WITNESS.node_id]})
            yield Federation(local)


def test_a_split_view_cosigned_by_the_registry_alone_is_kept_unapplied_where_two_are_required(
    federation: Federation,
) -> None:
    local = federation.local
    qingdao_key = node_signing_key(local, "qingdao")
    # Foshan requires the registry's cosignature only: the colluding registry is enough there.
    control_id, control_number = federation.person("foshan", "440600")
    envelope = federation.walk_in("foshan", "440600", control_number)
    forked = split_view("qingdao", qingdao_key, envelope, [registry_witness(local)])
    applied = federation.deliver("foshan", envelope, forked)
    assert not applied.awaiting_inclusion
    observed = attestation_pb2.CertificationAttestation.FromString(envelope.payload).observed_at
    assert federation.snapshot("foshan", control_id).valid_until == add_months(
        to_datetime(observed), 12
    )

    beneficiary_id, number = federation.person("lanzhou", "620102")
    before = federation.snapshot("lanzhou", beneficiary_id)
    envelope = federation.walk_in("lanzhou", "620102", number)
    forked = split_view("qingdao", qingdao_key, envelope, [registry_witness(local)])
    response = federation.deliver("lanzhou", envelope, forked)
    assert response.awaiting_inclusion
    assert not response.duplicate
    # Kept: stored at Lanzhou (so it is not lost or dead-lettered), never applied, while the
    # inclusion prover asks Qingdao for a proof its witnessed log cannot give.
    time.sleep(WATCH_S)
    assert federation.snapshot("lanzhou", beneficiary_id) == before
    with local.desk("lanzhou", "admin") as desk:
        stored = desk.stub.ListAttestations(
            desk_pb2.ListAttestationsRequest(page_size=500)
        ).attestations
    attestation_id = attestation_pb2.CertificationAttestation.FromString(
        envelope.payload
    ).attestation_id
    assert attestation_id in {a.attestation_id for a in stored}
    # Redelivered, it is the same stored attestation, still unapplied.
    again = federation.deliver("lanzhou", envelope, forked)
    assert again.duplicate
    assert federation.snapshot("lanzhou", beneficiary_id) == before


def test_an_attestation_is_applied_only_once_proven_and_then_by_itself(
    federation: Federation,
) -> None:
    local = federation.local
    beneficiary_id, _ = federation.person("lanzhou", "620102")
    before = federation.snapshot("lanzhou", beneficiary_id)
    local.stop_node(WITNESS.node_id)
    try:
        with local.desk("lanzhou") as desk:
            request_id = desk.stub.RequestCertification(
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=beneficiary_id,
                    deadline=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
                )
            ).request.request_id
        with local.desk("qingdao") as desk:
            inbound = desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND)
            wait_until(
                lambda: any(r.request_id == request_id
                            for r in desk.stub.ListAssistanceRequests(inbound).requests),
                30,
                "the request in Qingdao's inbox",
            )  # fmt: skip
            record = desk_pb2.RecordCertificationRequest(
                request_id=request_id,
                method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC) - timedelta(minutes=5)),
            )
            record.evidence_digests.append(upload_capture(desk))
            certification = desk.stub.RecordCertification(record).certification
        with local.desk("qingdao", "reviewer") as desk:
            attestation_id = desk.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(
                    certification_id=certification.certification_id
                )
            ).certification.attestation_id

        def stored_at_lanzhou() -> bool:
            with local.desk("lanzhou", "admin") as desk:
                listed = desk.stub.ListAttestations(
                    desk_pb2.ListAttestationsRequest(page_size=500)
                ).attestations
            return attestation_id in {a.attestation_id for a in listed}

        wait_until(stored_at_lanzhou, 30, "the attestation delivered to Lanzhou")
        # Qingdao's checkpoints carry the registry's cosignature only: not proven for Lanzhou.
        time.sleep(WATCH_S)
        assert federation.snapshot("lanzhou", beneficiary_id) == before
    finally:
        local.start_node(WITNESS.node_id)
    # Foshan back: Qingdao's next pass has it cosign, and Lanzhou applies what waited.
    wait_until(
        lambda: federation.snapshot("lanzhou", beneficiary_id).valid_until != before.valid_until,
        30,
        "Lanzhou to apply the attestation once proven",
    )
    assert federation.snapshot("lanzhou", beneficiary_id).valid_until is not None


def _tree(leaves: list[bytes]) -> tuple[list[bytes], bytes]:
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    return hashes, merkle.root_from_leaves(hashes)[1]


def _signed(local: LocalFederation, node_id: str, size: int, root: bytes) -> bytes:
    checkpoint = note.Checkpoint(log_origin(node_id), size, root)
    signer = note.NoteSigner(log_origin(node_id), node_signing_key(local, node_id))
    return note.sign_note(checkpoint.to_text(), signer)


def test_a_node_witness_refuses_a_checkpoint_inconsistent_with_what_it_cosigned(
    federation: Federation,
) -> None:
    local = federation.local
    # Lanzhou's own log does not ask Foshan, so this history is Foshan's only view of it.
    member = RogueMember(local, "lanzhou")
    vkey = (local.nodes["foshan"].config.data_dir / "witness.vkey").read_text().strip()
    foshan = note.NoteVerifier.from_vkey(vkey)
    history = [f"entry {i}".encode() for i in range(5)]
    other = [f"other {i}".encode() for i in range(5)]
    _, root3 = _tree(history[:3])
    all_hashes, root5 = _tree(history)
    other_hashes, other5 = _tree(other)

    def submit(note_bytes: bytes, old_size: int, proof: list[bytes]) -> bytes:
        with member.peer("foshan") as stub:
            answer = stub.CosignCheckpoint(
                federation_pb2.CosignCheckpointRequest(
                    checkpoint=log_pb2.SignedCheckpoint(note=note_bytes),
                    old_size=old_size,
                    consistency_proof=proof,
                ),
                timeout=10,
            )
        return bytes(answer.checkpoint.note)

    def refused(note_bytes: bytes, old_size: int, proof: list[bytes]) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            submit(note_bytes, old_size, proof)
        return caught.value

    cosigned = submit(_signed(local, "lanzhou", 3, root3), 0, [])
    note.open_note(cosigned, [], required=foshan)

    # The same size with another root: a second history.
    fork = refused(_signed(local, "lanzhou", 3, _tree(other[:3])[1]), 3, [])
    assert fork.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "fork detected" in (fork.details() or "")
    # A larger tree that does not extend the cosigned one.
    proof = merkle.consistency_proof_from_leaves(3, other_hashes)
    fork = refused(_signed(local, "lanzhou", 5, other5), 3, proof)
    assert fork.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "fork detected" in (fork.details() or "")
    # The witness kept size 3: the consistent extension is cosigned, from 3.
    stale = refused(_signed(local, "lanzhou", 5, root5), 0, [])
    assert stale.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "retry with old_size 3" in (stale.details() or "")
    extended = submit(
        _signed(local, "lanzhou", 5, root5), 3, merkle.consistency_proof_from_leaves(3, all_hashes)
    )
    note.open_note(extended, [], required=foshan)
    # A member may submit only its own log's checkpoints.
    other_log = refused(_signed(local, "lanzhou", 1, _tree(history[:1])[1]).replace(
        b"certfed.node/lanzhou", b"certfed.node/qingdao", 1), 0, [])  # fmt: skip
    assert other_log.code() is grpc.StatusCode.PERMISSION_DENIED
