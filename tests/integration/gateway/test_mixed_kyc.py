"""KYC limits (A1) on a mixed payment's balance part (P12), on SQLite and PostgreSQL: counted
against the identity's payment limit when the part is held, refused before anything reaches a
channel, given back when the payment fails or closes, kept when it is paid; racing payments
and transfers of one identity never pass the limit together."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import Table, select, update

from clearhouse.accounts.model import KycLevel, LimitKind
from clearhouse.bootstrap import App
from clearhouse.db.schema import (
    accounts,
    balances,
    channel_usage,
    holds,
    journal_entries,
    limit_usage,
    outbox,
    payment_attempts,
    payment_events,
    payment_intents,
    payment_legs,
    routing_decisions,
)
from clearhouse.db.transaction import run_in_transaction
from clearhouse.errors import ClearhouseError
from clearhouse.gateway.channels.port import ChannelStatus
from clearhouse.gateway.model import IntentStatus
from clearhouse.gateway.payments import PaymentRequest, mixed_parts
from clearhouse.gateway.service import Gateway
from clearhouse.money import Money
from clearhouse.wallet.errors import KycLimitExceeded
from clearhouse.wallet.transfers import TransferRequest
from tests.conftest import START
from tests.gateway_support import MerchantFixture
from tests.integration.gateway.test_payments import request, settle_via_notification
from tests.wallet_support import Buyer, add_buyer, available, second_account

CLASS_I_LIMIT = 100_000  # 1,000.00 a payment, a day and a year
CLASS_II_DAY = 1_000_000  # 10,000.00 a day


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


@pytest.fixture
def weak(app: App, gateway: Gateway, merchant: MerchantFixture) -> Buyer:
    """A class I buyer whose balance holds more than its limit lets it pay."""
    return add_buyer(
        app, "weak", merchant_id=merchant.id, balance=300_000, card=None, kyc=KycLevel.CLASS_I
    )


def mixed(order: str, account_id: str, balance: int, **kw: object) -> PaymentRequest:
    """An order of ``balance`` from the payer's balance and 10.00 through the channel."""
    parts = [("channel", cny(1_000), None), ("balance", cny(balance), account_id)]
    return request(order, balance + 1_000, legs=mixed_parts(cny(balance + 1_000), parts), **kw)


def usage(app: App, customer_id: str) -> tuple[int, int]:
    """The identity's payment usage in the tests' first day and its year."""
    on = START.date()
    found = {"day": 0, "year": 0}
    with app.engine.connect() as conn:
        rows = conn.execute(
            select(limit_usage.c.period, limit_usage.c.used_minor).where(
                limit_usage.c.customer_id == customer_id,
                limit_usage.c.kind == LimitKind.PAYMENT.value,
                limit_usage.c.period_start.in_([on, date(on.year, 1, 1)]),
            )
        )
        for period, used in rows:
            found[period] = int(used)
    return found["day"], found["year"]


WATCHED: tuple[Table, ...] = (
    payment_intents,
    payment_attempts,
    payment_legs,
    payment_events,
    holds,
    journal_entries,
    balances,
    limit_usage,
    outbox,
    routing_decisions,
    channel_usage,
)


def snapshot(app: App) -> dict[str, list[tuple[object, ...]]]:
    with app.engine.connect() as conn:
        return {
            t.name: sorted((tuple(row) for row in conn.execute(select(t))), key=repr)
            for t in WATCHED
        }


def test_a_balance_part_over_the_limit_refuses_the_payment_and_changes_nothing(
    app, gateway, channel, merchant, weak
):
    before = snapshot(app)
    with pytest.raises(KycLimitExceeded) as refused:
        gateway.payments.create(merchant.id, mixed("over", weak.account_id, CLASS_I_LIMIT + 1))
    assert refused.value.code == "KYC_LIMIT_EXCEEDED"
    assert refused.value.details["kind"] == "payment"
    assert refused.value.details["period"] == "transaction"
    assert refused.value.details["limit"] == CLASS_I_LIMIT
    assert channel.calls == []  # refused before anything was sent
    assert snapshot(app) == before  # no intent, attempt, hold, entry, event or usage
    assert available(app, weak) == 300_000


def test_the_limit_is_shared_by_every_account_of_one_identity(
    app, gateway, channel, merchant, weak
):
    other = second_account(app, weak, balance=100_000)
    gateway.payments.create(merchant.id, mixed("first", weak.account_id, 60_000))
    assert usage(app, weak.customer_id) == (60_000, 60_000)
    before = snapshot(app)
    with pytest.raises(KycLimitExceeded) as refused:
        gateway.payments.create(merchant.id, mixed("second", other, 40_001))
    assert (refused.value.details["period"], refused.value.details["headroom"]) == ("day", 40_000)
    assert snapshot(app) == before
    assert len(channel.calls) == 1
    gateway.payments.create(merchant.id, mixed("second", other, 40_000))
    assert usage(app, weak.customer_id) == (CLASS_I_LIMIT, CLASS_I_LIMIT)


