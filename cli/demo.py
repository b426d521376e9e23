"""`certfed demo`: four regional offices certify retirees for each other through a registry.

Starts the registry and four nodes as separate processes on 127.0.0.1 (SQLite files, mutual TLS
everywhere), enrols and approves them, and runs the flows of docs/domain.md through the desk API as
clerks and reviewers would: an assistance request Lanzhou -> Qingdao, a Foshan retiree walking
into the Qingdao agency, a Foshan retiree living in Macau certified by the Macau liaison desk, and
a request to a node that is down, delivered once it starts. Every attestation is exported as DSSE
JSON and verified offline against the exported directory. Exits 0 only if all of it verified.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.launcher import LocalFederation, NodeSpec, wait_until
from federation.directory import verify_directory
from federation.timestamps import to_datetime, to_timestamp
from federation_node.keystore import load_root_public_key
from federation_node.tlog.attestation import verify_attestation_envelope
from signing import dsse

LANZHOU = NodeSpec(
    "lanzhou-chengguan",
    "Chengguan District Social Insurance Office, Lanzhou",
    ("620102",),
    ("paying_office",),
)
QINGDAO = NodeSpec(
    "qingdao",
    "Qingdao Social Insurance Service Centre",
    ("370200",),
    ("residence_agency", "paying_office"),
)
FOSHAN = NodeSpec(
    "foshan", "Foshan Social Insurance Fund Administration", ("440600",), ("paying_office",)
)
MACAU = NodeSpec(
    "macau-desk", "Macau Social Security Fund liaison desk", ("MO",), ("partner_liaison",)
)
NODES = (LANZHOU, QINGDAO, FOSHAN, MACAU)


@dataclass(frozen=True)
class Retiree:
    """Demo people: synthetic names and valid-format numbers, never real persons."""

    label: str
    identity: attestation_pb2.IdentityBundle
    residence_region: str


def _resident(number: str, name: str, region: str, label: str) -> Retiree:
    return Retiree(
        label,
        attestation_pb2.IdentityBundle(
            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
            identity_number=number,
            full_name=name,
            phone="13800000000",
        ),
        region,
    )


# Check characters computed per GB 11643; region codes of the paying place of registration.
LANZHOU_RETIREE = _resident(
    "620102194805120010", "Demo Retiree Zhang", "370202", "Lanzhou retiree A"
)
FOSHAN_WALK_IN = _resident("440604195203150029", "Demo Retiree Li", "440604", "Foshan walk-in")
FOSHAN_IN_MACAU = _resident(
    "440606194911110034", "Demo Retiree Chan", "MO", "Foshan retiree in Macau"
)
LANZHOU_SECOND = _resident("620102195001010013", "Demo Retiree Wang", "370203", "Lanzhou retiree B")
RETIREES = (LANZHOU_RETIREE, FOSHAN_WALK_IN, FOSHAN_IN_MACAU, LANZHOU_SECOND)


@dataclass
class FlowResult:
    flow: str
    retiree: str
    route: str
    method: str
    attestation_id: str = ""
    valid_until: str = ""
    verified: bool = False
    seconds: float = 0.0


def _evidence(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Demo:
    def __init__(self, workdir: Path, console: Console) -> None:
        self.workdir = workdir
        self.console = console
        self.federation = LocalFederation(workdir, federation_id="certfed-demo")
        self.results: list[FlowResult] = []
        self.beneficiaries: dict[str, str] = {}

    def run(self) -> bool:
        with self.federation:
            self.console.print("[bold]Starting the registry and four regional nodes[/bold]")
            self.federation.start_registry()
            for spec in NODES:
                self.federation.add_node(spec)
                self.console.print(f"  {spec.node_id:18} {'/'.join(spec.region_codes):8} ready")
            self._register_all()
            self._assistance_request(LANZHOU, QINGDAO, LANZHOU_RETIREE, "1 assistance request")
            self._walk_in()
            self._assistance_request(FOSHAN, MACAU, FOSHAN_IN_MACAU, "3 partner liaison")
            self._peer_down()
            return self._export_and_verify()

    def _register_all(self) -> None:
        payers = {
            LANZHOU_RETIREE.label: LANZHOU,
            FOSHAN_WALK_IN.label: FOSHAN,
            FOSHAN_IN_MACAU.label: FOSHAN,
            LANZHOU_SECOND.label: LANZHOU,
        }
        for retiree in RETIREES:
            payer = payers[retiree.label]
            with self.federation.desk(payer.node_id) as desk:
                response = desk.stub.RegisterBeneficiary(
                    desk_pb2.RegisterBeneficiaryRequest(
                        identity=retiree.identity, residence_region=retiree.residence_region
                    ),
                )
            self.beneficiaries[retiree.label] = response.beneficiary.beneficiary_id
        # Walk-ins are found through the registry's locator index; wait until it knows them.
        for payer in (LANZHOU, FOSHAN):
            self.federation.await_outbox_drained(payer.node_id)

    def _request(self, payer: NodeSpec, retiree: Retiree) -> str:
        with self.federation.desk(payer.node_id) as desk:
            response = desk.stub.RequestCertification(
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=self.beneficiaries[retiree.label],
                    deadline=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
                    acceptable_methods=[
                        common_pb2.CERTIFICATION_METHOD_ON_SITE,
                        common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
                    ],
                ),
            )
        request_id: str = response.request.request_id
        return request_id

    def _certify_request(
        self,
        certifier: NodeSpec,
        request_id: str,
        method: common_pb2.CertificationMethod.ValueType,
    ) -> str:
        with self.federation.desk(certifier.node_id) as clerk:
            wait_until(
                lambda: any(
                    r.request_id == request_id
                    for r in clerk.stub.ListAssistanceRequests(
                        desk_pb2.ListAssistanceRequestsRequest(
                            direction=desk_pb2.DIRECTION_INBOUND
                        ),
                    ).requests
                ),
                30,
                f"the request to reach {certifier.node_id}",
            )
            clerk.stub.SetAssistanceStatus(
                desk_pb2.SetAssistanceStatusRequest(
                    request_id=request_id, status=common_pb2.ASSISTANCE_STATUS_ACCEPTED
                ),
            )
            recorded = clerk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    request_id=request_id,
                    method=method,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                    observed_at=to_timestamp(datetime.now(UTC)),
                    evidence_digests=[_evidence(f"counter photo {request_id}")],
                ),
            )
        return self._approve(certifier, recorded.certification.certification_id)

    def _approve(self, certifier: NodeSpec, certification_id: str) -> str:
        with self.federation.desk(certifier.node_id, "reviewer") as reviewer:
            approved = reviewer.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=certification_id),
            )
        attestation_id: str = approved.certification.attestation_id
        return attestation_id

    def _await_applied(self, payer: NodeSpec, retiree: Retiree, attestation_id: str) -> str:
        with self.federation.desk(payer.node_id) as desk:

            def received() -> str | None:
                listing = desk.stub.ListAttestations(
                    desk_pb2.ListAttestationsRequest(direction=desk_pb2.DIRECTION_INBOUND),
                )
                if not any(a.attestation_id == attestation_id for a in listing.attestations):
                    return None
                beneficiary = desk.stub.GetBeneficiary(
                    desk_pb2.GetBeneficiaryRequest(
                        beneficiary_id=self.beneficiaries[retiree.label]
                    ),
                ).beneficiary
                return to_datetime(beneficiary.valid_until).date().isoformat()

            return wait_until(received, 30, f"{payer.node_id} to apply the attestation")

    def _assistance_request(
        self, payer: NodeSpec, certifier: NodeSpec, retiree: Retiree, flow: str
    ) -> None:
        started = time.perf_counter()
        method = (
            common_pb2.CERTIFICATION_METHOD_PARTNER_AGENCY
            if "partner_liaison" in certifier.roles
            else common_pb2.CERTIFICATION_METHOD_ON_SITE
        )
        request_id = self._request(payer, retiree)
        attestation_id = self._certify_request(certifier, request_id, method)
        valid_until = self._await_applied(payer, retiree, attestation_id)
        self.results.append(
            FlowResult(
                flow,
                retiree.label,
                f"{payer.node_id} -> {certifier.node_id}",
                common_pb2.CertificationMethod.Name(method).removeprefix("CERTIFICATION_METHOD_"),
                attestation_id,
                valid_until,
                seconds=time.perf_counter() - started,
            )
        )

    def _walk_in(self) -> None:
        started = time.perf_counter()
        with self.federation.desk(QINGDAO.node_id) as clerk:
            recorded = clerk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    walk_in=FOSHAN_WALK_IN.identity,
                    method=common_pb2.CERTIFICATION_METHOD_ON_SITE,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                    observed_at=to_timestamp(datetime.now(UTC)),
                    evidence_digests=[_evidence("walk-in counter photo")],
                ),
            )
        attestation_id = self._approve(QINGDAO, recorded.certification.certification_id)
        valid_until = self._await_applied(FOSHAN, FOSHAN_WALK_IN, attestation_id)
        self.results.append(
            FlowResult(
                "2 walk-in",
                FOSHAN_WALK_IN.label,
                f"{QINGDAO.node_id} -> {FOSHAN.node_id}",
                "ON_SITE",
                attestation_id,
                valid_until,
                seconds=time.perf_counter() - started,
            )
        )

    def _peer_down(self) -> None:
        started = time.perf_counter()
        self.console.print("  stopping qingdao; Lanzhou sends a request to it while it is down")
        self.federation.stop_node(QINGDAO.node_id)
        request_id = self._request(LANZHOU, LANZHOU_SECOND)
        with self.federation.desk(LANZHOU.node_id, "admin") as admin:
            wait_until(
                lambda: any(
                    m.subject_id == request_id and m.attempts > 0
                    for m in admin.stub.ListOutbox(desk_pb2.ListOutboxRequest()).messages
                ),
                30,
                "a failed delivery attempt to the stopped node",
            )
        self.console.print("  delivery failed and is queued for retry; starting qingdao again")
        self.federation.start_node(QINGDAO.node_id)
        attestation_id = self._certify_request(
            QINGDAO, request_id, common_pb2.CERTIFICATION_METHOD_VIDEO_CALL
        )
        valid_until = self._await_applied(LANZHOU, LANZHOU_SECOND, attestation_id)
        self.results.append(
            FlowResult(
                "4 peer was down",
                LANZHOU_SECOND.label,
                f"{LANZHOU.node_id} -> {QINGDAO.node_id}",
                "VIDEO_CALL",
                attestation_id,
                valid_until,
                seconds=time.perf_counter() - started,
            )
        )

    def _export_and_verify(self) -> bool:
        out = self.workdir / "attestations"
        out.mkdir(exist_ok=True)
        directory_envelope = self.federation.fetch_directory()
        directory_path = self.workdir / "directory.json"
        directory_path.write_bytes(directory_envelope.to_json())
        keys_dir = self.workdir / "public-keys"
        keys_dir.mkdir(exist_ok=True)
        root_key = load_root_public_key(self.federation.registry_paths.trust_root_public_key)
        now = datetime.now(UTC)
        directory = verify_directory(
            dsse.Envelope.from_json(directory_path.read_bytes()), root_key, now=now
        )
        for node in directory.directory.nodes:
            for key in node.signing_keys:
                (keys_dir / f"{node.node_id}.{key.key_id[:16]}.ed25519.hex").write_text(
                    key.public_key.hex() + "\n"
                )
        issuers = {
            r.attestation_id: r.route.split(" -> ")[1] if "walk" not in r.flow else QINGDAO.node_id
            for r in self.results
        }
        for result in self.results:
            issuer = issuers[result.attestation_id]
            with self.federation.desk(issuer) as desk:
                exported = desk.stub.ExportAttestation(
                    desk_pb2.ExportAttestationRequest(attestation_id=result.attestation_id),
                )
            path = out / f"{result.attestation_id}.dsse.json"
            path.write_bytes(exported.dsse_json)
            attestation, _ = verify_attestation_envelope(
                dsse.Envelope.from_json(path.read_bytes()),
                directory,
                now=now,
                max_clock_skew=timedelta(minutes=5),
            )
            result.verified = attestation.attestation_id == result.attestation_id
        self._print()
        return all(result.verified for result in self.results) and len(self.results) == 4

    def _print(self) -> None:
        table = Table(title="certfed demo: certifications across regions")
        for column in ("flow", "retiree", "route", "method", "attestation", "valid until", "s"):
            table.add_column(column)
        table.add_column("verified", justify="center")
        for r in self.results:
            table.add_row(
                r.flow,
                r.retiree,
                r.route,
                r.method,
                r.attestation_id,
                r.valid_until,
                f"{r.seconds:.1f}",
                "[green]yes[/green]" if r.verified else "[red]NO[/red]",
            )
        self.console.print(table)
        self.console.print(f"Directory, public keys, attestations and logs are in {self.workdir}")


def run_demo(workdir: Path | None) -> int:
    console = Console(width=None if Console().is_terminal else 130)
    started = time.perf_counter()
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="certfed-demo-") as temporary:
            ok = Demo(Path(temporary), console).run()
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        if any(workdir.iterdir()):
            console.print(f"[red]{workdir} is not empty; give a new or empty directory[/red]")
            return 2
        ok = Demo(workdir, console).run()
    elapsed = time.perf_counter() - started
    verdict = "[green]all attestations verified[/green]" if ok else "[red]FAILED[/red]"
    console.print(f"{verdict} in {elapsed:.1f}s")
    return 0 if ok else 1
