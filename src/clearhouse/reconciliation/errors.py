"""Errors of reconciliation runs and of the actions taken on their differences.

Codes are stable: the CLI and scripts match on them. Each is raised before anything is written.
"""

from __future__ import annotations

from enum import StrEnum

from clearhouse.errors import ClearhouseError


class ReconCode(StrEnum):
    DIFFERENCE_NOT_FOUND = "DIFFERENCE_NOT_FOUND"
    DIFFERENCE_RESOLVED = "DIFFERENCE_RESOLVED"  # an action on a difference already closed
    DIFFERENCE_REFUNDING = "DIFFERENCE_REFUNDING"  # its refund to the payer is under way
    ACTOR_REQUIRED = "ACTOR_REQUIRED"
    REASON_REQUIRED = "REASON_REQUIRED"
    INVALID_ACTION = "INVALID_RECON_ACTION"
    INVALID_EVIDENCE = "INVALID_EVIDENCE"
    INVALID_DATE = "INVALID_DATE"  # a business date that is not YYYY-MM-DD
    INVALID_ADJUSTMENT = "INVALID_ADJUSTMENT"  # zero, or more than the difference leaves open
    STATEMENT_MISSING = "STATEMENT_MISSING"  # no current statement for the channel's day
    BATCH_NOT_FOUND = "BATCH_NOT_FOUND"
    INVALID_CONFIG = "INVALID_RECON_CONFIG"
    LEDGER_REFUSED = "RECON_LEDGER_REFUSED"  # a suspense entry refused: a fault, not input


class ReconError(ClearhouseError):
    code = "RECON_ERROR"

    def __init__(self, code: ReconCode, message: str, **details: object) -> None:
        super().__init__(message, code=code.value, **details)
