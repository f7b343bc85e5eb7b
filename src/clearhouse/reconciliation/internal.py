"""Internal reconciliation (R7): our own records against each other, for one business day.

Three comparisons, each reported as values (a break is never repaired here):

- payment flow records vs ledger entries. Every record that moves money asks the ledger for an
  entry under a key of its own (``pay:<attempt>:paid``, ``refund:<id>:capture``, ...; see
  ``FAMILIES``). Each record states which of its keys its state calls for and for how much;
  the ledger's requests under those key patterns say what was booked. A key called for but
  not booked, booked but not called for, booked for another amount or currency, or booked
  with no record at all is a break.
- payments vs orders (state and amount): a paid order has its succeeded attempt, an attempt
  (with the order's other parts) carries the order's amount, refunds add up to what the
  order says was refunded.
- the books themselves: ``ledger.eod.check`` (journal = balances = history = general ledger,
  trial balance debits = credits) and the trial balance's totals, wrapped as they are.

The day is the ledger's business day in its zone. A record or ledger request belongs to it when
it was touched in it (a record alive in the window, a request made in it); both sides of every
key in that scope are then compared in full, so a record confirmed at 23:59:59 whose entry was
written a moment later is still one match, not two breaks.

All of it is set-based SQL (SQLAlchemy Core) on SQLite and PostgreSQL; Python only shapes the
rows that differ and the per-group totals.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.engine import Connection

from clearhouse.clock import to_micros
from clearhouse.db.schema import (
    ledger_requests,
    payment_attempts,
    payment_intents,
    payment_legs,
    postings,
    refunds,
    wallet_transfers,
    withdrawals,
)
from clearhouse.ledger import eod
from clearhouse.ledger.model import Side

__all__ = [
    "FAMILIES",
    "BreakCode",
    "FlowTotal",
    "InternalBreak",
    "InternalReport",
    "reconcile_day",
]


class BreakCode(StrEnum):
    """Stable codes of internal breaks (a ledger break keeps its own ``eod`` check name)."""

    RECORD_WITHOUT_ENTRY = "record_without_entry"  # the record's state calls for an entry
    ENTRY_WITHOUT_RECORD = "entry_without_record"  # an entry under a record key, no record
    ENTRY_AGAINST_STATE = "entry_against_state"  # the record exists; its state calls for none
    AMOUNT_MISMATCH = "amount_mismatch"  # record and entry disagree on the amount
    CURRENCY_MISMATCH = "currency_mismatch"
    ORDER_STATE_MISMATCH = "order_state_mismatch"  # order paid without its paid attempt, or back
    ORDER_AMOUNT_MISMATCH = "order_amount_mismatch"  # the attempt does not carry the order's sum
    ORDER_REFUNDED_MISMATCH = "order_refunded_mismatch"  # refunds do not add up to the order's


# Key pattern of each family of ledger requests a record makes, most specific first (a key is
# the first family it matches). The records' side names the same families.
FAMILIES: tuple[tuple[str, str], ...] = (
    ("payment_paid", "pay:%:paid"),  # an attempt's (one order) or an order's (combined payment)
    ("payment_fee", "pay:%:fee"),
    ("topup_paid", "topup:%:paid"),
    ("topup_fee", "topup:%:fee"),
    ("refund_balance_capture", "refund:%:balance:capture"),
    ("refund_balance_void", "refund:%:balance:void"),
    ("refund_balance_hold", "refund:%:balance"),
    ("refund_hold", "refund:%:hold"),
    ("refund_capture", "refund:%:capture"),
    ("refund_void", "refund:%:void"),
    ("refund_fee_returned", "refund:%:fee-returned"),
    ("withdrawal_hold", "wdr:%:hold"),
    ("withdrawal_paid", "wdr:%:paid"),
    ("withdrawal_void", "wdr:%:void"),
    ("transfer", "trf:%"),
)

_SUCCEEDED = "SUCCEEDED"
_FAILED = "FAILED"
_PAID_ORDER = ("SUCCEEDED", "COMPLETED")
_OPEN_ORDER = ("PROCESSING", "CLOSED")


@dataclass(frozen=True, slots=True)
class InternalBreak:
    code: BreakCode
    family: str  # a FAMILIES name, or "order"
    subject: str  # the ledger request key, or the order id
    record_id: str | None
    channel: str | None
    currency: str | None
    expected: int | str | None
    actual: int | str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "family": self.family,
            "subject": self.subject,
            "record_id": self.record_id,
            "channel": self.channel,
            "currency": self.currency,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass(frozen=True, slots=True)
class FlowTotal:
    """One family, channel and currency of the day: what the records call for, what the
    ledger booked (counts and minor units)."""

    family: str
    channel: str | None
    currency: str
    records: int
    records_amount: int
    entries: int
    entries_amount: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "channel": self.channel,
            "currency": self.currency,
            "records": self.records,
            "records_amount": self.records_amount,
            "entries": self.entries,
            "entries_amount": self.entries_amount,
        }


@dataclass(frozen=True, slots=True)
class InternalReport:
    business_date: date
    zone: str
    start: datetime
    end: datetime
    breaks: tuple[InternalBreak, ...]  # records vs ledger, payments vs orders
    totals: tuple[FlowTotal, ...]
    ledger_breaks: tuple[eod.Break, ...]  # the books' own check, as eod.check reports it
    trial_balance: dict[str, tuple[int, int]]  # currency -> (debits, credits)

    @property
    def ok(self) -> bool:
        return not self.breaks and not self.ledger_breaks

    def counts(self) -> dict[str, int]:
        """Breaks per code; the ledger's under ``ledger.<check>``."""
        found = Counter(b.code.value for b in self.breaks)
        found.update(f"ledger.{b.check}" for b in self.ledger_breaks)
        return dict(sorted(found.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "business_date": self.business_date.isoformat(),
            "zone": self.zone,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "ok": self.ok,
            "counts": self.counts(),
            "breaks": [b.to_dict() for b in self.breaks],
            "totals": [t.to_dict() for t in self.totals],
            "ledger_breaks": [_jsonable(b.to_dict()) for b in self.ledger_breaks],
            "trial_balance": {
                cur: {"debit": d, "credit": c} for cur, (d, c) in self.trial_balance.items()
            },
        }


def reconcile_day(conn: Connection, day: date, zone: ZoneInfo | str = "UTC") -> InternalReport:
    """Internal reconciliation of the ledger's business ``day`` in ``zone`` (pass the ledger's
    own zone, ``Ledger.zone``)."""
    tz = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
    start, end = eod.day_bounds(day, tz)
    window = (to_micros(start), to_micros(end))
    # Named once (WITH), read by every query below.
    expected = _expected().cte("expected")
    booked = _booked().cte("booked")
    scope = _scope(expected, booked, window).cte("scope")
    breaks = _flow_breaks(conn, expected, booked, scope) + _order_breaks(conn, window)
    ledger_breaks = eod.check(conn)
    return InternalReport(
        business_date=day,
        zone=tz.key,
        start=start,
        end=end,
        breaks=tuple(breaks),
        totals=tuple(_totals(conn, expected, booked, scope)),
        ledger_breaks=tuple(ledger_breaks),
        trial_balance=eod.trial_balance_totals(eod.trial_balance(conn)),
    )


# --- the records' side ----------------------------------------------------------------------


def _code(code: BreakCode) -> ColumnElement[str]:
    return literal(code.value, String)


def _micros(column: Any) -> ColumnElement[int]:
    # Instants are stored as integer microseconds; compared as such on both databases.
    return type_coerce(column, BigInteger)


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


def _row(
    family: str,
    key: ColumnElement[str],
    record_id: Any,
    channel: Any,
    currency: Any,
    amount: Any,
    required: ColumnElement[bool],
    touched: tuple[Any, Any],
) -> list[ColumnElement[Any]]:
    """The columns every family's select yields, in one order (they are unioned)."""
    return [
        literal(family).label("family"),
        key.label("key"),
        record_id.label("record_id"),
        channel.label("channel"),
        currency.label("currency"),
        # PostgreSQL's SUM over BIGINT is NUMERIC; the totals' exact sums need BIGINT.
        cast(amount, BigInteger).label("amount"),
        _flag(required).label("required"),
        _micros(touched[0]).label("created_us"),
        _micros(touched[1]).label("updated_us"),
    ]


def _legs_total(intent_id: Any) -> ColumnElement[int]:
    """A mixed payment's parts outside the channel (balance, subsidy): the channel's entry
    books the rest."""
    return (
        select(func.coalesce(func.sum(payment_legs.c.amount), 0))
        .where(payment_legs.c.intent_id == intent_id)
        .scalar_subquery()
    )


def _expected() -> CompoundSelect[Any]:
    """Every ledger key a record could have, whether its state calls for it (``required``) and
    for how much. A key its state does not call for still names its record and channel, so an
    entry booked against the state is told apart from one with no record at all."""
    a, i = payment_attempts.c, payment_intents.c
    fee = func.coalesce(i.fee, 0)
    channel_part = i.amount - _legs_total(i.id)

    # One order paid by one attempt: keys name the attempt that paid it.
    own = and_(a.status == _SUCCEEDED, i.succeeded_attempt_id == a.id)
    attempts_from = payment_attempts.join(payment_intents, i.id == a.intent_id)
    single = and_(a.group_id.is_(None), i.purpose == "order")
    touched_a = (a.created_at, a.updated_at)
    selects = [
        select(
            *_row(
                name,
                _key("pay:", a.id, suffix),
                a.id,
                a.channel,
                i.currency,
                amount,
                req,
                touched_a,
            )
        )
        .select_from(attempts_from)
        .where(single)
        for name, suffix, amount, req in (
            ("payment_paid", ":paid", channel_part, own),
            ("payment_fee", ":fee", fee, and_(own, fee > 0)),
        )
    ]

    # Orders of a combined payment, and top-ups: keys name the order; the attempt that paid it
    # (if any) gives the channel.
    paid_by = payment_attempts.alias("paid_by")
    by = paid_by.c
    paid = by.status == _SUCCEEDED
    intents_from = payment_intents.outerjoin(paid_by, by.id == i.succeeded_attempt_id)
    touched_i = (i.created_at, i.updated_at)
    for prefix, kind, where in (
        ("pay:", "payment", i.group_id.is_not(None)),
        ("topup:", "topup", i.purpose == "topup"),
    ):
        amount = channel_part if kind == "payment" else i.amount
        for suffix, value, req in ((":paid", amount, paid), (":fee", fee, and_(paid, fee > 0))):
            selects.append(
                select(
                    *_row(
                        f"{kind}_{suffix[1:]}",
                        _key(prefix, i.id, suffix),
                        i.id,
                        by.channel,
                        i.currency,
                        value,
                        req,
                        touched_i,
                    )
                )
                .select_from(intents_from)
                .where(where)
            )

    # Refunds: the channel's part and the part back to a payer's balance, each held, then
    # captured (succeeded) or voided (failed); the fee share the channel gives back.
    r = refunds.c
    at_channel = r.amount - r.balance_part
    ok, failed = r.status == _SUCCEEDED, r.status == _FAILED
    refund_from = refunds.join(payment_attempts, a.id == r.attempt_id)
    for name, suffix, amount, req in (
        ("refund_hold", ":hold", at_channel, at_channel > 0),
        ("refund_capture", ":capture", at_channel, and_(at_channel > 0, ok)),
        ("refund_void", ":void", at_channel, and_(at_channel > 0, failed)),
        ("refund_fee_returned", ":fee-returned", r.fee_returned, and_(ok, r.fee_returned > 0)),
        ("refund_balance_hold", ":balance", r.balance_part, r.balance_part > 0),
        (
            "refund_balance_capture",
            ":balance:capture",
            r.balance_part,
            and_(r.balance_part > 0, ok),
        ),
        ("refund_balance_void", ":balance:void", r.balance_part, and_(r.balance_part > 0, failed)),
    ):
        selects.append(
            select(
                *_row(
                    name,
                    _key("refund:", r.id, suffix),
                    r.id,
                    a.channel,
                    r.currency,
                    amount,
                    req,
                    (r.created_at, r.updated_at),
                )
            ).select_from(refund_from)
        )

    # The wallet: a withdrawal is held at once, then paid or voided; a transfer is one entry.
    w = withdrawals.c
    for name, suffix, req in (
        ("withdrawal_hold", ":hold", literal(True)),
        ("withdrawal_paid", ":paid", w.status == "PAID"),
        ("withdrawal_void", ":void", w.status == _FAILED),
    ):
        selects.append(
            select(
                *_row(
                    name,
                    _key("wdr:", w.id, suffix),
                    w.id,
                    literal("bank"),
                    w.currency,
                    w.amount,
                    req,
                    (w.created_at, w.updated_at),
                )
            )
        )
    t = wallet_transfers.c
    selects.append(
        select(
            *_row(
                "transfer",
                _key("trf:", t.id, ""),
                t.id,
                null(),
                t.currency,
                t.amount,
                literal(True),
                (t.created_at, t.created_at),
            )
        )
    )
    return union_all(*selects)


def _key(prefix: str, record_id: ColumnElement[str], suffix: str) -> ColumnElement[str]:
    return literal(prefix, String) + record_id + literal(suffix, String)


# --- the ledger's side ----------------------------------------------------------------------


def _family_of(key: Any) -> ColumnElement[str]:
    return case(*[(key.like(pattern), literal(name)) for name, pattern in FAMILIES])


def _booked() -> Select[Any]:
    """Each ledger request under a record key: its status, and its entry's amount (the sum of
    its debit postings: every leg moves one amount) and currency."""
    r, p = ledger_requests.c, postings.c
    return (
        select(
            r.key,
            _family_of(r.key).label("family"),
            r.status,
            _micros(r.created_at).label("created_us"),
            func.min(p.currency).label("currency"),
            func.max(p.currency).label("currency_max"),
            cast(func.sum(p.amount), BigInteger).label("amount"),
        )
        .select_from(
            ledger_requests.outerjoin(
                postings, and_(p.entry_id == r.entry_id, p.side == Side.DEBIT.value)
            )
        )
        .where(or_(*[r.key.like(pattern) for _, pattern in FAMILIES]))
        .group_by(r.key, r.status, r.created_at)
    )


def _scope(expected: CTE, booked: CTE, window: tuple[int, int]) -> CompoundSelect[Any]:
    """The keys of the day: a record touched in the window, or a request made in it."""
    e, b = expected.c, booked.c
    records = select(e.key).where(e.created_us < window[1], e.updated_us >= window[0])
    requests = select(b.key).where(b.created_us >= window[0], b.created_us < window[1])
    return union_all(records, requests)


def _flow_breaks(conn: Connection, expected: CTE, booked: CTE, scope: CTE) -> list[InternalBreak]:
    e, b = expected.c, booked.c
    in_scope = select(scope.c.key)
    entry = b.status == "ok"
    required = e.required == 1
    wrong_currency = or_(b.currency != e.currency, b.currency_max != e.currency)
    code = case(
        (and_(required, or_(b.key.is_(None), ~entry)), _code(BreakCode.RECORD_WITHOUT_ENTRY)),
        (and_(~required, entry), _code(BreakCode.ENTRY_AGAINST_STATE)),
        (and_(required, wrong_currency), _code(BreakCode.CURRENCY_MISMATCH)),
        (and_(required, b.amount != e.amount), _code(BreakCode.AMOUNT_MISMATCH)),
    )
    records_side = (
        select(
            code.label("code"),
            e.family,
            e.key,
            e.record_id,
            e.channel,
            e.currency,
            e.amount.label("expected"),
            b.status,
            b.currency.label("booked_currency"),
            b.amount.label("booked"),
        )
        .select_from(expected.outerjoin(booked, b.key == e.key))
        .where(e.key.in_(in_scope), code.is_not(None))
    )
    orphans = (
        select(
            _code(BreakCode.ENTRY_WITHOUT_RECORD).label("code"),
            b.family,
            b.key,
            null().label("record_id"),
            null().label("channel"),
            b.currency,
            null().label("expected"),
            b.status,
            b.currency.label("booked_currency"),
            b.amount.label("booked"),
        )
        .select_from(booked.outerjoin(expected, e.key == b.key))
        .where(b.key.in_(in_scope), entry, e.key.is_(None))
    )
    rows = conn.execute(union_all(records_side, orphans)).all()
    out = []
    for row in sorted(rows, key=lambda r: (r.key, r.code)):
        code_ = BreakCode(row.code)
        expected_value: int | str | None = _int(row.expected)
        actual: int | str | None = _int(row.booked)
        if code_ is BreakCode.RECORD_WITHOUT_ENTRY:
            actual = None if row.status is None else f"request {row.status}"
        elif code_ is BreakCode.CURRENCY_MISMATCH:
            expected_value, actual = row.currency, row.booked_currency
        elif code_ is BreakCode.ENTRY_AGAINST_STATE:
            expected_value = None
        out.append(
            InternalBreak(
                code_,
                row.family,
                row.key,
                row.record_id,
                row.channel,
                row.currency,
                expected_value,
                actual,
            )
        )
    return out


def _totals(conn: Connection, expected: CTE, booked: CTE, scope: CTE) -> list[FlowTotal]:
    """Counts and sums per family, channel and currency: the records' required keys on one
    side, the ledger's booked entries on the other (an entry with no record under no channel)."""
    e, b = expected.c, booked.c
    in_scope = select(scope.c.key)
    records = conn.execute(
        select(
            e.family,
            e.channel,
            e.currency,
            func.count().label("n"),
            *eod.exact_sum(e.amount, "amount"),
        )
        .where(e.key.in_(in_scope), e.required == 1)
        .group_by(e.family, e.channel, e.currency)
    ).all()
    entries = conn.execute(
        select(
            b.family,
            e.channel,
            b.currency,
            func.count().label("n"),
            *eod.exact_sum(b.amount, "amount"),
        )
        .select_from(booked.outerjoin(expected, e.key == b.key))
        .where(b.key.in_(in_scope), b.status == "ok")
        .group_by(b.family, e.channel, b.currency)
    ).all()
    groups: dict[tuple[str, str | None, str], list[int]] = {}
    for side, rows in ((0, records), (2, entries)):
        for row in rows:
            sums = groups.setdefault((row.family, row.channel, row.currency), [0, 0, 0, 0])
            sums[side], sums[side + 1] = int(row.n), eod.joined(row, "amount")
    return [
        FlowTotal(family, channel, currency, *sums)
        for (family, channel, currency), sums in sorted(
            groups.items(), key=lambda item: (item[0][0], item[0][1] or "", item[0][2])
        )
    ]


# --- payments vs orders ---------------------------------------------------------------------


def _order_breaks(conn: Connection, window: tuple[int, int]) -> list[InternalBreak]:
    """Orders touched in the window against the attempt that paid them and their refunds."""
    i = payment_intents.c
    paid_by = payment_attempts.alias("paid_by")
    by = paid_by.c
    siblings = payment_intents.alias("siblings")
    group_total = (
        select(func.sum(siblings.c.amount))
        .where(siblings.c.group_id == i.group_id)
        .scalar_subquery()
    )
    refunded = (
        select(func.coalesce(func.sum(refunds.c.amount), 0))
        .where(refunds.c.intent_id == i.id, refunds.c.status != _FAILED)
        .scalar_subquery()
    )
    paid = by.status == _SUCCEEDED
    # What the paying attempt should carry: a combined payment's total, else the order's
    # amount less its parts outside the channel.
    carried = case((i.group_id.is_not(None), group_total), else_=i.amount - _legs_total(i.id))
    state_wrong = or_(
        and_(i.status.in_(_PAID_ORDER), or_(by.id.is_(None), ~paid)),
        and_(i.status.in_(_OPEN_ORDER), paid),
    )
    code = case(
        (state_wrong, _code(BreakCode.ORDER_STATE_MISMATCH)),
        (
            and_(paid, by.amount.is_not(None), by.amount != carried),
            _code(BreakCode.ORDER_AMOUNT_MISMATCH),
        ),
        (i.refunded != refunded, _code(BreakCode.ORDER_REFUNDED_MISMATCH)),
    )
    rows = conn.execute(
        select(
            code.label("code"),
            i.id,
            by.id.label("attempt_id"),
            by.channel,
            i.currency,
            i.status,
            by.status.label("attempt_status"),
            by.amount.label("attempt_amount"),
            carried.label("carried"),
            i.refunded,
            refunded.label("refunds"),
        )
        .select_from(payment_intents.outerjoin(paid_by, by.id == i.succeeded_attempt_id))
        .where(
            _micros(i.created_at) < window[1],
            _micros(i.updated_at) >= window[0],
            code.is_not(None),
        )
        .order_by(i.id)
    ).all()
    out = []
    for row in rows:
        code_ = BreakCode(row.code)
        if code_ is BreakCode.ORDER_STATE_MISMATCH:
            pair: tuple[int | str | None, int | str | None] = (
                f"order {row.status}",
                None if row.attempt_status is None else f"attempt {row.attempt_status}",
            )
        elif code_ is BreakCode.ORDER_AMOUNT_MISMATCH:
            pair = (_int(row.carried), _int(row.attempt_amount))
        else:
            pair = (_int(row.refunds), _int(row.refunded))
        out.append(
            InternalBreak(code_, "order", row.id, row.attempt_id, row.channel, row.currency, *pair)
        )
    return out


def _int(value: Any) -> int | None:
    # PostgreSQL sums BIGINT into NUMERIC: whole Decimals, made int again.
    return None if value is None else int(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
