"""The desk methods that gather one page's worth in one call: a person's overview, one
certification, and how the node stands in the federation. Mixed into `DeskServicer`; read-only
and thin, like the rest of it: each reads through the store and maps the rows.

Every list is bounded. What the overview holds depends on the caller's roles exactly as the
list methods it replaces do: payment instructions for administrators, open requests for clerks
and reviewers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import grpc

from certfed.v1 import desk_pb2, directory_pb2
from federation.errors import PreconditionError
from federation.principal import caller
from federation.timestamps import to_timestamp
from federation_node.rules.validation import require_id
from federation_node.service.lifecycle_views import (
    amount_change_view,
    entitlement_view,
    instruction_view,
)
from federation_node.service.trust_desk_service import TrustDesk
from federation_node.service.views import (
    attestation_view,
    beneficiary_view,
    certification_view,
    request_view,
)
from federation_node.store import (
    amount_changes,
    assistance,
    attestations_store,
    beneficiaries,
    certifications,
    entitlements_store,
    log_store,
    outbox,
    payments_store,
)

# How much of a person's history the overview carries, newest first.
OVERVIEW_ATTESTATIONS = 20
OVERVIEW_PAYMENT_INSTRUCTIONS = 24
# How many directory nodes the federation status lists (a federation of every prefecture's
# office stays well under it).
MAX_PEERS = 1000
PAYMENT_READERS = frozenset({"admin"})
REQUEST_READERS = frozenset({"clerk", "reviewer"})


def _set_time(message: object, field: str, moment: datetime | None) -> None:
    if moment is not None:
        getattr(message, field).CopyFrom(to_timestamp(moment))


class OverviewDesk(TrustDesk):
    """GetBeneficiaryOverview, GetCertification and GetFederationStatus (which builds on the
    directory status of `TrustDesk`), for a servicer holding `_node`."""

    def GetBeneficiaryOverview(
        self, request: desk_pb2.GetBeneficiaryOverviewRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetBeneficiaryOverviewResponse:
        beneficiary_id = require_id(request.beneficiary_id, "beneficiary_id")
        roles = caller().roles
        with self._node.context.session() as session:
            person = beneficiaries.get(session, beneficiary_id)
            entitlement = entitlements_store.for_beneficiaries(session, [beneficiary_id]).get(
                beneficiary_id
            )
            pending = amount_changes.pending_for(session, [beneficiary_id]).get(beneficiary_id)
            about = attestations_store.for_locator(session, person.subject_locator)
            instructions = (
                payments_store.for_beneficiary(session, beneficiary_id)
                if roles & PAYMENT_READERS
                else []
            )
            open_request = (
                assistance.open_for_beneficiary(session, beneficiary_id)
                if roles & REQUEST_READERS
                else None
            )
        response = desk_pb2.GetBeneficiaryOverviewResponse(
            beneficiary=beneficiary_view(person),
            attestations=[attestation_view(a) for a in reversed(about[-OVERVIEW_ATTESTATIONS:])],
            attestations_total=len(about),
            payment_instructions=[
                instruction_view(i, person)
                for i in reversed(instructions[-OVERVIEW_PAYMENT_INSTRUCTIONS:])
            ],
            back_pay_total_fen=sum(i.back_pay_fen for i in instructions),
            open_requests=[request_view(open_request)] if open_request is not None else [],
        )
        if entitlement is not None:
            response.entitlement.CopyFrom(entitlement_view(entitlement, person))
        if pending is not None:
            response.pending_amount_change.CopyFrom(amount_change_view(pending))
        return response

    def GetCertification(
        self, request: desk_pb2.GetCertificationRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetCertificationResponse:
        certification_id = require_id(request.certification_id, "certification_id")
        with self._node.context.session() as session:
            record = certifications.get(session, certification_id)
        return desk_pb2.GetCertificationResponse(certification=certification_view(record))

    def GetFederationStatus(
        self, request: desk_pb2.GetFederationStatusRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetFederationStatusResponse:
        node = self._node.context
        directory = self.GetDirectoryStatus(desk_pb2.GetDirectoryStatusRequest(), context)
        now = node.now()
        issued_at = node.directory.freshness().issued_at
        age = max(0, int((now - issued_at).total_seconds())) if issued_at else 0
        with node.session() as session:
            backlog = {b.destination: b for b in outbox.backlog_by_destination(session)}
            head = log_store.head(session)
            witness = log_store.witness_state(session)
            latest = log_store.latest_checkpoint(session)
        nodes: Sequence[directory_pb2.DirectoryNode]
        try:
            nodes = node.directory.current().directory.nodes
        except PreconditionError:
            nodes = []  # no directory, or an expired one: the outbox still says what waits
        listed = sorted((n for n in nodes if n.node_id != node.node_id), key=lambda n: n.node_id)
        peers = [_peer_view(n.node_id, n, backlog.pop(n.node_id, None)) for n in listed[:MAX_PEERS]]
        peers.extend(_peer_view(d, None, backlog[d]) for d in sorted(backlog))
        log = desk_pb2.LogStatus(
            tree_size=head.tree_size,
            witnessed_size=witness.witnessed_size,
            held_back_reason=log_store.behind_witness(witness, head.tree_size) or "",
        )
        if latest is not None:
            log.checkpoint_tree_size = latest.tree_size
            log.checkpoint_root_hash = latest.root_hash
            log.cosigned_at.CopyFrom(to_timestamp(latest.cosigned_at))
        log.entries_not_cosigned = max(0, head.tree_size - log.checkpoint_tree_size)
        return desk_pb2.GetFederationStatusResponse(
            directory=directory,
            directory_age_seconds=age,
            peers=peers,
            peers_truncated=len(listed) > MAX_PEERS,
            log=log,
        )


def _peer_view(
    destination: str,
    listed: directory_pb2.DirectoryNode | None,
    backlog: outbox.Backlog | None,
) -> desk_pb2.PeerStatus:
    """A peer as the directory lists it (None: no longer listed) with what waits for it."""
    peer = desk_pb2.PeerStatus(node_id=destination)
    if listed is not None:
        peer.display_name = listed.display_name
        peer.roles.extend(listed.roles)
        peer.region_codes.extend(listed.region_codes)
        peer.status = listed.status
        peer.status_reason = listed.status_reason
        if listed.HasField("status_changed_at"):
            peer.status_changed_at.CopyFrom(listed.status_changed_at)
    if backlog is not None:
        peer.pending_messages = backlog.pending
        peer.dead_letters = backlog.dead
        _set_time(peer, "oldest_pending_since", backlog.oldest_pending_since)
    return peer
