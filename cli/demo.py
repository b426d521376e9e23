"""`certfed demo`: four regional offices and an overseas post certify retirees for each other
through a registry.

Starts the registry, four regional nodes and a consulate general serving Canada as separate
processes on 127.0.0.1 (SQLite files, mutual TLS everywhere; enrolled one after the other,
started side by side), and runs the flows of docs/domain.md through the desk API as clerks and
reviewers would: an assistance request Lanzhou -> Qingdao, a Foshan retiree walking into the
Qingdao agency, a Foshan retiree living in Macau certified by the Macau liaison desk, a request
to a node that is down, delivered once it starts, and Lanzhou certifying one of its own retirees
by video call, the screen capture uploaded as evidence and read by a second Lanzhou operator
before approving. Then the channels and life events of docs/channels.md and
docs/life_events.md: a certification app's signed face-recognition result pulled by Foshan
(cli/demo_face_recognition.py), a death Foshan's household-register feed reports reaching
Lanzhou, which also pays the person, and is held there for its reviewer, and a death a Qingdao
clerk recorded by mistake, corrected and reversed with the withheld months paid back
(cli/demo_life_events.py). Then a retiree abroad (docs/overseas.md): a Qingdao retiree living in
Canada, certified by the consulate general serving CA on the overseas certification form they
signed, its scan the evidence (cli/demo_overseas.py). Every certification carries its evidence
file, uploaded to the certifying node. Every attestation is exported as DSSE JSON and verified
offline against the exported directory; `outcomes.json` records each flow with the validity the
paying office's record showed before and after, and what the flow's checks found. Exits 0 only
if all of it verified.

`certfed demo --serve` then keeps the federation running, with a web desk for each office and two
more retirees due for certification, until interrupted (Ctrl-C or SIGTERM): it prints each desk's
URL with the demo operators' user names and passwords, and writes `desks.json` (office, URL,
operators with role, user name, password) and `metrics.json` (each process with its Prometheus
/metrics URL) in the work directory.
"""

from __future__ import annotations

import hashlib
import json
import signal
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli import demo_life_events as life_events
from cli import demo_overseas as overseas
from cli.demo_face_recognition import configure_provider, import_vendor_batch, write_vendor_batch
from cli.launcher import (
    SIGN_IN_OPERATORS,
    LocalFederation,
    NodeSpec,
    stopping_on_signals,
    wait_until,
)
from federation.desk_client import DeskClient
from federation.directory import verify_directory
from federation.timestamps import to_datetime, to_timestamp
from federation_node.keystore import load_root_public_key
from federation_node.rules.entitlement import add_months
from federation_node.rules.policy import Policy
from federation_node.tlog.attestation import verify_attestation_envelope
from signing import dsse
from signing.identity import resident_id_check_character

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
TORONTO = NodeSpec(
    "toronto-consulate",
    "Consulate General in Toronto",
    ("CA",),
    ("overseas_post",),
    certifying_agency="Consulate General of the People's Republic of China in Toronto",
)
NODES = (LANZHOU, QINGDAO, FOSHAN, MACAU, TORONTO)
# Processes (nodes, web desks) starting side by side; the demo's machine has 2 cores.
STARTING_AT_ONCE = 3


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
LANZHOU_AT_HOME = _resident(
    "620102194309090027", "Demo Retiree Zhao", "620102", "Lanzhou retiree C"
)


def _check(first_17: str) -> str:
    return first_17 + resident_id_check_character(first_17)


# Certifies in Foshan's app; paid by Foshan and by Lanzhou (worked in both); paid by Qingdao.
FOSHAN_IN_APP = _resident(
    _check("44060419530808004"), "Demo Retiree Huang", "440604", "Foshan retiree F"
)
PAID_TWICE = _resident(
    _check("44060519460606005"), "Demo Retiree Lin", "440605", "Foshan+Lanzhou retiree G"
)
QINGDAO_OWN = _resident(
    _check("37020219500505006"), "Demo Retiree Liu", "370202", "Qingdao retiree H"
)
QINGDAO_IN_CANADA = _resident(
    _check("37020219520606007"), "Demo Retiree Zhou", "CA", "Qingdao retiree in Canada"
)
RETIREES = (
    LANZHOU_RETIREE,
    FOSHAN_WALK_IN,
    FOSHAN_IN_MACAU,
    LANZHOU_SECOND,
    LANZHOU_AT_HOME,
    FOSHAN_IN_APP,
    PAID_TWICE,
    QINGDAO_OWN,
    QINGDAO_IN_CANADA,
)
PAYERS = {
    LANZHOU_RETIREE.label: LANZHOU,
    FOSHAN_WALK_IN.label: FOSHAN,
    FOSHAN_IN_MACAU.label: FOSHAN,
    LANZHOU_SECOND.label: LANZHOU,
    LANZHOU_AT_HOME.label: LANZHOU,
    FOSHAN_IN_APP.label: FOSHAN,
    PAID_TWICE.label: FOSHAN,
    QINGDAO_OWN.label: QINGDAO,
    QINGDAO_IN_CANADA.label: QINGDAO,
}
# The second office paying a retiree, where one does.
ALSO_PAID_BY = {PAID_TWICE.label: LANZHOU}
FLOWS = 9
MONTHLY_AMOUNT_FEN = 320_000


