"""The gate between a peer's attestation and this office's records: proof of inclusion.

A peer's attestation that this office would apply is stored and waits (store/inclusion_waits.py)
until it is proven to be in its issuer's transparency log: the issuer's latest checkpoint,
signed by the issuer and cosigned by the witnesses this office's policy requires (k of n,
tlog/witness_policy.py), and an inclusion proof placing the envelope, byte for byte as
received, in that checkpoint's tree (RFC 9162 2.1.3.2). Only then is it applied
(`apply_proven`, PayingOffice.apply_proven). So an issuer cannot show this office an attestation
it hides from the rest of the federation: whatever this office applies is in the one history
its witnesses cosigned, and anyone following that log sees it.

`InclusionProver` is the node's thread that fetches the proofs from the issuers
(GetCheckpoint, GetInclusionProof): at once when an attestation starts waiting (`wake`), then
every 0.1 s for about a second (the issuer's checkpoints come within its sequencing pool), then
after 0.2 s, 0.4 s and so on up to 30 s while the issuer cannot prove it yet. A waiting
attestation is never dropped or dead-lettered: it waits, stored and unapplied, until proven,
across restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from certfed.v1 import federation_pb2_grpc
from federation.directory import TrustedDirectory
from federation.errors import AttestationRefusedError, CertfedError
from federation_node.store import inclusion_waits
from federation_node.store.db import session_scope
from federation_node.store.models import Attestation
from federation_node.tlog.bundle import Bundle, fetch_bundle
from federation_node.tlog.witness_policy import WitnessPolicy
from signing import merkle
from signing.errors import InclusionProofError

log = structlog.get_logger("certfed.inclusion")

BATCH = 50
# Longest sleep of the prover when nothing waits; it is woken when something starts to.
IDLE_S = 30.0
MIN_WAIT_S = 0.02
# apply_proven(issuing node, attestation id, tree size, checkpoint note)
ApplyProven = Callable[[str, str, int, bytes], None]


def prove_inclusion(
    bundle: Bundle, issuer: str, directory: TrustedDirectory, policy: WitnessPolicy
) -> int:
    """The tree size of the witnessed checkpoint `bundle` proves its envelope in; else
    CheckpointRefusedError or AttestationRefusedError saying why not."""
    checkpoint = policy.verify(bundle.checkpoint_note, issuer, directory)
    if checkpoint.tree_size != bundle.tree_size:
        raise AttestationRefusedError(
            f"node {issuer} sent a proof for a log of {bundle.tree_size} entries with a "
            f"checkpoint of {checkpoint.tree_size}"
        )
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(bundle.envelope_json),
            bundle.leaf_index,
            bundle.tree_size,
            bundle.inclusion_proof,
            checkpoint.root_hash,
        )
    except InclusionProofError as error:
        raise AttestationRefusedError(
            f"the attestation is not in the log node {issuer} signed and its witnesses "
            f"cosigned: {error}"
        ) from error
    return checkpoint.tree_size


class InclusionProver(threading.Thread):
    """Proves waiting attestations and hands each proven one to `apply_proven`."""

    def __init__(
        self,
        engine: Engine,
        directory: Callable[[], TrustedDirectory],
        policy: Callable[[], WitnessPolicy],
        stub_for: Callable[[str], federation_pb2_grpc.FederationServiceStub],
        apply_proven: ApplyProven,
        clock: Callable[[], datetime],
        *,
        timeout_s: float,
    ) -> None:
        super().__init__(name="inclusion-prover", daemon=True)
        self._engine = engine
        self._directory = directory
        self._policy = policy
        self._stub_for = stub_for
        self._apply_proven = apply_proven
        self._clock = clock
        self._timeout_s = timeout_s
        self._stopping = threading.Event()
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout=10)

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                wait_s = self.run_pass()
            except Exception:
                log.exception("inclusion.pass_failed")
                wait_s = 1.0
            self._wake.wait(wait_s)

    def run_pass(self) -> float:
        """Try every attestation due; return how long to sleep until the next one is."""
        now = self._clock()
        with Session(self._engine) as session:
            due = [
                (row.issuing_node_id, row.attestation_id)
                for row in inclusion_waits.due(session, now, BATCH)
            ]
        for issuer, attestation_id in due:
            if self._stopping.is_set():
                break
            self._try(issuer, attestation_id)
        with Session(self._engine) as session:
            upcoming = inclusion_waits.next_attempt(session)
        if upcoming is None:
            return IDLE_S
        return min(IDLE_S, max(MIN_WAIT_S, (upcoming - self._clock()).total_seconds()))

    def _try(self, issuer: str, attestation_id: str) -> None:
        try:
            with Session(self._engine) as session:
                stored = session.get(Attestation, (attestation_id, issuer))
                envelope_json = b"" if stored is None else stored.envelope_json
            bundle = fetch_bundle(
                self._stub_for(issuer), attestation_id, envelope_json, self._timeout_s
            )
            tree_size = prove_inclusion(bundle, issuer, self._directory(), self._policy())
        except CertfedError as error:
            attempts = 0
            with session_scope(self._engine) as session:
                row = inclusion_waits.get(session, issuer, attestation_id)
                if row is not None:
                    inclusion_waits.record_failure(session, row, str(error), self._clock())
                    attempts = row.attempts
            log.info(
                "inclusion.not_proven_yet",
                issuing_node_id=issuer,
                attestation_id=attestation_id,
                attempts=attempts,
                reason=str(error),
            )
            return
        try:
            self._apply_proven(issuer, attestation_id, tree_size, bundle.checkpoint_note)
        except CertfedError as error:
            # Proven, but this office refuses it now (its records moved on since receipt): it
            # stays stored, unapplied, with the reason.
            with session_scope(self._engine) as session:
                row = inclusion_waits.get(session, issuer, attestation_id)
                if row is not None:
                    inclusion_waits.record_proven(
                        session,
                        row,
                        tree_size,
                        bundle.checkpoint_note,
                        self._clock(),
                        outcome=f"not applied: {error}",
                    )
            log.warning(
                "inclusion.proven_not_applied",
                issuing_node_id=issuer,
                attestation_id=attestation_id,
                reason=str(error),
            )
            return
        log.info(
            "inclusion.proven",
            issuing_node_id=issuer,
            attestation_id=attestation_id,
            tree_size=tree_size,
        )
