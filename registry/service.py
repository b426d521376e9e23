"""The registry's gRPC face: `RegistryServicer` and the authorizer that guards it.

Promises: every method validates each request field against `Limits` (INVALID_ARGUMENT naming the
field), calls one operation of `registry.operations.Registry` (one transaction) and maps the
outcome to its response; errors travel as certfed errors to the interceptor in `federation.rpc`.
Who may call what is decided once, by `registry_authorizer`, from the verified client
certificate, before the servicer runs:

    Enrol, GetEnrolment, GetDirectory,           anyone, also without a client certificate
    GetKeyHistory
    ApproveEnrolment, SetNodeStatus, ListNodes   a registry administrator certificate that was
    RetireSigningKey, RevokeSigningKey,          not revoked (RevokeAdminCertificate)
    RotateRootKey, ListAdminCertificates,
    RevokeAdminCertificate
    PublishLocators, WithdrawLocators,           an active node with role paying_office or
    ListDuplicates                               partner_liaison
    Locate, EvaluateLocators,                    any active node
    RotateSigningKey, RenewCertificate
    WitnessCheckpoint                            any active node, for its own log only

A node's certificate must be the current one the registry issued to it (otherwise
UNAUTHENTICATED); a suspended or revoked node is refused with PERMISSION_DENIED.
"""

from __future__ import annotations

import enum
import re

import grpc

from certfed.v1 import log_pb2, registry_pb2, registry_pb2_grpc
from federation.envelopes import envelope_from_proto, envelope_to_proto
from federation.errors import InvalidInputError, PermissionDeniedError, UnauthenticatedError
from federation.fingerprints import parse_fingerprint
from federation.limits import Limits
from federation.principal import ANONYMOUS, Principal, caller
from federation.roles import PAYING_ROLE_NAMES, role_values
from federation.rpc import Authorizer
from federation.timestamps import optional_datetime, to_timestamp
from federation.transport import PeerKind, client_certificate, identity_from_certificate
from registry.applications import validate_node_id, validate_text
from registry.approval import Approval, fingerprints_of
from registry.directory_store import STATUS_VALUES
from registry.locators_store import Duplicate
from registry.operations import Registry, StatusChange
from registry.tables import Node, NodeState
from registry.witness import Submission
from signing.locator import LOCATOR_SIZE

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
STATUS_STATES = {value: NodeState(state) for state, value in STATUS_VALUES.items()}


class Access(enum.Enum):
    ANYONE = "anyone"
    ADMIN = "admin"
    PAYING_NODE = "paying node"
    ACTIVE_NODE = "active node"


ACCESS: dict[str, Access] = {
    f"/{SERVICE_NAME}/{method}": access
    for method, access in {
        "Enrol": Access.ANYONE,
        "GetEnrolment": Access.ANYONE,
        "GetDirectory": Access.ANYONE,
        "GetKeyHistory": Access.ANYONE,
        "ApproveEnrolment": Access.ADMIN,
        "SetNodeStatus": Access.ADMIN,
        "ListNodes": Access.ADMIN,
        "PublishLocators": Access.PAYING_NODE,
        "WithdrawLocators": Access.PAYING_NODE,
        "ListDuplicates": Access.PAYING_NODE,
        "Locate": Access.ACTIVE_NODE,
        "EvaluateLocators": Access.ACTIVE_NODE,
        "RotateSigningKey": Access.ACTIVE_NODE,
        "RenewCertificate": Access.ACTIVE_NODE,
        "RetireSigningKey": Access.ADMIN,
        "RevokeSigningKey": Access.ADMIN,
        "RotateRootKey": Access.ADMIN,
        "ListAdminCertificates": Access.ADMIN,
        "RevokeAdminCertificate": Access.ADMIN,
        "WitnessCheckpoint": Access.ACTIVE_NODE,
    }.items()
}


