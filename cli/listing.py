"""Lists at the terminal, page by page: every desk list prints one page and says how many more
there are, `--all` streams every page, `--csv FILE` writes all of them.

A list is a function from (page size, page token) to one `Page` of rows, so the command knows
nothing of the RPC behind it beyond its cursor. The node counts a list on its first page where
that is cheap (`total_size`); where it does not, the command says there are more without a
number.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.table import Table

from adapters.spreadsheet import csv_text
from cli.arguments import page_size
from cli.output import console

DEFAULT_PAGE_SIZE = 50
# The page size `--all` and `--csv` ask for: the node's largest.
FULL_PAGE = 500


@dataclass(frozen=True)
class Page:
    rows: list[list[str]]
    next_page_token: str
    # How many the whole list holds, when the node counted it (first pages only).
    total_size: int | None = None


Fetch = Callable[[int, str], Page]


def message_rows(messages: Sequence[Message], columns: Sequence[str]) -> list[list[str]]:
    """One row per message, the fields named by `columns` as the proto's JSON form shows them
    (enum names, RFC 3339 times); a field a message lacks is empty."""
    rows = []
    for message in messages:
        data = MessageToDict(message, preserving_proto_field_name=True)
        rows.append([str(data.get(column, "")) for column in columns])
    return rows


def first_page_total(token: str, total_size: int) -> int | None:
    """A response's total_size as a count: the node sets it on the first page only."""
    return None if token else total_size


def add_listing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--page-size",
        type=page_size,
        default=DEFAULT_PAGE_SIZE,
        help=f"rows per page (default {DEFAULT_PAGE_SIZE})",
    )
    parser.add_argument("--page-token", default="", help="continue where a page ended")
    parser.add_argument("--all", action="store_true", help="print every page")
    parser.add_argument("--csv", metavar="FILE", help="write every page to this CSV file")


def pages(fetch: Fetch, size: int, token: str = "") -> Iterator[Page]:
    """Every page from `token` on."""
    while True:
        page = fetch(size, token)
        yield page
        token = page.next_page_token
        if not token:
            return


def show_listing(args: argparse.Namespace, title: str, columns: Sequence[str], fetch: Fetch) -> int:
    """Print the page `args` asks for (or all, or write the CSV); the command's exit code."""
    if args.csv:
        written = write_csv(Path(args.csv), columns, pages(fetch, FULL_PAGE, args.page_token))
        console.print(f"wrote {written:,} rows to {args.csv}")
        return 0
    if args.all:
        shown = 0
        for page in pages(fetch, FULL_PAGE, args.page_token):
            if page.rows or not shown:
                console.print(_table(title if not shown else None, columns, page.rows))
            shown += len(page.rows)
        console.print(f"{shown:,} rows")
        return 0
    page = fetch(args.page_size, args.page_token)
    console.print(_table(title, columns, page.rows))
    console.print(_position(page))
    return 0


def _position(page: Page) -> str:
    shown = len(page.rows)
    if not page.next_page_token:
        if page.total_size is not None:
            return f"{shown:,} of {page.total_size:,}; no more"
        return f"{shown:,} rows; no more"
    how_to = f"next page: --page-token {page.next_page_token}, or --all"
    if page.total_size is not None:
        return f"{shown:,} of {page.total_size:,}; {page.total_size - shown:,} more ({how_to})"
    return f"{shown:,} rows; more: use --all (or --page-token {page.next_page_token})"


def _table(title: str | None, columns: Sequence[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def write_csv(path: Path, columns: Sequence[str], source: Iterator[Page]) -> int:
    """Every row of every page as CSV (UTF-8 with a header row); how many rows were written.

    A cell a spreadsheet would read as a formula is written as text (adapters/spreadsheet.py)."""
    written = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for page in source:
            writer.writerows([csv_text(cell) for cell in row] for row in page.rows)
            written += len(page.rows)
    return written
