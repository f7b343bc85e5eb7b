"""The rail a withdrawal takes (P10) and the bank's refusals (P9), as properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearhouse.money import Money
from clearhouse.wallet.model import (
    FINAL_WITHDRAWAL,
    MAX_SHORT_ERRORS,
    BusinessHours,
    FailureClass,
    Rail,
    RailPolicy,
    WithdrawalStatus,
    after_short_error,
    can_move,
    choose_rail,
    classify,
    may_submit,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
amounts = st.integers(min_value=1, max_value=10**12)
policies = st.builds(
    lambda low, extra, holidays: RailPolicy(
        realtime_max_minor=low,
        large_value_above_minor=low + extra,
        hours=BusinessHours(holidays=frozenset(holidays)),
    ),
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=0, max_value=10**9),
    st.frozensets(st.dates(min_value=date(2020, 1, 1), max_value=date(2036, 1, 31)), max_size=20),
)


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


@given(policies, amounts, moments)
def test_large_value_is_never_due_out_of_hours(policy, amount, at):
    choice = choose_rail(policy, cny(amount), at)
    assert choice.due_at >= at
    if choice.rail is Rail.LARGE_VALUE:
        assert policy.hours.is_open(choice.due_at)
        assert may_submit(policy, choice.rail, choice.due_at)
        # The next opening, not a later one: a minute earlier it was still closed (or it is now).
        earlier = choice.due_at - timedelta(minutes=1)
        assert choice.due_at == at or earlier < at or not policy.hours.is_open(earlier)
    else:
        assert choice.due_at == at  # the other rails run at any hour


@given(policies, amounts, moments)
def test_small_is_always_real_time_and_the_choice_is_deterministic(policy, amount, at):
    choice = choose_rail(policy, cny(amount), at)
    assert choice == choose_rail(policy, cny(amount), at)
    if amount <= policy.realtime_max_minor:
        assert choice.rail is Rail.REALTIME
    elif amount > policy.large_value_above_minor:
        assert choice.rail is Rail.LARGE_VALUE
    else:
        assert choice.rail is Rail.BATCH


@given(moments)
def test_business_hours_are_weekdays_0830_to_1700_in_shanghai(at):
    local = at.astimezone(SHANGHAI)
    expected = local.weekday() < 5 and time(8, 30) <= local.time() < time(17, 0)
    assert BusinessHours().is_open(at) is expected
    opening = BusinessHours().next_opening(at)
    assert opening - at < timedelta(days=4)  # Friday evening to Monday morning at most


def test_defaults_threshold_is_50000_yuan():
    policy = RailPolicy()
    friday_evening = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai
    assert choose_rail(policy, cny(5_000_000), friday_evening).rail is Rail.REALTIME
    late = choose_rail(policy, cny(5_000_001), friday_evening)
    assert late.rail is Rail.LARGE_VALUE
    assert late.due_at == datetime(2026, 11, 9, 8, 30, tzinfo=SHANGHAI)  # Monday's opening


def test_holidays_push_the_opening():
    hours = BusinessHours(holidays=frozenset({date(2026, 11, 9)}))
    friday_evening = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
    assert hours.next_opening(friday_evening) == datetime(2026, 11, 10, 8, 30, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("ACCOUNT_CLOSED", FailureClass.FINAL),
        ("NAME_MISMATCH", FailureClass.FINAL),
        ("CARD_UNBOUND", FailureClass.FINAL),
        ("BANK_BUSY", FailureClass.SHORT),
        ("BANK_TIMEOUT", FailureClass.SHORT),
        ("SOMETHING_NEW", FailureClass.SHORT),  # unknown: retried, then an operator's
    ],
)
def test_failure_classes(code, cls):
    assert classify(code) is cls


def test_the_third_short_error_suspends():
    count = 0
    statuses = []
    for _ in range(MAX_SHORT_ERRORS):
        status, count = after_short_error(count)
        statuses.append(status)
    assert statuses == [WithdrawalStatus.REQUESTED] * 2 + [WithdrawalStatus.SUSPENDED]


@given(st.sampled_from(list(WithdrawalStatus)), st.sampled_from(list(WithdrawalStatus)))
def test_final_statuses_absorb(current, target):
    if current in FINAL_WITHDRAWAL:
        assert not can_move(current, target)
    if target is WithdrawalStatus.PAID and current not in FINAL_WITHDRAWAL:
        assert can_move(current, target)  # the bank's word that it paid always wins
