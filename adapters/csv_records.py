"""CSV files from offices' systems, read as records with exact line numbers.

Feeds and rolls both arrive as RFC 4180 CSV with a header line; both must say which line a bad
record starts on without repeating its content, and reject one badly encoded or malformed
record on its own instead of stopping the file. `DecodedLines` decodes a binary stream line by
line (counting lines and bytes, remembering the lines that did not decode); `csv_records` turns
those lines into records keyed by the header's column names.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from federation.errors import InvalidInputError


class DecodedLines:
    """Decoded lines of a binary stream, numbered from 1, counting the bytes consumed."""

    def __init__(self, stream: IO[bytes], encoding: str) -> None:
        self._stream = stream
        # utf-8-sig drops a byte order mark, which spreadsheet programs put before line 1.
        self._decode = codecs.getdecoder(encoding)
        self.bytes_read = 0
        self.count = 0
        self.undecodable: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        for raw in self._stream:
            self.bytes_read += len(raw)
            self.count += 1
            try:
                text, _ = self._decode(raw)
            except UnicodeDecodeError:
                self.undecodable.add(self.count)
                text, _ = self._decode(raw, "replace")
            yield text


@dataclass(frozen=True)
class CsvRecord:
    """One record: the line it starts on, its cells by column name, or why it is unreadable."""

    line: int
    values: dict[str, str] = field(default_factory=dict)
    problem: str = ""


def csv_records(
    lines: DecodedLines,
    file_name: str,
    kind: str,
    file_error: Callable[[str, str], InvalidInputError],
    check_header: Callable[[list[str]], None],
) -> Iterator[CsvRecord]:
    """The records after the header line; blank lines are skipped.

    `kind` ("feed", "roll") is how messages speak of the file; `file_error(file_name, problem)`
    builds the error for a file that cannot be read at all; `check_header` refuses a header
    the caller cannot use (raising), after duplicate column names have been refused here.
    """
    reader = csv.reader(iter(lines), strict=True)
    header = _header(reader, lines, file_name, kind, file_error)
    check_header(header)
    previous_end = reader.line_num
    while True:
        start = previous_end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            previous_end = reader.line_num
            yield CsvRecord(start, problem=f"is not well-formed CSV ({error})")
            continue
        previous_end = reader.line_num
        if not cells or cells == [""]:
            continue
        # The set is empty for nearly every file: asked first, it spares each row the walk.
        if lines.undecodable and any(
            line in lines.undecodable for line in range(start, previous_end + 1)
        ):
            yield CsvRecord(start, problem=f"is not valid text in the {kind}'s encoding")
        elif len(cells) > len(header):
            yield CsvRecord(
                start,
                problem=f"has {len(cells)} fields but the header has {len(header)}; "
                "check for an unquoted separator",
            )
        else:
            yield CsvRecord(start, dict(zip(header, cells, strict=False)))


def _header(
    reader: Iterator[list[str]],
    lines: DecodedLines,
    file_name: str,
    kind: str,
    file_error: Callable[[str, str], InvalidInputError],
) -> list[str]:
    try:
        header = [cell.strip() for cell in next(reader)]
        while header in ([], [""]):
            header = [cell.strip() for cell in next(reader)]
    except StopIteration:
        raise file_error(file_name, f"is empty: a CSV {kind} starts with a header line") from None
    except csv.Error as error:
        raise file_error(file_name, f"line 1 (the header) is not CSV ({error})") from None
    if lines.undecodable:
        raise file_error(file_name, "line 1 (the header) is not valid text in its encoding")
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise file_error(file_name, f"the header names column {duplicates[0]!r} twice")
    return header