# Due within the month and not yet asked for, for whoever clicks through `demo --serve`: a
# Lanzhou retiree living in Qingdao, a Foshan retiree living in Macau and a Qingdao retiree
# living in Canada (the consulate general's inbox gets Qingdao's request).
DUE_AT_SERVE = (
    _resident(_check("62010219510707002"), "Demo Retiree Sun", "370202", "Lanzhou retiree D"),
    _resident(_check("44060419470303003"), "Demo Retiree Ho", "MO", "Foshan retiree E"),
    _resident(_check("37020219480404008"), "Demo Retiree Tang", "CA", "Qingdao retiree in CA"),
)
PAYERS |= {
    DUE_AT_SERVE[0].label: LANZHOU,
    DUE_AT_SERVE[1].label: FOSHAN,
    DUE_AT_SERVE[2].label: QINGDAO,
}
DESKS_FILE = "desks.json"
METRICS_FILE = "metrics.json"


@dataclass
class FlowResult:
    flow: str
    retiree: str
    issuing_node: str
    paying_node: str
    method: common_pb2.CertificationMethod.ValueType
    # What the signed attestation must say, besides its issuer and paying office.
    finding: common_pb2.CertificationOutcome.ValueType = common_pb2.CERTIFICATION_OUTCOME_ALIVE
    corrects_attestation_id: str = ""
    attestation_id: str = ""
    valid_until_before: str | None = None
    valid_until_after: str | None = None
    # What the flow saw at the offices, each check named for what it found (all must hold).
    checks: dict[str, bool] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)
    verified: bool = False
    seconds: float = 0.0

    @property
    def method_name(self) -> str:
        return common_pb2.CertificationMethod.Name(self.method).removeprefix(
            "CERTIFICATION_METHOD_"
        )

    def outcome(self) -> dict[str, object]:
        """The flow as outcomes.json records it."""
        return {
            "flow": self.flow,
            "issuing_node": self.issuing_node,
            "paying_node": self.paying_node,
            "method": self.method_name,
            "outcome": common_pb2.CertificationOutcome.Name(self.finding).removeprefix(
                "CERTIFICATION_OUTCOME_"
            ),
            "attestation_id": self.attestation_id,
            "valid_until_before": self.valid_until_before,
            "valid_until_after": self.valid_until_after,
            "verified": self.verified,
            "checks": self.checks,
            **self.facts,
        }


