"""The authorisation matrix: every RPC of every service, called as every kind of caller.

One federation for the module, real processes over real TLS: a registry, the node under test
(`qingdao`, a residence agency that also pays pensions) and callers of every kind. The callers
need only their enrolled certificates, so they are enrolled but not started. For each service
and caller the test calls every method the generated descriptor lists, with an empty request,
and asserts the outcome: allowed (any status but UNAUTHENTICATED, PERMISSION_DENIED and the
refused TLS handshake, UNAVAILABLE) or exactly the refusal this caller must get.

Who is allowed comes from the tables below, written independently of the production policy.
A method not in them yet (a new RPC) is held to the production policy table, so it is still
called as every caller and every refusal that does not depend on the policy is still checked.

Operators call with a bearer token or with a session from SignIn (a signed-in clerk and admin);
a signed-out session and an expired token are refused like no token. SignIn answers everyone
who reaches the desk port. SignOut is called last, so it ends a session only after the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation, NodeSpec, wait_until
from cli.operator_commands import create_operator, host_actor
from federation.desk_client import DeskChannel, DeskClient
from federation.timestamps import to_timestamp
from federation.transport import (
    REGISTRY_TLS_NAME,
    PeerKind,
    anonymous_channel_credentials,
    certificate_request,
    generate_tls_key,
    node_tls_name,
    secure_channel,
)
from federation_node.service.authz import DESK_POLICY, FEDERATION_POLICY
from federation_node.store import db, operators
from federation_node.store.models import OperatorRole
from registry.ca import FederationCA
from registry.service import ACCESS, Access
from tests.helpers.commands import certfed
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import FOSHAN, LANZHOU, MACAU
from tests.helpers.nodes import QINGDAO as TARGET

CALLER_NODES = {
    "paying_office": LANZHOU,
    "residence_agency": NodeSpec("datong", "Datong agency", ("140200",), ("residence_agency",)),
    "partner_liaison": MACAU,
    "suspended_node": FOSHAN,
    "revoked_node": NodeSpec("datong-old", "Old Datong office", ("140211",), ("paying_office",)),
}
UNKNOWN_NODE_ID = "never-approved"

ACTIVE_NODES = ("paying_office", "residence_agency", "partner_liaison")
CERTIFICATE_CALLERS = (
    *ACTIVE_NODES,
    "suspended_node",
    "revoked_node",
    "unenrolled_unknown_node",
    "unenrolled_foreign_ca",
    "registry_admin",
)
SESSION_CALLERS = {"clerk_session": "clerk", "admin_session": "admin"}
SPENT_CALLERS = ("signed_out_session", "expired_token")
OPERATOR_CALLERS = (
    "clerk",
    "reviewer",
    "admin",
    "feed",
    *SESSION_CALLERS,
    "disabled_operator",
    *SPENT_CALLERS,
    "no_token",
)
CALLERS = (*CERTIFICATE_CALLERS, "no_client_certificate", *OPERATOR_CALLERS)

ANYONE = frozenset(CALLERS)
PAYING = frozenset({"paying_office", "partner_liaison"})
CERTIFYING = frozenset({"residence_agency", "partner_liaison"})
ANY_OPERATOR = frozenset({"clerk", "reviewer", "admin"})
CLERK = frozenset({"clerk"})
REVIEWER = frozenset({"reviewer"})
CLERK_OR_REVIEWER = frozenset({"clerk", "reviewer"})
ADMIN = frozenset({"admin"})
# A feed account (a service, not a person) records signals and may do nothing else.
CLERK_OR_FEED = frozenset({"clerk", "feed"})

# Who may call what: the promise, written out. Registry "ANYONE" methods answer every TLS
# client, including suspended, revoked and unknown nodes (so they can learn their status).
REGISTRY_ALLOWED: dict[str, frozenset[str]] = {
    "Enrol": ANYONE,
    "GetEnrolment": ANYONE,
    "GetDirectory": ANYONE,
    "ApproveEnrolment": frozenset({"registry_admin"}),
    "SetNodeStatus": frozenset({"registry_admin"}),
    "ListNodes": frozenset({"registry_admin"}),
    "PublishLocators": PAYING,
    "WithdrawLocators": PAYING,
    "ListDuplicates": PAYING,
    "Locate": frozenset(ACTIVE_NODES),
    "EvaluateLocators": frozenset(ACTIVE_NODES),
}
FEDERATION_ALLOWED: dict[str, frozenset[str]] = {
    "RequestAssistance": PAYING,
    "UpdateAssistanceStatus": CERTIFYING,
    # Paying offices announce confirmed deaths to each other (held for the receiver's reviewer).
    "DeliverAttestation": CERTIFYING | PAYING,
}
DESK_ALLOWED: dict[str, frozenset[str]] = {
    "WhoAmI": ANY_OPERATOR,
    "RegisterBeneficiary": CLERK,
    "GetBeneficiary": ANY_OPERATOR,
    "ListBeneficiaries": ANY_OPERATOR,
    "RequestCertification": CLERK,
    "ListAssistanceRequests": CLERK_OR_REVIEWER,
    "GetAssistanceRequest": CLERK_OR_REVIEWER,
    "SetAssistanceStatus": CLERK,
    "RecordCertification": CLERK,
    "ListCertifications": CLERK_OR_REVIEWER,
    "ApproveCertification": REVIEWER,
    "RejectCertification": REVIEWER,
    "ListAttestations": ANY_OPERATOR,
    "ExportAttestation": ANY_OPERATOR,
    "ListOutbox": ADMIN,
    "RetryDeadLetter": ADMIN,
    "UploadEvidence": CLERK,
    "GetEvidence": CLERK_OR_REVIEWER,
    "SignOut": ANY_OPERATOR,
    "SetOperatorPreferences": ANY_OPERATOR,
    "ListOperators": ADMIN,
    "AddOperator": ADMIN,
    "DisableOperator": ADMIN,
    "ResetOperatorPassword": ADMIN,
    "ListAuditRecords": ADMIN,
    "GetBeneficiaryOverview": ANY_OPERATOR,
    "GetCertification": CLERK_OR_REVIEWER,
    "GetFederationStatus": ADMIN,
    "RecordSignals": CLERK_OR_FEED,
    "ListPendingSignals": CLERK_OR_REVIEWER,
    "DecidePendingSignal": REVIEWER,
    "ListDebts": ANY_OPERATOR,
    "GetDebt": ANY_OPERATOR,
    "RecordRecovery": CLERK,
    "RecordFraud": REVIEWER,
    "ListLateDeathReports": ANY_OPERATOR,
}
# Desk methods that need no token: anyone who reaches the desk port may call them.
DESK_WITHOUT_TOKEN = frozenset({"SignIn"})

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
UNLIMITED_FAILURES = 1_000_000
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
HANDSHAKE_REFUSED = grpc.StatusCode.UNAVAILABLE
REFUSALS = frozenset({UNAUTHENTICATED, PERMISSION_DENIED, HANDSHAKE_REFUSED})
ALLOWED = "allowed"


def _registry_policy(method: str) -> frozenset[str]:
    access = ACCESS.get(f"/certfed.v1.RegistryService/{method}")
    return {
        Access.ANYONE: ANYONE,
        Access.ADMIN: frozenset({"registry_admin"}),
        Access.PAYING_NODE: PAYING,
        Access.ACTIVE_NODE: frozenset(ACTIVE_NODES),
        None: frozenset(),
    }[access]


def _federation_policy(method: str) -> frozenset[str]:
    return FEDERATION_POLICY.get(method, frozenset())


def _desk_policy(method: str) -> frozenset[str]:
    return DESK_POLICY.get(method, frozenset())


def expected(service: str, method: str, caller: str) -> grpc.StatusCode | str:
    """ALLOWED, or the status code this caller must be refused with."""
    if service == "RegistryService":
        allowed = REGISTRY_ALLOWED.get(method) or _registry_policy(method)
        if caller == "unenrolled_foreign_ca":
            return HANDSHAKE_REFUSED  # the mTLS port verifies the chain
        if caller in allowed:
            return ALLOWED
        if not allowed:
            return PERMISSION_DENIED  # a method nobody may call yet, refused before identity
        if caller in ("no_client_certificate", *OPERATOR_CALLERS):
            return UNAUTHENTICATED  # on the enrolment port, which asks for no certificate
        if caller == "unenrolled_unknown_node" and allowed != frozenset({"registry_admin"}):
            return UNAUTHENTICATED  # a node method: the registry never issued this node
        return PERMISSION_DENIED
    if service == "FederationService":
        allowed = FEDERATION_ALLOWED.get(method) or _federation_policy(method)
        if caller in ("unenrolled_foreign_ca", "no_client_certificate", *OPERATOR_CALLERS):
            return HANDSHAKE_REFUSED  # the federation port requires a federation certificate
        if caller in ("unenrolled_unknown_node", "registry_admin"):
            return UNAUTHENTICATED
        if caller in ("suspended_node", "revoked_node"):
            return PERMISSION_DENIED
        return ALLOWED if caller in allowed else PERMISSION_DENIED
    if method in DESK_WITHOUT_TOKEN:
        return ALLOWED
    allowed = DESK_ALLOWED.get(method) or _desk_policy(method)
    caller = SESSION_CALLERS.get(caller, caller)  # a session holds its operator's roles
    if caller in (*CERTIFICATE_CALLERS, "no_client_certificate", "no_token", *SPENT_CALLERS):
        return UNAUTHENTICATED  # a certificate is no operator token
    if caller == "disabled_operator":
        return PERMISSION_DENIED
    return ALLOWED if caller in allowed else PERMISSION_DENIED


@dataclass
class Caller:
    credentials: grpc.ChannelCredentials
    token: str = ""


@dataclass
class Matrix:
    local: LocalFederation
    callers: dict[str, Caller]

    def channel(self, service: str, caller: str) -> grpc.Channel:
        credentials = self.callers[caller].credentials
        if service == "RegistryService":
            without_certificate = caller in ("no_client_certificate", *OPERATOR_CALLERS)
            endpoint = (
                self.local.enrol_endpoint if without_certificate else self.local.registry_endpoint
            )
            return secure_channel(
                endpoint, REGISTRY_TLS_NAME, credentials, max_message_bytes=4 << 20
            )
        target = self.local.nodes[TARGET.node_id]
        port = target.federation_port if service == "FederationService" else target.desk_port
        return secure_channel(
            f"127.0.0.1:{port}",
            node_tls_name(TARGET.node_id),
            credentials,
            max_message_bytes=4 << 20,
        )

    def metadata(self, caller: str) -> tuple[tuple[str, str], ...]:
        token = self.callers[caller].token
        return (("authorization", f"Bearer {token}"),) if token else ()


def _node_credentials(local: LocalFederation, node_id: str) -> grpc.ChannelCredentials:
    keys = local.nodes[node_id].config.data_dir / "keys"
    return grpc.ssl_channel_credentials(
        root_certificates=local.registry_paths.trust_ca_certificate.read_bytes(),
        private_key=(keys / "tls.key").read_bytes(),
        certificate_chain=(keys / "tls.pem").read_bytes(),
    )


def _issued_by(ca: FederationCA, ca_pem: bytes, node_id: str) -> grpc.ChannelCredentials:
    key = generate_tls_key()
    certificate = ca.issue(
        certificate_request(PeerKind.NODE, node_id, key), PeerKind.NODE, node_id, timedelta(days=1)
    )
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key, certificate_chain=certificate
    )


def _disabled_operator(local: LocalFederation) -> str:
    url = local.nodes[TARGET.node_id].config.effective_database_url
    engine = db.create_engine_for(url)
    try:
        with db.session_scope(engine) as session:
            operator, token = operators.create(
                session, label="leaver", roles=[OperatorRole.CLERK], now=datetime.now(UTC)
            )
            operators.disable(session, operator.operator_id, datetime.now(UTC))
    finally:
        engine.dispose()
    return token


def _expired_token(local: LocalFederation) -> str:
    url = local.nodes[TARGET.node_id].config.effective_database_url
    engine = db.create_engine_for(url)
    try:
        with db.session_scope(engine) as session:
            _operator, token = create_operator(
                session,
                label="old script",
                roles=[OperatorRole.ADMIN],
                actor=host_actor(),
                now=datetime.now(UTC) - timedelta(days=2),
                token_days=1,
            )
    finally:
        engine.dispose()
    return token


def _session(local: LocalFederation, role: str, *, signed_out: bool = False) -> str:
    """A session token of a new operator with `role`, added by the target's administrator."""
    target = local.nodes[TARGET.node_id]
    channel = DeskChannel(
        f"127.0.0.1:{target.desk_port}", TARGET.node_id, target.config.ca_certificate.read_bytes()
    )
    user_name = f"{role}-{'out' if signed_out else 'in'}"
    password = f"matrix password for {user_name}"
    try:
        channel.client(target.tokens["admin"]).stub.AddOperator(
            desk_pb2.AddOperatorRequest(
                label=f"matrix {role}",
                user_name=user_name,
                password=password,
                roles=[desk_pb2.OperatorRole.Value(f"OPERATOR_ROLE_{role.upper()}")],
            )
        )
        token = channel.anonymous.SignIn(
            desk_pb2.SignInRequest(user_name=user_name, password=password)
        ).session_token
        if signed_out:
            channel.client(token).stub.SignOut(desk_pb2.SignOutRequest())
    finally:
        channel.close()
    return token


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    workdir: Path = tmp_path_factory.mktemp("matrix")
    with LocalFederation(workdir) as local:
        # The matrix makes hundreds of refused calls from one address on purpose: the limit on
        # failed sign-ins per address (tested in test_rate_limits_and_minimisation.py) is
        # raised out of its way.
        local.registry_settings["limits_failed_auth_burst"] = str(UNLIMITED_FAILURES)
        local.start_registry()
        for spec in CALLER_NODES.values():
            local.add_node(spec, start=False)
        local.add_node(TARGET, settings={"limits": {"failed_auth_burst": UNLIMITED_FAILURES}})
        with local.admin() as admin:
            admin.set_status("foshan", common_pb2.NODE_STATUS_SUSPENDED, "under investigation")
            admin.set_status("datong-old", common_pb2.NODE_STATUS_REVOKED, "office closed")
        ca_pem = local.registry_paths.trust_ca_certificate.read_bytes()
        registry_ca = FederationCA.load(
            local.registry_paths.ca_certificate, local.registry_paths.ca_key
        )
        foreign_ca = FederationCA.create("someone-else")
        target = local.nodes[TARGET.node_id]
        anonymous = anonymous_channel_credentials(ca_pem)
        callers = {
            role: Caller(_node_credentials(local, spec.node_id))
            for role, spec in CALLER_NODES.items()
        }
        callers["unenrolled_unknown_node"] = Caller(
            _issued_by(registry_ca, ca_pem, UNKNOWN_NODE_ID)
        )
        callers["unenrolled_foreign_ca"] = Caller(
            _issued_by(foreign_ca, ca_pem, CALLER_NODES["paying_office"].node_id)
        )
        callers["registry_admin"] = Caller(
            grpc.ssl_channel_credentials(
                root_certificates=ca_pem,
                private_key=local.registry_paths.admin_key("admin").read_bytes(),
                certificate_chain=local.registry_paths.admin_certificate("admin").read_bytes(),
            )
        )
        callers["no_client_certificate"] = Caller(anonymous)
        for role in ("clerk", "reviewer", "admin", "feed"):
            callers[role] = Caller(anonymous, target.tokens[role])
        callers["disabled_operator"] = Caller(anonymous, _disabled_operator(local))
        callers["expired_token"] = Caller(anonymous, _expired_token(local))
        for caller, role in SESSION_CALLERS.items():
            callers[caller] = Caller(anonymous, _session(local, role))
        callers["signed_out_session"] = Caller(anonymous, _session(local, "clerk", signed_out=True))
        callers["no_token"] = Caller(anonymous)
        built = Matrix(local, callers)
        _await_statuses_seen_by_target(built)
        yield built


