from datetime import UTC, datetime, timedelta

import pytest

from clearhouse.accounts.model import Status
from clearhouse.ledger.model import (
    MAX_MINOR,
    BalanceRow,
    Counters,
    EntryKind,
    Posting,
    Reason,
    Rejection,
    Side,
    apply_entry,
    check_postings,
    entry_effects,
)

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def row(
    fund: int,
    side: Side,
    *,
    non_negative: bool = False,
    status: Status = Status.ACTIVE,
    **counters: int,
) -> BalanceRow:
    return BalanceRow(
        fund, 0, side, non_negative, status, Counters(**counters), version=3, last_at=T0
    )


def p(seq: int, fund: int, side: Side, amount: int, currency: str = "CNY") -> Posting:
    return Posting(seq, fund, 0, side, amount, currency)


def test_balanced_entry_passes():
    assert check_postings([p(0, 1, Side.DEBIT, 100), p(1, 2, Side.CREDIT, 100)]) is None


@pytest.mark.parametrize(
    ("postings", "reason"),
    [
        ([p(0, 1, Side.DEBIT, 100)], Reason.TOO_FEW_POSTINGS),
        ([p(0, 1, Side.DEBIT, 100), p(1, 2, Side.CREDIT, 99)], Reason.UNBALANCED),
        ([p(0, 1, Side.DEBIT, 0), p(1, 2, Side.CREDIT, 0)], Reason.AMOUNT_NOT_POSITIVE),
        (
            [p(0, 1, Side.DEBIT, MAX_MINOR + 1), p(1, 2, Side.CREDIT, MAX_MINOR + 1)],
            Reason.AMOUNT_TOO_LARGE,
        ),
        # Balanced in total but not per currency.
        ([p(0, 1, Side.DEBIT, 100, "CNY"), p(1, 2, Side.CREDIT, 100, "USD")], Reason.UNBALANCED),
    ],
)
def test_journal_invariants_reject(postings, reason):
    found = check_postings(postings)
    assert isinstance(found, Rejection)
    assert found.reason is reason


def test_signed_balances_follow_the_normal_side():
    c = Counters(debits_posted=500, credits_posted=200, debits_pending=30, credits_pending=70)
    assert c.posted(Side.DEBIT) == 300
    assert c.posted(Side.CREDIT) == -300
    assert c.pending_out(Side.DEBIT) == 70  # credits lower an asset
    assert c.pending_out(Side.CREDIT) == 30
    assert c.available(Side.DEBIT) == 230
    assert c.available(Side.CREDIT) == -330


def test_effects_of_each_kind():
    legs = [p(0, 1, Side.DEBIT, 100), p(1, 2, Side.CREDIT, 100)]
    assert entry_effects(EntryKind.POSTED, legs)[(1, 0)] == Counters(debits_posted=100)
    assert entry_effects(EntryKind.PENDING, legs)[(2, 0)] == Counters(credits_pending=100)
    captured = [p(0, 1, Side.DEBIT, 60), p(1, 2, Side.CREDIT, 60)]
    # A capture posts its own amounts and releases the whole hold.
    assert entry_effects(EntryKind.POST_PENDING, captured, legs)[(1, 0)] == Counters(
        debits_posted=60, debits_pending=-100
    )
    assert entry_effects(EntryKind.VOID, legs, legs)[(2, 0)] == Counters(credits_pending=-100)
    assert entry_effects(EntryKind.REVERSAL, legs)[(2, 0)] == Counters(credits_posted=100)


def test_apply_moves_counters_version_and_time():
    rows = {(1, 0): row(1, Side.DEBIT), (2, 0): row(2, Side.CREDIT)}
    effects = entry_effects(EntryKind.POSTED, [p(0, 1, Side.DEBIT, 100), p(1, 2, Side.CREDIT, 100)])
    later = T0 + timedelta(seconds=5)
    changes = apply_entry(rows, effects, later)
    assert not isinstance(changes, Rejection)
    after = {(c.after.fund_account_id, c.after.shard): c.after for c in changes}
    assert after[(1, 0)].posted == 100
    assert after[(2, 0)].posted == 100
    assert after[(1, 0)].version == 4
    assert all(c.at == later for c in changes)


def test_history_time_never_goes_backwards():
    rows = {(1, 0): row(1, Side.DEBIT), (2, 0): row(2, Side.CREDIT)}
    effects = entry_effects(EntryKind.POSTED, [p(0, 1, Side.DEBIT, 1), p(1, 2, Side.CREDIT, 1)])
    changes = apply_entry(rows, effects, T0 - timedelta(seconds=1))
    assert not isinstance(changes, Rejection)
    assert all(c.at == T0 for c in changes)


def test_non_negative_account_cannot_go_below_zero_counting_holds():
    # Buyer balance (credit normal) of 100 with 30 held: 70 available.
    buyer = row(1, Side.CREDIT, non_negative=True, credits_posted=100, debits_pending=30)
    other = row(2, Side.CREDIT)
    rows = {(1, 0): buyer, (2, 0): other}
    too_much = entry_effects(EntryKind.POSTED, [p(0, 1, Side.DEBIT, 71), p(1, 2, Side.CREDIT, 71)])
    found = apply_entry(rows, too_much, T0)
    assert isinstance(found, Rejection)
    assert found.reason is Reason.INSUFFICIENT_FUNDS
    exact = entry_effects(EntryKind.POSTED, [p(0, 1, Side.DEBIT, 70), p(1, 2, Side.CREDIT, 70)])
    changes = apply_entry(rows, exact, T0)
    assert not isinstance(changes, Rejection)
    assert [c.after.available for c in changes if c.after.fund_account_id == 1] == [0]


def test_short_constrained_account_may_still_receive():
    short = row(1, Side.CREDIT, non_negative=True, debits_posted=10)  # already -10
    rows = {(1, 0): short, (2, 0): row(2, Side.DEBIT)}
    topup = entry_effects(EntryKind.POSTED, [p(0, 2, Side.DEBIT, 5), p(1, 1, Side.CREDIT, 5)])
    assert not isinstance(apply_entry(rows, topup, T0), Rejection)


@pytest.mark.parametrize(
    ("status", "debit_allowed", "credit_allowed"),
    [
        (Status.FROZEN, False, True),
        (Status.CLOSED, False, False),
    ],
)
def test_account_status(status, debit_allowed, credit_allowed):
    target = row(1, Side.CREDIT, status=status, credits_posted=100)
    rows = {(1, 0): target, (2, 0): row(2, Side.DEBIT)}
    debit = entry_effects(EntryKind.POSTED, [p(0, 1, Side.DEBIT, 5), p(1, 2, Side.CREDIT, 5)])
    credit = entry_effects(EntryKind.POSTED, [p(0, 2, Side.DEBIT, 5), p(1, 1, Side.CREDIT, 5)])
    assert isinstance(apply_entry(rows, debit, T0), Rejection) is not debit_allowed
    assert isinstance(apply_entry(rows, credit, T0), Rejection) is not credit_allowed


def test_overflow_is_rejected_not_wrapped():
    full = row(1, Side.DEBIT, debits_posted=MAX_MINOR - 5)
    rows = {(1, 0): full, (2, 0): row(2, Side.CREDIT)}
    effects = entry_effects(EntryKind.POSTED, [p(0, 1, Side.DEBIT, 6), p(1, 2, Side.CREDIT, 6)])
    found = apply_entry(rows, effects, T0)
    assert isinstance(found, Rejection)
    assert found.reason is Reason.BALANCE_OVERFLOW
