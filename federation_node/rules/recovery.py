"""What a person owes after a fraud, and how much of a debt a recovery may settle: plain
functions over integer fen (docs/life_events.md, "Overpayment recovery")."""

from __future__ import annotations

# A single amount beyond ten million yuan is a typing error, not a pension; the bound keeps a
# fraud's amount times its fine well inside a 64-bit column.
MAX_AMOUNT_FEN = 1_000_000_000


def fraud_fine(obtained_fen: int, multiple: int) -> int:
    """The fine on a benefit obtained by fraud; the amount itself is repaid besides."""
    return obtained_fen * multiple


def recoverable(amount_fen: int, balance_fen: int) -> bool:
    """Whether a recovery of `amount_fen` fits the balance still due: it never leaves the
    person owed money back by the office's own hand."""
    return 0 < amount_fen <= balance_fen
