"""The demo's life events (docs/life_events.md), as offices meet them.

A death Foshan's household-register feed reports for a person Lanzhou also pays: the feed file
goes through the same import as `certfed feed import --mapping death_registrations`, Foshan's
reviewer confirms it (`certfed desk review-termination ID confirm`), and Foshan's node sends a
signed death to Lanzhou, which holds it for its own reviewer and keeps paying.

A death a Qingdao clerk recorded by mistake, approved by a reviewer, then corrected (`certfed desk
correct`): the correcting attestation names the mistaken one, and on its approval the person is
active again and the withheld months are paid back; both attestations stay, and the audit trail
shows the death and its reversal.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from certfed.v1 import attestation_pb2, desk_pb2
from cli.feed_import import import_feed_file
from cli.launcher import LocalFederation, wait_until
from federation.desk_client import DeskClient

DEATH_REGISTRATIONS = "death_registrations"
# The shipped mapping's columns (adapters/feed_mappings/death_registrations.toml).
DEATH_COLUMNS = ("公民身份号码", "死亡日期", "注销编号")
DEATH_FEED_FILE = "death-registrations.csv"
REVERSED = "entitlement.correction_reversed"


def overview(
    federation: LocalFederation, node_id: str, beneficiary_id: str
) -> desk_pb2.GetBeneficiaryOverviewResponse:
    """The person's page at an office, as its administrator sees it (payments included)."""
    with federation.desk(node_id, "admin") as desk:
        answer: desk_pb2.GetBeneficiaryOverviewResponse = desk.stub.GetBeneficiaryOverview(
            desk_pb2.GetBeneficiaryOverviewRequest(beneficiary_id=beneficiary_id)
        )
    return answer


# A death reported by one office's feed, held at another that pays the same person.


def import_death_registration(
    federation: LocalFederation,
    node_id: str,
    person: attestation_pb2.IdentityBundle,
    died_on: date,
    folder: Path,
) -> int:
    """The household register's file of one death, imported by the office's feed account;
    how many rows the node applied (the entitlement suspended, the termination proposed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DEATH_FEED_FILE
    with path.open("w", encoding="utf-8", newline="") as feed_file:
        writer = csv.writer(feed_file)
        writer.writerow(DEATH_COLUMNS)
        writer.writerow((person.identity_number, died_on.isoformat(), "DEMO-DEATH-0001"))
    with federation.desk(node_id, "feed") as feed:
        summary = import_feed_file(
            feed,
            path,
            mapping_name=DEATH_REGISTRATIONS,
            source=None,
            fmt=None,
            batch_size=100,
            rejects_path=path.with_suffix(".rejects.csv"),
            show_progress=False,
        )
    return summary.applied


def confirm_termination(federation: LocalFederation, node_id: str, beneficiary_id: str) -> None:
    """The office's reviewer confirms the proposed termination; the node then announces it."""
    with federation.desk(node_id, "reviewer") as reviewer:
        reviewer.stub.ReviewTermination(
            desk_pb2.ReviewTerminationRequest(
                beneficiary_id=beneficiary_id,
                confirm=True,
                reason="death registration checked with the household register",
            )
        )


def await_held(
    federation: LocalFederation, node_id: str, beneficiary_id: str
) -> desk_pb2.HeldAttestation:
    """The attestation about the person on the office's list of held attestations (its
    reviewer's), once it has arrived."""
    with federation.desk(node_id, "reviewer") as reviewer:

        def held() -> desk_pb2.HeldAttestation | None:
            listed = reviewer.stub.ListHeldAttestations(
                desk_pb2.ListHeldAttestationsRequest(pending_only=True)
            ).attestations
            return next((h for h in listed if h.beneficiary_id == beneficiary_id), None)

        return wait_until(held, 30, f"the death held for {node_id}'s reviewer")


# A mistaken death, corrected.


@dataclass(frozen=True)
class Reversal:
    """What the correction's approval changed at the paying office."""

    status: str
    entitlement_state: str
    overpayment_fen: int
    back_pay_months: int
    back_pay_fen: int
    # The audit trail of the person, the death's and the correction's approval, in order.
    audit_actions: list[str]
    # Whether the reversal's audit record names both attestations.
    reversal_names_both: bool
    # The attestations about the person the office lists, newest first.
    attestation_ids: list[str]


def approve(federation: LocalFederation, node_id: str, certification_id: str) -> str:
    """A reviewer (not the clerk who recorded it) approves; the attestation issued."""
    with federation.desk(node_id, "reviewer") as reviewer:
        approved = reviewer.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=certification_id)
        )
    attestation_id: str = approved.certification.attestation_id
    return attestation_id


def reversal(
    federation: LocalFederation,
    node_id: str,
    beneficiary_id: str,
    certification_ids: tuple[str, str],
    attestation_ids: tuple[str, str],
) -> Reversal:
    """The person's state, the resumed payment and the audit trail after the correction of
    attestation_ids[0] by attestation_ids[1] (recorded as certification_ids) was approved."""
    page = overview(federation, node_id, beneficiary_id)
    resumed = [i for i in page.payment_instructions if i.action == desk_pb2.PAYMENT_ACTION_RESUME]
    with federation.desk(node_id, "admin") as admin:
        # The reversal is sequenced into the audit trail shortly after the approval.
        trail = wait_until(
            lambda: _trail(admin, beneficiary_id, certification_ids),
            30,
            "the reversal in the audit trail",
        )
    names_both = any(
        record.action == REVERSED
        and all(attestation_id in record.details_json for attestation_id in attestation_ids)
        for record in trail
    )
    return Reversal(
        status=desk_pb2.BeneficiaryStatus.Name(page.beneficiary.status).removeprefix(
            "BENEFICIARY_STATUS_"
        ),
        entitlement_state=desk_pb2.EntitlementState.Name(page.entitlement.state).removeprefix(
            "ENTITLEMENT_STATE_"
        ),
        overpayment_fen=page.entitlement.overpayment_fen,
        back_pay_months=sum(i.back_pay_months for i in resumed),
        back_pay_fen=sum(i.back_pay_fen for i in resumed),
        audit_actions=[record.action for record in trail],
        reversal_names_both=names_both,
        attestation_ids=[summary.attestation_id for summary in page.attestations],
    )


def _trail(
    admin: DeskClient, beneficiary_id: str, certification_ids: tuple[str, str]
) -> list[desk_pb2.AuditRecordView] | None:
    records = {
        record.seq: record
        for subject_id in (beneficiary_id, *certification_ids)
        for record in admin.stub.ListAuditRecords(
            desk_pb2.ListAuditRecordsRequest(subject_id=subject_id)
        ).records
    }
    trail = [records[seq] for seq in sorted(records)]
    return trail if any(record.action == REVERSED for record in trail) else None
