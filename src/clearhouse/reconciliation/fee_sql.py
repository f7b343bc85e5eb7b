"""Channel fee schedules as SQL expressions, so matching checks fees inside DuckDB.

Each expression is the exact integer twin of ``FeeSchedule.fee`` / ``refunded_fee``: the rate is
taken as the exact fraction of its ``Decimal`` (0.0349 is 349/10000) and each rounding is one
integer division with the schedule's named mode, so no floating point and no decimal precision
limit can move a result by a minor unit. Every line of a day passes through them, so amounts
of everyday size take a BIGINT form proved free of overflow by its bounds, and anything else
(negative, or beyond the bounds) the general HUGEINT form. A property test holds both forms to
``FeeSchedule``. Pure string building: nothing here touches a database.
"""

from __future__ import annotations

from collections.abc import Mapping

from clearhouse.fees import FeeSchedule
from clearhouse.money import Rounding

_BIGINT_MAX = 2**63 - 1
# Refunds take the BIGINT form when the payment, the earlier refunds and this one are each at
# most this many minor units (ten million in a two-decimal currency).
REFUND_FAST_BOUND = 10**9


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def round_div(numerator: str, denominator: str, rounding: Rounding) -> str:
    """``numerator / denominator`` rounded to an integer by ``rounding``, as Decimal's
    ``quantize`` does; both are SQL integer expressions and the denominator is positive.

    Works on the magnitude in HUGEINT and puts the sign back, because SQL integer division
    truncates toward zero: q and r are the quotient and remainder of |n| / d.
    """
    n = f"CAST({numerator} AS HUGEINT)"
    d = f"CAST({denominator} AS HUGEINT)"
    q = f"(abs({n}) // {d})"
    r = f"(abs({n}) % {d})"
    up = f"(CASE WHEN {r} > 0 THEN 1 ELSE 0 END)"
    bump = {
        Rounding.DOWN: "0",
        Rounding.UP: up,
        Rounding.HALF_UP: f"(CASE WHEN 2 * {r} >= {d} THEN 1 ELSE 0 END)",
        Rounding.HALF_EVEN: (
            f"(CASE WHEN 2 * {r} > {d} OR (2 * {r} = {d} AND {q} % 2 = 1) THEN 1 ELSE 0 END)"
        ),
        # Toward -inf: only a negative value with a remainder moves away from zero.
        Rounding.FLOOR: f"(CASE WHEN {n} < 0 THEN {up} ELSE 0 END)",
        Rounding.CEILING: f"(CASE WHEN {n} > 0 THEN {up} ELSE 0 END)",
    }[rounding]
    return f"(sign({n}) * ({q} + {bump}))"


def _div_nonnegative(n: str, d: str, rounding: Rounding) -> str | None:
    """``n / d`` rounded, for n >= 0 and d > 0, as one BIGINT division; the caller bounds
    n so that ``2 * n + d`` fits. None for half-even, which needs the quotient's parity."""
    if rounding in (Rounding.DOWN, Rounding.FLOOR):
        return f"(({n}) // ({d}))"
    if rounding in (Rounding.UP, Rounding.CEILING):
        return f"((({n}) + ({d}) - 1) // ({d}))"
    if rounding is Rounding.HALF_UP:
        return f"((2 * ({n}) + ({d})) // (2 * ({d})))"
    return None


def _rate(schedule: FeeSchedule) -> tuple[int, int]:
    numerator, denominator = schedule.rate.as_integer_ratio()
    return numerator, denominator


def _payment_bound(schedule: FeeSchedule) -> int:
    """The largest amount whose BIGINT fee cannot overflow: 2 * amount * num + den fits."""
    num, den = _rate(schedule)
    return (_BIGINT_MAX - den) // (2 * max(num, 1))


def fee_expr(schedule: FeeSchedule, amount: str) -> str:
    """The fee on a payment of ``amount`` minor units (``FeeSchedule.fee``), HUGEINT."""
    num, den = _rate(schedule)
    exact = round_div(f"CAST({amount} AS HUGEINT) * {num}", str(den), schedule.rounding)
    quick = _div_nonnegative(f"CAST({amount} AS BIGINT) * {num}", str(den), schedule.rounding)
    if quick is not None:
        bound = _payment_bound(schedule)
        exact = (
            f"(CASE WHEN {amount} BETWEEN 0 AND {bound} THEN CAST({quick} AS HUGEINT) "
            f"ELSE {exact} END)"
        )
    return f"({exact} + {schedule.fixed})"


def _refund_fast_ok(schedule: FeeSchedule) -> bool:
    """Whether the BIGINT refund form is safe for inputs up to REFUND_FAST_BOUND: the fee on
    the largest payment, times twice the largest cumulative refund, plus the payment, fits
    (and the fee itself is never negative, which the one-division forms assume)."""
    num, den = _rate(schedule)
    bound = REFUND_FAST_BOUND
    if schedule.fixed < 0 or 2 * bound * num + den > _BIGINT_MAX:
        return False
    fee_max = (bound * num + den - 1) // den + schedule.fixed + 1
    return 2 * fee_max * (2 * bound) + bound <= _BIGINT_MAX