def _await_statuses_seen_by_target(matrix: Matrix) -> None:
    """The target refreshes its directory on an interval; wait until it knows both statuses."""
    from certfed.v1 import federation_pb2

    def refused(caller: str) -> bool:
        channel = matrix.channel("FederationService", caller)
        try:
            stub = channel.unary_unary(
                "/certfed.v1.FederationService/RequestAssistance",
                request_serializer=federation_pb2.RequestAssistanceRequest.SerializeToString,
                response_deserializer=federation_pb2.RequestAssistanceResponse.FromString,
            )
            try:
                stub(federation_pb2.RequestAssistanceRequest(), timeout=5)
            except grpc.RpcError as error:
                return error.code() is PERMISSION_DENIED
            return False
        finally:
            channel.close()

    wait_until(lambda: refused("suspended_node") and refused("revoked_node"), 30, "statuses")


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("service", ["RegistryService", "FederationService", "DeskService"])
def test_every_rpc_allows_or_refuses_each_caller_as_the_policy_says(
    matrix: Matrix, rpc: object, service: str, caller: str
) -> None:
    methods = rpc.methods(service)  # type: ignore[attr-defined]
    assert methods, f"no methods found for {service}"
    # SignOut ends a session caller's session: last, after every other method had its turn.
    methods = sorted(methods, key=lambda method: method.name == "SignOut")
    channel = matrix.channel(service, caller)
    mismatches = []
    try:
        for method in methods:
            code, details = rpc.call(  # type: ignore[attr-defined]
                channel, method, method.request_class(), matrix.metadata(caller)
            )
            want = expected(service, method.name, caller)
            got_allowed = code not in REFUSALS
            if (want == ALLOWED and not got_allowed) or (want != ALLOWED and code != want):
                mismatches.append(f"{method.name}: expected {want}, got {code.name} ({details})")
            assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (
                f"{method.name} as {caller}: {code.name} {details}"
            )
    finally:
        channel.close()
    assert not mismatches, f"{service} as {caller}:\n" + "\n".join(mismatches)


