"""What an administrator does to the node itself, on the audit record: put a dead-lettered
message back in the outbox."""

from __future__ import annotations

from federation_node.offices.context import Actor, NodeContext
from federation_node.rules.validation import require_id
from federation_node.store import audit, outbox
from federation_node.store.db import session_scope
from federation_node.store.models import OutboxMessage


class Administration:
    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def retry_dead_letter(self, actor: Actor, message_id: str) -> OutboxMessage:
        """Put a dead-lettered message back in the queue, on the audit record."""
        require_id(message_id, "message_id")
        now = self._context.now()
        with session_scope(self._context.engine) as session:
            record = outbox.retry_dead(session, message_id, now)
            audit.append(
                session,
                actor=actor.label,
                action="outbox.retry_dead_letter",
                subject_type="outbox_message",
                subject_id=message_id,
                details={"kind": record.kind.value, "destination": record.destination},
                now=now,
            )
        self._context.on_enqueued()
        return record