def registry_authorizer(registry: Registry) -> Authorizer:
    """Decide each caller's principal from its certificate, by the table in the module docstring."""

    def authorize(method: str, context: grpc.ServicerContext) -> Principal:
        access = ACCESS.get(method)
        if access is None:
            raise PermissionDeniedError(f"{method} is not a registry method")
        certificate = client_certificate(context)
        # gRPC has verified the chain already; checking the issuer again here keeps a port
        # configured without client verification from ever trusting a forged certificate.
        identity = (
            identity_from_certificate(certificate)
            if certificate is not None and registry.is_federation_certificate(certificate)
            else None
        )
        if access is Access.ANYONE:
            if identity is None or identity.kind is PeerKind.REGISTRY:
                return ANONYMOUS
            return Principal(
                kind=str(identity.kind),
                name=identity.name,
                certificate_sha256=identity.certificate_sha256,
            )
        short = method.rsplit("/", 1)[-1]
        if identity is None:
            raise UnauthenticatedError(
                f"{short} needs a federation client certificate; call the registry's mTLS port"
            )
        if access is Access.ADMIN:
            if identity.kind is not PeerKind.ADMIN:
                raise PermissionDeniedError(f"only a registry administrator may call {short}")
            if registry.admin_certificates.is_revoked(identity.certificate_sha256):
                raise UnauthenticatedError(
                    f"administrator certificate of {identity.name!r} was revoked; ask another "
                    "administrator"
                )
            return Principal(
                kind="admin", name=identity.name, certificate_sha256=identity.certificate_sha256
            )
        if identity.kind is not PeerKind.NODE:
            raise PermissionDeniedError(f"only an active federation node may call {short}")
        node = registry.caller_node(identity)
        roles = frozenset(node.roles)
        if access is Access.PAYING_NODE and not PAYING_ROLE_NAMES.intersection(roles):
            raise PermissionDeniedError(
                f"node {node.node_id} has roles {', '.join(sorted(roles))}; {short} needs "
                f"one of {', '.join(sorted(PAYING_ROLE_NAMES))}"
            )
        return Principal(
            kind="node",
            name=node.node_id,
            roles=roles,
            certificate_sha256=identity.certificate_sha256,
        )

    return authorize


def _check_locator(locator: bytes, field_name: str) -> bytes:
    if len(locator) != LOCATOR_SIZE:
        raise InvalidInputError(
            field_name, f"a subject locator is {LOCATOR_SIZE} bytes, this one is {len(locator)}"
        )
    return bytes(locator)


def _check_locators(
    locators: list[bytes], limits: Limits, field_name: str = "locators"
) -> list[bytes]:
    if len(locators) > limits.max_repeated:
        raise InvalidInputError(
            field_name,
            f"{len(locators)} locators in one call, more than the limit of "
            f"{limits.max_repeated}; send them in smaller batches",
        )
    return [_check_locator(locator, f"{field_name}[{i}]") for i, locator in enumerate(locators)]


def _check_key_id(key_id: str, field_name: str = "key_id") -> str:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise InvalidInputError(
            field_name, "a signing key id is 64 lowercase hex characters (SHA-256 of the key)"
        )
    return key_id


def _duplicate(duplicate: Duplicate) -> registry_pb2.DuplicateEntitlement:
    return registry_pb2.DuplicateEntitlement(
        locator=duplicate.locator,
        paying_node_ids=list(duplicate.node_ids),
        detected_at=to_timestamp(duplicate.detected_at),
    )


