"""Errors the adapters raise, as members of the federation's error families.

Each message names the file, line, row or setting a clerk must fix, and never repeats a cell's
value: feed and form cells hold identity numbers and names.
"""

from __future__ import annotations

from federation.errors import AlreadyExistsError, CertfedError, InvalidInputError, UnavailableError


class MappingError(InvalidInputError):
    """A feed mapping file is missing a setting, has an unknown one, or a value out of range."""


class FeedFileError(InvalidInputError):
    """A feed file cannot be imported at all (empty, no header, a mapped column absent)."""


class RollFileError(InvalidInputError):
    """A roll file cannot be imported at all (empty, no header, a mapped column absent)."""


class FormFileError(InvalidInputError):
    """A partner form cannot be read at all (missing headers, wrong sheet, unknown format)."""


class SpreadsheetTooLargeError(InvalidInputError):
    """A workbook is larger, unpacks to more, or holds more rows than certfed reads."""


class BankFileConflictError(AlreadyExistsError):
    """A different payment file for the same month and bank is already on disk."""


class NotificationRefusedError(CertfedError):
    """The gateway refused a notification for a reason a retry cannot change (a 4xx)."""


class GatewayUnavailableError(UnavailableError):
    """The gateway kept failing (5xx, 429, no connection) after every allowed retry."""


class RetryableGatewayError(Exception):
    """A failure a later attempt may not repeat; `what` says which, for the last message."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
