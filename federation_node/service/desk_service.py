"""DeskService: what the region's own clerks, reviewers and administrators call.

The interceptor has already authenticated the operator and checked the method against their
roles; each method validates its fields, runs one domain operation or query, and maps the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import grpc

from certfed.v1 import common_pb2, desk_pb2, desk_pb2_grpc
from federation.errors import InvalidInputError
from federation.principal import caller
from federation_node.offices.assistance_status import STATE_STATUSES
from federation_node.offices.context import Actor
from federation_node.offices.node import Node
from federation_node.rules.validation import page_size, require_id, require_node_id
from federation_node.service import views
from federation_node.service.channels_desk_service import ChannelsDesk
from federation_node.service.evidence_desk_service import EvidenceDesk
from federation_node.service.lifecycle_desk_service import LifecycleDesk
from federation_node.service.operator_desk_service import OperatorDesk
from federation_node.service.overview_desk_service import OverviewDesk
from federation_node.service.recovery_desk_service import RecoveryDesk
from federation_node.service.trust_desk_service import TrustDesk
from federation_node.service.views import (
    attestation_view,
    beneficiary_view,
    certification_view,
    outbox_view,
    request_view,
)
from federation_node.store import (
    assistance,
    attestations_store,
    beneficiaries,
    certifications,
    outbox,
)
from federation_node.store.models import DeliveryState, RequestDirection

# List filters: the views' tables read the other way, so both directions stay one mapping.
REQUEST_DIRECTIONS = {value: key for key, value in views.REQUEST_DIRECTIONS.items()}
ATTESTATION_DIRECTIONS = {value: key for key, value in views.ATTESTATION_DIRECTIONS.items()}
CERTIFICATION_FILTERS = {value: key for key, value in views.CERTIFICATION_STATUSES.items()}
ASSISTANCE_FILTERS = {status: state for state, status in STATE_STATUSES.items()}
DELIVERY_FILTERS = {value: key for key, value in views.DELIVERY_STATES.items()}


def _actor() -> Actor:
    principal = caller()
    return Actor("operator", principal.name)


E = TypeVar("E")


def _filter(value: int, table: Mapping[Any, E], field_name: str) -> E | None:
    """A list filter: 0 (unset) means no filter; an unknown value is refused by name."""
    if value == 0:
        return None
    if value not in table:
        raise InvalidInputError(field_name, "is not a known value")
    return table[value]


class DeskServicer(
    OperatorDesk,
    OverviewDesk,
    TrustDesk,
    LifecycleDesk,
    EvidenceDesk,
    ChannelsDesk,
    RecoveryDesk,
    desk_pb2_grpc.DeskServiceServicer,
):
    def __init__(self, node: Node) -> None:
        self._node = node

    def RegisterBeneficiary(
        self, request: desk_pb2.RegisterBeneficiaryRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RegisterBeneficiaryResponse:
        record = self._node.registration.register_beneficiary(_actor(), request)
        return desk_pb2.RegisterBeneficiaryResponse(beneficiary=beneficiary_view(record))

    def GetBeneficiary(
        self, request: desk_pb2.GetBeneficiaryRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetBeneficiaryResponse:
        require_id(request.beneficiary_id, "beneficiary_id")
        with self._node.context.session() as session:
            record = beneficiaries.get(session, request.beneficiary_id)
        return desk_pb2.GetBeneficiaryResponse(beneficiary=beneficiary_view(record))

    def ListBeneficiaries(
        self, request: desk_pb2.ListBeneficiariesRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListBeneficiariesResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        with self._node.context.session() as session:
            records, token = beneficiaries.page(session, size, request.page_token)
            total = beneficiaries.count(session) if not request.page_token else 0
        return desk_pb2.ListBeneficiariesResponse(
            beneficiaries=[beneficiary_view(r) for r in records],
            next_page_token=token,
            total_size=total,
        )

    def RequestCertification(
        self, request: desk_pb2.RequestCertificationRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RequestCertificationResponse:
        record = self._node.outbound_requests.request_certification(_actor(), request)
        return desk_pb2.RequestCertificationResponse(
            request=request_view(record, DeliveryState.PENDING)
        )

    def ListAssistanceRequests(
        self, request: desk_pb2.ListAssistanceRequestsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListAssistanceRequestsResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        direction = _filter(request.direction, REQUEST_DIRECTIONS, "direction")
        status = _filter(request.status, ASSISTANCE_FILTERS, "status")
        with self._node.context.session() as session:
            records, token = assistance.page(session, direction, status, size, request.page_token)
        return desk_pb2.ListAssistanceRequestsResponse(
            requests=[request_view(r) for r in records], next_page_token=token
        )

    def GetAssistanceRequest(
        self, request: desk_pb2.GetAssistanceRequestRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetAssistanceRequestResponse:
        require_id(request.request_id, "request_id")
        with self._node.context.session() as session:
            record = assistance.get(session, request.request_id)
        response = desk_pb2.GetAssistanceRequestResponse(
            request=request_view(record),
            acceptable_methods=[
                common_pb2.CertificationMethod.ValueType(m) for m in record.acceptable_methods
            ],
            note=record.note,
        )
        if record.direction is RequestDirection.INBOUND:
            response.identity.CopyFrom(self._node.residence_agency.inbound_identity(record))
        return response

    def SetAssistanceStatus(
        self, request: desk_pb2.SetAssistanceStatusRequest, context: grpc.ServicerContext
    ) -> desk_pb2.SetAssistanceStatusResponse:
        record = self._node.residence_agency.set_assistance_status(_actor(), request)
        return desk_pb2.SetAssistanceStatusResponse(request=request_view(record))

    def RecordCertification(
        self, request: desk_pb2.RecordCertificationRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RecordCertificationResponse:
        record = self._node.certifier.record_certification(_actor(), request)
        return desk_pb2.RecordCertificationResponse(certification=certification_view(record))

    def ListCertifications(
        self, request: desk_pb2.ListCertificationsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListCertificationsResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        status = _filter(request.status, CERTIFICATION_FILTERS, "status")
        with self._node.context.session() as session:
            records, token = certifications.page(session, status, size, request.page_token)
        return desk_pb2.ListCertificationsResponse(
            certifications=[certification_view(r) for r in records], next_page_token=token
        )

    def ApproveCertification(
        self, request: desk_pb2.ApproveCertificationRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ApproveCertificationResponse:
        record = self._node.certifier.approve_certification(_actor(), request.certification_id)
        return desk_pb2.ApproveCertificationResponse(certification=certification_view(record))

    def RejectCertification(
        self, request: desk_pb2.RejectCertificationRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RejectCertificationResponse:
        record = self._node.certifier.reject_certification(
            _actor(), request.certification_id, request.reason
        )
        return desk_pb2.RejectCertificationResponse(certification=certification_view(record))

    def ListAttestations(
        self, request: desk_pb2.ListAttestationsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListAttestationsResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        direction = _filter(request.direction, ATTESTATION_DIRECTIONS, "direction")
        with self._node.context.session() as session:
            records, token = attestations_store.page(session, direction, size, request.page_token)
        return desk_pb2.ListAttestationsResponse(
            attestations=[attestation_view(r) for r in records], next_page_token=token
        )

    def ExportAttestation(
        self, request: desk_pb2.ExportAttestationRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ExportAttestationResponse:
        require_id(request.attestation_id, "attestation_id")
        if request.issuing_node_id:
            require_node_id(request.issuing_node_id, "issuing_node_id")
        with self._node.context.session() as session:
            record = attestations_store.get(
                session, request.attestation_id, request.issuing_node_id
            )
        return desk_pb2.ExportAttestationResponse(
            dsse_json=record.envelope_json, attestation=attestation_view(record)
        )

    def ListOutbox(
        self, request: desk_pb2.ListOutboxRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListOutboxResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        state = _filter(request.state, DELIVERY_FILTERS, "state")
        with self._node.context.session() as session:
            records, token = outbox.page(session, state, size, request.page_token)
        return desk_pb2.ListOutboxResponse(
            messages=[outbox_view(r) for r in records], next_page_token=token
        )

    def RetryDeadLetter(
        self, request: desk_pb2.RetryDeadLetterRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RetryDeadLetterResponse:
        record = self._node.administration.retry_dead_letter(_actor(), request.message_id)
        return desk_pb2.RetryDeadLetterResponse(message=outbox_view(record))
