"""`certfed desk ... export-bundle ID --out F` and bundle checks for `certfed verify`.

Exporting asks the desk for the attestation's envelope (the operator's token decides whether
they may), then asks the issuing node, over mutual TLS as this node, for its latest cosigned
checkpoint and the attestation's inclusion proof under it. Verifying needs no network: the
directory file, and the registry witness's verifier key (`trust/witness.vkey`).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path

from certfed.v1 import desk_pb2, federation_pb2_grpc
from cli.desk import desk_client
from cli.output import console
from cli.sync_commands import peer_channel
from federation.directory import TrustedDirectory
from federation_node.config import load_node_config
from federation_node.keystore import KeyPaths, load_keys
from federation_node.tlog.attestation import verify_bundle
from federation_node.tlog.bundle import Bundle, fetch_bundle
from federation_node.tlog.checkpoints import load_witness_verifier
from signing import dsse

EXIT_OK = 0


def export_bundle_command(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        exported = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=args.attestation_id),
        )
    envelope_json = bytes(exported.dsse_json)
    issuer = _issuer_of(envelope_json)
    config = load_node_config(Path(args.config))
    keys = load_keys(config, KeyPaths(config.data_dir))
    with peer_channel(config, keys, issuer) as channel:
        bundle = fetch_bundle(
            federation_pb2_grpc.FederationServiceStub(channel),
            args.attestation_id,
            envelope_json,
            config.limits.call_timeout_s,
        )
    Path(args.out).write_bytes(bundle.to_json())
    console.print(
        f"wrote {args.out}: attestation {args.attestation_id}, leaf {bundle.leaf_index} of "
        f"{issuer}'s log of {bundle.tree_size}"
    )
    return EXIT_OK


def _issuer_of(envelope_json: bytes) -> str:
    from certfed.v1 import attestation_pb2

    payload = dsse.Envelope.from_json(envelope_json).payload
    issuer: str = attestation_pb2.CertificationAttestation.FromString(payload).issuing_node_id
    return issuer


def verify_bundle_file(
    name: str, data: bytes, directory: TrustedDirectory, witness_key: str | None, now: datetime
) -> str:
    """Verify one bundle file; return the line to print. Raises CertfedError if refused."""
    from certfed.v1 import common_pb2

    path = Path(witness_key) if witness_key else Path("trust/witness.vkey")
    attestation, key_id, checkpoint = verify_bundle(
        Bundle.from_json(data),
        directory,
        load_witness_verifier(path),
        now=now,
        max_clock_skew=timedelta(minutes=5),
    )
    outcome = common_pb2.CertificationOutcome.Name(attestation.outcome)
    return (
        f"[green]OK[/green] {name}: attestation {attestation.attestation_id} by "
        f"{attestation.issuing_node_id} (key {key_id[:16]}) for paying node "
        f"{attestation.paying_node_id}: {outcome.removeprefix('CERTIFICATION_OUTCOME_')}; "
        f"in its log of {checkpoint.tree_size} entries cosigned by the registry"
    )


def add_bundle_desk_commands(desk_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`certfed desk ... export-bundle`."""
    parser = desk_actions.add_parser(
        "export-bundle", help="an attestation with its log proof, checkable offline"
    )
    parser.add_argument("attestation_id")
    parser.add_argument("--out", required=True)
    parser.set_defaults(handler=export_bundle_command)
