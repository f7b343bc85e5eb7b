"""The adapter against the served sandbox: every ChannelPort method, faults, token renewal."""

from __future__ import annotations

import json
from dataclasses import replace

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.paypal.protocol import PaypalCredentials
from clearhouse.gateway.channels.port import ChannelStatus, PayMethod, RefundOrder
from clearhouse.money import Money
from clearhouse.sandbox.faults import Fault
from clearhouse.sandbox.paypal import PaypalSandbox
from clearhouse.sandbox.serving import ServedApp
from tests.channels.paypal.conftest import pay_order, usd


def refund_order(refund_no: str, attempt_id: str, amount: str, total: str = "10.00") -> RefundOrder:
    return RefundOrder(
        refund_no, attempt_id, usd(amount), usd(total), "returned", "https://merchant.example/n"
    )


def paid(
    adapter: PaypalAdapter, sandbox: PaypalSandbox, attempt_id: str, amount: str = "10.00"
) -> str:
    created = adapter.pay(pay_order(attempt_id, amount))
    assert created.channel_txn_id is not None
    sandbox.approve(created.channel_txn_id)
    result = adapter.query(attempt_id)
    assert result.status is ChannelStatus.SUCCEEDED
    assert result.channel_txn_id is not None
    return result.channel_txn_id


def test_pay_gives_the_approval_link(adapter: PaypalAdapter, sandbox: PaypalSandbox) -> None:
    created = adapter.pay(pay_order("att-pay-1", "12.34"))
    assert created.status is ChannelStatus.PENDING
    order = sandbox.orders[created.channel_txn_id or ""]
    assert created.credential == f"{sandbox.public_url}/checkoutnow?token={order.id}"
    assert (order.custom_id, order.invoice_id, order.amount) == (
        "att-pay-1",
        "att-pay-1",
        usd("12.34"),
    )
    assert json.loads(created.raw)["status"] == "CREATED"
    pending = adapter.query("att-pay-1")
    assert (pending.status, pending.amount) == (ChannelStatus.PENDING, usd("12.34"))
    assert adapter.pay(pay_order("att-pay-1", "12.34")).channel_txn_id == order.id  # replay
    assert len(sandbox.orders) == 1


def test_approval_then_query_captures_once(adapter: PaypalAdapter, sandbox: PaypalSandbox) -> None:
    created = adapter.pay(pay_order("att-cap-1", "20.00"))
    sandbox.approve(created.channel_txn_id or "")
    first = adapter.query("att-cap-1")
    assert first.status is ChannelStatus.SUCCEEDED
    assert first.amount == usd("20.00")
    assert first.paid_at is not None
    capture = sandbox.captures[first.channel_txn_id or ""]
    assert capture.fee == usd("1.19")  # 3.49% of 20.00 = 0.698 -> 0.70, plus 0.49
    second = adapter.query("att-cap-1")
    assert (second.status, second.channel_txn_id) == (ChannelStatus.SUCCEEDED, capture.id)
    assert len(sandbox.captures) == 1


def test_unsupported_requests(adapter: PaypalAdapter) -> None:
    native = adapter.pay(replace(pay_order("att-unsup-1"), method=PayMethod.NATIVE))
    assert (native.status, native.error_code) == (ChannelStatus.FAILED, "UNSUPPORTED_METHOD")
    kes = adapter.pay(pay_order("att-unsup-2", "100.00", "KES"))
    assert (kes.status, kes.error_code) == (ChannelStatus.FAILED, "UNSUPPORTED_CURRENCY")
    huf = adapter.pay(pay_order("att-unsup-3", "100.50", "HUF"))
    assert (huf.status, huf.error_code) == (ChannelStatus.FAILED, "DECIMALS_NOT_SUPPORTED")
    jpy = adapter.pay(pay_order("att-jpy-1", "1500", "JPY"))
    assert jpy.status is ChannelStatus.PENDING
    assert jpy.amount == Money(1500, "JPY")


def test_unknown_attempt_is_unknown(adapter: PaypalAdapter) -> None:
    result = adapter.query("att-never")
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "ORDER_ID_UNKNOWN")


def test_timeouts_are_unknown_then_resolved(adapter: PaypalAdapter, sandbox: PaypalSandbox) -> None:
    sandbox.faults = sandbox.faults.force(Fault.TIMEOUT, "att-slow-1")
    lost = adapter.pay(pay_order("att-slow-1"))
    assert (lost.status, lost.error_code) == (ChannelStatus.UNKNOWN, "TIMEOUT")
    (order,) = sandbox.orders.values()  # the order was made; only the answer was lost

    found = adapter.query("att-slow-1")  # replays the create call: the same order comes back
    assert (found.status, found.channel_txn_id) == (ChannelStatus.PENDING, order.id)
    assert len(sandbox.orders) == 1

    sandbox.approve(order.id)
    capture_lost = adapter.query("att-slow-1")
    assert (capture_lost.status, capture_lost.error_code) == (ChannelStatus.UNKNOWN, "TIMEOUT")
    resolved = adapter.query("att-slow-1")
    assert resolved.status is ChannelStatus.SUCCEEDED
    assert resolved.channel_txn_id == order.capture_id
    assert len(sandbox.captures) == 1