def _node_summary(node: Node) -> registry_pb2.NodeSummary:
    fingerprints = fingerprints_of(node)
    return registry_pb2.NodeSummary(
        node_id=node.node_id,
        display_name=node.display_name,
        region_codes=list(node.region_codes),
        roles=role_values(node.roles),
        endpoint=node.endpoint,
        status=STATUS_VALUES[NodeState(node.status)],
        applied_at=to_timestamp(node.applied_at),
        status_reason=node.status_reason,
        signing_key_fingerprint=fingerprints.signing_key,
        tls_key_fingerprint=fingerprints.tls_key,
    )


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """Thin RPC methods over `Registry`; see the module docstring."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @property
    def _limits(self) -> Limits:
        return self._registry.limits

    def Enrol(
        self, request: registry_pb2.EnrolRequest, context: grpc.ServicerContext
    ) -> registry_pb2.EnrolResponse:
        if not request.HasField("application"):
            raise InvalidInputError("application", "the signed NodeApplication is required")
        node_id, state = self._registry.enrol(envelope_from_proto(request.application))
        return registry_pb2.EnrolResponse(node_id=node_id, status=STATUS_VALUES[state])

    def GetEnrolment(
        self, request: registry_pb2.GetEnrolmentRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetEnrolmentResponse:
        enrolment = self._registry.get_enrolment(
            validate_node_id(request.node_id),
            envelope_from_proto(request.proof) if request.HasField("proof") else None,
        )
        return registry_pb2.GetEnrolmentResponse(
            node_id=enrolment.node_id,
            status=STATUS_VALUES[enrolment.status],
            tls_certificate_pem=enrolment.certificate_pem,
            ca_certificate_pem=enrolment.ca_certificate_pem,
            status_reason=enrolment.status_reason,
        )

    def ApproveEnrolment(
        self, request: registry_pb2.ApproveEnrolmentRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ApproveEnrolmentResponse:
        node_id = validate_node_id(request.node_id)
        approval = Approval(
            signing_key_fingerprint=parse_fingerprint(
                request.signing_key_fingerprint, "signing_key_fingerprint"
            ),
            tls_key_fingerprint=parse_fingerprint(
                request.tls_key_fingerprint, "tls_key_fingerprint"
            ),
            allow_second_node_for_region=request.allow_second_node_for_region,
        )
        version = self._registry.approve(node_id, admin=caller().name, approval=approval)
        return registry_pb2.ApproveEnrolmentResponse(directory_version=version)

    def SetNodeStatus(
        self, request: registry_pb2.SetNodeStatusRequest, context: grpc.ServicerContext
    ) -> registry_pb2.SetNodeStatusResponse:
        node_id = validate_node_id(request.node_id)
        target = STATUS_STATES.get(request.status)
        if target is None or target is NodeState.PENDING:
            raise InvalidInputError(
                "status", "use NODE_STATUS_ACTIVE, NODE_STATUS_SUSPENDED or NODE_STATUS_REVOKED"
            )
        reason = validate_text(request.reason, "reason", self._limits, required=False)
        effective_at = optional_datetime(request, "effective_at")
        version = self._registry.set_status(
            node_id, StatusChange(target, reason, effective_at), admin=caller().name
        )
        return registry_pb2.SetNodeStatusResponse(directory_version=version)

    def ListNodes(
        self, request: registry_pb2.ListNodesRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListNodesResponse:
        return registry_pb2.ListNodesResponse(
            nodes=[_node_summary(node) for node in self._registry.list_nodes()]
        )

    def GetDirectory(
        self, request: registry_pb2.GetDirectoryRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetDirectoryResponse:
        known_root = request.known_root_key_id
        if known_root and not KEY_ID_PATTERN.fullmatch(known_root):
            raise InvalidInputError("known_root_key_id", "is 64 lowercase hex characters")
        statements = [
            envelope_to_proto(statement) for statement in self._registry.root_statements(known_root)
        ]
        latest = self._registry.directory(request.known_version)
        if latest is None:
            return registry_pb2.GetDirectoryResponse(not_modified=True, root_statements=statements)
        return registry_pb2.GetDirectoryResponse(
            directory=envelope_to_proto(latest.envelope), root_statements=statements
        )

    def GetKeyHistory(
        self, request: registry_pb2.GetKeyHistoryRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetKeyHistoryResponse:
        node_id = validate_node_id(request.node_id) if request.node_id else ""
        return registry_pb2.GetKeyHistoryResponse(
            history=envelope_to_proto(self._registry.key_history(node_id))
        )

    def PublishLocators(
        self, request: registry_pb2.PublishLocatorsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.PublishLocatorsResponse:
        locators = _check_locators(list(request.locators), self._limits)
        withdrawn = _check_locators(list(request.withdrawn), self._limits, "withdrawn")
        outcome = self._registry.publish_locators(caller().name, locators, withdrawn)
        return registry_pb2.PublishLocatorsResponse(
            published=outcome.published,
            duplicates=[_duplicate(duplicate) for duplicate in outcome.duplicates],
        )

    def WithdrawLocators(
        self, request: registry_pb2.WithdrawLocatorsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.WithdrawLocatorsResponse:
        locators = _check_locators(list(request.locators), self._limits)
        withdrawn = self._registry.withdraw_locators(caller().name, locators)
        return registry_pb2.WithdrawLocatorsResponse(withdrawn=withdrawn)

    def Locate(
        self, request: registry_pb2.LocateRequest, context: grpc.ServicerContext
    ) -> registry_pb2.LocateResponse:
        locator = _check_locator(request.locator, "locator")
        return registry_pb2.LocateResponse(paying_node_ids=self._registry.locate(locator))

    def EvaluateLocators(
        self, request: registry_pb2.EvaluateLocatorsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.EvaluateLocatorsResponse:
        evaluation = self._registry.evaluate_locators(
            caller().name, [bytes(element) for element in request.blinded_elements]
        )
        return registry_pb2.EvaluateLocatorsResponse(
            evaluated_elements=evaluation.evaluated, remaining_today=evaluation.remaining_today
        )

    def ListDuplicates(
        self, request: registry_pb2.ListDuplicatesRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListDuplicatesResponse:
        duplicates = self._registry.list_duplicates(caller().name)
        return registry_pb2.ListDuplicatesResponse(
            duplicates=[_duplicate(duplicate) for duplicate in duplicates]
        )

    def WitnessCheckpoint(
        self, request: registry_pb2.WitnessCheckpointRequest, context: grpc.ServicerContext
    ) -> registry_pb2.WitnessCheckpointResponse:
        if not request.checkpoint.note:
            raise InvalidInputError("checkpoint.note", "the signed checkpoint note is required")
        submission = Submission(
            note=bytes(request.checkpoint.note),
            old_size=request.old_size,
            consistency_proof=tuple(bytes(value) for value in request.consistency_proof),
        )
        cosigned = self._registry.witness.cosign(caller().name, submission)
        return registry_pb2.WitnessCheckpointResponse(
            checkpoint=log_pb2.SignedCheckpoint(note=cosigned)
        )

    # Keys over time.

    def RotateSigningKey(
        self, request: registry_pb2.RotateSigningKeyRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RotateSigningKeyResponse:
        if not request.HasField("rotation"):
            raise InvalidInputError("rotation", "the signed SigningKeyRotation is required")
        rotated = self._registry.rotate_signing_key(
            caller().name, envelope_from_proto(request.rotation)
        )
        return registry_pb2.RotateSigningKeyResponse(
            new_key_id=rotated.new_key_id,
            valid_from=to_timestamp(rotated.valid_from),
            previous_valid_until=to_timestamp(rotated.previous_valid_until),
            directory_version=rotated.directory_version,
        )

    def RenewCertificate(
        self, request: registry_pb2.RenewCertificateRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RenewCertificateResponse:
        if not request.tls_csr_pem:
            raise InvalidInputError("tls_csr_pem", "the certificate request is required")
        renewed = self._registry.renew_certificate(caller().name, bytes(request.tls_csr_pem))
        return registry_pb2.RenewCertificateResponse(
            tls_certificate_pem=renewed.certificate_pem,
            previous_valid_until=to_timestamp(renewed.previous_valid_until),
            directory_version=renewed.directory_version,
        )

    def RetireSigningKey(
        self, request: registry_pb2.RetireSigningKeyRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RetireSigningKeyResponse:
        version = self._registry.retire_signing_key(
            validate_node_id(request.node_id), _check_key_id(request.key_id), admin=caller().name
        )
        return registry_pb2.RetireSigningKeyResponse(directory_version=version)

    def RevokeSigningKey(
        self, request: registry_pb2.RevokeSigningKeyRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RevokeSigningKeyResponse:
        version = self._registry.revoke_signing_key(
            validate_node_id(request.node_id),
            _check_key_id(request.key_id),
            validate_text(request.reason, "reason", self._limits),
            optional_datetime(request, "effective_at"),
            admin=caller().name,
        )
        return registry_pb2.RevokeSigningKeyResponse(directory_version=version)

    def ListAdminCertificates(
        self, request: registry_pb2.ListAdminCertificatesRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListAdminCertificatesResponse:
        response = registry_pb2.ListAdminCertificatesResponse()
        for item in self._registry.admin_certificates.list():
            listed = response.certificates.add(
                name=item.name,
                sha256=item.sha256,
                not_after=to_timestamp(item.not_after),
                revoked_by=item.revoked_by,
                revocation_reason=item.revocation_reason,
            )
            if item.revoked_at is not None:
                listed.revoked_at.CopyFrom(to_timestamp(item.revoked_at))
        return response

    def RevokeAdminCertificate(
        self, request: registry_pb2.RevokeAdminCertificateRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RevokeAdminCertificateResponse:
        self._registry.admin_certificates.revoke(
            _check_key_id(request.sha256, "sha256"),
            validate_text(request.reason, "reason", self._limits),
            admin=caller().name,
        )
        return registry_pb2.RevokeAdminCertificateResponse()

    def RotateRootKey(
        self, request: registry_pb2.RotateRootKeyRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RotateRootKeyResponse:
        expected = _check_key_id(request.current_root_key_id, "current_root_key_id")
        rotated = self._registry.rotate_root(admin=caller().name, expected_root_key_id=expected)
        return registry_pb2.RotateRootKeyResponse(
            root_key_id=rotated.root_key_id,
            root_version=rotated.root_version,
            directory_version=rotated.directory_version,
        )
