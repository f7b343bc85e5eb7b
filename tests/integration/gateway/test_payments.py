"""Payment flows on SQLite and PostgreSQL, against a fake of our channel port."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from clearhouse.accounts.model import Role
from clearhouse.bootstrap import App
from clearhouse.db.schema import journal_entries, outbox, payment_events, payment_intents
from clearhouse.gateway.channels.port import ChannelResult, ChannelStatus
from clearhouse.gateway.errors import DuplicateOrder, InvalidPayment, InvalidTransition
from clearhouse.gateway.model import AttemptStatus, IntentStatus, Settlement
from clearhouse.gateway.payments import PaymentRequest
from clearhouse.gateway.service import Gateway
from clearhouse.money import Money
from tests.conftest import platform_fund
from tests.fake_channel import FakeChannel
from tests.gateway_support import MerchantFixture


def request(order: str = "order-1", amount: int | Money = 10_000, **kw: object) -> PaymentRequest:
    fields: dict[str, object] = {
        "merchant_order_id": order,
        "amount": amount if isinstance(amount, Money) else Money(amount, "CNY"),
        "description": "Longjing tea 250 g",
        "channel": "wechatpay",
        "method": "native",
        "settlement": Settlement.ESCROW,
    }
    fields.update(kw)
    return PaymentRequest(**fields)  # type: ignore[arg-type]


def count(app: App, table, *where) -> int:  # type: ignore[no-untyped-def]
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())


def settle_via_notification(gateway: Gateway, channel: FakeChannel, attempt_id: str) -> None:
    channel.payer_pays(attempt_id)
    headers, body = channel.notification(attempt_id)
    ack = gateway.notifications.handle("wechatpay", headers, body)
    assert ack.status_code == 200


def test_payment_is_sent_and_pending_until_the_payer_pays(app, gateway, channel, merchant):
    intent = gateway.payments.create(merchant.id, request())
    attempt = gateway.payments.attempts(intent.id)[-1]
    assert intent.status is IntentStatus.PROCESSING
    assert attempt.status is AttemptStatus.PENDING
    assert attempt.credential == f"weixin://pay/{attempt.id}"
    assert intent.commission == Money(500, "CNY")  # 5% of 100.00
    assert count(app, journal_entries) == 0


def test_notification_books_escrow_and_fee_once(app, gateway, channel, merchant):
    intent = gateway.payments.create(merchant.id, request())
    attempt_id = gateway.payments.attempts(intent.id)[-1].id
    settle_via_notification(gateway, channel, attempt_id)
    settle_via_notification(gateway, channel, attempt_id)  # duplicate delivery
    paid = gateway.payments.get(merchant.id, intent.id)
    assert paid.status is IntentStatus.SUCCEEDED
    assert paid.fee == Money(60, "CNY")  # 0.6% of 100.00
    assert count(app, journal_entries) == 2  # payment + fee, not four
    escrow = app.ledger.balance(platform_fund(app, Role.ESCROW))
    assert escrow.posted == 10_000
    assert count(app, outbox, outbox.c.type == "payment.succeeded") == 1
    assert app.ledger.check() == []


def test_instant_payment_goes_to_the_merchant_less_commission(app, gateway, channel, merchant):
    intent = gateway.payments.create(merchant.id, request(settlement=Settlement.INSTANT))
    settle_via_notification(gateway, channel, gateway.payments.attempts(intent.id)[-1].id)
    settlement_fund = merchant_fund(app, merchant)
    assert app.ledger.balance(settlement_fund).posted == 9_500
    assert app.ledger.balance(platform_fund(app, Role.COMMISSION_INCOME)).posted == 500


def merchant_fund(app: App, merchant: MerchantFixture) -> int:
    from clearhouse.accounts.handlers import find_fund_account

    with app.engine.connect() as conn:
        fid = find_fund_account(conn, merchant.merchant.account_id, Role.MERCHANT_SETTLEMENT, "CNY")
    assert fid is not None
    return fid


def test_bad_signature_notification_changes_nothing(app, gateway, channel, merchant):
    intent = gateway.payments.create(merchant.id, request())
    attempt_id = gateway.payments.attempts(intent.id)[-1].id
    channel.payer_pays(attempt_id)
    events_before = count(app, payment_events)
    headers, body = channel.notification(attempt_id, signed=False)
    ack = gateway.notifications.handle("wechatpay", headers, body)
    assert ack.status_code == 500
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.PROCESSING
    assert count(app, payment_events) == events_before
    assert count(app, journal_entries) == 0


def test_timeout_is_unknown_then_the_poller_resolves_it(app, gateway, channel, merchant, clock):
    channel.pay_times_out = True
    intent = gateway.payments.create(merchant.id, request())
    attempt = gateway.payments.attempts(intent.id)[-1]
    assert attempt.status is AttemptStatus.UNKNOWN
    assert intent.status is IntentStatus.PROCESSING
    channel.payer_pays(attempt.id)
    assert gateway.poller.run_once().attempts == 0  # not due yet
    clock.advance(timedelta(seconds=31))
    report = gateway.poller.run_once()
    assert (report.attempts, report.changed) == (1, 1)
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.SUCCEEDED
    assert count(app, journal_entries) == 2


def test_lost_notification_is_found_by_the_poller(app, gateway, channel, merchant, clock):
    intent = gateway.payments.create(merchant.id, request())
    channel.payer_pays(gateway.payments.attempts(intent.id)[-1].id)  # notification never comes
    clock.advance(timedelta(minutes=1))
    gateway.poller.run_once()
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.SUCCEEDED


def test_unpaid_attempt_is_closed_after_its_deadline(app, gateway, channel, merchant, clock):
    intent = gateway.payments.create(merchant.id, request())
    clock.advance(timedelta(minutes=31))
    gateway.poller.run_once()
    closed = gateway.payments.get(merchant.id, intent.id)
    assert closed.status is IntentStatus.CLOSED
    assert any(c.startswith("close ") for c in channel.calls)
    assert count(app, outbox, outbox.c.type == "payment.closed") == 1


def test_crash_between_store_and_send_is_resolved(app, gateway, channel, merchant, clock):
    # The attempt row exists but the channel was never called (the process died).
    intent_row, _attempt_id, fresh = _store_only(gateway, merchant)
    assert fresh
    clock.advance(timedelta(minutes=45))
    gateway.poller.run_once()  # query: the channel never heard of it; past the deadline
    clock.advance(timedelta(hours=2))
    gateway.poller.run_once()
    final = gateway.payments.get(merchant.id, intent_row.id)
    assert final.status is IntentStatus.CLOSED
    assert count(app, journal_entries) == 0


def _store_only(gateway: Gateway, merchant: MerchantFixture):  # type: ignore[no-untyped-def]
    from clearhouse.db.transaction import run_in_transaction

    return run_in_transaction(
        gateway.engine, lambda c: gateway.payments._store(c, merchant.id, request("crash"))
    )


def test_same_order_same_request_is_one_payment(app, gateway, channel, merchant):
    first = gateway.payments.create(merchant.id, request())
    again = gateway.payments.create(merchant.id, request())
    assert again.id == first.id
    assert sum(c.startswith("pay ") for c in channel.calls) == 1
    with pytest.raises(DuplicateOrder):
        gateway.payments.create(merchant.id, request(amount=9_999))
    assert count(app, payment_intents) == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": 0}, "INVALID_AMOUNT"),
        ({"amount": -5}, "INVALID_AMOUNT"),
        ({"amount": 100_000_001}, "AMOUNT_TOO_LARGE"),
        ({"channel": "paypal"}, "CHANNEL_NOT_SUPPORTED"),
        ({"method": "page"}, "METHOD_NOT_SUPPORTED"),
        ({"method": "jsapi"}, "INVALID_PAYMENT"),
    ],
)
def test_bad_payments_are_refused_before_anything_is_stored(
    app, gateway, channel, merchant, change, code
):
    with pytest.raises(InvalidPayment) as caught:
        gateway.payments.create(merchant.id, request(**change))
    assert caught.value.code == code
    assert count(app, payment_intents) == 0
    assert channel.calls == []


def test_expired_order_and_other_currency_are_refused(app, gateway, channel, merchant, clock):
    with pytest.raises(InvalidPayment) as caught:
        gateway.payments.create(merchant.id, request(expires_at=clock.now()))
    assert caught.value.code == "ORDER_EXPIRED"
    with pytest.raises(InvalidPayment) as caught:
        gateway.payments.create(merchant.id, request(amount=Money(100, "USD")))
    assert caught.value.code == "CURRENCY_NOT_SUPPORTED"
    assert channel.calls == []


def test_close_and_complete(app, gateway, channel, merchant):
    open_ = gateway.payments.create(merchant.id, request("to-close"))
    closed = gateway.payments.close(merchant.id, open_.id)
    assert closed.status is IntentStatus.CLOSED
    with pytest.raises(InvalidTransition):
        gateway.payments.complete(merchant.id, closed.id)

    paid = gateway.payments.create(merchant.id, request("to-complete"))
    settle_via_notification(gateway, channel, gateway.payments.attempts(paid.id)[-1].id)
    with pytest.raises(InvalidTransition):
        gateway.payments.close(merchant.id, paid.id)
    done = gateway.payments.complete(merchant.id, paid.id)
    assert done.status is IntentStatus.COMPLETED
    assert gateway.payments.complete(merchant.id, paid.id).status is IntentStatus.COMPLETED
    assert app.ledger.balance(platform_fund(app, Role.ESCROW)).posted == 0
    assert app.ledger.balance(merchant_fund(app, merchant)).posted == 9_500
    assert app.ledger.check() == []


def test_payer_paying_just_before_close_wins(app, gateway, channel, merchant):
    intent = gateway.payments.create(merchant.id, request())
    channel.payer_pays(gateway.payments.attempts(intent.id)[-1].id)
    assert gateway.payments.close(merchant.id, intent.id).status is IntentStatus.SUCCEEDED


def test_channel_amount_differing_from_the_order_is_not_booked(app, gateway, channel, merchant):
    channel.paid_amount_delta = 1
    intent = gateway.payments.create(merchant.id, request())
    settle_via_notification(gateway, channel, gateway.payments.attempts(intent.id)[-1].id)
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.PROCESSING
    assert count(app, journal_entries) == 0
    assert count(app, payment_events, payment_events.c.kind == "anomaly") == 1


def test_another_merchant_cannot_see_the_payment(app, gateway, channel, merchant):
    from clearhouse.gateway.errors import PaymentNotFound
    from tests.gateway_support import add_merchant

    other = add_merchant(app, gateway, name="Other")
    intent = gateway.payments.create(merchant.id, request())
    with pytest.raises(PaymentNotFound):
        gateway.payments.get(other.id, intent.id)


def test_pending_attempt_is_never_given_up_while_the_channel_is_unreachable(
    app, gateway, channel, merchant, clock
):
    intent = gateway.payments.create(merchant.id, request())
    attempt_id = gateway.payments.attempts(intent.id)[-1].id
    channel.payer_pays(attempt_id)  # paid just before the deadline ...

    def unreachable(*_args: object) -> ChannelResult:
        return ChannelResult(ChannelStatus.UNKNOWN, "timeout", error_code="TIMEOUT")

    channel.query = unreachable  # type: ignore[method-assign]
    channel.close = unreachable  # type: ignore[method-assign]
    for _ in range(12):  # ... then the channel is unreachable for three hours
        clock.advance(timedelta(minutes=15))
        gateway.poller.run_once()
    assert gateway.payments.attempts(intent.id)[-1].status is AttemptStatus.PENDING
    del channel.query, channel.close  # the channel is back
    clock.advance(timedelta(hours=2))
    gateway.poller.run_once()
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.SUCCEEDED


def test_refused_close_leaves_the_payment_open(app, gateway, channel, merchant):
    intent = gateway.payments.create(merchant.id, request())
    channel.close = lambda _a: ChannelResult(  # type: ignore[method-assign]
        ChannelStatus.FAILED, "no auth", error_code="NO_AUTH"
    )
    assert gateway.payments.close(merchant.id, intent.id).status is IntentStatus.PROCESSING


def test_payment_after_close_is_reported_once(app, gateway, channel, merchant):
    intent = gateway.payments.create(merchant.id, request())
    attempt_id = gateway.payments.attempts(intent.id)[-1].id
    gateway.payments.close(merchant.id, intent.id)
    channel.state[attempt_id] = ChannelStatus.SUCCEEDED  # the channel let the payer pay anyway
    for _ in range(2):
        headers, body = channel.notification(attempt_id)
        assert gateway.notifications.handle("wechatpay", headers, body).status_code == 200
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.CLOSED
    assert count(app, outbox, outbox.c.type == "payment.paid_after_close") == 1
    assert count(app, journal_entries) == 0  # reconciliation refunds it from the channel


def test_one_failing_row_does_not_hold_up_the_poller(app, gateway, channel, merchant, clock):
    first = gateway.payments.create(merchant.id, request("first"))
    second = gateway.payments.create(merchant.id, request("second"))
    bad = gateway.payments.attempts(first.id)[-1].id
    good = gateway.payments.attempts(second.id)[-1].id
    channel.payer_pays(good)
    real_query = channel.query

    def query(attempt_id: str) -> ChannelResult:
        if attempt_id == bad:
            raise RuntimeError("adapter bug")
        return real_query(attempt_id)

    channel.query = query  # type: ignore[method-assign]
    clock.advance(timedelta(minutes=1))
    report = gateway.poller.run_once()
    assert (report.attempts, report.changed) == (2, 1)
    assert gateway.payments.get(merchant.id, second.id).status is IntentStatus.SUCCEEDED
    assert gateway.payments.attempts(first.id)[-1].polls == 1  # pushed back, not stuck first