def _desk_call(matrix: Matrix, token: str, method: str, request: object) -> object:
    target = matrix.local.nodes[TARGET.node_id]
    with DeskClient(
        f"127.0.0.1:{target.desk_port}",
        TARGET.node_id,
        target.config.ca_certificate.read_bytes(),
        token,
    ) as desk:
        return getattr(desk.stub, method)(request)


def test_a_disabled_operator_is_refused_on_the_very_next_call(matrix: Matrix) -> None:
    config = str(matrix.local.nodes[TARGET.node_id].config_path)
    created = certfed(
        "node", "add-operator", "--config", config, "--label", "temp", "--role", "clerk"
    )
    assert created.returncode == 0, created.stdout + created.stderr
    token = created.stdout.strip().splitlines()[-1]
    operator_id = token.split(".")[0]
    who = _desk_call(matrix, token, "WhoAmI", desk_pb2.WhoAmIRequest())
    assert who.operator_id == operator_id  # type: ignore[attr-defined]

    disabled = certfed("node", "disable-operator", "--config", config, operator_id)
    assert disabled.returncode == 0, disabled.stdout + disabled.stderr
    with pytest.raises(grpc.RpcError) as refused:
        _desk_call(matrix, token, "WhoAmI", desk_pb2.WhoAmIRequest())
    assert refused.value.code() is PERMISSION_DENIED
    assert f"operator {operator_id} is disabled" in (refused.value.details() or "")

    listed = certfed("node", "list-operators", "--config", config)
    assert listed.returncode == 0
    line = next(line for line in listed.stdout.splitlines() if operator_id in line)
    assert "clerk" in line
    assert datetime.now(UTC).strftime("%Y-%m-%d") in line.split("│")[-2]  # disabled today


