"""An assistance request's status on the wire and in the store: one mapping, read both ways."""

from __future__ import annotations

from certfed.v1 import common_pb2
from federation_node.store.models import AssistanceState

# The statuses a residence agency sets and a peer may send.
STATUS_STATES = {
    common_pb2.ASSISTANCE_STATUS_ACCEPTED: AssistanceState.ACCEPTED,
    common_pb2.ASSISTANCE_STATUS_SCHEDULED: AssistanceState.SCHEDULED,
    common_pb2.ASSISTANCE_STATUS_DECLINED: AssistanceState.DECLINED,
    common_pb2.ASSISTANCE_STATUS_COMPLETED: AssistanceState.COMPLETED,
}
STATE_STATUSES = {state: status for status, state in STATUS_STATES.items()} | {
    AssistanceState.QUEUED: common_pb2.ASSISTANCE_STATUS_QUEUED,
    AssistanceState.RECEIVED: common_pb2.ASSISTANCE_STATUS_RECEIVED,
}
