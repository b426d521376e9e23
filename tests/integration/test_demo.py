"""`certfed demo` is the project's main job: it must run to the end and verify everything."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path

from certfed.v1 import attestation_pb2, common_pb2
from cli.demo import RETIREES
from signing import dsse
from tests.helpers.commands import certfed


def test_demo_runs_every_flow_verifies_every_attestation_and_logs_no_identity(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "demo"
    finished = certfed("demo", "--workdir", str(workdir), timeout=180)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "all attestations verified" in finished.stdout
    attestations = sorted((workdir / "attestations").glob("*.dsse.json"))
    assert len(attestations) == 9
    verified = certfed(
        "verify",
        *map(str, attestations),
        "--directory",
        str(workdir / "directory.json"),
        "--root-key",
        str(workdir / "registry" / "trust" / "root.pub"),
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.count("OK") == 9

    # One outcome per flow, with the paying office's validity before and after it.
    outcomes = json.loads((workdir / "outcomes.json").read_text())
    assert [o["flow"] for o in outcomes] == [
        "1 assistance request",
        "2 walk-in",
        "3 partner liaison",
        "4 peer was down",
        "5 own office",
        "6 face recognition",
        "7 death reaches another payer",
        "8 mistaken death corrected",
        "9 overseas post",
    ]
    assert {p.name.removesuffix(".dsse.json") for p in attestations} == {
        o["attestation_id"] for o in outcomes
    }
    for outcome in outcomes:
        assert outcome["verified"] is True
        assert all(outcome["checks"].values()), outcome
    # Certifications move the paying office's validity forward; a death held for review does
    # not touch it, and a corrected death never moves it backwards.
    validity = {
        o["flow"].split()[0]: (
            datetime.fromisoformat(o["valid_until_before"]),
            datetime.fromisoformat(o["valid_until_after"]),
        )
        for o in outcomes
    }
    for flow in "1234569":
        before, after = validity[flow]
        assert after > before, flow
    assert validity["7"][1] == validity["7"][0]
    assert validity["8"][1] >= validity["8"][0]
    own = outcomes[4]
    assert (own["issuing_node"], own["paying_node"], own["method"]) == (
        "lanzhou-chengguan",
        "lanzhou-chengguan",
        "VIDEO_CALL",
    )
    assert [o["issuing_node"] for o in outcomes[:4]] == [
        "qingdao",
        "qingdao",
        "macau-desk",
        "qingdao",
    ]

    # A face-recognition result signed by the app vendor certified a Foshan retiree; the one
    # signed with another key was refused by the adapter (line and reason, no identity).
    face, death, corrected, abroad = outcomes[5:]
    assert (face["issuing_node"], face["paying_node"], face["method"], face["outcome"]) == (
        "foshan",
        "foshan",
        "FACE_RECOGNITION",
        "ALIVE",
    )
    assert face["checks"] == {
        "signed_result_certified": True,
        "forged_result_refused_by_adapter": True,
    }
    rejects = (workdir / "face-recognition" / "results.rejects.csv").read_text().splitlines()
    assert rejects[0] == "line,reason"
    assert [line.split(",")[0] for line in rejects[1:]] == ["2"]
    assert "forged" in rejects[1]
    # Foshan's feed reported a death; the signed death reached Lanzhou, which also pays the
    # person, and is held there for Lanzhou's reviewer: not terminated, still paid.
    assert (death["issuing_node"], death["paying_node"], death["method"], death["outcome"]) == (
        "foshan",
        "lanzhou-chengguan",
        "DATA_MATCH",
        "DECEASED",
    )
    assert (death["held_at"], death["hold_reason"]) == (
        "lanzhou-chengguan",
        "NEGATIVE_WITHOUT_REQUEST",
    )
    assert death["checks"] == {
        "feed_suspended_and_proposed_termination": True,
        "terminated_at_reporting_office_on_confirmation": True,
        "held_for_second_office_reviewer": True,
        "still_paid_at_second_office": True,
    }
    # A death recorded by mistake at Qingdao, corrected: the correction names it, the person is
    # active again, the withheld months paid back, and the audit trail shows both.
    assert (corrected["issuing_node"], corrected["paying_node"], corrected["outcome"]) == (
        "qingdao",
        "qingdao",
        "ALIVE",
    )
    assert corrected["checks"] == {
        "death_ended_entitlement": True,
        "active_again": True,
        "nothing_to_recover": True,
        "withheld_months_paid_back": True,
        "both_attestations_kept": True,
        "audit_trail_shows_both": True,
    }
    assert corrected["back_pay_months"] >= 1
    assert corrected["back_pay_fen"] == corrected["back_pay_months"] * 320_000
    assert corrected["audit_trail"].count("certification.approve") == 2
    assert "entitlement.correction_reversed" in corrected["audit_trail"]
    signed_correction = dsse.Envelope.from_json(
        (workdir / "attestations" / f"{corrected['attestation_id']}.dsse.json").read_bytes()
    )
    correction = attestation_pb2.CertificationAttestation.FromString(signed_correction.payload)
    assert correction.corrects_attestation_id == corrected["corrects_attestation_id"]
    assert correction.corrects_attestation_id != corrected["attestation_id"]
    # A Qingdao retiree living in Canada: the request went to the consulate general serving CA,
    # which printed the overseas form and certified on the scan of the signed form.
    assert (abroad["issuing_node"], abroad["paying_node"], abroad["method"]) == (
        "toronto-consulate",
        "qingdao",
        "CONSULATE",
    )
    assert (abroad["outcome"], abroad["country"]) == ("ALIVE", "CA")
    assert abroad["checks"] == {
        "routed_to_post_of_residence": True,
        "form_printed_for_request": True,
        "scan_attested_as_evidence": True,
        "request_completed_at_paying_office": True,
        "certified_until_next_year": True,
    }
    assert (
        datetime.fromisoformat(abroad["valid_until_after"]).year
        == datetime.fromisoformat(abroad["valid_until_before"]).year + 1
    )
    scan = (workdir / abroad["evidence"]["file"]).read_bytes()
    assert scan.startswith(b"%PDF-")
    assert abroad["evidence"] == {
        "file": "overseas/returned-form-scan.pdf",
        "media_type": "application/pdf",
        "sha256": hashlib.sha256(scan).hexdigest(),
    }
    # The printed form names the person: handed over, not kept.
    assert [p.name for p in (workdir / "overseas").iterdir()] == ["returned-form-scan.pdf"]
    signed_abroad = dsse.Envelope.from_json(
        (workdir / "attestations" / f"{abroad['attestation_id']}.dsse.json").read_bytes()
    )
    consular = attestation_pb2.CertificationAttestation.FromString(signed_abroad.payload)
    assert (consular.issuing_node_id, consular.certifying_region) == ("toronto-consulate", "CA")
    assert consular.certifying_agency == abroad["certifying_agency"]
    assert consular.certifying_agency == (
        "Consulate General of the People's Republic of China in Toronto"
    )
    assert consular.method == common_pb2.CERTIFICATION_METHOD_CONSULATE
    assert list(consular.evidence_digests) == [hashlib.sha256(scan).digest()]
    assert consular.assistance_request_id
    for line in (
        "certified them by face recognition",
        "list of held attestations",
        "withheld month(s) paid back",
        "the overseas post serving CA",
        "signed the form before a consular officer",
    ):
        assert line in " ".join(finished.stdout.split()), line

    # No identity number or name of a demo retiree in any log line, exported file or output.
    secrets = [r.identity.identity_number for r in RETIREES] + [
        r.identity.full_name for r in RETIREES
    ]
    texts = {path: path.read_text(errors="replace") for path in workdir.rglob("*.log")}
    texts |= {path: path.read_text() for path in workdir.rglob("*.json")}
    # The inputs the demo's offices read (provider settings, feed and batch rejects, the
    # returned form's scan).
    for pattern in ("*.csv", "*.jsonl", "*.toml", "*.pdf"):
        texts |= {path: path.read_text() for path in workdir.rglob(pattern)}
    texts[Path("stdout")] = finished.stdout + finished.stderr
    assert len([p for p in texts if p.suffix == ".log"]) == 6
    for path, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret[:4]}... appears in {path}"
    # Every log line is one JSON object.
    for path, text in texts.items():
        if path.suffix == ".log":
            for line in text.splitlines():
                json.loads(line)
    assert not re.search(r"Traceback", "".join(texts.values()))
