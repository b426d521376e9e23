"""A roll's yearly adjustment at a paying office, through the desk API as an office runs it:
its people imported from a roll file, then the same roll with every monthly amount 3% higher,
which proposes a change for each of them for a reviewer to approve."""

from __future__ import annotations

from pathlib import Path

from cli.bench.roll import write_roll
from cli.roll_import import import_roll_file
from federation.desk_client import DeskClient


def _import(desk: DeskClient, path: Path) -> int:
    return import_roll_file(
        desk,
        path,
        mapping_name="certfed_roll",
        fmt=None,
        sheet=None,
        batch_size=500,
        rejects_path=path.with_suffix(".rejects.csv"),
        show_progress=False,
    ).amount_changes


def propose_yearly_rise(clerk: DeskClient, folder: Path, people: int) -> int:
    """Import `people` people (files in `folder`), then their 3% rise; the changes proposed."""
    write_roll(folder / "roll.csv", people)
    _import(clerk, folder / "roll.csv")
    write_roll(folder / "rise.csv", people, rise_percent=3)
    return _import(clerk, folder / "rise.csv")
