"""Lists paged on the server, and their CSV and XLSX downloads.

The node pages with opaque keyset tokens; the desk's links say `?page=N`. The token of each page
seen is remembered per session and list, so the next page costs one call; a page reached
directly walks the pages before it once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from openpyxl import Workbook
from starlette.responses import Response

from adapters.spreadsheet import csv_text, keep_as_text
from adapters.web_desk.page import Page
from adapters.web_desk.security import SESSION_COOKIE, session_key

T = TypeVar("T")
# One page of the node's answer: its rows and the token of the next page ("" at the end).
Fetch = Callable[[int, str], tuple[Sequence[T], str]]
# The largest download, in rows: a list longer than this is cut, and the file says so.
MAX_DOWNLOAD_ROWS = 100_000
# A record the node has no call for on its own (a held attestation, an employer batch) is found
# in its list, a page of the largest size at a time, and at most this many pages.
SCAN_PAGE_SIZE = 500
MAX_SCAN_PAGES = 40


@dataclass(frozen=True)
class Paged(Generic[T]):
    rows: Sequence[T]
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def paged(page: Page, list_key: str, fetch: Fetch[T]) -> Paged[T]:
    """Page `page.page_number()` of a list."""
    wanted = page.page_number()
    memory = page.state.page_tokens
    key = (session_key(page.request.cookies.get(SESSION_COOKIE, "")), list_key)
    tokens = list(memory.get(key) or [""])
    while len(tokens) < wanted:
        _rows, token = fetch(page.settings.page_size, tokens[-1])
        if not token:
            wanted = len(tokens)
            break
        tokens.append(token)
    rows, next_token = fetch(page.settings.page_size, tokens[wanted - 1])
    if next_token and len(tokens) == wanted:
        tokens.append(next_token)
    memory.put(key, tokens)
    return Paged(rows, wanted, bool(next_token))


def find_in(fetch: Fetch[T], matches: Callable[[T], bool]) -> T | None:
    """The first row of a list that `matches`; None when the list (or the part of it that
    `MAX_SCAN_PAGES` allows) has none."""
    token = ""
    for _ in range(MAX_SCAN_PAGES):
        rows, token = fetch(SCAN_PAGE_SIZE, token)
        for row in rows:
            if matches(row):
                return row
        if not token:
            return None
    return None


def every_row(fetch: Fetch[T], page_size: int = 500) -> Iterator[T]:
    token = ""
    count = 0
    while True:
        rows, token = fetch(page_size, token)
        for row in rows:
            yield row
            count += 1
            if count >= MAX_DOWNLOAD_ROWS:
                return
        if not token:
            return


Cell = str | int | float


def csv_download(name: str, header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> Response:
    """UTF-8 CSV with a BOM (spreadsheet programs then show the Chinese), every text cell
    formula-safe."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([csv_text(cell) for cell in header])
    for row in rows:
        writer.writerow([csv_text(cell) if isinstance(cell, str) else cell for cell in row])
    return _download(
        ("\ufeff" + buffer.getvalue()).encode("utf-8"), f"{name}.csv", "text/csv; charset=utf-8"
    )


def xlsx_download(name: str, header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> Response:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = name[:31]
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    keep_as_text(sheet)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return _download(
        buffer.getvalue(),
        f"{name}.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


def _download(content: bytes, filename: str, media_type: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
