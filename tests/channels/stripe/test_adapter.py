"""The adapter against the served sandbox: every ChannelPort method, faults and webhooks."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.port import (
    BadNotification,
    ChannelStatus,
    PayMethod,
    PayOrder,
    RefundOrder,
)
from clearhouse.gateway.channels.stripe.adapter import StripeAdapter
from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.money import Money
from clearhouse.sandbox.faults import NO_FAULTS, Fault
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.stripe.state import StripeSandbox
from tests.channels.receiver import ScriptedReceiver


def order(attempt_id: str, cents: int, clock: FixedClock, **kw: object) -> PayOrder:
    values: dict[str, object] = {
        "attempt_id": attempt_id,
        "amount": Money(cents, "USD"),
        "description": "tea",
        "method": PayMethod.CARD,
        "notify_url": "https://merchant.example/notify",
        "expires_at": clock.now() + timedelta(minutes=30),
        "payer_id": "pm_card_visa",
        **kw,
    }
    return PayOrder(**values)  # type: ignore[arg-type]


def refund_order(refund_no: str, attempt_id: str, cents: int, total: int) -> RefundOrder:
    return RefundOrder(
        refund_no, attempt_id, Money(cents, "USD"), Money(total, "USD"), "returned", ""
    )


def test_pay_succeeds_and_queries(
    adapter: StripeAdapter, sandbox: StripeSandbox, clock: FixedClock
) -> None:
    paid = adapter.pay(order("att-1", 1234, clock))
    assert paid.status is ChannelStatus.SUCCEEDED
    assert paid.amount == Money(1234, "USD")
    assert paid.channel_txn_id is not None
    assert paid.channel_txn_id.startswith("pi_")
    assert paid.paid_at == clock.now()
    again = adapter.pay(order("att-1", 1234, clock))  # a retry: replayed, not charged twice
    assert again.channel_txn_id == paid.channel_txn_id
    assert len(sandbox.order["charge"]) == 1
    changed = adapter.pay(order("att-1", 999, clock))  # the same key with other parameters
    assert (changed.status, changed.error_code) == (ChannelStatus.UNKNOWN, "idempotency_error")

    found = adapter.query("att-1")
    assert (found.status, found.channel_txn_id) == (ChannelStatus.SUCCEEDED, paid.channel_txn_id)
    missing = adapter.query("att-none")
    assert (missing.status, missing.error_code) == (ChannelStatus.UNKNOWN, "NOT_FOUND")
    # A paid attempt cannot be closed: the answer says it is paid.
    assert adapter.close("att-1").status is ChannelStatus.SUCCEEDED
    assert adapter.close("att-none").status is ChannelStatus.CLOSED


def test_declines_and_unsupported(adapter: StripeAdapter, clock: FixedClock) -> None:
    declined = adapter.pay(order("att-2", 500, clock, payer_id="pm_card_chargeDeclined"))
    assert (declined.status, declined.error_code) == (ChannelStatus.FAILED, "generic_decline")
    poor = adapter.pay(
        order("att-3", 500, clock, payer_id="pm_card_chargeDeclinedInsufficientFunds")
    )
    assert (poor.status, poor.error_code) == (ChannelStatus.FAILED, "insufficient_funds")
    queried = adapter.query("att-2")  # the intent waits for another card: failed attempt
    assert (queried.status, queried.error_code) == (ChannelStatus.FAILED, "generic_decline")
    unknown_card = adapter.pay(order("att-4", 500, clock, payer_id="pm_nope"))
    assert (unknown_card.status, unknown_card.error_code) == (
        ChannelStatus.FAILED,
        "resource_missing",
    )
    native = adapter.pay(order("att-5", 500, clock, method=PayMethod.NATIVE))
    assert (native.status, native.error_code) == (ChannelStatus.FAILED, "UNSUPPORTED_METHOD")


def test_timeout_is_unknown_and_the_charge_stands(
    adapter: StripeAdapter, sandbox: StripeSandbox, clock: FixedClock
) -> None:
    sandbox.faults = NO_FAULTS.force(Fault.TIMEOUT, "att-slow")
    lost = adapter.pay(order("att-slow", 700, clock))
    assert (lost.status, lost.error_code) == (ChannelStatus.UNKNOWN, "TIMEOUT")
    assert adapter.query("att-slow").status is ChannelStatus.SUCCEEDED
    retry = adapter.pay(order("att-slow", 700, clock))  # replayed from the idempotency key
    assert retry.status is ChannelStatus.SUCCEEDED
    assert len(sandbox.order["charge"]) == 1


def test_network_failure_is_unknown(creds: StripeCredentials, clock: FixedClock) -> None:
    adapter = StripeAdapter(creds, "http://127.0.0.1:9", timeout=0.5, clock=clock)
    result = adapter.query("att-x")
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "NETWORK")
    adapter.close_client()


def test_wrong_key_is_refused(
    creds: StripeCredentials, clock: FixedClock, adapter: StripeAdapter, served: object
) -> None:
    other = StripeCredentials.generate()
    stranger = StripeAdapter(other, served.base_url, timeout=0.5, clock=clock)  # type: ignore[attr-defined]
    result = stranger.pay(order("att-k", 100, clock))
    assert (result.status, result.error_code) == (ChannelStatus.FAILED, "api_key_invalid")
    stranger.close_client()


def test_refunds(adapter: StripeAdapter, sandbox: StripeSandbox, clock: FixedClock) -> None:
    sandbox.instant_refunds = False
    adapter.pay(order("att-6", 1000, clock))
    first = adapter.refund(refund_order("rf-1", "att-6", 300, 1000))
    assert (first.status, first.amount) == (ChannelStatus.PENDING, Money(300, "USD"))
    retry = adapter.refund(refund_order("rf-1", "att-6", 300, 1000))
    assert retry.channel_refund_id == first.channel_refund_id
    assert adapter.query_refund("rf-1", "att-6").status is ChannelStatus.PENDING
    assert sandbox.settle_refunds() == 1
    done = adapter.query_refund("rf-1", "att-6")
    assert (done.status, done.channel_refund_id) == (
        ChannelStatus.SUCCEEDED,
        first.channel_refund_id,
    )

    too_much = adapter.refund(refund_order("rf-2", "att-6", 701, 1000))
    assert (too_much.status, too_much.error_code) == (ChannelStatus.FAILED, "amount_too_large")
    rest = adapter.refund(refund_order("rf-3", "att-6", 700, 1000))
    assert rest.status is ChannelStatus.PENDING
    sandbox.settle_refunds(fail=["rf-3"])
    failed = adapter.query_refund("rf-3", "att-6")
    assert (failed.status, failed.error_code) == (ChannelStatus.FAILED, "expired_or_canceled_card")
    none = adapter.query_refund("rf-none", "att-6")
    assert (none.status, none.error_code) == (ChannelStatus.FAILED, "REFUND_NOT_FOUND")
    assert adapter.query("att-6").status is ChannelStatus.SUCCEEDED  # the payment stands


def test_webhooks_are_delivered_retried_and_parsed(
    adapter: StripeAdapter,
    sandbox: StripeSandbox,
    notifier: Notifier,
    receiver: ScriptedReceiver,
    clock: FixedClock,
) -> None:
    receiver.answers = [500]
    adapter.pay(order("att-7", 800, clock))
    assert notifier.run_due() == 0
    clock.advance(timedelta(seconds=59))
    assert notifier.run_due() == 0  # not due before the first retry
    clock.advance(timedelta(seconds=1))
    assert notifier.run_due() == 1
    (h1, b1), (h2, b2) = receiver.received
    assert b1 == b2  # the same event, signed afresh
    assert h1["stripe-signature"] != h2["stripe-signature"]
    note = adapter.parse_notification(h2, b2)
    assert note.attempt_id == "att-7"
    assert note.payment is not None
    assert (note.payment.status, note.payment.amount) == (
        ChannelStatus.SUCCEEDED,
        Money(800, "USD"),
    )

    adapter.refund(refund_order("rf-7", "att-7", 800, 800))
    assert notifier.run_due() == 2  # refund.created, refund.updated
    notes = [adapter.parse_notification(h, b) for h, b in receiver.received[2:]]
    assert [n.refund_no for n in notes] == ["rf-7", "rf-7"]
    assert [n.refund.status for n in notes if n.refund] == [
        ChannelStatus.PENDING,
        ChannelStatus.SUCCEEDED,
    ]

    declined = adapter.pay(order("att-8", 100, clock, payer_id="pm_card_chargeDeclined"))
    assert declined.status is ChannelStatus.FAILED
    notifier.run_due()
    failed = adapter.parse_notification(*receiver.received[-1])
    assert failed.payment is not None
    assert (failed.payment.status, failed.payment.error_code) == (
        ChannelStatus.FAILED,
        "generic_decline",
    )
    assert adapter.ack(True).status_code == 200
    assert adapter.ack(False).status_code == 400


def test_forged_and_stale_webhooks_are_refused(
    adapter: StripeAdapter,
    sandbox: StripeSandbox,
    notifier: Notifier,
    receiver: ScriptedReceiver,
    clock: FixedClock,
) -> None:
    adapter.pay(order("att-9", 300, clock))
    notifier.run_due()
    headers, body = receiver.received[0]
    assert adapter.parse_notification(headers, body).attempt_id == "att-9"
    forged = body.replace(b'"amount": 300', b'"amount": 900')
    stranger = StripeCredentials.generate().webhook_secret
    event_id = json.loads(body)["id"]
    foreign_body, foreign_headers = sandbox.events.signed(event_id, stranger)
    cases = [
        (headers, forged),
        (foreign_headers, foreign_body),
        ({k: v for k, v in headers.items() if k != "stripe-signature"}, body),
        ({**headers, "stripe-signature": "v1=" + "0" * 64}, body),
    ]
    for bad_headers, bad_body in cases:
        with pytest.raises(BadNotification):
            adapter.parse_notification(bad_headers, bad_body)
    # A rolled secret: several v1 signatures, one of them good.
    good = headers["stripe-signature"]
    rolled = good.replace(",v1=", ",v1=" + "0" * 64 + ",v1=")
    assert adapter.parse_notification({"Stripe-Signature": rolled}, body).attempt_id == "att-9"
    clock.advance(timedelta(seconds=301))  # a replay after the tolerance
    with pytest.raises(BadNotification):
        adapter.parse_notification(headers, body)


def test_notification_faults(
    adapter: StripeAdapter,
    sandbox: StripeSandbox,
    notifier: Notifier,
    receiver: ScriptedReceiver,
    clock: FixedClock,
) -> None:
    sandbox.faults = (
        NO_FAULTS.force(Fault.DUPLICATE_NOTIFICATION, "att-dup")
        .force(Fault.LOST_NOTIFICATION, "att-lost")
        .force(Fault.WRONG_FEE, "att-dup")
    )
    for attempt in ("att-dup", "att-lost"):
        adapter.pay(order(attempt, 1000, clock))
    assert notifier.run_due() == 2
    notes = [adapter.parse_notification(h, b) for h, b in receiver.received]
    assert [n.attempt_id for n in notes] == ["att-dup", "att-dup"]
    assert adapter.query("att-lost").status is ChannelStatus.SUCCEEDED  # only a query tells
    fees = {t["source"]: t["fee"] for t in adapter.list_balance_transactions(type="charge")}
    assert sorted(fees.values()) == [59, 60]  # 2.9% of 1000 + 30 = 59, one more by fault