def test_the_usage_comes_back_when_the_payment_fails_or_closes_and_stays_when_paid(
    app, gateway, channel, merchant, weak
):
    failing = gateway.payments.create(merchant.id, mixed("m-1", weak.account_id, CLASS_I_LIMIT))
    assert usage(app, weak.customer_id) == (CLASS_I_LIMIT, CLASS_I_LIMIT)
    with pytest.raises(KycLimitExceeded):
        gateway.payments.create(merchant.id, mixed("m-2", weak.account_id, 1))
    attempt = gateway.payments.attempts(failing.id)[-1]
    channel.state[attempt.id] = ChannelStatus.FAILED
    gateway.payments.apply(attempt.id, channel.query(attempt.id), "notification")
    assert gateway.payments.get(merchant.id, failing.id).status is IntentStatus.FAILED
    assert usage(app, weak.customer_id) == (0, 0)

    # The payer may pay again; a payment it closes gives the usage back too.
    closing = gateway.payments.create(merchant.id, mixed("m-2", weak.account_id, CLASS_I_LIMIT))
    assert usage(app, weak.customer_id) == (CLASS_I_LIMIT, CLASS_I_LIMIT)
    assert gateway.payments.close(merchant.id, closing.id).status is IntentStatus.CLOSED
    assert usage(app, weak.customer_id) == (0, 0)

    paid = gateway.payments.create(merchant.id, mixed("m-3", weak.account_id, CLASS_I_LIMIT))
    settle_via_notification(gateway, channel, gateway.payments.attempts(paid.id)[-1].id)
    assert gateway.payments.get(merchant.id, paid.id).status is IntentStatus.SUCCEEDED
    assert usage(app, weak.customer_id) == (CLASS_I_LIMIT, CLASS_I_LIMIT)
    # A refund to the balance does not give usage back: the payment was made.
    gateway.refunds.create(merchant.id, paid.id, cny(50_000), "one tin back")
    assert usage(app, weak.customer_id) == (CLASS_I_LIMIT, CLASS_I_LIMIT)
    with pytest.raises(KycLimitExceeded):
        gateway.payments.create(merchant.id, mixed("m-4", weak.account_id, 1))
    assert available(app, weak) == 300_000 - CLASS_I_LIMIT + 50_000
    with app.engine.connect() as conn:
        recorded = conn.execute(
            select(payment_events.c.intent_id, payment_events.c.status)
            .where(payment_events.c.kind == "kyc")
            .order_by(payment_events.c.id)
        ).all()
    assert recorded == [
        (failing.id, "reserved"),
        (failing.id, "released"),
        (closing.id, "reserved"),
        (closing.id, "released"),
        (paid.id, "reserved"),
    ]
    assert app.ledger.check() == []


def test_a_payment_failed_because_its_hold_lapsed_gives_the_usage_back_in_its_own_day(
    app, gateway, channel, merchant, weak, clock
):
    deadline = clock.now() + timedelta(minutes=5)
    req = mixed("late", weak.account_id, CLASS_I_LIMIT, expires_at=deadline)
    intent = gateway.payments.create(merchant.id, req)
    clock.advance(timedelta(days=2))  # the payer pays long after: the balance hold has lapsed
    settle_via_notification(gateway, channel, gateway.payments.attempts(intent.id)[-1].id)
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.FAILED
    assert usage(app, weak.customer_id) == (0, 0)
    assert available(app, weak) == 300_000


@pytest.mark.parametrize("why", ["CURRENCY_MISMATCH", "ACCOUNT_NOT_ACTIVE"])
def test_an_account_that_cannot_pay_is_an_invalid_part_and_changes_nothing(
    app, gateway, channel, merchant, why
):
    currency = "USD" if why == "CURRENCY_MISMATCH" else "CNY"
    payer = add_buyer(app, "payer", merchant_id=merchant.id, card=None, currency=currency)
    if why == "ACCOUNT_NOT_ACTIVE":
        run_in_transaction(
            app.engine,
            lambda c: c.execute(
                update(accounts).where(accounts.c.id == payer.account_id).values(status="frozen")
            ),
        )
    before = snapshot(app)
    with pytest.raises(ClearhouseError) as refused:
        gateway.payments.create(merchant.id, mixed("cannot", payer.account_id, 100))
    assert refused.value.code == "INVALID_PAYMENT_LEG"
    assert refused.value.details["reason"] == why
    assert snapshot(app) == before
    assert channel.calls == []


THREADS_PER_KIND = 8
EACH = 100_000


def test_racing_payments_and_transfers_of_one_identity_never_pass_its_limit(
    app, gateway, channel, merchant
):
    alice = add_buyer(app, "alice", merchant_id=merchant.id, balance=2_000_000, card=None)
    other = second_account(app, alice, balance=2_000_000)
    bob = add_buyer(app, "bob", merchant_id=merchant.id, card=None)
    sources = [alice.account_id, other]
    start = threading.Barrier(THREADS_PER_KIND * 2)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def attempt(kind: str, i: int) -> None:
        source = sources[i % 2]
        start.wait()
        try:
            if kind == "payment":
                gateway.payments.create(merchant.id, mixed(f"race-{i}", source, EACH))
            else:
                req = TransferRequest(f"t-{i}", source, bob.account_id, cny(EACH))
                gateway.wallet.transfers.create(merchant.id, req)
            result = "ok"
        except ClearhouseError as exc:
            result = exc.code
        with lock:
            outcomes[result] += 1

    threads = [
        threading.Thread(target=attempt, args=(kind, i))
        for kind in ("payment", "transfer")
        for i in range(THREADS_PER_KIND)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    fits = CLASS_II_DAY // EACH
    assert outcomes == {"ok": fits, "KYC_LIMIT_EXCEEDED": 2 * THREADS_PER_KIND - fits}
    assert usage(app, alice.customer_id) == (CLASS_II_DAY, CLASS_II_DAY)
    with app.engine.connect() as conn:
        held = conn.execute(select(payment_legs.c.amount)).scalars().all()
    sent = available(app, bob.fund_id)
    assert sum(held) + sent == CLASS_II_DAY
    assert len(channel.orders) == len(held)  # every refused payment was refused before sending
    assert app.ledger.check() == []
