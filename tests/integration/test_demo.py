"""`certfed demo` is the project's main job: it must run to the end and verify everything."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from cli.demo import RETIREES
from tests.helpers.commands import certfed


def test_demo_runs_every_flow_verifies_every_attestation_and_logs_no_identity(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "demo"
    finished = certfed("demo", "--workdir", str(workdir), timeout=180)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "all attestations verified" in finished.stdout
    attestations = sorted((workdir / "attestations").glob("*.dsse.json"))
    assert len(attestations) == 5
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
    assert verified.stdout.count("OK") == 5

    # One outcome per flow, with the paying office's validity before and after it.
    outcomes = json.loads((workdir / "outcomes.json").read_text())
    assert [o["flow"] for o in outcomes] == [
        "1 assistance request",
        "2 walk-in",
        "3 partner liaison",
        "4 peer was down",
        "5 own office",
    ]
    assert {p.name.removesuffix(".dsse.json") for p in attestations} == {
        o["attestation_id"] for o in outcomes
    }
    for outcome in outcomes:
        assert outcome["verified"] is True
        before = datetime.fromisoformat(outcome["valid_until_before"])
        after = datetime.fromisoformat(outcome["valid_until_after"])
        assert after > before, outcome
    own = outcomes[-1]
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

    # No identity number or name of a demo retiree in any log line, exported file or output.
    secrets = [r.identity.identity_number for r in RETIREES] + [
        r.identity.full_name for r in RETIREES
    ]
    texts = {path: path.read_text(errors="replace") for path in workdir.rglob("*.log")}
    texts |= {path: path.read_text() for path in workdir.rglob("*.json")}
    texts[Path("stdout")] = finished.stdout + finished.stderr
    assert len([p for p in texts if p.suffix == ".log"]) == 5
    for path, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret[:4]}... appears in {path}"
    # Every log line is one JSON object.
    for path, text in texts.items():
        if path.suffix == ".log":
            for line in text.splitlines():
                json.loads(line)
    assert not re.search(r"Traceback", "".join(texts.values()))