def screen_capture_png(shade: int = 0, width: int = 96, height: int = 64) -> bytes:
    """A small synthetic PNG (ISO/IEC 15948): what a video call's screen capture or a counter
    photo stands for in the demo, a different picture for each `shade`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(
        b"\x00"  # filter type None for each scanline
        + b"".join(
            bytes(((x * 2 + shade) % 256, (y * 3 + shade * 7) % 256, (x + y + shade * 13) % 256))
            for x in range(width)
        )
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _upload(desk: DeskClient, media_type: str, content: bytes) -> bytes:
    """A clerk uploads a file of evidence; its SHA-256 as the node named it."""
    uploaded = desk.stub.UploadEvidence(
        desk_pb2.UploadEvidenceRequest(media_type=media_type, content=content),
    )
    digest: bytes = uploaded.evidence.sha256
    return digest


def _iso(beneficiary: desk_pb2.Beneficiary) -> str | None:
    if not beneficiary.HasField("valid_until"):
        return None
    return to_datetime(beneficiary.valid_until).isoformat()


class Demo:
    def __init__(self, workdir: Path, console: Console, *, serve: bool = False) -> None:
        self.workdir = workdir
        self.console = console
        self.serve = serve
        self.federation = LocalFederation(
            workdir, federation_id="certfed-demo", sign_in=serve, metrics=serve
        )
        self.results: list[FlowResult] = []
        self.beneficiaries: dict[str, str] = {}
        # At the second paying office (ALSO_PAID_BY), by retiree label.
        self.also_paid: dict[str, str] = {}
        self._captures = 0

    def run(self) -> bool:
        with self.federation:
            self.console.print(
                "[bold]Starting the registry, four regional nodes and an overseas post[/bold]"
            )
            self.federation.start_registry()
            self._start_nodes()
            self._register_all()
            self._assistance_request(LANZHOU, QINGDAO, LANZHOU_RETIREE, "1 assistance request")
            self._walk_in()
            self._assistance_request(FOSHAN, MACAU, FOSHAN_IN_MACAU, "3 partner liaison")
            self._peer_down()
            self._own_counter()
            self.console.print("[bold]Channels and life events[/bold]")
            self._face_recognition()
            self._death_reaches_another_payer()
            self._mistaken_death_corrected()
            self.console.print("[bold]Retirees abroad[/bold]")
            self._overseas_post()
            verified = self._export_and_verify()
            self._write_outcomes()
            if verified and self.serve:
                return self._serve()
            return verified

    def _start_nodes(self) -> None:
        """Enrol the nodes one after the other (each approval is a directory version of its
        own), each one's process starting while the next is enrolled. A node's start-up is its
        own process importing, migrating and loading the directory, waiting on no other node;
        STARTING_AT_ONCE bounds how many share the machine's cores at once, so that each still
        becomes healthy well within the launcher's deadline on a busy machine."""
        with ThreadPoolExecutor(max_workers=STARTING_AT_ONCE) as pool:
            starts = []
            for spec in NODES:
                self.federation.add_node(spec, start=False)
                starts.append(pool.submit(self.federation.start_node, spec.node_id))
        for spec, start in zip(NODES, starts, strict=True):
            start.result()
            self.console.print(f"  {spec.node_id:18} {'/'.join(spec.region_codes):8} ready")

    def _register_all(self, retirees: tuple[Retiree, ...] = RETIREES) -> None:
        # Each retiree's certification comes due within the month; Lanzhou retiree C's has
        # lapsed, so the office certifies them itself.
        now = datetime.now(UTC)
        for retiree in retirees:
            payer = PAYERS[retiree.label]
            lapsed = retiree is LANZHOU_AT_HOME
            valid_until = now + (timedelta(days=-10) if lapsed else timedelta(days=25))
            registration = desk_pb2.RegisterBeneficiaryRequest(
                identity=retiree.identity,
                residence_region=retiree.residence_region,
                valid_until=to_timestamp(valid_until),
                monthly_amount_fen=MONTHLY_AMOUNT_FEN,
            )
            with self.federation.desk(payer.node_id) as desk:
                response = desk.stub.RegisterBeneficiary(registration)
            self.beneficiaries[retiree.label] = response.beneficiary.beneficiary_id
            second = ALSO_PAID_BY.get(retiree.label)
            if second is not None:
                with self.federation.desk(second.node_id) as desk:
                    response = desk.stub.RegisterBeneficiary(registration)
                self.also_paid[retiree.label] = response.beneficiary.beneficiary_id
        # Walk-ins are found through the registry's locator index; wait until it knows them.
        for payer in (LANZHOU, FOSHAN):
            self.federation.await_outbox_drained(payer.node_id)

    def _valid_until(self, payer: NodeSpec, retiree: Retiree) -> str | None:
        """The end of validity as the paying office's record shows it."""
        return self._valid_until_at(payer, self.beneficiaries[retiree.label])

    def _valid_until_at(self, office: NodeSpec, beneficiary_id: str) -> str | None:
        with self.federation.desk(office.node_id) as desk:
            beneficiary = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id),
            ).beneficiary
        return _iso(beneficiary)

    def _upload_capture(self, desk: DeskClient) -> bytes:
        """A clerk uploads the evidence of a check; returns its SHA-256 as the node named it."""
        self._captures += 1
        return _upload(desk, "image/png", screen_capture_png(self._captures))

    def _request(
        self,
        payer: NodeSpec,
        retiree: Retiree,
        methods: tuple[common_pb2.CertificationMethod.ValueType, ...] = (
            common_pb2.CERTIFICATION_METHOD_ON_SITE,
            common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
        ),
    ) -> str:
        with self.federation.desk(payer.node_id) as desk:
            response = desk.stub.RequestCertification(
                desk_pb2.RequestCertificationRequest(
                    beneficiary_id=self.beneficiaries[retiree.label],
                    deadline=to_timestamp(datetime.now(UTC) + timedelta(days=30)),
                    acceptable_methods=methods,
                ),
            )
        request_id: str = response.request.request_id
        return request_id

    def _certify_request(
        self,
        certifier: NodeSpec,
        request_id: str,
        method: common_pb2.CertificationMethod.ValueType,
        evidence: Callable[[DeskClient], bytes] | None = None,
    ) -> str:
        """The certifier's clerk accepts the request once it has arrived, records the check
        with its evidence, and a reviewer approves; the attestation's id. `evidence` is how the
        clerk, the request accepted, comes by the evidence and uploads it (its digest); a
        screen capture when None."""
        with self.federation.desk(certifier.node_id) as clerk:
            self._await_inbound(clerk, certifier, request_id)
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
                    evidence_digests=[(evidence or self._upload_capture)(clerk)],
                ),
            )
        return self._approve(certifier, recorded.certification.certification_id)

    def _await_inbound(self, clerk: DeskClient, certifier: NodeSpec, request_id: str) -> None:
        wait_until(
            lambda: any(
                r.request_id == request_id
                for r in clerk.stub.ListAssistanceRequests(
                    desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_INBOUND),
                ).requests
            ),
            30,
            f"the request to reach {certifier.node_id}",
        )

    def _approve(self, certifier: NodeSpec, certification_id: str) -> str:
        with self.federation.desk(certifier.node_id, "reviewer") as reviewer:
            approved = reviewer.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=certification_id),
            )
        attestation_id: str = approved.certification.attestation_id
        return attestation_id

    def _await_applied(self, payer: NodeSpec, retiree: Retiree, before: str | None) -> str:
        """Wait until the paying office's record shows a validity other than `before`."""

        def moved() -> str | None:
            now = self._valid_until(payer, retiree)
            return now if now != before else None

        return wait_until(moved, 30, f"{payer.node_id} to apply the attestation")

    def _flow(
        self,
        flow: str,
        retiree: Retiree,
        issuer: NodeSpec,
        method: common_pb2.CertificationMethod.ValueType,
    ) -> FlowResult:
        payer = PAYERS[retiree.label]
        return FlowResult(
            flow,
            retiree.label,
            issuer.node_id,
            payer.node_id,
            method,
            valid_until_before=self._valid_until(payer, retiree),
        )

    def _finish(self, result: FlowResult, retiree: Retiree, started: float) -> None:
        payer = PAYERS[retiree.label]
        result.valid_until_after = self._await_applied(payer, retiree, result.valid_until_before)
        result.seconds = time.perf_counter() - started
        self.results.append(result)

    def _assistance_request(
        self, payer: NodeSpec, certifier: NodeSpec, retiree: Retiree, flow: str
    ) -> None:
        started = time.perf_counter()
        method = (
            common_pb2.CERTIFICATION_METHOD_PARTNER_AGENCY
            if "partner_liaison" in certifier.roles
            else common_pb2.CERTIFICATION_METHOD_ON_SITE
        )
        result = self._flow(flow, retiree, certifier, method)
        request_id = self._request(payer, retiree)
        result.attestation_id = self._certify_request(certifier, request_id, method)
        self._finish(result, retiree, started)

    def _walk_in(self) -> None:
        started = time.perf_counter()
        result = self._flow(
            "2 walk-in", FOSHAN_WALK_IN, QINGDAO, common_pb2.CERTIFICATION_METHOD_ON_SITE
        )
        with self.federation.desk(QINGDAO.node_id) as clerk:
            recorded = clerk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    walk_in=FOSHAN_WALK_IN.identity,
                    method=result.method,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                    observed_at=to_timestamp(datetime.now(UTC)),
                    evidence_digests=[self._upload_capture(clerk)],
                ),
            )
        result.attestation_id = self._approve(QINGDAO, recorded.certification.certification_id)
        self._finish(result, FOSHAN_WALK_IN, started)

    def _peer_down(self) -> None:
        started = time.perf_counter()
        result = self._flow(
            "4 peer was down", LANZHOU_SECOND, QINGDAO, common_pb2.CERTIFICATION_METHOD_VIDEO_CALL
        )
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
        result.attestation_id = self._certify_request(QINGDAO, request_id, result.method)
        self._finish(result, LANZHOU_SECOND, started)

    def _own_counter(self) -> None:
        """Lanzhou, a paying office only, certifies its own retiree by video call: a clerk
        records it with the screen capture, a second operator reads the capture and approves,
        and Lanzhou's own record is extended in the approving transaction."""
        started = time.perf_counter()
        result = self._flow(
            "5 own office", LANZHOU_AT_HOME, LANZHOU, common_pb2.CERTIFICATION_METHOD_VIDEO_CALL
        )
        with self.federation.desk(LANZHOU.node_id) as clerk:
            capture = self._upload_capture(clerk)
            recorded = clerk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    beneficiary_id=self.beneficiaries[LANZHOU_AT_HOME.label],
                    method=result.method,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                    observed_at=to_timestamp(datetime.now(UTC)),
                    evidence_digests=[capture],
                    note="video call; screen captured",
                ),
            ).certification
        with self.federation.desk(LANZHOU.node_id, "reviewer") as reviewer:
            pending = reviewer.stub.ListCertifications(
                desk_pb2.ListCertificationsRequest(
                    status=desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW
                ),
            ).certifications
            [awaiting] = [c for c in pending if c.certification_id == recorded.certification_id]
            for digest in awaiting.evidence_digests:
                evidence = reviewer.stub.GetEvidence(desk_pb2.GetEvidenceRequest(sha256=digest))
                if hashlib.sha256(evidence.content).digest() != digest:
                    raise RuntimeError("the evidence read back is not the file uploaded")
                self.console.print(
                    f"  lanzhou reviewer read the {evidence.evidence.media_type} screen capture "
                    f"({evidence.evidence.size_bytes} bytes) before approving"
                )
            approved = reviewer.stub.ApproveCertification(
                desk_pb2.ApproveCertificationRequest(certification_id=awaiting.certification_id),
            )
        result.attestation_id = approved.certification.attestation_id
        self._finish(result, LANZHOU_AT_HOME, started)

    # Channels and life events.

    def _say(self, line: str) -> None:
        """A plain-words line about what just happened (never a name or identity number)."""
        self.console.print(f"  {line}", soft_wrap=True, highlight=False, markup=False)

    def _face_recognition(self) -> None:
        """Foshan's certification app: the vendor signs each result, Foshan pulls the batch and
        its adapter verifies every line before the node sees it; passing scores certify."""
        started = time.perf_counter()
        result = self._flow(
            "6 face recognition",
            FOSHAN_IN_APP,
            FOSHAN,
            common_pb2.CERTIFICATION_METHOD_FACE_RECOGNITION,
        )
        folder = self.workdir / "face-recognition"
        settings, vendor_key = configure_provider(self.federation, FOSHAN.node_id, folder)
        batch = write_vendor_batch(folder, vendor_key, FOSHAN_IN_APP.identity, "APP-000001")
        imported = import_vendor_batch(self.federation, FOSHAN.node_id, settings, batch)
        batch.unlink()  # the vendor's file names the person; imported, it is not kept
        if not imported.attestation_id:
            raise RuntimeError(f"the app's result was not certified: {imported.outcomes}")
        result.attestation_id = imported.attestation_id
        result.checks = {
            "signed_result_certified": imported.outcomes == {"certified": 1},
            "forged_result_refused_by_adapter": imported.refused_by_adapter == 1,
        }
        result.facts = {"provider": imported.provider, "node_answers": imported.outcomes}
        self._say(
            f"foshan: {FOSHAN_IN_APP.label} passed the liveness and face match in the app; the "
            f"result, signed by the app vendor ({imported.provider}), certified them by face "
            "recognition. A result signed with another key was refused by the adapter, before "
            f"the node: see {imported.rejects_file.relative_to(self.workdir)}"
        )
        self._finish(result, FOSHAN_IN_APP, started)

    def _death_reaches_another_payer(self) -> None:
        """Foshan's household-register feed reports a death; Foshan's reviewer confirms it; the
        signed death reaches Lanzhou, which also pays the person, and waits for Lanzhou's own
        reviewer there, the person still paid."""
        started = time.perf_counter()
        second = ALSO_PAID_BY[PAID_TWICE.label]
        at_foshan = self.beneficiaries[PAID_TWICE.label]
        at_second = self.also_paid[PAID_TWICE.label]
        result = FlowResult(
            "7 death reaches another payer",
            PAID_TWICE.label,
            FOSHAN.node_id,
            second.node_id,
            common_pb2.CERTIFICATION_METHOD_DATA_MATCH,
            finding=common_pb2.CERTIFICATION_OUTCOME_DECEASED,
            valid_until_before=self._valid_until_at(second, at_second),
        )
        died_on = (datetime.now(UTC) - timedelta(days=2)).date()
        feeds = self.workdir / "feeds"
        applied = life_events.import_death_registration(
            self.federation, FOSHAN.node_id, PAID_TWICE.identity, died_on, feeds
        )
        (feeds / life_events.DEATH_FEED_FILE).unlink()  # names the person; imported, not kept
        proposed = life_events.overview(self.federation, FOSHAN.node_id, at_foshan).entitlement
        life_events.confirm_termination(self.federation, FOSHAN.node_id, at_foshan)
        held = life_events.await_held(self.federation, second.node_id, at_second)
        result.attestation_id = held.attestation_id
        ended = life_events.overview(self.federation, FOSHAN.node_id, at_foshan).entitlement
        still = life_events.overview(self.federation, second.node_id, at_second).entitlement
        result.valid_until_after = self._valid_until_at(second, at_second)
        result.checks = {
            "feed_suspended_and_proposed_termination": applied == 1
            and proposed.termination_pending_review,
            "terminated_at_reporting_office_on_confirmation": (
                ended.state == desk_pb2.ENTITLEMENT_STATE_TERMINATED
            ),
            "held_for_second_office_reviewer": (
                held.reason == desk_pb2.HOLD_REASON_NEGATIVE_WITHOUT_REQUEST
                and held.issuing_node_id == FOSHAN.node_id
                and held.outcome == common_pb2.CERTIFICATION_OUTCOME_DECEASED
            ),
            "still_paid_at_second_office": (
                still.state == desk_pb2.ENTITLEMENT_STATE_ACTIVE
                and not still.termination_pending_review
            ),
        }
        result.facts = {
            "held_at": second.node_id,
            "hold_reason": desk_pb2.HoldReason.Name(held.reason).removeprefix("HOLD_REASON_"),
        }
        self._say(
            f"foshan: its household-register feed reported {PAID_TWICE.label} dead; payment was "
            "suspended and, once Foshan's reviewer confirmed the death, ended at Foshan."
        )
        self._say(
            f"{second.node_id}, which also pays them, received Foshan's signed death: it is on "
            f"{second.node_id}'s list of held attestations for its own reviewer, and "
            f"{second.node_id} keeps paying until that reviewer decides."
        )
        result.seconds = time.perf_counter() - started
        self.results.append(result)

    def _mistaken_death_corrected(self) -> None:
        """A Qingdao clerk records a death by mistake and a reviewer approves it; the person
        comes to the counter, the clerk records a correction naming the mistaken attestation,
        a reviewer approves it: active again, the withheld months paid back."""
        started = time.perf_counter()
        result = self._flow(
            "8 mistaken death corrected",
            QINGDAO_OWN,
            QINGDAO,
            common_pb2.CERTIFICATION_METHOD_ON_SITE,
        )
        beneficiary_id = self.beneficiaries[QINGDAO_OWN.label]
        now = datetime.now(UTC)
        with self.federation.desk(QINGDAO.node_id) as clerk:
            death = clerk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    beneficiary_id=beneficiary_id,
                    method=result.method,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_DECEASED,
                    observed_at=to_timestamp(now - timedelta(minutes=5)),
                    evidence_digests=[self._upload_capture(clerk)],
                    note="death certificate brought to the counter",
                ),
            ).certification
        mistaken = self._approve(QINGDAO, death.certification_id)
        ended = life_events.overview(self.federation, QINGDAO.node_id, beneficiary_id)
        with self.federation.desk(QINGDAO.node_id) as clerk:
            correction = clerk.stub.RecordCertification(
                desk_pb2.RecordCertificationRequest(
                    corrects_attestation_id=mistaken,
                    method=result.method,
                    outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                    observed_at=to_timestamp(datetime.now(UTC)),
                    evidence_digests=[self._upload_capture(clerk)],
                    note="came to the counter: the certificate was another person's",
                ),
            ).certification
        result.attestation_id = self._approve(QINGDAO, correction.certification_id)
        result.corrects_attestation_id = mistaken
        reversal = life_events.reversal(
            self.federation,
            QINGDAO.node_id,
            beneficiary_id,
            (death.certification_id, correction.certification_id),
            (mistaken, result.attestation_id),
        )
        result.valid_until_after = self._valid_until(QINGDAO, QINGDAO_OWN)
        result.checks = {
            "death_ended_entitlement": (
                ended.entitlement.state == desk_pb2.ENTITLEMENT_STATE_TERMINATED
            ),
            "active_again": reversal.status == "ACTIVE" and reversal.entitlement_state == "ACTIVE",
            "nothing_to_recover": reversal.overpayment_fen == 0,
            "withheld_months_paid_back": reversal.back_pay_months >= 1
            and reversal.back_pay_fen == reversal.back_pay_months * MONTHLY_AMOUNT_FEN,
            "both_attestations_kept": {mistaken, result.attestation_id}
            <= set(reversal.attestation_ids),
            "audit_trail_shows_both": reversal.reversal_names_both
            and reversal.audit_actions.count("certification.approve") >= 2,
        }
        result.facts = {
            "corrects_attestation_id": mistaken,
            "back_pay_months": reversal.back_pay_months,
            "back_pay_fen": reversal.back_pay_fen,
            "audit_trail": reversal.audit_actions,
        }
        self._say(
            f"qingdao: a clerk recorded {QINGDAO_OWN.label} dead by mistake and a reviewer "
            "approved it: payment stopped. The person came to the counter; the clerk recorded "
            "a correction naming the mistaken attestation, and a reviewer approved it."
        )
        self._say(
            f"qingdao: {QINGDAO_OWN.label} is active again, {reversal.back_pay_months} withheld "
            f"month(s) paid back ({reversal.back_pay_fen / 100:,.2f} yuan); both attestations "
            f"stay, and the audit trail shows the death and its reversal: "
            f"{', '.join(reversal.audit_actions)}"
        )
        result.seconds = time.perf_counter() - started
        self.results.append(result)

    # Retirees abroad.

    def _overseas_post(self) -> None:
        """Qingdao pays a retiree living in Canada: its request goes to the consulate general
        serving CA, whose clerk prints the overseas certification form; the retiree signs it
        before a consular officer, the scan is the evidence of the certification, a reviewer
        approves, and Qingdao applies the signed attestation: certified for another year."""
        started = time.perf_counter()
        retiree, payer = QINGDAO_IN_CANADA, PAYERS[QINGDAO_IN_CANADA.label]
        result = self._flow(
            "9 overseas post", retiree, TORONTO, common_pb2.CERTIFICATION_METHOD_CONSULATE
        )
        request_id = self._request(payer, retiree, (result.method,))
        folder = self.workdir / "overseas"
        printed: list[overseas.PrintedForm] = []
        scanned: list[bytes] = []

        def signed_form_scanned(clerk: DeskClient) -> bytes:
            printed.append(overseas.print_form(clerk, request_id, folder))
            scan = overseas.write_returned_scan(folder, request_id)
            scanned.append(_upload(clerk, overseas.SCAN_MEDIA_TYPE, scan.read_bytes()))
            return scanned[0]

        result.attestation_id = self._certify_request(
            TORONTO, request_id, result.method, signed_form_scanned
        )
        valid_until_after = self._await_applied(payer, retiree, result.valid_until_before)
        result.valid_until_after = valid_until_after
        sent = overseas.sent_request(self.federation, payer.node_id, request_id)
        attestation = overseas.attestation_at(self.federation, payer.node_id, result.attestation_id)
        observed = to_datetime(attestation.observed_at)
        a_year_on = add_months(observed, Policy().validity_months)
        applied = datetime.fromisoformat(valid_until_after)
        [form] = printed
        result.checks = {
            "routed_to_post_of_residence": sent.peer_node_id == TORONTO.node_id
            and sent.residence_region == retiree.residence_region,
            "form_printed_for_request": form.names(
                request_id, retiree.residence_region, payer.node_id
            )
            and form.blank_for_the_post,
            "scan_attested_as_evidence": list(attestation.evidence_digests) == scanned
            and attestation.assistance_request_id == request_id
            and attestation.certifying_region == retiree.residence_region,
            "request_completed_at_paying_office": (
                sent.status == common_pb2.ASSISTANCE_STATUS_COMPLETED
            ),
            "certified_until_next_year": abs(applied - a_year_on) < timedelta(seconds=1)
            and applied.year == observed.year + 1,
        }
        result.facts = {
            "country": retiree.residence_region,
            "certifying_agency": attestation.certifying_agency,
            "evidence": {
                "file": str((folder / overseas.SCAN_FILE).relative_to(self.workdir)),
                "media_type": overseas.SCAN_MEDIA_TYPE,
                "sha256": scanned[0].hex(),
            },
        }
        self._say(
            f"qingdao: {retiree.label} lives in Canada ({retiree.residence_region}); Qingdao's "
            f"request went to {TORONTO.node_id}, the overseas post serving "
            f"{retiree.residence_region}, whose clerk printed the overseas certification form."
        )
        self._say(
            f"{TORONTO.node_id}: the retiree signed the form before a consular officer; its "
            "scan, uploaded as the evidence, certified them (CONSULATE), and Qingdao applied "
            f"the signed attestation: valid until {applied.date().isoformat()}."
        )
        result.seconds = time.perf_counter() - started
        self.results.append(result)

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
        for result in self.results:
            with self.federation.desk(result.issuing_node) as desk:
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
            result.verified = (
                attestation.attestation_id == result.attestation_id
                and attestation.issuing_node_id == result.issuing_node
                and attestation.paying_node_id == result.paying_node
                and attestation.method == result.method
                and attestation.outcome == result.finding
                and attestation.corrects_attestation_id == result.corrects_attestation_id
                and all(result.checks.values())
            )
            for check, held in result.checks.items():
                if not held:
                    self.console.print(f"[red]{result.flow}: check {check} failed[/red]")
        self._print()
        return all(result.verified for result in self.results) and len(self.results) == FLOWS

    # The clickable version.

    def _serve(self) -> bool:
        """Start a web desk per office, say where and how to sign in, and keep everything up
        until SIGINT or SIGTERM; False when a process stopped on its own meanwhile."""
        self._register_all(DUE_AT_SERVE)
        self.console.print("[bold]Starting a web desk for each office[/bold]")
        with ThreadPoolExecutor(max_workers=STARTING_AT_ONCE) as pool:
            list(pool.map(self.federation.start_web_desk, [spec.node_id for spec in NODES]))
        desks = self._desks()
        self._write_json(DESKS_FILE, desks)
        self._write_json(METRICS_FILE, self._metrics())
        # Plain lines, never cut to the terminal's width: people copy these.
        self.console.print("[bold]Web desks: sign in with a user name and password[/bold]")
        for desk in desks:
            lines = [f"  {desk['office']:18} {desk['url']}"]
            lines += [
                f"      {o['user_name']:9} password {o['password']}   ({o['role']})"
                for o in self._operators(str(desk["office"]))
            ]
            self.console.print("\n".join(lines), soft_wrap=True, highlight=False, markup=False)
        self.console.print(
            f"Due for certification: {', '.join(r.label for r in DUE_AT_SERVE)} "
            "(find them in each paying office's lists). "
            f"{DESKS_FILE} and {METRICS_FILE} are in {self.workdir}. Ctrl-C stops everything.",
            soft_wrap=True,
        )
        return self._wait_for_stop()

    def _operators(self, node_id: str) -> list[dict[str, str]]:
        handle = self.federation.nodes[node_id]
        return [
            {
                "role": "+".join(role.value for role in roles),
                "user_name": account,
                "password": handle.passwords[account],
            }
            for account, roles in SIGN_IN_OPERATORS.items()
        ]

    def _desks(self) -> list[dict[str, object]]:
        return [
            {
                "office": spec.node_id,
                "name": spec.display_name,
                "url": self.federation.nodes[spec.node_id].web_url,
                "operators": self._operators(spec.node_id),
            }
            for spec in NODES
        ]

    def _metrics(self) -> list[dict[str, str]]:
        processes = [
            {"process": "registry", "kind": "registry", "url": self.federation.registry_metrics_url}
        ]
        processes.extend(
            {
                "process": spec.node_id,
                "kind": "node",
                "url": self.federation.nodes[spec.node_id].metrics_url,
            }
            for spec in NODES
        )
        return processes

    def _write_json(self, name: str, document: object) -> None:
        path = self.workdir / name
        temporary = path.with_name(f".{name}.tmp")
        temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
        temporary.chmod(0o600)  # passwords
        temporary.replace(path)

    def _wait_for_stop(self) -> bool:
        stop = threading.Event()

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        previous = {
            signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while not stop.wait(1.0):
                stopped = self._stopped_processes()
                if stopped:
                    self.console.print(f"[red]stopped on their own: {', '.join(stopped)}[/red]")
                    return False
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.console.print("Stopping the web desks, the nodes and the registry")
        return True

    def _stopped_processes(self) -> list[str]:
        federation = self.federation
        processes = {"registry": federation.registry_process}
        for node_id, handle in federation.nodes.items():
            processes[node_id] = handle.process
            processes[f"web desk of {node_id}"] = handle.web_process
        return [
            name
            for name, process in processes.items()
            if process is None or process.poll() is not None
        ]

    def _write_outcomes(self) -> None:
        path = self.workdir / "outcomes.json"
        path.write_text(
            json.dumps([result.outcome() for result in self.results], indent=2) + "\n",
            encoding="utf-8",
        )

    def _print(self) -> None:
        table = Table(title="certfed demo: certifications across regions")
        for column in ("flow", "retiree", "issued by", "paid by", "method", "attestation"):
            table.add_column(column)
        for column in ("valid until before", "after", "s"):
            table.add_column(column)
        table.add_column("verified", justify="center")
        for r in self.results:
            table.add_row(
                r.flow,
                r.retiree,
                r.issuing_node,
                r.paying_node,
                r.method_name,
                r.attestation_id,
                (r.valid_until_before or "-")[:10],
                (r.valid_until_after or "-")[:10],
                f"{r.seconds:.1f}",
                "[green]yes[/green]" if r.verified else "[red]NO[/red]",
            )
        self.console.print(table)
        self.console.print(
            f"Directory, public keys, attestations, outcomes.json and logs are in {self.workdir}"
        )


def run_demo(workdir: Path | None, *, serve: bool = False) -> int:
    with stopping_on_signals("the demo"):
        return _run_demo(workdir, serve=serve)


def _run_demo(workdir: Path | None, *, serve: bool) -> int:
    console = Console(width=None if Console().is_terminal else 130)
    started = time.perf_counter()
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="certfed-demo-") as temporary:
            ok = Demo(Path(temporary), console, serve=serve).run()
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        if any(workdir.iterdir()):
            console.print(f"[red]{workdir} is not empty; give a new or empty directory[/red]")
            return 2
        ok = Demo(workdir, console, serve=serve).run()
    if serve:
        console.print("[green]stopped[/green]" if ok else "[red]FAILED[/red]")
        return 0 if ok else 1
    elapsed = time.perf_counter() - started
    verdict = "[green]all attestations verified[/green]" if ok else "[red]FAILED[/red]"
    console.print(f"{verdict} in {elapsed:.1f}s")
    if ok:
        console.print(
            "To click through it in a browser, one web desk per office: "
            "certfed demo --serve --workdir DIR (or make demo DEMO_ARGS=--serve)"
        )
    return 0 if ok else 1
