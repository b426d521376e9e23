"""Getting back the log entries a restored node lost: from a node that follows its log, or from
an export of that node's copy.

A node restored from a backup older than its last cosigned checkpoint holds fewer entries than
the registry witness cosigned for it, and appends nothing until it holds them again
(`log_store.LogBehindWitnessError`). Any node that follows its log keeps a verified copy
(`tlog.sync`), which it serves back (GetCheckpoint and GetEntries with `origin_node_id`) and
which `certfed node export-log` writes to a file.

Nothing is taken on trust from the source. The checkpoint must carry this node's own signature
and the registry witness's cosignature (`checkpoints.verify_checkpoint`), and the entries,
appended to this node's own compact tree state, must give that checkpoint's root: which proves
both that they are the lost entries and that the prefix the node kept is the cosigned one
(RFC 9162 2.1.1). They are then appended with the checkpoint in one transaction
(`log_store.recover`).

The export file is JSON Lines: a first line `{"origin": NODE, "checkpoint": BASE64 NOTE}`, then
one line per entry `{"index": N, "envelope_json": BASE64, "paying_region": CODE}` in order.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import grpc
import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, federation_pb2, federation_pb2_grpc
from federation.directory import TrustedDirectory
from federation.errors import CertfedError, InvalidInputError, NotFoundError, PreconditionError
from federation.limits import Limits
from federation_node.store import log_store, sync_store
from federation_node.store.db import session_scope
from federation_node.store.log_store import NewEntry
from federation_node.tlog.checkpoints import verify_checkpoint
from federation_node.tlog.sync import SECONDS_PER_ENTRY_BOUND, LogVerificationError
from signing import dsse, merkle, note

log = structlog.get_logger("certfed.log")

# (leaf index, envelope JSON exactly as logged, paying region)
Entry = tuple[int, bytes, str]
EXPORT_FORMAT = "certfed-log-export-v1"


@dataclass(frozen=True)
class Recovered:
    """Entries [from_size, to_size) put back, and where they came from."""

    from_size: int
    to_size: int
    source: str

    @property
    def entries(self) -> int:
        return self.to_size - self.from_size


class LogRecovery:
    """Puts back lost entries of this node's own log; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        node_id: str,
        directory: Callable[[], TrustedDirectory],
        witness: note.NoteVerifier,
        limits: Limits,
        *,
        stub_for: Callable[[str], federation_pb2_grpc.FederationServiceStub] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self.node_id = node_id
        self._directory = directory
        self._witness = witness
        self._limits = limits
        self._stub_for = stub_for
        self._clock = clock

    def from_peers(self) -> Recovered | None:
        """Ask every other active node for its copy of this log, until nothing is missing.

        Nodes that keep no copy, or a shorter one, are passed over; what one gives is kept
        even when another has to give the rest. None when nothing came back.
        """
        directory = self._directory()
        first: Recovered | None = None
        for peer in directory.directory.nodes:
            if peer.node_id == self.node_id or peer.status != common_pb2.NODE_STATUS_ACTIVE:
                continue
            if not self._missing():
                break
            try:
                got = self.from_peer(peer.node_id)
            except (CertfedError, grpc.RpcError) as error:
                log.info("log.recovery_source_failed", peer=peer.node_id, error=str(error))
                continue
            if got is not None:
                first = got if first is None else Recovered(first.from_size, got.to_size, "peers")
        return first

    def from_peer(self, peer: str) -> Recovered | None:
        """The entries `peer`'s copy of this log has beyond this log; None if it has none."""
        if self._stub_for is None:
            raise PreconditionError("no connection to peers was given for log recovery")
        stub = self._stub_for(peer)
        timeout = self._limits.call_timeout_s
        try:
            answer = stub.GetCheckpoint(
                federation_pb2.GetCheckpointRequest(origin_node_id=self.node_id), timeout=timeout
            )
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return None
            raise
        checkpoint_note = bytes(answer.checkpoint.note)
        checkpoint = self._verify(checkpoint_note)
        size = self._size()
        if checkpoint.tree_size <= size:
            return None
        request = federation_pb2.GetEntriesRequest(
            start=size, end=checkpoint.tree_size, origin_node_id=self.node_id
        )
        stream_timeout = timeout + (checkpoint.tree_size - size) * SECONDS_PER_ENTRY_BOUND
        entries = [
            (entry.index, bytes(entry.envelope_json), entry.paying_region)
            for response in stub.GetEntries(request, timeout=stream_timeout)
            for entry in response.entries
        ]
        return self.restore(checkpoint_note, entries, source=f"node {peer}")

    def from_file(self, path: Path) -> Recovered:
        """The entries of an export (`certfed node export-log`) beyond this log."""
        with path.open("rb") as handle:
            origin, checkpoint_note = _read_header(handle)
            if origin != self.node_id:
                raise InvalidInputError(
                    "export", f"{path} holds node {origin}'s log, not {self.node_id}'s"
                )
            return self.restore(checkpoint_note, _read_entries(handle), source=str(path))

    def restore(
        self, checkpoint_note: bytes, entries: Iterable[Entry], *, source: str
    ) -> Recovered:
        """Verify `entries` against the cosigned `checkpoint_note` and append those beyond the
        log (earlier ones are skipped); raises LogVerificationError if they do not fit."""
        checkpoint = self._verify(checkpoint_note)
        with Session(self._engine) as session:
            head = log_store.head(session)
        if checkpoint.tree_size <= head.tree_size:
            return Recovered(head.tree_size, head.tree_size, source)
        builder = merkle.TreeBuilder.from_state(head.tree_size, head.state)
        missing: list[NewEntry] = []
        for index, envelope_json, region in entries:
            if index < head.tree_size:
                continue
            if index != builder.size or index >= checkpoint.tree_size:
                raise LogVerificationError(
                    f"{source} gave entry {index} where {builder.size} was due"
                )
            builder.append(merkle.leaf_hash(envelope_json))
            missing.append(NewEntry(_attestation_id(envelope_json), envelope_json, region))
        if builder.size != checkpoint.tree_size or builder.root() != checkpoint.root_hash:
            raise LogVerificationError(
                f"the entries from {source} up to {builder.size}, after the {head.tree_size} this "
                f"node holds, do not give the root of its cosigned checkpoint of size "
                f"{checkpoint.tree_size}: they are not the lost entries, or this node's log "
                "differs from the cosigned one; nothing was stored"
            )
        with session_scope(self._engine) as session:
            log_store.recover(session, head.tree_size, missing)
            log_store.store_checkpoint(
                session, checkpoint.tree_size, checkpoint.root_hash, checkpoint_note, self._clock()
            )
            log_store.record_witness(session, witnessed_size=checkpoint.tree_size)
        log.info(
            "log.recovered",
            source=source,
            from_size=head.tree_size,
            to_size=checkpoint.tree_size,
        )
        return Recovered(head.tree_size, checkpoint.tree_size, source)

    def _verify(self, checkpoint_note: bytes) -> note.Checkpoint:
        return verify_checkpoint(checkpoint_note, self.node_id, self._directory(), self._witness)

    def _size(self) -> int:
        with Session(self._engine) as session:
            return log_store.size(session)

    def _missing(self) -> bool:
        with Session(self._engine) as session:
            head = log_store.head(session)
            state = log_store.witness_state(session)
        return state.witnessed_size > head.tree_size


