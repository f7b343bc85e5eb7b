"""The root of Clearhouse's exception tree and its stable error codes.

Business outcomes (a rejected posting, a difference found) are values with codes; exceptions are
for faults and for bad input at the edges. Every exception carries a ``code`` that never changes
meaning once published: scripts and API clients match on it, not on the message.
"""

from __future__ import annotations

from typing import Any


class ClearhouseError(Exception):
    """Base of every error Clearhouse raises on purpose."""

    code: str = "CLEARHOUSE_ERROR"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class ConfigurationError(ClearhouseError):
    code = "CONFIGURATION_ERROR"


class MoneyError(ClearhouseError):
    """Bad money: unknown currency, cross-currency arithmetic, amount out of range."""

    code = "MONEY_ERROR"


class UnknownCurrency(MoneyError):
    code = "UNKNOWN_CURRENCY"


class CurrencyMismatch(MoneyError):
    code = "CURRENCY_MISMATCH"


class AmountOutOfRange(MoneyError):
    code = "AMOUNT_OUT_OF_RANGE"


class InvalidAmount(MoneyError):
    code = "INVALID_AMOUNT"
