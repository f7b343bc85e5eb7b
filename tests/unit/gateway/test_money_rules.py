"""Properties of the gateway's money rules: commission, prorated refund shares, channel fees and
their refunded shares, the ledger posts a payment or refund plans, and the refund policy.

Integers and Decimals only: no float ever enters an amount.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from clearhouse.fees import ALIPAY, PAYPAL, STRIPE, WECHATPAY, FeeSchedule
from clearhouse.gateway.model import (
    CHANNEL_CODES,
    IntentStatus,
    PlannedPost,
    RefundPolicy,
    RefundRefusal,
    Settlement,
    check_refund,
    commission,
    completion_post,
    payment_posts,
    prorated,
    refund_posts,
)
from clearhouse.gateway.payments import MAX_PAYMENT_MINOR
from clearhouse.money import Money, Rounding, allocate

CNY = "CNY"
amounts = st.integers(min_value=1, max_value=MAX_PAYMENT_MINOR)
big_amounts = st.integers(min_value=1, max_value=10**15)
bps = st.integers(min_value=0, max_value=10_000)
roundings = st.sampled_from(list(Rounding))
rates = st.decimals(
    min_value=Decimal(0), max_value=Decimal("0.1"), places=4, allow_nan=False, allow_infinity=False
)


def cny(amount: int) -> Money:
    return Money(amount, CNY)


@st.composite
def paid_and_refunds(draw: st.DrawFn, full: bool) -> tuple[int, list[int]]:
    """A paid amount and partial refunds of it: summing to at most it, or exactly to it."""
    paid = draw(amounts)
    refunds: list[int] = []
    left = paid
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        if left == 0:
            break
        refund = draw(st.integers(min_value=1, max_value=left))
        refunds.append(refund)
        left -= refund
    if full and left > 0:
        refunds.append(left)
    return paid, refunds


# --- commission -----------------------------------------------------------------------------


@given(big_amounts, bps)
def test_commission_and_merchant_share_make_the_amount(amount: int, rate_bps: int) -> None:
    taken = commission(cny(amount), rate_bps)
    merchant = cny(amount) - taken
    assert taken + merchant == cny(amount)
    assert 0 <= taken.amount <= amount
    assert isinstance(taken.amount, int)
    assert taken.currency == CNY


@given(big_amounts, bps)
def test_commission_is_the_allocated_share_rounded_half_up(amount: int, rate_bps: int) -> None:
    taken = commission(cny(amount), rate_bps).amount
    assert taken == allocate(amount, [rate_bps, 10_000 - rate_bps])[0]
    # Within one unit of the exact share, ties to the platform: half-up, in integers.
    assert taken == (2 * amount * rate_bps + 10_000) // 20_000
    assert abs(taken * 10_000 - amount * rate_bps) <= 5_000


@given(big_amounts)
def test_commission_extremes(amount: int) -> None:
    assert commission(cny(amount), 0) == cny(0)
    assert commission(cny(amount), 10_000) == cny(amount)


@pytest.mark.parametrize(
    ("amount", "rate_bps", "expected"),
    [
        (10_000, 500, 500),  # 5% of 100.00
        (1, 500, 0),  # 0.05 fen
        (10, 500, 1),  # 0.5 fen: half up
        (9, 500, 0),  # 0.45 fen
        (30, 500, 2),  # 1.5 fen
        (199, 1, 0),
    ],
)
def test_commission_examples(amount: int, rate_bps: int, expected: int) -> None:
    assert commission(cny(amount), rate_bps) == cny(expected)


# --- prorated commission on refunds ---------------------------------------------------------


def prorated_shares(part: int, paid: int, refunds: list[int]) -> list[int]:
    shares, before = [], 0
    for refund in refunds:
        shares.append(prorated(cny(part), cny(paid), cny(before), cny(refund)).amount)
        before += refund
    return shares


@given(paid_and_refunds(full=False), bps)
def test_prorated_shares_never_negative_nor_beyond_the_part(
    paid_refunds: tuple[int, list[int]], rate_bps: int
) -> None:
    paid, refunds = paid_refunds
    part = commission(cny(paid), rate_bps).amount
    total = 0
    for share in prorated_shares(part, paid, refunds):
        assert share >= 0
        total += share
        assert total <= part
    # The cumulative share is the floor of the exact cumulative share.
    assert total == part * sum(refunds) // paid


@given(paid_and_refunds(full=True), bps)
def test_prorated_shares_of_a_full_refund_sum_to_the_part(
    paid_refunds: tuple[int, list[int]], rate_bps: int
) -> None:
    paid, refunds = paid_refunds
    assert sum(refunds) == paid
    part = commission(cny(paid), rate_bps).amount
    assert sum(prorated_shares(part, paid, refunds)) == part


@given(paid_and_refunds(full=True), st.integers(min_value=0, max_value=10**9))
def test_prorated_any_part_sums_exactly(paid_refunds: tuple[int, list[int]], part: int) -> None:
    paid, refunds = paid_refunds
    shares = prorated_shares(part, paid, refunds)
    assert all(s >= 0 for s in shares)
    assert sum(shares) == part


def test_prorated_examples() -> None:
    # 500 commission on 10_000: three refunds of a third each floor cumulatively.
    assert prorated_shares(500, 10_000, [3_333, 3_333, 3_334]) == [166, 167, 167]
    assert prorated(cny(500), cny(10_000), cny(0), cny(10_000)) == cny(500)
    assert prorated(cny(0), cny(10_000), cny(0), cny(5_000)) == cny(0)


# --- channel fees ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "fee"),
    [
        (83, 0),  # 0.498 fen: not charged
        (84, 1),  # 0.504 fen
        (250, 2),  # 1.5 fen: half up
        (10_000, 60),  # 0.6% of 100.00
        (1, 0),
        (0, 0),
        (750, 5),  # 4.5 fen: half up, not to even
    ],
)
def test_wechatpay_fee_is_six_permille_half_up(amount: int, fee: int) -> None:
    assert WECHATPAY.fee(cny(amount)) == cny(fee)
    assert ALIPAY.fee(cny(amount)) == cny(fee)


def test_fee_rounding_mode_and_fixed_part_are_applied() -> None:
    half_even = FeeSchedule(rate=Decimal("0.006"), rounding=Rounding.HALF_EVEN)
    assert half_even.fee(cny(250)) == cny(2)  # 1.5 -> 2
    assert half_even.fee(cny(750)) == cny(4)  # 4.5 -> 4
    down = FeeSchedule(rate=Decimal("0.029"), fixed=30, rounding=Rounding.DOWN)
    assert down.fee(cny(1_000)) == cny(59)  # 29 + 30
    assert down.fee(cny(999)) == cny(58)  # 28.971 -> 28, + 30


@given(amounts, rates, roundings)
def test_fee_is_within_one_unit_of_the_exact_rate(
    amount: int, rate: Decimal, rounding: Rounding
) -> None:
    fee = FeeSchedule(rate=rate, rounding=rounding).fee(cny(amount)).amount
    assert isinstance(fee, int)
    assert abs(Decimal(fee) - Decimal(amount) * rate) < 1


def refunded_fee_shares(
    schedule: FeeSchedule, paid: int, fee: int, refunds: list[int]
) -> list[int]:
    shares, before = [], 0
    for refund in refunds:
        share = schedule.refunded_fee(cny(paid), cny(fee), cny(before), cny(refund))
        assert share.currency == CNY
        shares.append(share.amount)
        before += refund
    return shares


@given(paid_and_refunds(full=False), rates, roundings)
def test_refunded_fee_shares_never_negative_nor_beyond_the_fee(
    paid_refunds: tuple[int, list[int]], rate: Decimal, rounding: Rounding
) -> None:
    paid, refunds = paid_refunds
    schedule = FeeSchedule(rate=rate, rounding=rounding)
    fee = schedule.fee(cny(paid)).amount
    total = 0
    for share in refunded_fee_shares(schedule, paid, fee, refunds):
        assert share >= 0
        total += share
        assert total <= fee


@given(paid_and_refunds(full=True), rates, roundings, st.integers(min_value=0, max_value=500))
def test_refunded_fee_shares_of_a_full_refund_sum_to_the_fee(
    paid_refunds: tuple[int, list[int]], rate: Decimal, rounding: Rounding, fixed: int
) -> None:
    paid, refunds = paid_refunds
    schedule = FeeSchedule(rate=rate, fixed=fixed, rounding=rounding)
    fee = schedule.fee(cny(paid)).amount
    shares = refunded_fee_shares(schedule, paid, fee, refunds)
    assert all(s >= 0 for s in shares)
    assert sum(shares) == fee


@given(paid_and_refunds(full=True))
def test_a_schedule_that_keeps_the_fee_returns_nothing(
    paid_refunds: tuple[int, list[int]],
) -> None:
    paid, refunds = paid_refunds
    keeps = FeeSchedule(rate=Decimal("0.029"), fixed=30, refund_returns_fee=False)
    fee = keeps.fee(cny(paid)).amount
    assert fee > 0
    assert refunded_fee_shares(keeps, paid, fee, refunds) == [0] * len(refunds)


@given(paid_and_refunds(full=True))
def test_a_schedule_that_keeps_the_fixed_part_returns_only_the_percentage(
    paid_refunds: tuple[int, list[int]],
) -> None:
    paid, refunds = paid_refunds
    fee = PAYPAL.fee(cny(paid)).amount
    shares = refunded_fee_shares(PAYPAL, paid, fee, refunds)
    assert all(s >= 0 for s in shares)
    assert sum(shares) == fee - PAYPAL.fixed


def test_refunded_fee_examples() -> None:
    # PayPal on 100.00: 3.49 + 0.49 charged; a full refund returns 3.49, a half 1.75 (half-up).
    assert PAYPAL.fee(cny(10_000)) == cny(398)
    assert refunded_fee_shares(PAYPAL, 10_000, 398, [5_000, 5_000]) == [175, 174]
    assert STRIPE.fee(cny(10_000)) == cny(320)

    # 60 fen fee on 100.00: a third, a third, the rest, each rounded half-up cumulatively.
    assert refunded_fee_shares(WECHATPAY, 10_000, 60, [3_333, 3_333, 3_334]) == [20, 20, 20]
    # 2 fen on 2.50: 1.00 back is 0.8 -> 1, the rest 2 - 1.
    assert refunded_fee_shares(WECHATPAY, 250, 2, [100, 150]) == [1, 1]
    assert WECHATPAY.refunded_fee(cny(0), cny(0), cny(0), cny(0)) == cny(0)


# --- planned posts --------------------------------------------------------------------------


def post_total(post: PlannedPost) -> int:
    return sum(post.amounts.values())


@given(
    st.sampled_from(sorted(CHANNEL_CODES)),
    st.sampled_from(list(Settlement)),
    amounts,
    bps,
    rates,
)
def test_payment_posts_balance_and_omit_a_zero_fee(
    channel: str, settlement: Settlement, amount: int, rate_bps: int, rate: Decimal
) -> None:
    codes = CHANNEL_CODES[channel]
    taken = commission(cny(amount), rate_bps)
    fee = FeeSchedule(rate=rate).fee(cny(amount))
    posts = payment_posts(channel, settlement, cny(amount), taken, fee)
    paid = posts[0]
    assert paid.suffix == "paid"
    assert post_total(paid) == amount
    assert all(v >= 0 and isinstance(v, int) for p in posts for v in p.amounts.values())
    if settlement is Settlement.ESCROW:
        assert paid == PlannedPost("paid", codes.escrow, {"amount": amount})
    else:
        assert paid.code == codes.instant
        assert paid.amounts["merchant_amount"] + paid.amounts["commission"] == amount
        assert paid.amounts["commission"] == taken.amount
    if fee.amount > 0:
        assert posts[1:] == [PlannedPost("fee", codes.fee, {"fee": fee.amount})]
    else:
        assert len(posts) == 1


def test_payment_posts_examples() -> None:
    assert payment_posts("wechatpay", Settlement.ESCROW, cny(10_000), cny(500), cny(60)) == [
        PlannedPost("paid", "1002", {"amount": 10_000}),
        PlannedPost("fee", "1202", {"fee": 60}),
    ]
    assert payment_posts("alipay", Settlement.INSTANT, cny(83), cny(4), cny(0)) == [
        PlannedPost("paid", "1103", {"merchant_amount": 79, "commission": 4}),
    ]


@given(
    st.sampled_from(sorted(CHANNEL_CODES)),
    st.booleans(),
    paid_and_refunds(full=False),
    bps,
)
def test_refund_posts_balance_and_omit_a_zero_fee(
    channel: str, settled: bool, paid_refunds: tuple[int, list[int]], rate_bps: int
) -> None:
    paid, refunds = paid_refunds
    assume(refunds)
    codes = CHANNEL_CODES[channel]
    part = commission(cny(paid), rate_bps)
    fee = WECHATPAY.fee(cny(paid))
    before = 0
    for refund in refunds:
        taken_back = prorated(part, cny(paid), cny(before), cny(refund))
        fee_back = WECHATPAY.refunded_fee(cny(paid), fee, cny(before), cny(refund))
        posts = refund_posts(channel, settled, cny(refund), taken_back, fee_back)
        first = posts[0]
        assert first.suffix == "refunded"
        assert post_total(first) == refund
        if settled:
            assert first.code == codes.refund_settled
            assert first.amounts == {
                "merchant_amount": refund - taken_back.amount,
                "commission": taken_back.amount,
            }
            assert first.amounts["merchant_amount"] >= 0
        else:
            assert first == PlannedPost("refunded", codes.refund_escrow, {"amount": refund})
        if fee_back.amount > 0:
            assert posts[1:] == [
                PlannedPost("fee-returned", codes.fee_returned, {"fee": fee_back.amount})
            ]
        else:
            assert len(posts) == 1
        before += refund


def test_refund_posts_examples() -> None:
    assert refund_posts("wechatpay", False, cny(5_000), cny(250), cny(30)) == [
        PlannedPost("refunded", "3002", {"amount": 5_000}),
        PlannedPost("fee-returned", "1212", {"fee": 30}),
    ]
    assert refund_posts("alipay", True, cny(5_000), cny(250), cny(0)) == [
        PlannedPost("refunded", "3103", {"merchant_amount": 4_750, "commission": 250}),
    ]


@given(paid_and_refunds(full=False), bps)
def test_completion_after_refunds_leaves_the_rest_of_the_commission(
    paid_refunds: tuple[int, list[int]], rate_bps: int
) -> None:
    """Commission taken back by refunds plus commission kept at completion is the commission."""
    paid, refunds = paid_refunds
    refunded = sum(refunds)
    assume(refunded < paid)
    part = commission(cny(paid), rate_bps)
    taken_back = sum(prorated_shares(part.amount, paid, refunds))
    kept = part - prorated(part, cny(paid), cny(0), cny(refunded))
    post = completion_post(cny(paid - refunded), kept)
    assert post.code == "2001"
    assert post.amounts["merchant_amount"] + post.amounts["commission"] == paid - refunded
    assert post.amounts["merchant_amount"] >= 0
    assert taken_back + post.amounts["commission"] == part.amount


# --- refund policy --------------------------------------------------------------------------

PAID_AT = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
POLICY = RefundPolicy(window=timedelta(days=365), max_refunds=50, fees=WECHATPAY)


def check(
    *,
    status: IntentStatus = IntentStatus.SUCCEEDED,
    paid: int = 10_000,
    refunded: int = 0,
    count: int = 0,
    paid_at: datetime | None = PAID_AT,
    refund: int = 1_000,
    now: datetime = PAID_AT + timedelta(days=1),
    policy: RefundPolicy = POLICY,
) -> RefundRefusal | None:
    return check_refund(policy, status, cny(paid), cny(refunded), count, paid_at, cny(refund), now)


def test_refund_allowed_on_a_succeeded_or_completed_payment() -> None:
    assert check() is None
    assert check(status=IntentStatus.COMPLETED) is None


@pytest.mark.parametrize(
    "status", [IntentStatus.PROCESSING, IntentStatus.FAILED, IntentStatus.CLOSED]
)
def test_refund_of_an_unpaid_payment_is_refused(status: IntentStatus) -> None:
    assert check(status=status) is RefundRefusal.NOT_REFUNDABLE


def test_refund_without_paid_at_is_refused() -> None:
    assert check(paid_at=None) is RefundRefusal.NOT_REFUNDABLE


def test_refund_of_exactly_the_remainder_is_allowed_one_unit_more_is_not() -> None:
    assert check(refunded=3_000, refund=7_000) is None
    assert check(refunded=3_000, refund=7_001) is RefundRefusal.EXCEEDS_REFUNDABLE
    assert check(refund=10_000) is None
    assert check(refund=10_001) is RefundRefusal.EXCEEDS_REFUNDABLE
    assert check(refunded=10_000, refund=1) is RefundRefusal.EXCEEDS_REFUNDABLE


@given(amounts, st.data())
def test_refundable_is_exactly_paid_less_refunded(paid: int, data: st.DataObject) -> None:
    refunded = data.draw(st.integers(min_value=0, max_value=paid))
    refund = data.draw(st.integers(min_value=1, max_value=paid + 1))
    expected = None if refund <= paid - refunded else RefundRefusal.EXCEEDS_REFUNDABLE
    assert check(paid=paid, refunded=refunded, refund=refund) is expected


def test_refund_count_limit() -> None:
    policy = RefundPolicy(window=timedelta(days=365), max_refunds=3, fees=WECHATPAY)
    assert check(count=2, policy=policy) is None
    assert check(count=3, policy=policy) is RefundRefusal.LIMIT_REACHED


def test_refund_window_closes_one_microsecond_after_it_ends() -> None:
    end = PAID_AT + POLICY.window
    assert check(now=end) is None
    assert check(now=end + timedelta(microseconds=1)) is RefundRefusal.WINDOW_CLOSED
    assert check(now=PAID_AT) is None


def test_refusal_order_when_several_reasons_apply() -> None:
    policy = RefundPolicy(window=timedelta(days=1), max_refunds=1, fees=WECHATPAY)
    late = PAID_AT + timedelta(days=2)
    assert (
        check(status=IntentStatus.CLOSED, refund=99_999, count=5, now=late, policy=policy)
        is RefundRefusal.NOT_REFUNDABLE
    )
    assert check(refund=99_999, count=5, now=late, policy=policy) is (
        RefundRefusal.EXCEEDS_REFUNDABLE
    )
    assert check(count=5, now=late, policy=policy) is RefundRefusal.LIMIT_REACHED
    assert check(now=late, policy=policy) is RefundRefusal.WINDOW_CLOSED