def test_disabling_an_unknown_operator_fails_by_name(matrix: Matrix) -> None:
    config = str(matrix.local.nodes[TARGET.node_id].config_path)
    result = certfed("node", "disable-operator", "--config", config, "op-000000000000")
    assert result.returncode == 1
    assert "no operator op-000000000000" in result.stdout


def test_nobody_approves_or_rejects_a_certification_they_recorded(matrix: Matrix) -> None:
    """Separation of duties through the desk API, for an operator holding both roles."""
    config = str(matrix.local.nodes[TARGET.node_id].config_path)
    both = certfed(
        "node", "add-operator", "--config", config, "--label", "small office",
        "--role", "clerk", "--role", "reviewer",
    )  # fmt: skip
    assert both.returncode == 0, both.stdout + both.stderr
    token = both.stdout.strip().splitlines()[-1]
    person = resident(resident_id("370202", date(1945, 1, 1), 1), "Walk In")
    _desk_call(
        matrix,
        token,
        "RegisterBeneficiary",
        desk_pb2.RegisterBeneficiaryRequest(identity=person, residence_region="370202"),
    )
    matrix.local.await_outbox_drained(TARGET.node_id)  # the locator reaches the registry
    recorded = _desk_call(
        matrix,
        token,
        "RecordCertification",
        desk_pb2.RecordCertificationRequest(
            walk_in=person,
            method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=to_timestamp(datetime.now(UTC)),
        ),
    )
    certification_id = recorded.certification.certification_id  # type: ignore[attr-defined]
    for method, request in (
        (
            "ApproveCertification",
            desk_pb2.ApproveCertificationRequest(certification_id=certification_id),
        ),
        (
            "RejectCertification",
            desk_pb2.RejectCertificationRequest(
                certification_id=certification_id, reason="unclear"
            ),
        ),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            _desk_call(matrix, token, method, request)
        assert refused.value.code() is PERMISSION_DENIED, method
        assert "a different reviewer must" in (refused.value.details() or "")
    # Still awaiting review: a different reviewer can decide it.
    reviewer = matrix.local.nodes[TARGET.node_id].tokens["reviewer"]
    rejected = _desk_call(
        matrix,
        reviewer,
        "RejectCertification",
        desk_pb2.RejectCertificationRequest(certification_id=certification_id, reason="redo"),
    )
    assert (
        rejected.certification.reviewer_id
        == matrix.local.nodes[TARGET.node_id].operator_ids["reviewer"]
    )  # type: ignore[attr-defined]