def refunded_fee_expr(schedule: FeeSchedule, paid: str, before: str, refund: str) -> str:
    """The fee share a refund of ``refund`` returns after ``before`` was refunded earlier, on a
    payment of ``paid`` whose fee is the schedule's fee on it (``FeeSchedule.refunded_fee``).
    The difference of two cumulative shares, so partial refunds add up to the whole fee."""
    if not schedule.refund_returns_fee:
        return "CAST(0 AS HUGEINT)"
    fee = fee_expr(schedule, paid)
    if schedule.refund_keeps_fixed:
        fee = f"greatest({fee} - {schedule.fixed}, 0)"
    p = f"CAST({paid} AS HUGEINT)"
    whole = f"NULLIF({p}, 0)"  # a zero payment returns no fee (the CASE below) and never divides
    after = f"(CAST({before} AS HUGEINT) + CAST({refund} AS HUGEINT))"
    share_after = round_div(f"{fee} * {after}", whole, schedule.rounding)
    share_before = round_div(f"{fee} * CAST({before} AS HUGEINT)", whole, schedule.rounding)
    exact = f"(CASE WHEN {p} = 0 THEN CAST(0 AS HUGEINT) ELSE {share_after} - {share_before} END)"
    num, den = _rate(schedule)
    paid, before, refund = (f"CAST({x} AS BIGINT)" for x in (paid, before, refund))
    quick_fee = _div_nonnegative(f"{paid} * {num}", str(den), schedule.rounding)
    if quick_fee is None or not _refund_fast_ok(schedule):
        return exact
    f = f"({quick_fee} + {schedule.fixed})"
    if schedule.refund_keeps_fixed:
        f = f"greatest({f} - {schedule.fixed}, 0)"
    quick_after = _div_nonnegative(f"{f} * ({before} + {refund})", paid, schedule.rounding)
    quick_before = _div_nonnegative(f"{f} * {before}", paid, schedule.rounding)
    if quick_after is None or quick_before is None:
        return exact
    quick = f"({quick_after} - {quick_before})"
    b = REFUND_FAST_BOUND
    return (
        f"(CASE WHEN {paid} BETWEEN 1 AND {b} AND {before} BETWEEN 0 AND {b} "
        f"AND {refund} BETWEEN 0 AND {b} THEN CAST({quick} AS HUGEINT) ELSE {exact} END)"
    )


def expected_line_fee_expr(
    schedules: Mapping[str, FeeSchedule],
    source: str,
    kind: str,
    amount: str,
    parent_amount: str,
    refunded_before: str,
    fallback: str,
) -> str:
    """The fee a statement line should carry, signed as lines carry it: charged on a payment
    (positive), given back on a refund (negative). ``amount`` is the line's signed amount;
    ``parent_amount`` and ``refunded_before`` describe a refund's payment. A source with no
    schedule falls back to ``fallback`` (the fee our books expect)."""
    if not schedules:
        return f"CAST({fallback} AS HUGEINT)"
    # Channels on one schedule (WeChat Pay and Alipay, two quick pay acquirers) share a branch.
    groups: dict[FeeSchedule, list[str]] = {}
    for name in sorted(schedules):
        groups.setdefault(schedules[name], []).append(name)
    branches = []
    for schedule, names in groups.items():
        payment = fee_expr(schedule, f"abs({amount})")
        refund = refunded_fee_expr(schedule, parent_amount, refunded_before, f"abs({amount})")
        listed = ", ".join(_quote(n) for n in names)
        branches.append(
            f"WHEN {source} IN ({listed}) THEN "
            f"(CASE WHEN {kind} = 'payment' THEN {payment} ELSE -{refund} END)"
        )
    return f"(CASE {' '.join(branches)} ELSE CAST({fallback} AS HUGEINT) END)"


def line_fee_check_expr(
    schedules: Mapping[str, FeeSchedule],
    source: str,
    kind: str,
    amount: str,
    parent_amount: str,
    refunded_before: str,
    fallback: str,
) -> str:
    """``expected_line_fee_expr`` as BIGINT, for checking every line of a day: a payment of
    everyday size (nearly all lines) costs one BIGINT division and no HUGEINT at all. NULL
    only where the fee would not fit 64 bits, which no line's fee can equal."""
    general = expected_line_fee_expr(
        schedules, source, kind, amount, parent_amount, refunded_before, fallback
    )
    general = f"TRY_CAST({general} AS BIGINT)"
    if not schedules:
        return general
    groups: dict[FeeSchedule, list[str]] = {}
    for name in sorted(schedules):
        groups.setdefault(schedules[name], []).append(name)
    bound = min(_payment_bound(s) for s in groups)
    branches = []
    for schedule, names in groups.items():
        num, den = _rate(schedule)
        quick = _div_nonnegative(f"CAST({amount} AS BIGINT) * {num}", str(den), schedule.rounding)
        listed = ", ".join(_quote(n) for n in names)
        branches.append(
            f"WHEN {source} IN ({listed}) THEN "
            + (general if quick is None else f"({quick} + {schedule.fixed})")
        )
    return (
        f"(CASE WHEN {kind} = 'payment' AND {amount} BETWEEN 0 AND {bound} "
        f"THEN (CASE {' '.join(branches)} ELSE CAST({fallback} AS BIGINT) END) "
        f"ELSE {general} END)"
    )
