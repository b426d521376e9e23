"""What the commands print on the terminal: the shared console, and protobuf messages shown as
a table (several) or as JSON (one), with the field names the proto gives them."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

console = Console()


def notice(line: str) -> None:
    """A line for the operator while a command works (a batch sent again), on standard error:
    standard output stays what the command prints (a summary, or JSON), and a progress bar on the
    terminal shows the line above itself."""
    print(line, file=sys.stderr, flush=True)


def print_messages(messages: Sequence[Message], columns: Sequence[str]) -> None:
    """One table row per message; a field a message lacks shows empty."""
    table = Table()
    for column in columns:
        table.add_column(column)
    for message in messages:
        data = MessageToDict(message, preserving_proto_field_name=True)
        table.add_row(*(str(data.get(column, "")) for column in columns))
    console.print(table)


def print_one(message: Message) -> None:
    console.print_json(json.dumps(MessageToDict(message, preserving_proto_field_name=True)))
