"""What the two bank statement parsers share: exact minor units, one row shape, the balance check.

A bank statement line is money that moved on one account: ``amount`` is signed from the
account owner's view (credit positive), ``fee`` is 0 (a bank does not split a charge out of a
line; its charges are lines of their own), ``net = amount``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pyarrow as pa

from clearhouse.errors import UnknownCurrency
from clearhouse.money import MAX_MINOR
from clearhouse.money import currency as iso_currency
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import LINES, Kind, Totals

SOURCE = "bank"


@dataclass(frozen=True, slots=True)
class BankLine:
    line_no: int
    business_date: date
    occurred_at: datetime  # aware, UTC
    kind: Kind
    currency: str
    amount: int  # signed minor units, credit positive
    channel_txn_id: str | None
    merchant_ref: str | None
    status: str | None
    payout_id: str | None
    memo: str | None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_currency(code: str, file: str, line: int | None) -> str:
    try:
        iso_currency(code)
    except UnknownCurrency:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"unknown currency {code!r}", line
        ) from None
    return code


def to_minor(value: Decimal | str, code: str, file: str, line: int | None) -> int:
    """Exact minor units of a non-negative major-unit amount; extra decimals must be zeros.

    Banks write ``100.0`` or ``100.000`` for 100 CNY (the camt schema allows five decimals),
    so trailing zeros are accepted; a digit the currency cannot hold is a bad value.
    """
    exponent = iso_currency(check_currency(code, file, line)).exponent
    if isinstance(value, str):
        text = value.strip()
        amount = Decimal(text) if _plain_decimal(text) else Decimal("NaN")
    else:
        amount = value
    if not amount.is_finite() or amount < 0:
        raise StatementError(StatementCode.BAD_VALUE, file, f"bad amount {value!s}", line)
    minor = amount.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"amount {value!s} has more decimals than {code} allows",
            line,
        )
    if minor > MAX_MINOR:
        raise StatementError(StatementCode.BAD_VALUE, file, f"amount {value!s} too large", line)
    return int(minor)


def _plain_decimal(text: str) -> bool:
    # Decimal() also takes exponents, signs, spaces, "Infinity": a statement amount is digits.
    # The length bound keeps every accepted value inside Decimal's 28-digit default precision.
    whole, _, fraction = text.partition(".")
    return (
        len(text) <= 26
        and bool(whole)
        and whole.isascii()
        and whole.isdigit()
        and (fraction == "" or (fraction.isascii() and fraction.isdigit()))
    )


def day_start(day: date) -> datetime:
    """A booking date without a time: the instant is taken as the start of that day in UTC."""
    return datetime.combine(day, time(0), UTC)


def check_balances(
    file: str, currency: str, opening: int, closing: int, lines: list[BankLine], line: int | None
) -> Totals:
    moved = sum(row.amount for row in lines)
    if opening + moved != closing:
        raise StatementError(
            StatementCode.TOTALS_MISMATCH,
            file,
            f"opening {opening} + entries {moved} != closing {closing} ({currency} minor units)",
            line,
        )
    return Totals(count=len(lines), amount=closing - opening, fee=0, currency=currency)


def to_table(account: str, lines: list[BankLine]) -> pa.Table:
    n = len(lines)
    return pa.Table.from_pydict(
        {
            "source": [SOURCE] * n,
            "account": [account] * n,
            "business_date": [row.business_date for row in lines],
            "occurred_at": [row.occurred_at for row in lines],
            "kind": [row.kind.value for row in lines],
            "channel_txn_id": [row.channel_txn_id for row in lines],
            "channel_refund_id": [None] * n,
            "merchant_ref": [row.merchant_ref for row in lines],
            "parent_ref": [None] * n,
            "status": [row.status for row in lines],
            "currency": [row.currency for row in lines],
            "amount": [row.amount for row in lines],
            "fee": [0] * n,
            "net": [row.amount for row in lines],
            "payout_id": [row.payout_id for row in lines],
            "memo": [row.memo for row in lines],
            "line_no": [row.line_no for row in lines],
        },
        schema=LINES,
    )
