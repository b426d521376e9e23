"""Who may call what on a node, decided once per call before any servicer runs.

FederationService: the caller is the node named in its verified client certificate; that node
must be in the directory, present the certificate the registry issued it, be active, and hold a
role the method allows. DeskService: the caller is the operator whose bearer token or session
token is in the `authorization` metadata (`Bearer op-...` or `Bearer ses-...`); the operator must
be enabled and hold a role the method allows, the token must not have expired and the session
must be live. SignIn alone needs no token; its attempts are limited per connection address in
memory here, before any database work (the per-account and per-address failure limits follow in
offices/sign_in.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import grpc
from sqlalchemy.engine import Engine

from certfed.v1 import common_pb2
from federation.database import reader
from federation.errors import PermissionDeniedError, UnauthenticatedError
from federation.principal import ANONYMOUS, Principal
from federation.rate_limit import Rate, RateLimiter, peer_address
from federation.roles import ROLE_NAMES
from federation.transport import PeerKind, peer_identity
from federation_node.config import OperatorSessionsConfig
from federation_node.links.directory_client import DirectoryClient
from federation_node.offices.sign_in import session_times
from federation_node.store import operator_sessions, operators

FEDERATION = "/certfed.v1.FederationService/"
DESK = "/certfed.v1.DeskService/"

ANY_NODE_ROLE = frozenset(ROLE_NAMES.values())
# Node roles allowed to call each FederationService method.
FEDERATION_POLICY: Mapping[str, frozenset[str]] = {
    "RequestAssistance": frozenset({"paying_office", "partner_liaison"}),
    "UpdateAssistanceStatus": frozenset({"residence_agency", "partner_liaison", "overseas_post"}),
    # A paying office delivers a death (imprisonment, disappearance) it confirmed to the other
    # offices paying the person (offices/life_events.py); what no request of the receiver asked
    # for is held for the receiver's reviewer, never applied by itself (paying_office.py).
    "DeliverAttestation": frozenset(
        {"residence_agency", "partner_liaison", "overseas_post", "paying_office"}
    ),
    # A node's transparency log is open to every active node of the federation: offices audit
    # and reconcile each other's attestations in bulk (docs/domain.md, flow 3).
    "GetCheckpoint": ANY_NODE_ROLE,
    "GetEntries": ANY_NODE_ROLE,
    "GetInclusionProof": ANY_NODE_ROLE,
    "GetConsistencyProof": ANY_NODE_ROLE,
    "Subscribe": ANY_NODE_ROLE,
    # Every member may ask any other to witness its log (tlog/node_witness.py).
    "CosignCheckpoint": ANY_NODE_ROLE,
}

CLERK, REVIEWER, ADMIN = "clerk", "reviewer", "admin"
# A data feed's service account (offices/pending_signals.py): it records signals, nothing else.
FEED = "feed"
ANY_OPERATOR = frozenset({CLERK, REVIEWER, ADMIN})
# Operator roles allowed to call each DeskService method.
DESK_POLICY: Mapping[str, frozenset[str]] = {
    "WhoAmI": ANY_OPERATOR,
    "RegisterBeneficiary": frozenset({CLERK}),
    "GetBeneficiary": ANY_OPERATOR,
    "ListBeneficiaries": ANY_OPERATOR,
    "RequestCertification": frozenset({CLERK}),
    "ListAssistanceRequests": frozenset({CLERK, REVIEWER}),
    "GetAssistanceRequest": frozenset({CLERK, REVIEWER}),
    "SetAssistanceStatus": frozenset({CLERK}),
    "RecordCertification": frozenset({CLERK}),
    "ListCertifications": frozenset({CLERK, REVIEWER}),
    "ApproveCertification": frozenset({REVIEWER}),
    "RejectCertification": frozenset({REVIEWER}),
    "ListAttestations": ANY_OPERATOR,
    "ExportAttestation": ANY_OPERATOR,
    "ListOutbox": frozenset({ADMIN}),
    "RetryDeadLetter": frozenset({ADMIN}),
    "GetDirectoryStatus": ANY_OPERATOR,
    "ListRevocationReviews": frozenset({REVIEWER, ADMIN}),
    # The paying office's year.
    "RegisterBeneficiaries": frozenset({CLERK}),
    "RecordSignals": frozenset({CLERK, FEED}),
    "ReviewTermination": frozenset({REVIEWER}),
    "ListEntitlements": ANY_OPERATOR,
    "RunCycle": frozenset({ADMIN}),
    "ListPaymentInstructions": frozenset({ADMIN}),
    "ListReminders": frozenset({ADMIN}),
    "AcknowledgeReminders": frozenset({ADMIN}),
    "GetReport": ANY_OPERATOR,
    # The roll.
    "UpsertBeneficiaries": frozenset({CLERK}),
    "FindBeneficiary": ANY_OPERATOR,
    "UpdateBeneficiaryContact": frozenset({CLERK}),
    "ProposeMonthlyAmount": frozenset({CLERK}),
    "ReviewMonthlyAmount": frozenset({REVIEWER}),
    "ReviewMonthlyAmounts": frozenset({REVIEWER}),
    "ListAmountChanges": ANY_OPERATOR,
    "GetAmountChange": ANY_OPERATOR,
    "ClosePaymentMonth": frozenset({ADMIN}),
    # Evidence stays with the office that certified: its clerks attach it, its clerks and
    # reviewers read it (each read audited); no other office or node has a method to reach it.
    "UploadEvidence": frozenset({CLERK}),
    "GetEvidence": frozenset({CLERK, REVIEWER}),
    # Attestations a peer delivered that were kept for review, never applied by themselves.
    "ListHeldAttestations": frozenset({REVIEWER, ADMIN}),
    "DecideHeldAttestation": frozenset({REVIEWER}),
    # Signing in (SignIn needs no token: NO_TOKEN_METHODS) and operator administration.
    "SignOut": ANY_OPERATOR,
    "SetOperatorPreferences": ANY_OPERATOR,
    "ListOperators": frozenset({ADMIN}),
    "AddOperator": frozenset({ADMIN}),
    "DisableOperator": frozenset({ADMIN}),
    "ResetOperatorPassword": frozenset({ADMIN}),
    "ListAuditRecords": frozenset({ADMIN}),
    # One page's worth in one call: a person (what each role sees of them is filtered inside,
    # as the list methods it replaces are), one certification, the federation's state.
    "GetBeneficiaryOverview": ANY_OPERATOR,
    "GetCertification": frozenset({CLERK, REVIEWER}),
    "GetFederationStatus": frozenset({ADMIN}),
    # Alive signals a person entered, held for a second person.
    "ListPendingSignals": frozenset({CLERK, REVIEWER}),
    "DecidePendingSignal": frozenset({REVIEWER}),
    # Channels: a face-recognition provider's results come from its feed account; the people
    # they did not certify are listed for the desk.
    "RecordFaceRecognitions": frozenset({FEED}),
    "ListFaceRecognitionFollowUps": frozenset({CLERK, REVIEWER}),
    # An employer's batch list: a clerk uploads it, a reviewer who did not decides it whole.
    "UploadEmployerBatch": frozenset({CLERK}),
    "ListEmployerBatches": frozenset({CLERK, REVIEWER}),
    "GetEmployerBatch": frozenset({CLERK, REVIEWER}),
    "DecideEmployerBatch": frozenset({REVIEWER}),
    # The retiree status service answers portals with a feed account (a service, no password).
    "GetCertificationStatus": frozenset({FEED, CLERK, REVIEWER}),
    # Overpayment recovery: anyone at the desk sees the debts; a clerk records money received,
    # a reviewer a fraud finding and its fine (offices/recovery.py).
    "ListDebts": ANY_OPERATOR,
    "GetDebt": ANY_OPERATOR,
    "RecordRecovery": frozenset({CLERK}),
    "RecordFraud": frozenset({REVIEWER}),
    # Deaths reported after their report window (offices/death_reports.py).
    "ListLateDeathReports": ANY_OPERATOR,
}
# DeskService methods anyone reaching the desk port may call, without a token.
NO_TOKEN_METHODS = frozenset({"SignIn"})


class NodeAuthorizer:
    def __init__(
        self,
        directory: DirectoryClient,
        engine: Engine,
        sessions: OperatorSessionsConfig | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._directory = directory
        self._engine = engine
        self._reader = reader(engine)
        self._sessions = sessions or OperatorSessionsConfig()
        self._times = session_times(self._sessions)
        self._clock = clock
        self._sign_in_limiter = RateLimiter(
            {
                "anonymous": Rate(
                    self._sessions.peer_sign_ins_per_s, self._sessions.peer_sign_in_burst
                )
            }
        )

    def __call__(self, method: str, context: grpc.ServicerContext) -> Principal:
        if method.startswith(FEDERATION):
            return self._peer(method.removeprefix(FEDERATION), context)
        if method.startswith(DESK):
            return self._operator(method.removeprefix(DESK), context)
        raise PermissionDeniedError(f"{method} is not served here")

    def _peer(self, name: str, context: grpc.ServicerContext) -> Principal:
        identity = peer_identity(context)
        if identity is None or identity.kind is not PeerKind.NODE:
            raise UnauthenticatedError("a federation node certificate is required for this call")
        node = self._directory.current().find(identity.name)
        if node is None or identity.certificate_sha256 not in node.tls_certificate_sha256:
            # A node approved or re-certified since our last refresh: look again before refusing.
            self._directory.refresh_if_due()
            node = self._directory.current().find(identity.name)
        if node is None:
            raise UnauthenticatedError(
                f"node {identity.name} is not in the federation directory this node holds"
            )
        if identity.certificate_sha256 not in node.tls_certificate_sha256:
            raise UnauthenticatedError(
                f"the certificate presented is not one the registry issued to node {identity.name}"
            )
        if node.status != common_pb2.NODE_STATUS_ACTIVE:
            state = common_pb2.NodeStatus.Name(node.status).removeprefix("NODE_STATUS_").lower()
            raise PermissionDeniedError(f"node {identity.name} is {state} in the federation")
        roles = frozenset(ROLE_NAMES[role] for role in node.roles if role in ROLE_NAMES)
        allowed = FEDERATION_POLICY.get(name)
        if allowed is None or not allowed & roles:
            raise PermissionDeniedError(
                f"node {identity.name} ({', '.join(sorted(roles))}) may not call {name}"
            )
        return Principal("node", identity.name, roles, identity.certificate_sha256)

    def _operator(self, name: str, context: grpc.ServicerContext) -> Principal:
        if name in NO_TOKEN_METHODS:
            # Before any database work: a flood of guesses spends only its own address's bucket.
            self._sign_in_limiter(ANONYMOUS, peer_address(context.peer()))
            return ANONYMOUS
        metadata = dict(context.invocation_metadata())
        header = str(metadata.get("authorization", ""))
        if not header.startswith("Bearer "):
            raise UnauthenticatedError(
                "sign in: send your operator token as 'authorization: Bearer <token>'"
            )
        token = header.removeprefix("Bearer ").strip()
        now = self._clock()
        session_id = ""
        # A connection, not an ORM session: one prepared SELECT is all a call's check costs.
        with self._reader.connect() as connection:
            if operator_sessions.is_session_token(token):
                checked = operator_sessions.check(connection, token, self._times, now)
                operator, session_id = checked.signed_in, checked.session_id
                touch = checked.needs_touch
            else:
                operator, touch = operators.authenticate(connection, token, now), False
        if touch:
            # Outside the read: at most once per touch interval per session, one UPDATE.
            operator_sessions.touch(self._engine, session_id, now)
        roles = frozenset(operator.roles)
        allowed = DESK_POLICY.get(name)
        if allowed is None or not allowed & roles:
            needed = " or ".join(sorted(allowed or ()))
            raise PermissionDeniedError(
                f"operator {operator.operator_id} may not {name}; it needs the role {needed}"
            )
        return Principal("operator", operator.operator_id, roles, session_id=session_id)
