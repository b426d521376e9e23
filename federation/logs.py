"""structlog JSON logging for every certfed process: one JSON object per line on stderr.

Log events carry ids (request, attestation, node, operator), never an identity number or a name:
the code that logs passes ids only. Two defences stand behind that: tracebacks are logged
without their frames' local variables (a name or phone number held in a local would otherwise
reach the log), and `redact_identity_numbers`, the last processor before rendering, masks
anything shaped like a resident ID, HKID or Macau BIR number or a mainland mobile number in
every string of the event, however deeply nested (traceback dictionaries included).
"""

from __future__ import annotations

import faulthandler
import logging
import re
import signal
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Resident ID (GB 11643), HKID, Macau BIR, and mainland mobile numbers.
_IDENTITY_SHAPES = re.compile(
    r"(?<!\w)(\d{17}[\dXx]|[A-Za-z]{1,2}\d{6}\(?[\dAa]\)?|[157]\d{6}\(?\d\)?|1[3-9]\d{9})(?!\w)"
)
# Nesting deeper than this is not walked; such a value is replaced whole.
_MAX_DEPTH = 16


def _redacted(value: object, depth: int = 0) -> object:
    if isinstance(value, str):
        return _IDENTITY_SHAPES.sub("[redacted-id]", value)
    if depth >= _MAX_DEPTH and isinstance(value, dict | list | tuple):
        return "[redacted-deep-value]"
    if isinstance(value, dict):
        return {key: _redacted(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item, depth + 1) for item in value]
    return value


def redact_identity_numbers(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event.items():
        event[key] = _redacted(value)
    return event


# Tracebacks as dictionaries, without local variables: a frame's locals may hold an identity.
_tracebacks = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def dump_stacks_on_sigusr1() -> None:
    """For a server process: SIGUSR1 writes every thread's stack to stderr, for an operator to
    see where a process that stopped making progress waits (`kill -USR1 <pid>`). The dump names
    files, lines and functions only, never a value."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def configure_logging(process: str, level: str = "info") -> None:
    """Configure structlog, and the stdlib logging that libraries use, to write JSON lines."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _tracebacks,
        redact_identity_numbers,
    ]
    # Records from libraries (alembic, grpc) go through the same processors, so every line of a
    # process's log is one JSON object with the same redaction.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(sort_keys=True),
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer(sort_keys=True)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)
