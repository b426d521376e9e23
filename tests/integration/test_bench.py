"""`certfed bench sync` runs end to end in the suite (a smoke test: figures are printed, and no
timing is asserted; the targets are measured with the command, see the README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.postgres
def test_bench_sync_of_5000_attestations_completes(postgres_url: str) -> None:
    command = [sys.executable, "-m", "federation_node.cli", "bench", "sync"]
    completed = subprocess.run(
        [*command, "--entries", "5000", "--naive-sample", "100", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        # The bench creates its databases on the suite's PostgreSQL server.
        env={**os.environ, "DATABASE_URL": postgres_url},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    figures = json.loads(completed.stdout)
    assert figures["entries"] == 5000
    assert figures["naive_entries"] == 100
    assert figures["entries_per_s"] > 0
    assert figures["naive_entries_per_s"] > 0
    assert figures["issuer_peak_rss_mb"] > 0
    assert figures["syncer_peak_rss_mb"] > 0
    assert figures["database"] == "DATABASE_URL"
