"""The normalised statement line (R2): every source, one shape.

Lines travel as Arrow tables (columnar, so a million-row bill is parsed and matched without a
Python object per row). Money is int64 minor units of ``currency``; signs are the merchant's
view: ``amount`` positive for money in (payments), negative for money out (refunds, payouts
to our bank account, withdrawals); ``fee`` positive for what the channel charged, negative for
a fee it gave back; ``net = amount - fee``. Times are UTC; ``business_date`` is the channel's
own day in its own time zone (what the channel calls the bill date).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc


class Kind(StrEnum):
    PAYMENT = "payment"  # money in from a payer
    REFUND = "refund"  # money back to a payer
    FEE = "fee"  # a charge not tied to one payment (monthly, service)
    PAYOUT = "payout"  # channel balance paid out to our bank account
    ADJUSTMENT = "adjustment"  # dispute, chargeback, correction by the channel
    TRANSFER = "transfer"  # a bank statement's credit or debit (payout received, withdrawal paid)
    OTHER = "other"


LINES = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),  # wechatpay, alipay, stripe, paypal, bank
        pa.field("account", pa.string(), nullable=False),  # channel merchant id / bank account
        pa.field("business_date", pa.date32(), nullable=False),
        pa.field("occurred_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # a Kind value
        # The channel's id of this line's transaction (WeChat transaction_id, Alipay trade_no,
        # Stripe charge / balance transaction, PayPal transaction id, bank entry reference).
        pa.field("channel_txn_id", pa.string(), nullable=True),
        # For a refund, the channel's refund id; channel_txn_id stays the payment's.
        pa.field("channel_refund_id", pa.string(), nullable=True),
        # Our reference as we sent it: the attempt id (out_trade_no) or, for a refund, the
        # refund id (out_refund_no); parent_ref is a refund's payment attempt id.
        pa.field("merchant_ref", pa.string(), nullable=True),
        pa.field("parent_ref", pa.string(), nullable=True),
        pa.field("status", pa.string(), nullable=True),  # the channel's word, as written
        pa.field("currency", pa.string(), nullable=False),
        pa.field("amount", pa.int64(), nullable=False),
        pa.field("fee", pa.int64(), nullable=False),
        pa.field("net", pa.int64(), nullable=False),
        # The payout (Stripe po_, PayPal / bank batch) this line was settled in, if the file says.
        pa.field("payout_id", pa.string(), nullable=True),
        pa.field("memo", pa.string(), nullable=True),  # free text: bank remittance info, remark
        pa.field("line_no", pa.int32(), nullable=False),  # 1-based line (or record) in the file
    ]
)


@dataclass(frozen=True, slots=True)
class Totals:
    """A file's own count and sums, as it declares them, checked against its lines."""

    count: int
    amount: int  # signed sum of ``amount`` in minor units
    fee: int
    currency: str


def column_sum(values: pa.ChunkedArray | pa.Array) -> int:
    """The exact integer sum of an int64 column (0 when empty)."""
    return int(pc.sum(values).as_py() or 0)


def lines_totals(lines: pa.Table, currency: str) -> Totals:
    """A one-currency file's totals as its lines add up (for files whose footers are checked
    row by row against their own columns)."""
    return Totals(
        count=lines.num_rows,
        amount=column_sum(lines["amount"]),
        fee=column_sum(lines["fee"]),
        currency=currency,
    )


@dataclass(frozen=True, slots=True)
class Statement:
    """One parsed file: its identity, its declared totals and its normalised lines."""

    source: str
    file: str  # the name it was imported under, for errors and the audit trail
    sha256: str  # hex digest of the raw bytes: a re-import of the same file changes nothing
    account: str
    business_date: date
    lines: pa.Table  # schema LINES
    totals: list[Totals] = field(default_factory=list)  # one per currency the file declares
