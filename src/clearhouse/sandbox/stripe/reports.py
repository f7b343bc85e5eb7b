"""Stripe's itemized balance-transaction reports, as pure functions of their rows.

Two report types share one column vocabulary and this one writer:

- "Payout reconciliation" (``payout_reconciliation.itemized.5``): one row per balance transaction
  settled by an automatic payout arriving in the interval (the payout's own transaction is not a
  row: the rows are what it pays out, so their ``net`` adds up to its amount).
- "Balance change from activity" (``balance_change_from_activity.itemized.3``): one row per
  balance transaction *created* in the interval, payouts excepted (they are not activity); what
  a daily, transaction-level reconciliation reads. Its default columns carry no payout and no
  PaymentIntent; a run asks for those and for metadata through ``parameters[columns]``.

Amounts are in MAJOR units as exact decimal strings (``12.34``, ``-0.30``); instants appear
twice, in UTC (``*_utc``) and in the report's time zone (the unsuffixed column), as
``YYYY-MM-DD HH:MM:SS``. Reconciliation parses these files, so the sandbox and its tests share
this one writer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from clearhouse.money import Money

REPORT_TYPE = "payout_reconciliation.itemized.5"
BALANCE_CHANGE_TYPE = "balance_change_from_activity.itemized.3"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_COLUMNS = (
    "automatic_payout_id",
    "automatic_payout_effective_at_utc",
    "automatic_payout_effective_at",
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "payment_intent_id",
    "charge_id",
)
# Stripe's default set for the balance change report: no payout, charge or PaymentIntent ids.
BALANCE_CHANGE_COLUMNS = (
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
)


@dataclass(frozen=True, slots=True)
class ReportRow:
    automatic_payout_id: str  # "" while no automatic payout has settled it
    automatic_payout_effective_at: datetime | None
    balance_transaction_id: str
    created: datetime
    available_on: datetime
    currency: str  # lowercase, as Stripe writes it
    gross: int  # minor units, signed
    fee: int
    net: int
    reporting_category: str
    source_id: str
    description: str = ""
    customer_facing_amount: int | None = None
    customer_facing_currency: str = ""
    payment_intent_id: str = ""
    charge_id: str = ""
    payment_metadata: Mapping[str, str] = field(default_factory=dict)
    refund_metadata: Mapping[str, str] = field(default_factory=dict)


def major(amount: int, currency: str) -> str:
    """Minor units as an exact major-unit string in the currency's decimals: 1234 usd is 12.34."""
    return str(Money(amount, currency.upper()).to_decimal())


def metadata_columns(rows: Iterable[ReportRow]) -> list[str]:
    """``payment_metadata[key]`` and ``refund_metadata[key]`` for every key the rows carry."""
    payment = sorted({k for r in rows for k in r.payment_metadata})
    refund = sorted({k for r in rows for k in r.refund_metadata})
    return [f"payment_metadata[{k}]" for k in payment] + [f"refund_metadata[{k}]" for k in refund]


def payout_reconciliation(
    rows: Sequence[ReportRow], timezone: str = "Etc/UTC", columns: Sequence[str] | None = None
) -> bytes:
    """The report as CSV (UTF-8, header row first). ``columns`` picks and orders columns as
    Stripe's ``parameters[columns]`` does; by default the standard set plus all metadata."""
    return _csv(rows, timezone, list(columns or [*DEFAULT_COLUMNS, *metadata_columns(rows)]))


def balance_change(
    rows: Sequence[ReportRow], timezone: str = "Etc/UTC", columns: Sequence[str] | None = None
) -> bytes:
    """The balance change report as CSV. ``columns`` as for ``payout_reconciliation``; by
    default Stripe's default set, which has no metadata: a run names the keys it wants."""
    return _csv(rows, timezone, list(columns or BALANCE_CHANGE_COLUMNS))


def _csv(rows: Sequence[ReportRow], timezone: str, chosen: list[str]) -> bytes:
    zone = ZoneInfo(timezone)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(chosen)
    for row in rows:
        values = _values(row, zone)
        writer.writerow([values.get(name, "") for name in chosen])
    return out.getvalue().encode()


def _values(row: ReportRow, zone: ZoneInfo) -> dict[str, str]:
    cur, paid_out = row.currency, row.automatic_payout_effective_at
    values = {
        "automatic_payout_id": row.automatic_payout_id,
        "automatic_payout_effective_at_utc": "" if paid_out is None else _utc(paid_out),
        "automatic_payout_effective_at": "" if paid_out is None else _local(paid_out, zone),
        "balance_transaction_id": row.balance_transaction_id,
        "created_utc": _utc(row.created),
        "created": _local(row.created, zone),
        "available_on_utc": _utc(row.available_on),
        "available_on": _local(row.available_on, zone),
        "currency": cur,
        "gross": major(row.gross, cur),
        "fee": major(row.fee, cur),
        "net": major(row.net, cur),
        "reporting_category": row.reporting_category,
        "source_id": row.source_id,
        "description": row.description,
        "customer_facing_amount": (
            "" if row.customer_facing_amount is None else major(row.customer_facing_amount, cur)
        ),
        "customer_facing_currency": row.customer_facing_currency,
        "payment_intent_id": row.payment_intent_id,
        "charge_id": row.charge_id,
    }
    values.update({f"payment_metadata[{k}]": v for k, v in row.payment_metadata.items()})
    values.update({f"refund_metadata[{k}]": v for k, v in row.refund_metadata.items()})
    return values


def _utc(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime(TIME_FORMAT)


def _local(instant: datetime, zone: ZoneInfo) -> str:
    return instant.astimezone(zone).strftime(TIME_FORMAT)
