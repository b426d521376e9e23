"""`certfed demo --serve`: the clickable demo keeps a web desk per office up until SIGTERM, says
how to sign in (desks.json) and where every process's metrics are (metrics.json), and stops
every process it started when told to."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from cli.bench.web import SignedInClient
from cli.demo import DUE_AT_SERVE, NODES, RETIREES
from cli.launcher import SIGN_IN_OPERATORS, wait_until


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - our own http URLs
        return answer.status, answer.read().decode("utf-8", errors="replace")


def _answers(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True


def test_demo_serve_runs_a_desk_per_office_until_sigterm(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    output = tmp_path / "demo.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "demo", "--serve", "--workdir", str(workdir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:

        def served() -> bool:
            assert process.poll() is None, output.read_text()
            return (workdir / "desks.json").exists() and (workdir / "metrics.json").exists()

        wait_until(served, 240, "desks.json and metrics.json")
        desks: list[dict[str, Any]] = json.loads((workdir / "desks.json").read_text())
        metrics: list[dict[str, str]] = json.loads((workdir / "metrics.json").read_text())
        printed = output.read_text()

        assert [desk["office"] for desk in desks] == [spec.node_id for spec in NODES]
        for desk in desks:
            assert desk["url"].startswith("http://127.0.0.1:")
            assert desk["url"] in printed
            assert {o["user_name"] for o in desk["operators"]} == set(SIGN_IN_OPERATORS)
            for operator in desk["operators"]:
                assert operator["role"]
                assert len(operator["password"]) >= 12
                assert operator["password"] in printed
            assert _get(f"{desk['url']}/healthz") == (200, "ok")
            status, page = _get(f"{desk['url']}/sign-in")
            assert status == 200
            assert 'id="user_name"' in page
            assert 'id="password"' in page
        # The printed credentials work: Lanzhou's clerk signs in and sees the home page.
        lanzhou = desks[0]
        clerk = next(o for o in lanzhou["operators"] if o["user_name"] == "clerk")
        browser = SignedInClient(lanzhou["url"])
        try:
            browser.sign_in(clerk["user_name"], clerk["password"])
            assert 'id="sign-out"' in browser.get("/")
        finally:
            browser.close()
        # Foshan's death of a person Lanzhou also pays is on Lanzhou's held list, for its reviewer.
        outcomes = json.loads((workdir / "outcomes.json").read_text())
        [death] = [o for o in outcomes if o["flow"] == "7 death reaches another payer"]
        reviewer = next(o for o in lanzhou["operators"] if o["user_name"] == "reviewer")
        browser = SignedInClient(lanzhou["url"])
        try:
            browser.sign_in(reviewer["user_name"], reviewer["password"])
            held = browser.get("/held")
            assert f"/held/{death['attestation_id']}?issuer=foshan" in held
        finally:
            browser.close()

        assert [m["process"] for m in metrics] == ["registry", *(s.node_id for s in NODES)]
        for entry in metrics:
            status, text = _get(entry["url"])
            assert status == 200
            assert "certfed_rpc" in text or "process_cpu_seconds_total" in text, entry

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0, output.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    # Everything it started has stopped: no desk or metrics endpoint answers, no ready file.
    for desk in desks:
        assert not _answers(f"{desk['url']}/healthz")
    for entry in metrics:
        assert not _answers(entry["url"])
    assert not list(workdir.rglob("*.ready.json"))
    # No identity number in any process's log or in what the demo printed.
    numbers = [r.identity.identity_number for r in (*RETIREES, *DUE_AT_SERVE)]
    texts = {path: path.read_text(errors="replace") for path in workdir.rglob("*.log")}
    texts[output] = output.read_text()
    assert len([p for p in texts if p.name == "web.log"]) == len(NODES)
    for path, text in texts.items():
        for number in numbers:
            assert number not in text, f"{number[:4]}... appears in {path}"
