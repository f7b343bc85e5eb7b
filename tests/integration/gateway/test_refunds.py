"""Refunds (P8) on SQLite and PostgreSQL, against a fake of our channel port."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from clearhouse.accounts.model import Role
from clearhouse.db.schema import journal_entries, refunds
from clearhouse.gateway.errors import GatewayError
from clearhouse.gateway.model import IntentStatus, RefundStatus, Settlement
from clearhouse.money import Money
from tests.conftest import platform_fund
from tests.integration.gateway.test_payments import count, request, settle_via_notification


def paid(gateway, channel, merchant, order="order-1", amount=10_000, **kw):  # type: ignore[no-untyped-def]
    intent = gateway.payments.create(merchant.id, request(order, amount, **kw))
    settle_via_notification(gateway, channel, gateway.payments.attempts(intent.id)[-1].id)
    return gateway.payments.get(merchant.id, intent.id)


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


def test_partial_refunds_return_the_fee_share_and_add_up(app, gateway, channel, merchant):
    intent = paid(gateway, channel, merchant)
    first = gateway.refunds.create(merchant.id, intent.id, cny(3_333), "one cup broken")
    assert first.status is RefundStatus.PENDING
    channel.settle_refund(first.id)
    headers, body = channel.refund_notification(first.id)
    gateway.notifications.handle("wechatpay", headers, body)
    gateway.notifications.handle("wechatpay", headers, body)  # duplicate
    second = gateway.refunds.create(merchant.id, intent.id, cny(6_667), "rest returned")
    channel.settle_refund(second.id)
    gateway.refunds.query(second.id)
    done = [gateway.refunds.get(merchant.id, r) for r in (first.id, second.id)]
    assert [r.status for r in done] == [RefundStatus.SUCCEEDED] * 2
    # 60 fen fee on 100.00: 3333/10000 of it is 19.998 -> 20, the rest 40; together all of it.
    assert [r.fee_returned.amount for r in done] == [20, 40]
    assert app.ledger.balance(platform_fund(app, Role.ESCROW)).posted == 0
    assert app.ledger.balance(platform_fund(app, Role.CHANNEL_FEES, "wechatpay")).posted == 0
    assert app.ledger.check() == []
    # payment + fee + (refund hold + its capture + fee returned) x 2
    assert count(app, journal_entries) == 8


def test_refund_above_the_refundable_amount_is_refused_and_changes_nothing(
    app, gateway, channel, merchant
):
    intent = paid(gateway, channel, merchant)
    gateway.refunds.create(merchant.id, intent.id, cny(6_000), "part")
    with pytest.raises(GatewayError) as caught:
        gateway.refunds.create(merchant.id, intent.id, cny(4_001), "too much")
    assert caught.value.code == "REFUND_EXCEEDS_REFUNDABLE"
    assert caught.value.details["refundable"] == 4_000
    assert count(app, refunds) == 1
    assert gateway.payments.get(merchant.id, intent.id).refunded == cny(6_000)


def test_refunds_of_unpaid_payments_and_other_currencies_are_refused(
    app, gateway, channel, merchant
):
    open_ = gateway.payments.create(merchant.id, request("unpaid"))
    with pytest.raises(GatewayError) as caught:
        gateway.refunds.create(merchant.id, open_.id, cny(100), "")
    assert caught.value.code == "PAYMENT_NOT_REFUNDABLE"
    intent = paid(gateway, channel, merchant)
    with pytest.raises(GatewayError) as caught:
        gateway.refunds.create(merchant.id, intent.id, Money(100, "USD"), "")
    assert caught.value.code == "CURRENCY_NOT_SUPPORTED"
    with pytest.raises(GatewayError) as caught:
        gateway.refunds.create(merchant.id, intent.id, cny(0), "")
    assert caught.value.code == "INVALID_AMOUNT"
    assert count(app, refunds) == 0


def test_refund_count_limit_and_window(app, gateway, channel, merchant, clock):
    intent = paid(gateway, channel, merchant, amount=100)
    for _ in range(50):
        gateway.refunds.create(merchant.id, intent.id, cny(1), "")
    with pytest.raises(GatewayError) as caught:
        gateway.refunds.create(merchant.id, intent.id, cny(1), "")
    assert caught.value.code == "REFUND_LIMIT_REACHED"

    late = paid(gateway, channel, merchant, order="order-2")
    clock.advance(timedelta(days=366))
    with pytest.raises(GatewayError) as caught:
        gateway.refunds.create(merchant.id, late.id, cny(1), "")
    assert caught.value.code == "REFUND_WINDOW_CLOSED"


def test_unanswered_refund_is_sent_again_with_the_same_number(
    app, gateway, channel, merchant, clock
):
    intent = paid(gateway, channel, merchant)
    channel.refund_times_out = True
    refund = gateway.refunds.create(merchant.id, intent.id, cny(1_000), "")
    assert refund.status is RefundStatus.UNKNOWN
    channel.refund_times_out = False
    clock.advance(timedelta(seconds=31))
    gateway.poller.run_once()
    sends = [c for c in channel.calls if c.startswith("refund ")]
    assert sends == [f"refund {refund.id}"] * 2  # same refund number both times
    assert len(channel.refunds) == 1
    channel.settle_refund(refund.id)
    clock.advance(timedelta(seconds=11))
    gateway.poller.run_once()
    assert gateway.refunds.get(merchant.id, refund.id).status is RefundStatus.SUCCEEDED


def test_refund_the_channel_cannot_take_falls_back_to_a_payout(app, gateway, channel, merchant):
    intent = paid(gateway, channel, merchant)
    channel.refund_refusal = "USER_ACCOUNT_ABNORMAL"
    refund = gateway.refunds.create(merchant.id, intent.id, cny(1_000), "")
    assert refund.status is RefundStatus.PAYOUT_REQUIRED
    assert gateway.payments.get(merchant.id, intent.id).refunded == cny(1_000)  # still owed


def test_refused_refund_gives_the_reservation_back(app, gateway, channel, merchant):
    intent = paid(gateway, channel, merchant)
    channel.refund_refusal = "NOT_ENOUGH"
    refund = gateway.refunds.create(merchant.id, intent.id, cny(10_000), "")
    assert refund.status is RefundStatus.FAILED
    after = gateway.payments.get(merchant.id, intent.id)
    assert (after.refunded, after.status) == (cny(0), IntentStatus.SUCCEEDED)


def test_refund_after_completion_comes_back_from_the_merchant(app, gateway, channel, merchant):
    from tests.integration.gateway.test_payments import merchant_fund

    intent = paid(gateway, channel, merchant, settlement=Settlement.ESCROW)
    gateway.payments.complete(merchant.id, intent.id)
    refund = gateway.refunds.create(merchant.id, intent.id, cny(2_000), "")
    channel.settle_refund(refund.id)
    gateway.refunds.query(refund.id)
    # 95.00 settled, then 20.00 refunded: 19.00 from the merchant, 1.00 of commission.
    assert app.ledger.balance(merchant_fund(app, merchant)).posted == 7_600
    assert app.ledger.balance(platform_fund(app, Role.COMMISSION_INCOME)).posted == 400
    assert app.ledger.check() == []


def test_racing_refunds_never_exceed_the_payment(app, gateway, channel, merchant):
    intent = paid(gateway, channel, merchant)
    results: list[str] = []

    def take() -> None:
        try:
            gateway.refunds.create(merchant.id, intent.id, cny(6_000), "race")
            results.append("ok")
        except GatewayError as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["REFUND_EXCEEDS_REFUNDABLE"] * 3 + ["ok"]
    with app.engine.connect() as conn:
        total = sum(conn.execute(select(refunds.c.amount)).scalars())
    assert total == 6_000


def test_refund_the_merchant_cannot_cover_is_refused_before_anything_is_sent(
    app, gateway, channel, merchant
):
    from tests.integration.gateway.test_payments import merchant_fund

    intent = paid(gateway, channel, merchant, settlement=Settlement.INSTANT)
    # The merchant moved what the payment settled to it into its deposit.
    app.ledger.post(
        "deposit-1",
        "8002",
        "CNY",
        {"amount": 9_500},
        parties={"merchant": merchant.merchant.account_id},
    )
    assert app.ledger.balance(merchant_fund(app, merchant)).posted == 0
    with pytest.raises(GatewayError) as caught:
        gateway.refunds.create(merchant.id, intent.id, cny(1_000), "")
    assert caught.value.code == "REFUND_EXCEEDS_BALANCE"
    assert count(app, refunds) == 0
    assert not any(c.startswith("refund ") for c in channel.calls)
    assert gateway.payments.get(merchant.id, intent.id).refunded == cny(0)


def test_refund_holds_its_money_until_the_channel_answers(app, gateway, channel, merchant):
    from tests.integration.gateway.test_payments import merchant_fund

    intent = paid(gateway, channel, merchant, settlement=Settlement.INSTANT)
    refund = gateway.refunds.create(merchant.id, intent.id, cny(4_000), "")
    held = app.ledger.balance(merchant_fund(app, merchant))
    # 40.00 refunded: 38.00 from the merchant (the rest is commission), held, not yet gone.
    assert (held.posted, held.available) == (9_500, 5_700)
    channel.settle_refund(refund.id)
    gateway.refunds.query(refund.id)
    after = app.ledger.balance(merchant_fund(app, merchant))
    assert (after.posted, after.available) == (5_700, 5_700)


def test_a_query_that_finds_no_refund_sends_it_again_instead_of_failing_it(
    app, gateway, channel, merchant, clock
):
    intent = paid(gateway, channel, merchant)
    refund = gateway.refunds.create(merchant.id, intent.id, cny(1_000), "")
    channel.refunds.clear()  # the channel has not registered it (our send is still in flight)
    channel.refund_state.clear()
    gateway.refunds.query(refund.id)
    assert gateway.refunds.get(merchant.id, refund.id).status is RefundStatus.UNKNOWN
    clock.advance(timedelta(minutes=1))
    gateway.poller.run_once()  # resent with the same number
    assert [c for c in channel.calls if c.startswith("refund ")] == [f"refund {refund.id}"] * 2
    assert gateway.payments.get(merchant.id, intent.id).refunded == cny(1_000)


def test_a_retried_refund_request_finds_its_refund(app, gateway, channel, merchant):
    intent = paid(gateway, channel, merchant)
    first = gateway.refunds.create(merchant.id, intent.id, cny(1_000), "r", request_key="k1")
    again = gateway.refunds.create(merchant.id, intent.id, cny(1_000), "r", request_key="k1")
    assert again.id == first.id
    assert count(app, refunds) == 1
    with pytest.raises(GatewayError) as caught:
        gateway.refunds.create(merchant.id, intent.id, cny(2_000), "r", request_key="k1")
    assert caught.value.code == "IDEMPOTENCY_KEY_REUSED"


def test_small_payment_refunded_cent_by_cent_books_every_refund(app, gateway, channel, merchant):
    # Each 1-fen refund's prorated commission is 0 or the whole fen: entries with a zero
    # merchant share must still book (the merchant leg is optional).
    intent = paid(gateway, channel, merchant, amount=100, settlement=Settlement.INSTANT)
    for _ in range(25):
        refund = gateway.refunds.create(merchant.id, intent.id, cny(1), "")
        channel.settle_refund(refund.id)
        gateway.refunds.query(refund.id)
        assert gateway.refunds.get(merchant.id, refund.id).status is RefundStatus.SUCCEEDED
    assert app.ledger.check() == []
