"""Our side of a reconciliation (R3): what our payment flow records hold for one channel and one
business day, exported from the database as Arrow batches in the shape matching reads.

One row per thing the channel should show: a payment attempt (our order at the channel) or a
refund (the channel part of it). Money is int64 minor units, signed in the merchant's view as
statement lines are (``statements.model``): payments positive, refunds negative; the expected fee
is signed the same way (charged positive, given back negative).

Business day per channel (the day the channel's own file is cut on):

- WeChat Pay, Alipay and bank-card quick pay: the Beijing day (Asia/Shanghai, UTC+8, no DST).
  Their bills cover 00:00-24:00 Beijing time.
- Stripe and PayPal: the account's reporting time zone, a setting of the merchant account (the
  zone Stripe's reports and PayPal's settlement report windows use). Our sandboxes default to
  America/Los_Angeles, so that is the default here; a deployment whose accounts report in
  another zone passes ``zone``. Days with a DST change are 23 or 25 hours long.

Which records belong to a window ``[start, end)``: a confirmed record (attempt succeeded, refund
succeeded) when it was confirmed inside the window; an unconfirmed one when it was alive in it
(created before the end, last changed after the start), so a line the channel has for it can
be told apart from a line we have never seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.engine import Connection

from clearhouse.clock import to_micros
from clearhouse.db.schema import payment_attempts, payment_intents, refunds

OURS = pa.schema(
    [
        pa.field("channel", pa.string(), nullable=False),  # = LINES.source
        pa.field("kind", pa.string(), nullable=False),  # payment | refund
        # What we sent the channel as our reference: the attempt id (out_trade_no) of a
        # payment, the refund id (out_refund_no) of a refund; = LINES.merchant_ref.
        pa.field("merchant_ref", pa.string(), nullable=False),
        pa.field("attempt_id", pa.string(), nullable=False),  # a refund's: the payment's
        pa.field("refund_id", pa.string(), nullable=True),
        pa.field("intent_id", pa.string(), nullable=False),
        pa.field("merchant_order_id", pa.string(), nullable=False),
        pa.field("channel_txn_id", pa.string(), nullable=True),  # the payment's, on refunds too
        pa.field("channel_refund_id", pa.string(), nullable=True),
        # created, pending, unknown, succeeded, refunded (in full), failed, closed;
        # refunds: pending, unknown, succeeded, failed, payout_required.
        pa.field("status", pa.string(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("amount", pa.int64(), nullable=False),  # what the channel moves, signed
        pa.field("expected_fee", pa.int64(), nullable=True),  # as our books have it, signed
        # A refund's payment at the channel and what was refunded of it before this refund:
        # what the schedule's fee share is computed from.
        pa.field("parent_amount", pa.int64(), nullable=True),
        pa.field("refunded_before", pa.int64(), nullable=True),
        # The attempt that paid our order (this one or another): a channel payment for an
        # attempt of an order another attempt already paid is a duplicate.
        pa.field("paid_by_attempt_id", pa.string(), nullable=True),
        # Major units of the line's currency per major unit of ours, when we converted.
        pa.field("fx_rate", pa.decimal128(38, 12), nullable=True),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("confirmed_at", pa.timestamp("us", tz="UTC"), nullable=True),
        # The channel's day of confirmed_at (of created_at while unconfirmed).
        pa.field("business_date", pa.date32(), nullable=False),
    ]
)

BEIJING = "Asia/Shanghai"
REPORTING_DEFAULT = "America/Los_Angeles"
BUSINESS_ZONES = {
    "wechatpay": BEIJING,
    "alipay": BEIJING,
    "quickpay": BEIJING,
    "quickpay_b": BEIJING,
    "stripe": REPORTING_DEFAULT,
    "paypal": REPORTING_DEFAULT,
}
BATCH_ROWS = 10_000

_SUCCEEDED = "SUCCEEDED"
_FAILED = "FAILED"


def business_zone(channel: str, zone: str | None = None) -> str:
    if zone is not None:
        return zone
    try:
        return BUSINESS_ZONES[channel]
    except KeyError:
        raise ValueError(f"no business time zone known for channel {channel!r}") from None


def day_window(channel: str, day: date, zone: str | None = None) -> tuple[datetime, datetime]:
    """The UTC instants ``[start, end)`` of the channel's business ``day``."""
    tz = ZoneInfo(business_zone(channel, zone))
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def export_ours(
    conn: Connection,
    channel: str,
    start: datetime,
    end: datetime,
    *,
    zone: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> pa.Table:
    batches = list(iter_ours(conn, channel, start, end, zone=zone, batch_rows=batch_rows))
    return pa.Table.from_batches(batches, schema=OURS)


def iter_ours(
    conn: Connection,
    channel: str,
    start: datetime,
    end: datetime,
    *,
    zone: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Our records of ``channel`` for the window, streamed from the database in batches of at
    most ``batch_rows`` (server-side cursor on PostgreSQL): payments, then refunds, each in
    reference order so two exports of the same data are the same table."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the window's instants need a time zone")
    tz = business_zone(channel, zone)
    window = (to_micros(start), to_micros(end))
    queries = (
        _payments(channel, window, grouped=False),
        _payments(channel, window, grouped=True),
        _refunds(channel, window),
    )
    streaming = conn.execution_options(stream_results=True, yield_per=batch_rows)
    for query in queries:
        for rows in streaming.execute(query).partitions():
            yield _batch(rows, channel, tz)


def _micros(column: Any) -> ColumnElement[int]:
    # Instants travel as their stored integer microseconds: Arrow takes them without a
    # datetime object per row.
    return type_coerce(column, BigInteger)


def _in(value: ColumnElement[int], window: tuple[int, int]) -> ColumnElement[bool]:
    return and_(value >= window[0], value < window[1])


def _alive(created: Any, updated: Any, window: tuple[int, int]) -> ColumnElement[bool]:
    return and_(_micros(created) < window[1], _micros(updated) >= window[0])


def _payments(channel: str, window: tuple[int, int], *, grouped: bool) -> Select[Any]:
    """Attempts of ``channel``. A combined payment's one attempt pays several orders (P11):
    its fee is theirs added up, and it counts as refunded when all of them are."""
    a, i = payment_attempts, payment_intents
    paid = payment_intents.alias("paid")
    link = paid.c.group_id == a.c.group_id if grouped else paid.c.id == a.c.intent_id
    own = paid.c.succeeded_attempt_id == a.c.id
    inner = (
        select(
            a.c.id,
            a.c.intent_id,
            a.c.channel_txn_id,
            a.c.status,
            a.c.fx_rate,
            func.coalesce(a.c.amount, i.c.amount).label("amount"),
            _micros(a.c.created_at).label("created_at"),
            _micros(a.c.updated_at).label("updated_at"),
            i.c.merchant_order_id,
            i.c.currency,
            i.c.succeeded_attempt_id,
            func.sum(case((own, paid.c.fee))).label("fee"),
            func.sum(paid.c.refunded).label("refunded"),
            func.sum(paid.c.amount).label("ordered"),
            func.min(case((own, _micros(paid.c.paid_at)))).label("paid_at"),
        )
        .select_from(a.join(i, i.c.id == a.c.intent_id).join(paid, link))
        .where(
            a.c.channel == channel,
            a.c.group_id.is_not(None) if grouped else a.c.group_id.is_(None),
            _micros(a.c.created_at) < window[1],
        )
        .group_by(
            a.c.id,
            a.c.intent_id,
            a.c.channel_txn_id,
            a.c.status,
            a.c.fx_rate,
            a.c.amount,
            i.c.amount,
            a.c.created_at,
            a.c.updated_at,
            i.c.merchant_order_id,
            i.c.currency,
            i.c.succeeded_attempt_id,
        )
        .subquery()
    )
    succeeded = inner.c.status == _SUCCEEDED
    # A mixed payment undone at once has no paid_at: we confirmed it when the attempt moved.
    confirmed_at = case((succeeded, func.coalesce(inner.c.paid_at, inner.c.updated_at)))
    status = case(
        (and_(succeeded, inner.c.refunded >= inner.c.ordered), literal("refunded")),
        else_=func.lower(inner.c.status),
    )
    return (
        select(
            literal("payment").label("kind"),
            inner.c.id.label("merchant_ref"),
            inner.c.id.label("attempt_id"),
            null().label("refund_id"),
            inner.c.intent_id,
            inner.c.merchant_order_id,
            inner.c.channel_txn_id,
            null().label("channel_refund_id"),
            status.label("status"),
            inner.c.currency,
            inner.c.amount,
            case((succeeded, inner.c.fee)).label("expected_fee"),
            null().label("parent_amount"),
            null().label("refunded_before"),
            inner.c.succeeded_attempt_id.label("paid_by_attempt_id"),
            inner.c.fx_rate,
            inner.c.created_at,
            confirmed_at.label("confirmed_at"),
        )
        .where(
            or_(
                and_(succeeded, _in(confirmed_at, window)),
                and_(~succeeded, inner.c.updated_at >= window[0]),
            )
        )
        .order_by(inner.c.id)
    )


def _refunds(channel: str, window: tuple[int, int]) -> Select[Any]:
    """Refunds of ``channel`` with their channel part (a mixed payment's refund goes to the
    payer's balance first, P12) and what was refunded of the same payment before each."""
    r, a, i = refunds, payment_attempts, payment_intents
    at_channel = r.c.amount - r.c.balance_part
    succeeded = r.c.status == _SUCCEEDED
    in_window = or_(
        and_(succeeded, _in(_micros(r.c.updated_at), window)),
        and_(~succeeded, _alive(r.c.created_at, r.c.updated_at, window)),
    )
    touched = (
        select(r.c.attempt_id)
        .join(a, a.c.id == r.c.attempt_id)
        .where(a.c.channel == channel, in_window)
    )
    # Every refund of the touched payments, earlier days' too: the running sum before each is
    # what its fee share was prorated on. A failed refund returned nothing.
    earlier = func.sum(case((r.c.status != _FAILED, at_channel), else_=0)).over(
        partition_by=r.c.attempt_id, order_by=(r.c.created_at, r.c.id), rows=(None, -1)
    )
    history = (
        select(
            r.c.id,
            r.c.attempt_id,
            r.c.intent_id,
            r.c.status,
            r.c.currency,
            at_channel.label("at_channel"),
            r.c.fee_returned,
            r.c.channel_refund_id,
            _micros(r.c.created_at).label("created_at"),
            _micros(r.c.updated_at).label("updated_at"),
            func.coalesce(earlier, 0).label("refunded_before"),
            in_window.label("in_window"),
        )
        .where(r.c.attempt_id.in_(touched))
        .subquery()
    )
    h = history
    return (
        select(
            literal("refund").label("kind"),
            h.c.id.label("merchant_ref"),
            h.c.attempt_id,
            h.c.id.label("refund_id"),
            h.c.intent_id,
            i.c.merchant_order_id,
            a.c.channel_txn_id,
            h.c.channel_refund_id,
            func.lower(h.c.status).label("status"),
            h.c.currency,
            (-h.c.at_channel).label("amount"),
            (-h.c.fee_returned).label("expected_fee"),
            func.coalesce(a.c.amount, i.c.amount).label("parent_amount"),
            h.c.refunded_before,
            null().label("paid_by_attempt_id"),
            # A refund of a converted payment is converted too: at the rate we recorded for
            # the payment (the only one we have).
            a.c.fx_rate,
            h.c.created_at,
            case((h.c.status == _SUCCEEDED, h.c.updated_at)).label("confirmed_at"),
        )
        .select_from(h.join(a, a.c.id == h.c.attempt_id).join(i, i.c.id == a.c.intent_id))
        .where(h.c.in_window, h.c.at_channel > 0)
        .order_by(h.c.id)
    )


def _timestamps(values: Sequence[int | None]) -> pa.Array:
    return pa.array(values, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _batch(rows: Sequence[Any], channel: str, zone: str) -> pa.RecordBatch:
    assert rows, "a partition is never empty"
    cols = list(zip(*rows, strict=True))
    (kind, ref, attempt, refund, intent, order, txn, refund_txn, status, currency) = cols[:10]
    (amount, fee, parent, before, paid_by, fx_rate, created, confirmed) = cols[10:]
    created_at = _timestamps(created)
    confirmed_at = _timestamps(confirmed)
    day_of = pc.coalesce(confirmed_at, created_at).cast(pa.timestamp("us", tz=zone))
    business_date = pc.local_timestamp(day_of).cast(pa.date32())
    arrays = [
        pa.array([channel] * len(rows), pa.string()),
        pa.array(kind, pa.string()),
        pa.array(ref, pa.string()),
        pa.array(attempt, pa.string()),
        pa.array(refund, pa.string()),
        pa.array(intent, pa.string()),
        pa.array(order, pa.string()),
        pa.array(txn, pa.string()),
        pa.array(refund_txn, pa.string()),
        pa.array(status, pa.string()),
        pa.array(currency, pa.string()),
        # PostgreSQL sums BIGINT into NUMERIC: Decimal values, whole, made int again.
        pa.array([int(v) for v in amount], pa.int64()),
        pa.array([None if v is None else int(v) for v in fee], pa.int64()),
        pa.array([None if v is None else int(v) for v in parent], pa.int64()),
        pa.array([None if v is None else int(v) for v in before], pa.int64()),
        pa.array(paid_by, pa.string()),
        pa.array(fx_rate, pa.decimal128(38, 12)),  # Decimal values (or None) from Rate
        created_at,
        confirmed_at,
        business_date,
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=OURS)
