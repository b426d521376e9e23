"""What an administrator must confirm before a pending node is approved.

Promises: `check_approval` raises FingerprintMismatchError (FAILED_PRECONDITION) unless the
signing-key and TLS-key fingerprints the administrator typed, as the office sent them out of
band, are those of the keys in the application the registry received; so an application sent
by someone else under the office's node id cannot be approved by mistake. It raises
RegionAlreadyServedError (FAILED_PRECONDITION) when an active or suspended node already serves
one of the applicant's region codes (the same code, or a province or prefecture containing it)
in one of the applicant's roles, unless the administrator said explicitly that a second node
is intended: a newcomer declaring a region must not quietly take or share another office's
requests. `Approval` carries those answers from the RPC to `Registry.approve`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from federation.errors import PreconditionError
from federation.fingerprints import KeyFingerprints
from federation.regions import coverage
from registry import nodes_store
from registry.tables import Node, NodeState

SERVING_STATES = frozenset({NodeState.ACTIVE, NodeState.SUSPENDED})


class RegionAlreadyServedError(PreconditionError):
    """Another node already serves a region the applicant declared, in the same role."""


@dataclass(frozen=True)
class Approval:
    """The administrator's confirmation of a pending application."""

    signing_key_fingerprint: str
    tls_key_fingerprint: str
    allow_second_node_for_region: bool = False


@dataclass(frozen=True)
class SharedRegion:
    """An applicant's region code that `node_id` already serves (through `served`) in `role`."""

    region: str
    role: str
    node_id: str
    served: str

    def describe(self) -> str:
        through = "" if self.served == self.region else f" (through {self.served})"
        return f"{self.region} as {self.role} by node {self.node_id}{through}"


def fingerprints_of(node: Node) -> KeyFingerprints:
    return KeyFingerprints.of_keys(node.signing_public_key, node.tls_csr_pem)


def shared_regions(session: Session, applicant: Node) -> list[SharedRegion]:
    """Every (region, role) of the applicant that a serving node covers already."""
    found: list[SharedRegion] = []
    for other in nodes_store.list_nodes(session):
        if other.node_id == applicant.node_id or NodeState(other.status) not in SERVING_STATES:
            continue
        for role in applicant.roles:
            if role not in other.roles:
                continue
            for region in applicant.region_codes:
                for served in other.region_codes:
                    if coverage(served, region) > 0:
                        found.append(SharedRegion(region, role, other.node_id, served))
    return found


def check_approval(session: Session, applicant: Node, approval: Approval) -> list[SharedRegion]:
    """Raise unless the approval may go ahead (module docstring); the regions it shares, which
    the administrator allowed explicitly, for the audit record."""
    fingerprints_of(applicant).confirm(
        approval.signing_key_fingerprint, approval.tls_key_fingerprint, applicant.node_id
    )
    shared = shared_regions(session, applicant)
    if shared and not approval.allow_second_node_for_region:
        raise RegionAlreadyServedError(
            f"node {applicant.node_id!r} applied for regions already served: "
            f"{'; '.join(item.describe() for item in shared[:5])}. Approving it would send "
            "some of those requests to the newcomer. Confirm with the office already serving "
            "them; if a second node is intended, approve with --allow-second-node-for-region "
            "and set the routing of the region at the offices that send requests there"
        )
    return shared
