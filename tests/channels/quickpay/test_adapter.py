"""Payments and refunds through the adapter against the sandbox over real HTTP: the SMS code and
its small-amount exemption, per-channel and issuer limits, the issuer's refusals, notifications,
faults, and every ChannelPort mapping."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.port import (
    BadNotification,
    ChannelResult,
    ChannelStatus,
    PayMethod,
    RefundOrder,
)
from clearhouse.gateway.channels.quickpay import protocol as qp
from clearhouse.gateway.channels.quickpay.adapter import CardElements, QuickpayAdapter
from clearhouse.gateway.channels.quickpay.protocol import QuickpayCredentials
from clearhouse.money import Money
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.quickpay import CardKind, Issuers, QuickpaySandbox, create_app
from clearhouse.sandbox.serving import ServedApp
from tests.channels.receiver import VerifyingReceiver
from tests.channels.tamper import Tamper

from .conftest import CAPPED, DEBIT, START, THIN, bind, cny, elements, order


@pytest.fixture
def token(adapter: QuickpayAdapter, sandbox: QuickpaySandbox) -> str:
    bound = bind(adapter, sandbox, elements(DEBIT))
    assert bound.token is not None
    return bound.token


def pay_with_sms(
    adapter: QuickpayAdapter,
    sandbox: QuickpaySandbox,
    attempt: str,
    token: str,
    amount: str,
    phone: str = DEBIT.phone,
    notify_url: str = "http://127.0.0.1:9/notify",
) -> ChannelResult:
    sent = adapter.send_pay_sms(token, attempt, cny(amount))
    assert sent.status.value == "OK", sent.error_code
    code = sandbox.last_sms_code(phone)
    return adapter.pay(order(attempt, token, amount, notify_url, verification=code))


def refund(refund_no: str, attempt_id: str, amount: str, total: str = "12.34") -> RefundOrder:
    return RefundOrder(refund_no, attempt_id, cny(amount), cny(total), "不想要了", "")


def test_small_amount_needs_no_sms(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, token: str, receiver: VerifyingReceiver
) -> None:
    accepted = adapter.pay(order("p-1", token, "200.00", receiver.url))
    assert accepted.status is ChannelStatus.PENDING
    assert accepted.channel_txn_id
    paid = adapter.query("p-1")
    assert (paid.status, paid.amount, paid.paid_at) == (
        ChannelStatus.SUCCEEDED,
        cny("200.00"),
        START,
    )
    assert paid.channel_txn_id == accepted.channel_txn_id
    txn = sandbox.transaction("p-1")
    assert txn is not None
    assert txn.fee == Money(100, "CNY")  # 0.5% of 200.00
    assert sandbox.issuers.cards[DEBIT.card_no].balance == cny("99800.00")
    assert sandbox.notifier is not None
    assert sandbox.notifier.run_due() == 1
    (note,) = receiver.notifications
    assert note.attempt_id == "p-1"
    assert note.payment is not None
    assert (note.payment.status, note.payment.amount) == (ChannelStatus.SUCCEEDED, cny("200.00"))
    # A retry of the same consumption is the same acceptance: no second charge.
    again = adapter.pay(order("p-1", token, "200.00", receiver.url))
    assert (again.status, again.channel_txn_id) == (ChannelStatus.PENDING, accepted.channel_txn_id)
    assert sandbox.issuers.cards[DEBIT.card_no].balance == cny("99800.00")
    other = adapter.pay(order("p-1", token, "199.00"))
    assert (other.status, other.error_code) == (ChannelStatus.UNKNOWN, "DUPLICATE_ORDER")


def test_above_the_exemption_the_sms_code_is_needed(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, token: str
) -> None:
    unverified = adapter.pay(order("p-2", token, "200.01"))
    assert (unverified.status, unverified.error_code) == (ChannelStatus.FAILED, "SMS_CODE_REQUIRED")
    adapter.send_pay_sms(token, "p-3", cny("300.00"))
    code = sandbox.last_sms_code(DEBIT.phone)
    wrong = adapter.pay(
        order("p-3", token, "300.00", verification="000000" if code != "000000" else "1")
    )
    assert (wrong.status, wrong.error_code) == (ChannelStatus.FAILED, "SMS_CODE_WRONG")
    # The code is for this order and amount only.
    other_amount = adapter.pay(order("p-3", token, "301.00", verification=code))
    assert other_amount.error_code == "SMS_CODE_REQUIRED"
    paid = adapter.pay(order("p-3", token, "300.00", verification=code))
    assert paid.status is ChannelStatus.PENDING
    assert adapter.query("p-3").status is ChannelStatus.SUCCEEDED


def test_sms_code_expires(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, token: str, clock: FixedClock
) -> None:
    adapter.send_pay_sms(token, "p-4", cny("300.00"))
    code = sandbox.last_sms_code(DEBIT.phone)
    clock.advance(timedelta(minutes=6))
    late = adapter.pay(order("p-4", token, "300.00", verification=code))
    assert late.error_code == "SMS_CODE_EXPIRED"


def test_per_channel_limits(adapter: QuickpayAdapter, sandbox: QuickpaySandbox, token: str) -> None:
    over_single = pay_with_sms(adapter, sandbox, "l-1", token, "5000.01")
    assert (over_single.status, over_single.error_code) == (
        ChannelStatus.FAILED,
        "CARD_LIMIT_EXCEEDED",
    )
    for i in range(4):
        assert pay_with_sms(adapter, sandbox, f"l-{i + 2}", token, "5000.00").status is (
            ChannelStatus.PENDING
        )
    # 20000.00 a day on this channel for a debit card: the next fen is over.
    over_daily = adapter.pay(order("l-6", token, "0.01"))
    assert (over_daily.status, over_daily.error_code) == (
        ChannelStatus.FAILED,
        "CARD_LIMIT_EXCEEDED",
    )


def test_issuer_limit_holds_across_two_channel_instances(
    adapter: QuickpayAdapter,
    sandbox: QuickpaySandbox,
    issuers: Issuers,
    creds_b: QuickpayCredentials,
    clock: FixedClock,
    notifier: Notifier,
) -> None:
    second = QuickpaySandbox(creds_b, issuers, clock, name="quickpay_b", notifier=notifier)
    with ServedApp(create_app(second)) as served_b:
        adapter_b = QuickpayAdapter(
            creds_b.merchant_view(), base_url=served_b.base_url, clock=clock, name="quickpay_b"
        )
        token_a = bind(adapter, sandbox, elements(CAPPED)).token
        token_b = bind(adapter_b, second, elements(CAPPED)).token
        assert token_a is not None
        assert token_b is not None
        assert token_a != token_b
        # Each channel's own limit (5000 single, 20000 a day) allows 2000.00; the issuer
        # allows 3000.00 a day for this card, whatever the channel.
        assert pay_with_sms(adapter, sandbox, "x-1", token_a, "2000.00", CAPPED.phone).status is (
            ChannelStatus.PENDING
        )
        assert adapter.query("x-1").status is ChannelStatus.SUCCEEDED
        accepted = pay_with_sms(adapter_b, second, "x-2", token_b, "1000.01", CAPPED.phone)
        assert accepted.status is ChannelStatus.PENDING  # the channel accepted; the issuer says no
        refused = adapter_b.query("x-2")
        assert (refused.status, refused.error_code) == (
            ChannelStatus.FAILED,
            "ISSUER_LIMIT_EXCEEDED",
        )
        assert pay_with_sms(adapter_b, second, "x-3", token_b, "1000.00", CAPPED.phone).status is (
            ChannelStatus.PENDING
        )
        assert adapter_b.query("x-3").status is ChannelStatus.SUCCEEDED
        # The merchant of one instance cannot use the other's token.
        assert adapter_b.pay(order("x-4", token_a, "1.00")).error_code == "CARD_NOT_BOUND"
        # The next Beijing day the issuer's limit starts afresh.
        clock.advance(timedelta(days=1))
        assert adapter_b.pay(order("x-5", token_b, "100.00")).status is ChannelStatus.PENDING
        assert adapter_b.query("x-5").status is ChannelStatus.SUCCEEDED
        adapter_b.close_client()


def test_insufficient_funds(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, receiver: VerifyingReceiver
) -> None:
    thin = bind(adapter, sandbox, elements(THIN)).token
    assert thin is not None
    assert adapter.pay(order("f-1", thin, "100.01", receiver.url)).status is ChannelStatus.PENDING
    failed = adapter.query("f-1")
    assert (failed.status, failed.error_code) == (ChannelStatus.FAILED, "INSUFFICIENT_FUNDS")
    assert sandbox.notifier is not None
    sandbox.notifier.run_due()
    (note,) = receiver.notifications
    assert note.payment is not None
    assert (note.payment.status, note.payment.error_code) == (
        ChannelStatus.FAILED,
        "INSUFFICIENT_FUNDS",
    )
    assert sandbox.issuers.cards[THIN.card_no].balance == cny("100.00")
    # Closing a refused consumption: nothing was charged.
    assert adapter.close("f-1").status is ChannelStatus.CLOSED


def test_card_expired_between_binding_and_payment(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, clock: FixedClock
) -> None:
    card = sandbox.issuers.add_card(
        "6219990000000000028", CardKind.DEBIT, "孙八", "110101199909090099", "13800000008",
        "1126", cny("1000.00"), cny("5000.00"), cny("5000.00"),
    )  # fmt: skip
    token = adapter.bind_confirm(
        adapter.bind_start(CardElements("孙八", "110101199909090099", card.card_no)).request_id,
        sandbox.last_sms_code(card.phone),
    ).token
    assert token is not None
    clock.set(START + timedelta(days=29))  # 2026-12-01 in Beijing: valid through 11/26 only
    assert adapter.pay(order("e-1", token, "10.00")).status is ChannelStatus.PENDING
    expired = adapter.query("e-1")
    assert (expired.status, expired.error_code) == (ChannelStatus.FAILED, "CARD_EXPIRED")


def test_notifications_verify_and_forgeries_do_not(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, token: str, receiver: VerifyingReceiver,
    merchant: QuickpayAdapter, creds: QuickpayCredentials,
) -> None:  # fmt: skip
    adapter.pay(order("n-1", token, "10.00", receiver.url))
    assert sandbox.notifier is not None
    sandbox.notifier.run_due()
    (body,) = receiver.bodies
    params = qp.decode_form(body.decode())
    assert params["respCode"] == "00"
    assert merchant.parse_notification({}, body).attempt_id == "n-1"
    tampered = body.replace(b"txnAmt=1000", b"txnAmt=9000")
    with pytest.raises(BadNotification, match="BAD_SIGNATURE"):
        merchant.parse_notification({}, tampered)
    # Signed by someone holding another key but claiming the channel's certificate id.
    impostor = QuickpayCredentials.generate()
    assert impostor.channel_private_key_pem is not None
    forged = qp.sign(
        {k: v for k, v in params.items() if k != "signature"},
        creds.channel_cert_id,
        impostor.channel_private_key_pem,
    )
    with pytest.raises(BadNotification):
        merchant.parse_notification({}, qp.encode_form(forged).encode())
    with pytest.raises(BadNotification):
        merchant.parse_notification({}, b"\xff\xfe")
    assert merchant.ack(True).body == "ok"
    # Refused acknowledgements are retried on the schedule.
    receiver.accept = False
    adapter.pay(order("n-2", token, "10.00", receiver.url))
    sandbox.notifier.run_due()
    assert sandbox.notifier.pending() == ["n-2"]


def test_duplicate_and_lost_notifications(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, token: str, receiver: VerifyingReceiver
) -> None:
    sandbox.faults = (
        FaultPlan().force(Fault.DUPLICATE_NOTIFICATION, "d-1").force(Fault.LOST_NOTIFICATION, "d-2")
    )
    adapter.pay(order("d-1", token, "10.00", receiver.url))
    adapter.pay(order("d-2", token, "10.00", receiver.url))
    assert sandbox.notifier is not None
    sandbox.notifier.run_due()
    assert [n.attempt_id for n in receiver.notifications] == ["d-1", "d-1"]
    assert adapter.query("d-2").status is ChannelStatus.SUCCEEDED


def test_timeout_then_query_resolves(
    creds: QuickpayCredentials, sandbox: QuickpaySandbox, served: ServedApp, clock: FixedClock,
    token: str,
) -> None:  # fmt: skip
    sandbox.faults = FaultPlan().force(Fault.TIMEOUT, "slow")
    impatient = QuickpayAdapter(
        creds.merchant_view(), base_url=served.base_url, timeout=0.3, clock=clock
    )
    result = impatient.pay(order("slow", token, "10.00"))
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "TIMEOUT")
    assert impatient.query("slow").status is ChannelStatus.SUCCEEDED  # it was charged
    impatient.close_client()


def test_refunds(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, token: str, receiver: VerifyingReceiver
) -> None:
    adapter.pay(order("r-1", token, "12.34"))
    partial = adapter.refund(replace(refund("rf-1", "r-1", "2.34"), notify_url=receiver.url))
    assert partial.status is ChannelStatus.PENDING
    done = adapter.query_refund("rf-1", "r-1")
    assert (done.status, done.amount, done.refunded_at) == (
        ChannelStatus.SUCCEEDED,
        cny("2.34"),
        START,
    )
    assert sandbox.notifier is not None
    sandbox.notifier.run_due()
    (note,) = receiver.notifications
    assert (note.attempt_id, note.refund_no) == ("r-1", "rf-1")
    assert note.refund is not None
    assert (note.refund.status, note.refund.amount) == (ChannelStatus.SUCCEEDED, cny("2.34"))
    # The same refund again: the same acceptance, no second money movement.
    assert adapter.refund(refund("rf-1", "r-1", "2.34")).status is ChannelStatus.PENDING
    txn = sandbox.transaction("r-1")
    assert txn is not None
    assert txn.refunded == cny("2.34")
    too_much = adapter.refund(refund("rf-2", "r-1", "10.01"))
    assert (too_much.status, too_much.error_code) == (
        ChannelStatus.FAILED,
        "REFUND_EXCEEDS_PAYMENT",
    )
    missing = adapter.query_refund("rf-2", "r-1")
    assert (missing.status, missing.error_code) == (ChannelStatus.FAILED, "REFUND_NOT_FOUND")
    # The same refund number for another amount: the channel says duplicate; the query tells.
    clash = adapter.refund(refund("rf-1", "r-1", "1.00"))
    assert (clash.status, clash.amount) == (ChannelStatus.SUCCEEDED, cny("2.34"))
    assert adapter.refund(refund("rf-3", "r-1", "10.00")).status is ChannelStatus.PENDING
    assert adapter.query("r-1").status is ChannelStatus.SUCCEEDED  # refunded, still paid
    nothing = adapter.refund(refund("rf-9", "nope", "1.00"))
    assert (nothing.status, nothing.error_code) == (ChannelStatus.FAILED, "ORIGINAL_NOT_REFUNDABLE")
    assert sandbox.issuers.cards[DEBIT.card_no].balance == cny("100000.00")


def test_query_and_close_mapping(adapter: QuickpayAdapter, token: str) -> None:
    unknown = adapter.query("never-sent")
    assert (unknown.status, unknown.error_code) == (ChannelStatus.FAILED, "ORDER_NOT_FOUND")
    assert adapter.close("never-sent").status is ChannelStatus.CLOSED
    adapter.pay(order("c-1", token, "1.00"))
    paid = adapter.close("c-1")
    assert (paid.status, paid.error_code) == (ChannelStatus.UNKNOWN, "ORDER_PAID")


def test_refusals_before_any_call(adapter: QuickpayAdapter, token: str) -> None:
    native = adapter.pay(replace(order("u-1", token), method=PayMethod.NATIVE))
    assert (native.status, native.error_code) == (ChannelStatus.FAILED, "UNSUPPORTED_METHOD")
    no_token = adapter.pay(replace(order("u-2", token), payer_id=None))
    assert no_token.error_code == "UNSUPPORTED_METHOD"
    usd = adapter.pay(replace(order("u-3", token), amount=Money(100, "USD")))
    assert usd.error_code == "UNSUPPORTED_CURRENCY"


@pytest.fixture
def tampering(creds: QuickpayCredentials, served: ServedApp) -> Iterator[QuickpayAdapter]:
    with httpx.Client(transport=Tamper(b"respCode=34", b"respCode=00"), timeout=5) as client:
        yield QuickpayAdapter(creds.merchant_view(), base_url=served.base_url, client=client)


def test_tampered_answer_is_unknown(tampering: QuickpayAdapter) -> None:
    result = tampering.query("t-1")
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "BAD_SIGNATURE")


def test_wrong_merchant_key_is_refused(creds: QuickpayCredentials, served: ServedApp) -> None:
    other = QuickpayCredentials.generate()
    impostor = QuickpayAdapter(
        replace(creds, merchant_private_key_pem=other.merchant_private_key_pem).merchant_view(),
        base_url=served.base_url,
    )
    result = impostor.query("x")
    impostor.close_client()
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "BAD_SIGNATURE")


def test_network_failure_is_unknown(creds: QuickpayCredentials) -> None:
    adapter = QuickpayAdapter(creds.merchant_view(), base_url="http://127.0.0.1:9", timeout=1)
    assert adapter.query("o").error_code == "NETWORK"
    assert adapter.refund(refund("r", "o", "1.00")).status is ChannelStatus.UNKNOWN
    assert adapter.unbind("t").status.value == "UNKNOWN"
    adapter.close_client()