def export_copy(engine: Engine, origin: str, out: IO[bytes], *, step: int = 10_000) -> int:
    """Write this node's verified copy of `origin`'s log as an export; how many entries."""
    with Session(engine) as session:
        copy = sync_store.head(session, origin)
    if copy is None:
        raise NotFoundError(f"this node keeps no copy of node {origin}'s log (is it followed?)")
    covered = note.Checkpoint.parse(note.split_note(copy.checkpoint_note)[0]).tree_size
    if covered != copy.tree_size:
        # Mid-sync, the copy's note covers more than it holds: a restore would refuse it.
        raise PreconditionError(
            f"the copy of node {origin}'s log is being synced ({copy.tree_size} of {covered} "
            "entries); run `certfed sync` to the end, then export again"
        )
    size = copy.tree_size
    header = {
        "format": EXPORT_FORMAT,
        "origin": origin,
        "checkpoint": base64.b64encode(copy.checkpoint_note).decode("ascii"),
    }
    out.write(json.dumps(header).encode("utf-8") + b"\n")
    for start in range(0, size, step):
        with Session(engine) as session:
            rows = sync_store.entries(session, origin, start, min(size, start + step))
        for row in rows:
            line = {
                "index": row.leaf_index,
                "envelope_json": base64.b64encode(row.envelope_json).decode("ascii"),
                "paying_region": row.paying_region,
            }
            out.write(json.dumps(line).encode("utf-8") + b"\n")
    return size


def _read_header(handle: IO[bytes]) -> tuple[str, bytes]:
    document = _json_line(handle.readline(), "header")
    if document.get("format") != EXPORT_FORMAT:
        raise InvalidInputError("export", f"not a {EXPORT_FORMAT} file")
    origin = document.get("origin")
    checkpoint = document.get("checkpoint")
    if not isinstance(origin, str) or not isinstance(checkpoint, str):
        raise InvalidInputError("export", "the header names no origin or checkpoint")
    return origin, base64.b64decode(checkpoint, validate=True)


def _read_entries(handle: IO[bytes]) -> Iterator[Entry]:
    for number, line in enumerate(handle, start=2):
        document = _json_line(line, f"line {number}")
        index = document.get("index")
        envelope = document.get("envelope_json")
        region = document.get("paying_region")
        if (
            not isinstance(index, int)
            or not isinstance(envelope, str)
            or not isinstance(region, str)
        ):
            raise InvalidInputError("export", f"line {number} is not a log entry")
        yield index, base64.b64decode(envelope, validate=True), region


def _json_line(line: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(line)
    except ValueError as error:
        raise InvalidInputError("export", f"{where} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidInputError("export", f"{where} is not a JSON object")
    return document


def _attestation_id(envelope_json: bytes) -> str:
    """The id of the attestation a logged envelope carries (the log indexes entries by it)."""
    envelope = dsse.Envelope.from_json(envelope_json)
    return str(attestation_pb2.CertificationAttestation.FromString(envelope.payload).attestation_id)
