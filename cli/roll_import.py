"""Importing one roll file through a node's desk, as `certfed roll import` and `certfed bench roll`
both do: the file's mapping and format, its rejected rows to a CSV, and a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from adapters.roll import (
    DeskRollRecorder,
    RollImporter,
    RollImportSummary,
    RollMapper,
    RollRejects,
    open_roll,
    roll_format,
)
from adapters.roll_mappings import load_roll_mapping
from cli.output import console, notice
from federation.desk_client import DeskClient


@contextmanager
def roll_progress(unit: str) -> Iterator[Callable[[int, int, int], None]]:
    """A rich progress bar over the file (bytes of a CSV, rows of an XLSX), with rows read."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% of the " + unit),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("importing the roll", total=None, rows=0)

        def advance(done: int, total: int, rows: int) -> None:
            bar.update(task, completed=done, total=total or None, rows=rows)

        yield advance


def import_roll_file(
    desk: DeskClient,
    path: Path,
    *,
    mapping_name: str,
    fmt: str | None,
    sheet: str | None,
    batch_size: int,
    rejects_path: Path,
    show_progress: bool = True,
) -> RollImportSummary:
    mapping = load_roll_mapping(mapping_name)
    detected = roll_format(path, fmt)
    source = open_roll(path, detected, mapping, sheet)
    recorder = DeskRollRecorder(desk, waiting=notice)
    with RollRejects(rejects_path) as rejects:
        if not show_progress:
            importer = RollImporter(
                recorder, RollMapper(mapping), reject=rejects, batch_size=batch_size
            )
            return importer.run(source, path.name)
        with roll_progress("file" if detected == "csv" else "sheet's rows") as advance:
            importer = RollImporter(
                recorder,
                RollMapper(mapping),
                reject=rejects,
                batch_size=batch_size,
                progress=advance,
            )
            return importer.run(source, path.name)
