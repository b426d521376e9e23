"""The desk methods of the certification channels: a face-recognition provider's results (from
its feed account) and the follow-up list of the people they did not certify; employers' batch
lists, uploaded by a clerk and decided whole by another reviewer.

Mixed into `DeskServicer`; thin like the rest of it. The operations are in
federation_node/offices/face_recognition.py and employer_batch.py.
"""

from __future__ import annotations

import grpc

from certfed.v1 import desk_pb2
from federation.errors import InvalidInputError
from federation.principal import caller
from federation.timestamps import to_timestamp
from federation_node.offices.context import Actor
from federation_node.offices.employer_batch import STATES
from federation_node.offices.node import Node
from federation_node.rules.validation import page_size
from federation_node.service.lifecycle_views import ENTITLEMENT_STATES
from federation_node.store.models import EmployerBatchState

BATCH_FILTERS: dict[int, EmployerBatchState] = {value: key for key, value in STATES.items()}


def _actor() -> Actor:
    return Actor("operator", caller().name)


class ChannelsDesk:
    """The channel RPCs, for a servicer holding `_node`."""

    _node: Node

    def RecordFaceRecognitions(
        self, request: desk_pb2.RecordFaceRecognitionsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.RecordFaceRecognitionsResponse:
        answers = self._node.face_recognitions.record_results(_actor(), list(request.results))
        return desk_pb2.RecordFaceRecognitionsResponse(answers=answers)

    def ListFaceRecognitionFollowUps(
        self,
        request: desk_pb2.ListFaceRecognitionFollowUpsRequest,
        context: grpc.ServicerContext,
    ) -> desk_pb2.ListFaceRecognitionFollowUpsResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        follow_ups, token = self._node.face_recognitions.list_follow_ups(size, request.page_token)
        return desk_pb2.ListFaceRecognitionFollowUpsResponse(
            follow_ups=follow_ups, next_page_token=token
        )

    def UploadEmployerBatch(
        self, request: desk_pb2.UploadEmployerBatchRequest, context: grpc.ServicerContext
    ) -> desk_pb2.UploadEmployerBatchResponse:
        batch, results = self._node.employer_batches.upload(_actor(), request)
        return desk_pb2.UploadEmployerBatchResponse(batch=batch, results=results)

    def ListEmployerBatches(
        self, request: desk_pb2.ListEmployerBatchesRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListEmployerBatchesResponse:
        state = None
        if request.state:
            if request.state not in BATCH_FILTERS:
                raise InvalidInputError("state", "is not a known value")
            state = BATCH_FILTERS[request.state]
        size = page_size(request.page_size, self._node.context.config.limits)
        batches, token = self._node.employer_batches.list_batches(state, size, request.page_token)
        return desk_pb2.ListEmployerBatchesResponse(batches=batches, next_page_token=token)

    def GetEmployerBatch(
        self, request: desk_pb2.GetEmployerBatchRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetEmployerBatchResponse:
        size = page_size(request.page_size, self._node.context.config.limits)
        batch, entries, token = self._node.employer_batches.get_batch(
            request.batch_id, size, request.page_token
        )
        return desk_pb2.GetEmployerBatchResponse(
            batch=batch, entries=entries, next_page_token=token
        )

    def DecideEmployerBatch(
        self, request: desk_pb2.DecideEmployerBatchRequest, context: grpc.ServicerContext
    ) -> desk_pb2.DecideEmployerBatchResponse:
        batch = self._node.employer_batches.decide(
            _actor(), request.batch_id, request.approve, request.reason
        )
        return desk_pb2.DecideEmployerBatchResponse(batch=batch)

    def GetCertificationStatus(
        self, request: desk_pb2.GetCertificationStatusRequest, context: grpc.ServicerContext
    ) -> desk_pb2.GetCertificationStatusResponse:
        status = self._node.certification_statuses.status(request)
        response = desk_pb2.GetCertificationStatusResponse(state=ENTITLEMENT_STATES[status.state])
        if status.certified_until is not None:
            response.certified_until.CopyFrom(to_timestamp(status.certified_until))
        if status.next_due is not None:
            response.next_due.CopyFrom(to_timestamp(status.next_due))
        return response
