"""Every `certfed bench` subcommand prints the same headline fields with `--json`: the figures
printer refuses figures without them, and every subcommand has a smoke test that runs it with
`--json` (tests/integration/test_bench*.py), so a benchmark missing a field fails there."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.bench.kit import BASELINE_FIELDS, RATE_FIELDS, Headline, Rate, figures_json
from cli.main import build_parser

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


@dataclass(frozen=True)
class _Measured(Rate):
    items: int


@dataclass(frozen=True)
class _AgainstBaseline(Headline):
    items: int


@dataclass(frozen=True)
class _RateOnly:
    rate_per_s: float
    items: int


@dataclass(frozen=True)
class _HalfABaseline(Rate):
    baseline_per_s: float


def test_every_bench_subcommand_has_a_json_smoke_test() -> None:
    kinds = _subcommands(_subcommands(build_parser())["bench"])
    assert {"sync", "assist", "feed", "roll", "recovery", "web"} <= set(kinds)
    sources = "\n".join(path.read_text() for path in INTEGRATION.glob("test_bench*.py"))
    for kind, parser in kinds.items():
        assert any(action.dest == "json" for action in parser._actions), kind
        runs = rf'(_bench\(\s*postgres_url,\s*|"bench",\s*)"{kind}"'
        assert re.search(runs, sources), f"no smoke test runs `certfed bench {kind} --json`"


def test_figures_print_the_headline_fields_at_the_top_level() -> None:
    measured = json.loads(figures_json(_Measured(**Rate.measure_rate(10, 2.0), items=10)))
    assert measured["rate_per_s"] == 5.0
    assert set(RATE_FIELDS) <= set(measured)
    against = _AgainstBaseline(**Headline.measure(10, 2.0, 1, 1.0), items=10)
    printed = json.loads(figures_json(against))
    assert printed["ratio"] == 5.0
    assert set(RATE_FIELDS + BASELINE_FIELDS) <= set(printed)


@pytest.mark.parametrize(
    ("figures", "missing"),
    [
        (_RateOnly(rate_per_s=1.0, items=1), "seconds"),
        (
            _HalfABaseline(rate_per_s=1.0, seconds=1.0, peak_rss_mib=1.0, baseline_per_s=1.0),
            "ratio",
        ),
    ],
)
def test_figures_without_a_headline_field_are_refused(figures: object, missing: str) -> None:
    with pytest.raises(TypeError, match=missing):
        figures_json(figures)
