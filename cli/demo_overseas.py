"""The demo's overseas post (docs/overseas.md): a consulate general serving Canada certifies a
retiree whom an office at home pays.

The paying office's request goes to the post serving the retiree's country of residence. The
post's clerk prints the overseas certification form (审核表) with the same code as `certfed forms
overseas`; the retiree signs it before a consular officer, and the scan of the signed form is
the evidence of the consular certification. The form names the person, so the demo reads it
back and does not keep it; the scan is synthetic and names only the request.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from adapters.overseas_forms import BLANK_ITEMS, HEADER, export_overseas_form
from certfed.v1 import attestation_pb2, desk_pb2
from cli.launcher import LocalFederation
from federation.desk_client import DeskClient
from signing import dsse

FORM_FILE = "certification-form.csv"
SCAN_FILE = "returned-form-scan.pdf"
SCAN_MEDIA_TYPE = "application/pdf"


@dataclass(frozen=True)
class PrintedForm:
    """What the printed form showed, without the person's rows: the entries filled in from
    the request, and whether it ends with the post's items (date, outcome, signatures, seal)
    left blank to fill in by hand."""

    entries: frozenset[str]
    blank_for_the_post: bool

    def names(self, *entries: str) -> bool:
        return set(entries) <= self.entries


def print_form(clerk: DeskClient, request_id: str, folder: Path) -> PrintedForm:
    """The post's clerk exports the form for the inbound request, as `certfed forms overseas
    REQUEST_ID --out FORM.csv` does; the file is read back as printed and then removed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FORM_FILE
    export_overseas_form(clerk, request_id, path)
    lines = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    path.unlink()  # handed to the retiree; it names them, so the demo keeps no copy
    items = [(label, entry) for label, entry in lines[lines.index(HEADER) + 1 :]]
    last = items[-len(BLANK_ITEMS) :]
    return PrintedForm(
        entries=frozenset(entry for _, entry in items if entry),
        blank_for_the_post=[label for label, entry in last if not entry] == list(BLANK_ITEMS),
    )


def write_returned_scan(folder: Path, request_id: str) -> Path:
    """What the post's scanner saves of the signed and sealed form: a synthetic PDF (ISO
    32000-1 header and trailer) that names only the request."""
    path = folder / SCAN_FILE
    path.write_bytes(
        b"%PDF-1.4\n"
        + f"% overseas certification form for request {request_id}: signed before a "
        "consular officer, sealed by the post\n".encode("ascii")
        + b"%%EOF\n"
    )
    return path


def attestation_at(
    federation: LocalFederation, node_id: str, attestation_id: str
) -> attestation_pb2.CertificationAttestation:
    """The signed attestation as the office holds it (verified offline with the others)."""
    with federation.desk(node_id) as desk:
        exported = desk.stub.ExportAttestation(
            desk_pb2.ExportAttestationRequest(attestation_id=attestation_id)
        )
    return attestation_pb2.CertificationAttestation.FromString(
        dsse.Envelope.from_json(exported.dsse_json).payload
    )


def sent_request(
    federation: LocalFederation, node_id: str, request_id: str
) -> desk_pb2.AssistanceRequestSummary:
    """The request as the paying office that sent it sees it."""
    with federation.desk(node_id) as desk:
        answer = desk.stub.GetAssistanceRequest(
            desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
        )
    request: desk_pb2.AssistanceRequestSummary = answer.request
    return request
