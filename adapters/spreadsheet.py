"""Spreadsheet cells that stay text: no value from another office becomes a live formula.

A remark typed at another office ("=HYPERLINK(...)", "+cmd|...") must reach a clerk's Excel as the
text it is, never as a formula that runs when the file opens (CSV or formula injection). In CSV,
a text cell that a spreadsheet would read as a formula is written with a leading apostrophe, the
mark spreadsheet programs read as "this is text" (OWASP, "CSV Injection"); in XLSX the cell is
stored as a string, so it is never a formula whatever it starts with.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from openpyxl.cell.cell import Cell
from openpyxl.worksheet.worksheet import Worksheet

from adapters.errors import FormFileError, SpreadsheetTooLargeError

# An XLSX file is a zip archive: a small file can unpack to gigabytes (a zip bomb), so both its
# size and what it unpacks to are checked before openpyxl reads it.
MAX_XLSX_BYTES = 64 * 1024 * 1024
MAX_XLSX_UNPACKED_BYTES = 512 * 1024 * 1024
# More rows than any form or roll of one office holds; a sheet that claims more is refused.
MAX_SHEET_ROWS = 5_000_000

# What makes Excel, LibreOffice or Sheets read a typed cell as a formula or a command.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def looks_like_formula(text: str) -> bool:
    return text.startswith(FORMULA_PREFIXES)


def csv_text(text: str) -> str:
    """A text cell as it is safe to write to CSV."""
    return "'" + text if looks_like_formula(text) else text


def keep_as_text(worksheet: Worksheet, first_row: int = 1) -> None:
    """Store every text cell from `first_row` on as a string, never as a formula."""
    for row in worksheet.iter_rows(min_row=first_row):
        for cell in row:
            if (
                isinstance(cell, Cell)
                and isinstance(cell.value, str)
                and looks_like_formula(cell.value)
            ):
                cell.data_type = "s"


def check_xlsx_size(
    path: Path,
    *,
    max_bytes: int = MAX_XLSX_BYTES,
    max_unpacked_bytes: int = MAX_XLSX_UNPACKED_BYTES,
) -> None:
    """Refuse a workbook too large to read safely, before anything parses it.

    Raises SpreadsheetTooLargeError (the file is too big, or unpacks to too much) or
    FormFileError (not a zip archive at all).
    """
    try:
        size = path.stat().st_size
    except OSError as error:
        raise FormFileError(path.name, f"cannot be read ({error.strerror})") from None
    if size > max_bytes:
        raise SpreadsheetTooLargeError(
            path.name, f"is {size:,} bytes; at most {max_bytes:,} are read: split the file"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        raise FormFileError(path.name, "is not an .xlsx workbook") from None
    if unpacked > max_unpacked_bytes:
        raise SpreadsheetTooLargeError(
            path.name,
            f"unpacks to {unpacked:,} bytes; at most {max_unpacked_bytes:,} are read: "
            "split the file",
        )
