"""FederationService: what peers call. Authorisation happened in the interceptor; each method
hands the message to one domain operation and maps the result."""

from __future__ import annotations

import grpc

from certfed.v1 import federation_pb2, federation_pb2_grpc
from federation_node.node import STATE_STATUSES, Node
from registry.rpc import caller
from registry.timestamps import to_timestamp


class FederationServicer(federation_pb2_grpc.FederationServiceServicer):
    def __init__(self, node: Node) -> None:
        self._node = node

    def RequestAssistance(
        self, request: federation_pb2.RequestAssistanceRequest, context: grpc.ServicerContext
    ) -> federation_pb2.RequestAssistanceResponse:
        stored, duplicate = self._node.receive_assistance_request(caller().name, request)
        return federation_pb2.RequestAssistanceResponse(
            status=STATE_STATUSES[stored.status], duplicate=duplicate
        )

    def UpdateAssistanceStatus(
        self,
        request: federation_pb2.UpdateAssistanceStatusRequest,
        context: grpc.ServicerContext,
    ) -> federation_pb2.UpdateAssistanceStatusResponse:
        stored = self._node.apply_status_update(caller().name, request)
        return federation_pb2.UpdateAssistanceStatusResponse(status=STATE_STATUSES[stored.status])

    def DeliverAttestation(
        self, request: federation_pb2.DeliverAttestationRequest, context: grpc.ServicerContext
    ) -> federation_pb2.DeliverAttestationResponse:
        received = self._node.receive_attestation(caller().name, request)
        response = federation_pb2.DeliverAttestationResponse(duplicate=received.duplicate)
        if received.valid_until is not None:
            response.valid_until.CopyFrom(to_timestamp(received.valid_until))
        return response
