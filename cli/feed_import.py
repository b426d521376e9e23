"""Importing one feed file through a node's desk, as `certfed feed import` and `certfed bench
feed` both do: the file's mapping and format, its rejected rows to a CSV, and a progress bar over
the file's bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from adapters.feed_mappings import load_mapping
from adapters.feeds import (
    DeskSignalRecorder,
    FeedImporter,
    FeedImportSummary,
    RejectsFile,
    SignalMapper,
    feed_format,
)
from cli.output import console, notice
from federation.desk_client import DeskClient


@contextmanager
def feed_progress(total_bytes: int) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar over the file's bytes, with the rows read so far."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("importing", total=total_bytes, rows=0)

        def advance(bytes_read: int, rows: int) -> None:
            bar.update(task, completed=bytes_read, rows=rows)

        yield advance


def import_feed_file(
    desk: DeskClient,
    path: Path,
    *,
    mapping_name: str,
    source: str | None,
    fmt: str | None,
    batch_size: int,
    rejects_path: Path,
    show_progress: bool = True,
) -> FeedImportSummary:
    mapping = load_mapping(mapping_name)
    detected = feed_format(path, fmt)
    mapper = SignalMapper(mapping, source or mapping.source, datetime.now(UTC))
    recorder = DeskSignalRecorder(desk, waiting=notice)
    with RejectsFile(rejects_path) as rejects:
        if not show_progress:
            importer = FeedImporter(recorder, mapper, reject=rejects, batch_size=batch_size)
            return importer.run(path, detected)
        with feed_progress(path.stat().st_size) as advance:
            importer = FeedImporter(
                recorder, mapper, reject=rejects, batch_size=batch_size, progress=advance
            )
            return importer.run(path, detected)
