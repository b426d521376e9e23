"""`certfed bench recovery` runs end to end (a smoke test: its figures are printed, no timing is
asserted; the figures themselves are measured with the command, see docs/operations.md)."""

from __future__ import annotations

import json

from tests.helpers.commands import certfed


def test_bench_recovery_of_three_crash_trials_loses_and_duplicates_nothing() -> None:
    completed = certfed("bench", "recovery", "--trials", "3", "--seed", "3", "--json", timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    figures = json.loads(completed.stdout)
    assert figures["trials"] == 3
    assert sum(figures["kills"].values()) == 3
    assert figures["lost"] == 0
    assert figures["duplicated"] == 0
    assert 0 <= figures["p50_s"] <= figures["p90_s"] <= figures["max_s"]
    assert figures["seconds"] > 0