def test_close(adapter: PaypalAdapter, sandbox: PaypalSandbox) -> None:
    created = adapter.pay(pay_order("att-close-1"))
    closed = adapter.close("att-close-1")
    assert closed.status is ChannelStatus.CLOSED
    sandbox.approve(created.channel_txn_id or "")  # too late: a closed attempt is never captured
    assert adapter.query("att-close-1").status is ChannelStatus.CLOSED
    assert not sandbox.captures

    paid(adapter, sandbox, "att-close-2")
    completed = adapter.close("att-close-2")
    assert (completed.status, completed.error_code) == (ChannelStatus.UNKNOWN, "ORDER_COMPLETED")
    assert adapter.close("att-close-never").status is ChannelStatus.CLOSED


def test_declined_capture_fails(adapter: PaypalAdapter, sandbox: PaypalSandbox) -> None:
    created = adapter.pay(pay_order("att-decl-1"))
    sandbox.approve(created.channel_txn_id or "", decline=True)
    result = adapter.query("att-decl-1")
    assert (result.status, result.error_code) == (ChannelStatus.FAILED, "DECLINED")
    assert not sandbox.journal  # no money moved


def test_refunds(
    adapter: PaypalAdapter,
    sandbox: PaypalSandbox,
    creds: PaypalCredentials,
    clock: FixedClock,
    served: ServedApp,
) -> None:
    capture_id = paid(adapter, sandbox, "att-ref-1")
    partial = adapter.refund(refund_order("rf-1", "att-ref-1", "4.00"))
    assert (partial.status, partial.amount) == (ChannelStatus.SUCCEEDED, usd("4.00"))
    assert partial.refunded_at is not None
    again = adapter.refund(refund_order("rf-1", "att-ref-1", "4.00"))
    assert again.channel_refund_id == partial.channel_refund_id  # the same PayPal-Request-Id
    assert len(sandbox.refunds) == 1
    assert sandbox.refunds[partial.channel_refund_id or ""].capture_id == capture_id

    too_much = adapter.refund(refund_order("rf-2", "att-ref-1", "6.01"))
    assert (too_much.status, too_much.error_code) == (
        ChannelStatus.FAILED,
        "REFUND_AMOUNT_EXCEEDED",
    )
    assert adapter.query_refund("rf-1", "att-ref-1").status is ChannelStatus.SUCCEEDED
    missing = adapter.query_refund("rf-2", "att-ref-1")
    assert (missing.status, missing.error_code) == (ChannelStatus.FAILED, "REFUND_NOT_FOUND")

    sandbox.faults = sandbox.faults.force(Fault.TIMEOUT, "rf-3")
    lost = adapter.refund(refund_order("rf-3", "att-ref-1", "6.00"))
    assert (lost.status, lost.error_code) == (ChannelStatus.UNKNOWN, "TIMEOUT")
    # A fresh adapter that only knows the order id finds the refund by our number.
    order_id = next(iter(sandbox.orders))
    fresh = PaypalAdapter(
        creds.merchant_view(), served.base_url, clock=clock, order_ids={"att-ref-1": order_id}
    )
    found = fresh.query_refund("rf-3", "att-ref-1")
    fresh.close_client()
    assert (found.status, found.amount) == (ChannelStatus.SUCCEEDED, usd("6.00"))
    still = adapter.query("att-ref-1")  # refunded in full, the payment stands
    assert (still.status, still.channel_txn_id) == (ChannelStatus.SUCCEEDED, capture_id)
    assert sandbox.captures[capture_id].status == "REFUNDED"


def test_refund_before_capture_fails(adapter: PaypalAdapter) -> None:
    adapter.pay(pay_order("att-ref-early"))
    early = adapter.refund(refund_order("rf-early", "att-ref-early", "1.00"))
    assert (early.status, early.error_code) == (ChannelStatus.FAILED, "NOT_CAPTURED")


def test_a_revoked_token_is_renewed(adapter: PaypalAdapter, sandbox: PaypalSandbox) -> None:
    adapter.pay(pay_order("att-tok-1"))
    sandbox.tokens.clear()  # PayPal revoked it (or it expired early)
    assert adapter.query("att-tok-1").status is ChannelStatus.PENDING
    assert len(sandbox.tokens) == 1


def test_wrong_secret_is_unknown(
    creds: PaypalCredentials, served: ServedApp, clock: FixedClock
) -> None:
    wrong = PaypalCredentials(creds.client_id, "wrong", creds.merchant_id, creds.webhook_id)
    adapter = PaypalAdapter(wrong, served.base_url, clock=clock)
    result = adapter.pay(pay_order("att-auth-1"))
    adapter.close_client()
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "AUTHENTICATION_FAILURE")
