"""Withdrawals to bound cards (P9, P10) against the payout bank sandbox over HTTP, on SQLite and
PostgreSQL: batched and paid, refused for good, short errors then suspension, a lost answer
resolved by a query, the rails' hours, and bad requests that change nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from clearhouse.accounts.model import KycLevel, LimitKind, Role
from clearhouse.db.schema import journal_entries, outbox, withdrawal_batches, withdrawals
from clearhouse.gateway.card_model import CardError
from clearhouse.money import Money
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.wallet.errors import WalletError
from clearhouse.wallet.model import BusinessHours, RailPolicy
from clearhouse.wallet.withdrawals import WithdrawalRequest, events_of
from tests.conftest import platform_fund
from tests.integration.gateway.test_payments import count
from tests.wallet_support import (
    CAPPED,
    DEBIT,
    add_buyer,
    available,
    bind_card,
    fund_reserve,
    posted,
    served_bank,
    unbind,
    used,
)


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


def ask(buyer, amount: int = 50_000, ref: str = "w-1", card: str | None = None):  # type: ignore[no-untyped-def]
    return WithdrawalRequest(ref, buyer.account_id, card or buyer.card_id, cny(amount))


def events(app) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    with app.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.type, outbox.c.payload).order_by(outbox.c.id))
        return [(r.type, json.loads(r.payload)) for r in rows]


def card_balance(stack, card) -> int:  # type: ignore[no-untyped-def]
    found = stack.bank.issuers.card(card.card_no)
    assert found is not None
    return int(found.balance.amount)


def test_a_withdrawal_is_held_then_batched_and_paid(app, merchant):
    fund_reserve(app)
    buyer = add_buyer(app, merchant_id=merchant.id, balance=100_000)
    with served_bank(app, {}) as stack:
        wallet = stack.gateway.wallet
        before_card = card_balance(stack, DEBIT)
        shown = wallet.withdrawals.request(merchant.id, ask(buyer))
        assert (shown["status"], shown["rail"]) == ("REQUESTED", "realtime")
        # Held, not gone: the balance cannot spend it, the books have not moved it.
        assert (posted(app, buyer), available(app, buyer)) == (100_000, 50_000)
        assert used(app, buyer.customer_id, LimitKind.WITHDRAWAL) == 50_000
        assert wallet.withdrawals.request(merchant.id, ask(buyer))["id"] == shown["id"]
        run = wallet.withdrawals.run_batches()
        assert (len(run.batches), run.paid) == (1, 1)
        done = wallet.withdrawals.get(merchant.id, shown["id"])
        assert (done["status"], done["batch_id"]) == ("PAID", run.batches[0])
        assert done["bank_txn_id"]
        assert (posted(app, buyer), available(app, buyer)) == (50_000, 50_000)
        assert card_balance(stack, DEBIT) == before_card + 50_000
        with app.engine.connect() as conn:
            batch = conn.execute(select(withdrawal_batches)).one()
        assert (batch.item_count, batch.total, batch.status) == (1, 50_000, "ANSWERED")
        # Nothing is due any more: a second run sends nothing and the bank paid once.
        assert wallet.withdrawals.run_batches().batches == []
        assert len(stack.bank.paid()) == 1
    assert [t for t, _ in events(app)] == ["withdrawal.requested", "withdrawal.paid"]
    assert app.ledger.check() == []


def test_one_batch_per_rail_with_count_and_total(app, merchant):
    fund_reserve(app)
    policy = RailPolicy(realtime_max_minor=100_000, large_value_above_minor=500_000)
    buyers = [
        add_buyer(app, f"b{i}", merchant_id=merchant.id, balance=1_000_000, kyc=KycLevel.CLASS_III)
        for i in range(3)
    ]
    with served_bank(app, {}, policy=policy) as stack:
        withdrawals_ = stack.gateway.wallet.withdrawals
        amounts = [10_000, 20_000, 300_000]  # two real-time, one batch
        for i, (buyer, amount) in enumerate(zip(buyers, amounts, strict=True)):
            withdrawals_.request(merchant.id, ask(buyer, amount, ref=f"w-{i}"))
        run = withdrawals_.run_batches()
        assert (len(run.batches), run.paid) == (2, 3)
    with app.engine.connect() as conn:
        rows = {r.rail: (r.item_count, r.total) for r in conn.execute(select(withdrawal_batches))}
    assert rows == {"realtime": (2, 30_000), "batch": (1, 300_000)}


@pytest.mark.parametrize(
    ("spoil", "code"),
    [("closed", "ACCOUNT_CLOSED"), ("name", "NAME_MISMATCH"), ("unbound", "CARD_UNBOUND")],
)
def test_a_final_failure_releases_the_hold_and_the_limit_and_tells_the_merchant(
    app, merchant, spoil, code
):
    fund_reserve(app)
    buyer = add_buyer(app, merchant_id=merchant.id, balance=100_000)
    card = buyer.card_id
    if spoil == "name":
        card = bind_card(app, buyer.customer_id, CAPPED, holder="张三")  # not 赵六's name
    with served_bank(app, {}) as stack:
        wallet = stack.gateway.wallet
        shown = wallet.withdrawals.request(merchant.id, ask(buyer, card=card))
        if spoil == "closed":
            stack.bank.close_account(DEBIT.card_no)
        elif spoil == "unbound":
            unbind(app, card)  # after the request: found when its batch is formed
        run = wallet.withdrawals.run_batches()
        assert run.failed == 1
        done = wallet.withdrawals.get(merchant.id, shown["id"])
        assert (done["status"], done["error_code"]) == ("FAILED", code)
        assert stack.bank.paid() == []
    assert (posted(app, buyer), available(app, buyer)) == (100_000, 100_000)
    assert used(app, buyer.customer_id, LimitKind.WITHDRAWAL) == 0  # the limit is free again
    told = events(app)[-1]
    assert told[0] == "withdrawal.failed"
    assert (told[1]["id"], told[1]["error_code"]) == (shown["id"], code)
    assert app.ledger.check() == []


def test_short_errors_retry_then_suspend_and_an_operator_resumes(app, merchant):
    fund_reserve(app)
    buyer = add_buyer(app, merchant_id=merchant.id, balance=100_000)
    with served_bank(app, {}) as stack:
        withdrawals_ = stack.gateway.wallet.withdrawals
        shown = withdrawals_.request(merchant.id, ask(buyer))
        stack.bank.faults = FaultPlan().force(Fault.BANK_BUSY, shown["id"])
        statuses = []
        for _ in range(4):
            withdrawals_.run_batches()
            statuses.append(withdrawals_.get(merchant.id, shown["id"])["status"])
        # Due again after each of the first two; the third suspends it; nothing more is sent.
        assert statuses == ["REQUESTED", "REQUESTED", "SUSPENDED", "SUSPENDED"]
        assert stack.bank.tries[shown["id"]] == 3
        held = withdrawals_.get(merchant.id, shown["id"])
        assert (held["short_errors"], held["error_code"]) == (3, "BANK_BUSY")
        assert available(app, buyer) == 50_000  # still held for the operator
        assert used(app, buyer.customer_id, LimitKind.WITHDRAWAL) == 50_000
        assert [t for t, _ in events(app)][-1] == "withdrawal.suspended"
        stack.bank.faults = FaultPlan()
        assert withdrawals_.resume(shown["id"])["status"] == "REQUESTED"
        assert withdrawals_.run_batches().paid == 1
        assert withdrawals_.get(merchant.id, shown["id"])["status"] == "PAID"
        with pytest.raises(WalletError) as refused:
            withdrawals_.resume(shown["id"])
        assert refused.value.code == "INVALID_STATE"
    assert posted(app, buyer) == 50_000
    assert app.ledger.check() == []


def test_an_operator_cancels_a_suspended_withdrawal(app, merchant):
    fund_reserve(app)
    buyer = add_buyer(app, merchant_id=merchant.id, balance=100_000)
    with served_bank(app, {}) as stack:
        withdrawals_ = stack.gateway.wallet.withdrawals
        shown = withdrawals_.request(merchant.id, ask(buyer))
        stack.bank.faults = FaultPlan().force(Fault.BANK_BUSY, shown["id"])
        for _ in range(3):
            withdrawals_.run_batches()
        done = withdrawals_.cancel(shown["id"])
        assert (done["status"], done["error_code"]) == ("FAILED", "CANCELLED")
    assert available(app, buyer) == 100_000
    assert used(app, buyer.customer_id, LimitKind.WITHDRAWAL) == 0
    assert app.ledger.check() == []


def test_a_lost_answer_is_resolved_by_a_query_and_never_paid_twice(app, merchant):
    fund_reserve(app)
    buyer = add_buyer(app, merchant_id=merchant.id, balance=100_000)
    late = FaultPlan(rates_ppm={Fault.TIMEOUT: 1_000_000})  # every batch's answer comes late
    with served_bank(app, {}, faults=late, timeout=0.3, late_by=1.0) as stack:
        withdrawals_ = stack.gateway.wallet.withdrawals
        shown = withdrawals_.request(merchant.id, ask(buyer))
        first = withdrawals_.run_batches()
        assert (first.unanswered, first.paid) == (1, 0)
        # The bank paid; we do not know it yet: still submitted, still held.
        assert len(stack.bank.paid()) == 1
        assert withdrawals_.get(merchant.id, shown["id"])["status"] == "SUBMITTED"
        assert available(app, buyer) == 50_000
        second = withdrawals_.run_batches()
        assert (second.queried, second.paid, second.batches) == (1, 1, [])
        assert withdrawals_.get(merchant.id, shown["id"])["status"] == "PAID"
        assert len(stack.bank.paid()) == 1
        assert card_balance(stack, DEBIT) == 10_000_000 + 50_000  # credited once
        kinds = [e["kind"] for e in _events(app, shown["id"])]
        assert kinds == ["request", "submit", "answer", "query"]
    assert posted(app, buyer) == 50_000
    assert app.ledger.check() == []


def _events(app, withdrawal_id):  # type: ignore[no-untyped-def]
    with app.engine.connect() as conn:
        return events_of(conn, withdrawal_id)


def test_a_batch_the_bank_never_saw_goes_again_under_the_same_id(app, merchant):
    fund_reserve(app)
    buyer = add_buyer(app, merchant_id=merchant.id, balance=100_000)
    with served_bank(app, {}) as stack:
        withdrawals_ = stack.gateway.wallet.withdrawals
        shown = withdrawals_.request(merchant.id, ask(buyer))
        good = withdrawals_.bank
        from clearhouse.wallet.bankwire.adapter import BankAdapter

        assert isinstance(good, BankAdapter)
        down = BankAdapter(good.credentials, "http://127.0.0.1:9", timeout=0.3, clock=app.clock)
        withdrawals_.bank = down
        assert withdrawals_.run_batches().unanswered == 1
        down.close()
        withdrawals_.bank = good
        # Queried (the bank has no such item), due again, sent again with the same id: paid.
        run = withdrawals_.run_batches()
        assert (run.queried, run.retried, run.paid, len(run.batches)) == (1, 1, 1, 1)
        assert [p.ref for p in stack.bank.paid()] == [shown["id"]]


def test_large_value_waits_for_business_hours(app, merchant, clock):
    fund_reserve(app)
    policy = RailPolicy(realtime_max_minor=100_000, large_value_above_minor=100_000)
    buyer = add_buyer(app, merchant_id=merchant.id, balance=1_000_000)
    saturday = datetime(2026, 11, 7, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    clock.set(saturday)
    with served_bank(app, {}, policy=policy) as stack:
        withdrawals_ = stack.gateway.wallet.withdrawals
        shown = withdrawals_.request(merchant.id, ask(buyer, 200_000))
        monday = datetime(2026, 11, 9, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
        assert (shown["rail"], shown["due_at"]) == ("large_value", monday.isoformat())
        assert withdrawals_.run_batches().batches == []
        clock.set(monday - timedelta(seconds=1))
        assert withdrawals_.run_batches().batches == []
        clock.set(monday)
        assert withdrawals_.run_batches().paid == 1
    assert BusinessHours().is_open(monday)


def test_bad_withdrawals_get_a_code_and_change_nothing(app, merchant):
    fund_reserve(app)
    buyer = add_buyer(app, merchant_id=merchant.id, balance=100_000)
    stranger = add_buyer(app, "stranger", merchant_id=merchant.id, card=CAPPED)
    unbound = bind_card(app, buyer.customer_id, CAPPED, status="unbound")
    # Class I may not withdraw at all.
    weak = add_buyer(app, "weak", merchant_id=merchant.id, balance=100_000, kyc=KycLevel.CLASS_I)
    with served_bank(app, {}) as stack:
        withdrawals_ = stack.gateway.wallet.withdrawals
        cases = [
            (ask(buyer, card=unbound), "CARD_NOT_ACTIVE"),
            (ask(buyer, card=stranger.card_id), "CARD_NOT_OWNED"),
            (ask(buyer, card="card_nobody"), "CARD_NOT_FOUND"),
            (ask(buyer, amount=100_001), "INSUFFICIENT_BALANCE"),
            (ask(weak, amount=100), "KYC_LIMIT_EXCEEDED"),
            (WithdrawalRequest("w", "acc_nobody", buyer.card_id, cny(1)), "ACCOUNT_NOT_FOUND"),
            (
                WithdrawalRequest("w", buyer.account_id, buyer.card_id, Money(1, "USD")),
                ("CURRENCY_NOT_SUPPORTED"),
            ),
        ]
        entries = count(app, journal_entries)
        for req, code in cases:
            with pytest.raises((WalletError, CardError)) as refused:
                withdrawals_.request(merchant.id, req)
            assert refused.value.code == code, req
        assert count(app, journal_entries) == entries
        assert count(app, withdrawals) == 0
        assert available(app, buyer) == 100_000
        assert used(app, buyer.customer_id, LimitKind.WITHDRAWAL) == 0
        # Above the limit (class II: 10,000.00 a day) with the money there.
        rich = add_buyer(app, "rich", merchant_id=merchant.id, balance=2_000_000, card=DEBIT)
        with pytest.raises(WalletError) as refused:
            withdrawals_.request(merchant.id, ask(rich, amount=1_000_001))
        assert refused.value.code == "KYC_LIMIT_EXCEEDED"
        assert available(app, rich) == 2_000_000
        assert withdrawals_.run_batches().batches == []
    assert events(app) == []


def test_an_empty_bank_reserve_is_not_the_buyers_fault(app, merchant):
    # The platform has no money at the bank.
    buyer = add_buyer(app, merchant_id=merchant.id, balance=100_000)
    reserve = platform_fund(app, Role.BANK_RESERVE, "icbc")
    with served_bank(app, {}) as stack:
        with pytest.raises(WalletError) as refused:
            stack.gateway.wallet.withdrawals.request(merchant.id, ask(buyer))
        assert refused.value.code == "PAYOUT_UNAVAILABLE"
    assert available(app, buyer) == 100_000
    assert app.ledger.balance(reserve).available == 0
    assert used(app, buyer.customer_id, LimitKind.WITHDRAWAL) == 0
