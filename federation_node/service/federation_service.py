"""FederationService: what peers call. Authorisation happened in the interceptor; each method
hands the message to one domain operation and maps the result."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from certfed.v1 import federation_pb2, federation_pb2_grpc, log_pb2
from federation.errors import PreconditionError
from federation.principal import caller
from federation.timestamps import to_timestamp
from federation_node.offices.assistance_status import STATE_STATUSES
from federation_node.offices.node import Node
from federation_node.rules.validation import require_node_id
from federation_node.tlog.node_witness import NodeWitness
from federation_node.tlog.transparency import TransparencyLog, entries_message


class FederationServicer(federation_pb2_grpc.FederationServiceServicer):
    def __init__(
        self, node: Node, transparency: TransparencyLog, witness: NodeWitness | None = None
    ) -> None:
        self._node = node
        self._log = transparency
        self._witness = witness

    def RequestAssistance(
        self, request: federation_pb2.RequestAssistanceRequest, context: grpc.ServicerContext
    ) -> federation_pb2.RequestAssistanceResponse:
        stored, duplicate = self._node.residence_agency.receive_assistance_request(
            caller().name, request
        )
        return federation_pb2.RequestAssistanceResponse(
            status=STATE_STATUSES[stored.status], duplicate=duplicate
        )

    def UpdateAssistanceStatus(
        self,
        request: federation_pb2.UpdateAssistanceStatusRequest,
        context: grpc.ServicerContext,
    ) -> federation_pb2.UpdateAssistanceStatusResponse:
        stored = self._node.outbound_requests.apply_status_update(caller().name, request)
        return federation_pb2.UpdateAssistanceStatusResponse(status=STATE_STATUSES[stored.status])

    def DeliverAttestation(
        self, request: federation_pb2.DeliverAttestationRequest, context: grpc.ServicerContext
    ) -> federation_pb2.DeliverAttestationResponse:
        received = self._node.paying_office.receive_attestation(caller().name, request)
        response = federation_pb2.DeliverAttestationResponse(
            duplicate=received.duplicate, awaiting_inclusion=received.awaiting_inclusion
        )
        if received.valid_until is not None:
            response.valid_until.CopyFrom(to_timestamp(received.valid_until))
        return response

    # Transparency log (any active node may read it).

    def GetCheckpoint(
        self, request: federation_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> federation_pb2.GetCheckpointResponse:
        if request.origin_node_id:
            origin = require_node_id(request.origin_node_id, "origin_node_id")
            note = self._log.copy_checkpoint(origin)
        else:
            note = self._log.checkpoint()
        return federation_pb2.GetCheckpointResponse(checkpoint=log_pb2.SignedCheckpoint(note=note))

    def GetEntries(
        self, request: federation_pb2.GetEntriesRequest, context: grpc.ServicerContext
    ) -> Iterator[federation_pb2.GetEntriesResponse]:
        if request.origin_node_id:
            origin = require_node_id(request.origin_node_id, "origin_node_id")
            batches = self._log.copy_entry_batches(origin, request.start, request.end)
        else:
            batches = self._log.entry_batches(request.start, request.end)
        for batch in batches:
            yield federation_pb2.GetEntriesResponse(entries=entries_message(batch))

    def GetInclusionProof(
        self, request: federation_pb2.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> federation_pb2.GetInclusionProofResponse:
        which = request.WhichOneof("leaf")
        leaf_index, tree_size, proof = self._log.inclusion_proof(
            request.leaf_index if which == "leaf_index" else None,
            request.attestation_id if which == "attestation_id" else None,
            request.tree_size,
        )
        return federation_pb2.GetInclusionProofResponse(
            leaf_index=leaf_index, tree_size=tree_size, hashes=proof
        )

    def GetConsistencyProof(
        self, request: federation_pb2.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> federation_pb2.GetConsistencyProofResponse:
        proof = self._log.consistency_proof(request.first_size, request.second_size)
        return federation_pb2.GetConsistencyProofResponse(hashes=proof)

    def Subscribe(
        self, request: federation_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[federation_pb2.SubscribeResponse]:
        # The stream runs on a thread of the server's stream pool, bounded per caller and in
        # total; `is_active` turns false when the caller leaves, the stream's lifetime is up, or
        # the caller is no longer allowed (re-checked while it runs, so a member suspended at
        # the registry loses its stream at the node's next directory refresh).
        yield from self._log.subscribe(
            request.from_tree_size, list(request.paying_regions), context.is_active
        )

    # This node as a witness of the caller's log (tlog/node_witness.py).

    def CosignCheckpoint(
        self, request: federation_pb2.CosignCheckpointRequest, context: grpc.ServicerContext
    ) -> federation_pb2.CosignCheckpointResponse:
        if self._witness is None:
            raise PreconditionError("this node does not witness other members' logs")
        cosigned = self._witness.cosign(
            caller().name,
            request.checkpoint.note,
            request.old_size,
            list(request.consistency_proof),
        )
        return federation_pb2.CosignCheckpointResponse(
            checkpoint=log_pb2.SignedCheckpoint(note=cosigned)
        )
