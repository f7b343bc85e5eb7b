"""Asynchronous notifications: delivered over real HTTP to a receiver that verifies them with the
adapter, on Alipay's retry schedule, under the notification faults."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlencode

import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.alipay import protocol
from clearhouse.gateway.channels.alipay.adapter import AlipayAdapter
from clearhouse.gateway.channels.alipay.protocol import AlipayCredentials
from clearhouse.gateway.channels.port import Ack, BadNotification, ChannelStatus
from clearhouse.sandbox.alipay import AlipaySandbox
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.notifier import Notifier
from tests.channels.receiver import VerifyingReceiver

from .conftest import START, cny, order
from .test_adapter import refund


def test_payment_notification_is_delivered_verified_and_acked(
    adapter: AlipayAdapter, sandbox: AlipaySandbox, notifier: Notifier, receiver: VerifyingReceiver
) -> None:
    adapter.pay(order("n-1", notify_url=receiver.url))
    trade = sandbox.pay("n-1")
    assert notifier.run_due() == 1
    [note] = receiver.notifications
    assert note.attempt_id == "n-1"
    assert note.refund is None
    assert note.payment is not None
    assert note.payment.status is ChannelStatus.SUCCEEDED
    assert (note.payment.amount, note.payment.paid_at) == (cny("12.34"), START)
    assert note.payment.channel_txn_id == trade.trade_no
    assert notifier.pending() == []


def test_unacknowledged_notification_is_retried_afresh(
    adapter: AlipayAdapter,
    sandbox: AlipaySandbox,
    notifier: Notifier,
    receiver: VerifyingReceiver,
    clock: FixedClock,
) -> None:
    receiver.accept = False
    adapter.pay(order("n-2", notify_url=receiver.url))
    sandbox.pay("n-2")
    assert notifier.run_due() == 0
    clock.advance(timedelta(minutes=3))
    assert notifier.run_due() == 0
    assert len(receiver.bodies) == 1
    receiver.accept = True
    clock.advance(timedelta(minutes=1))
    assert notifier.run_due() == 1
    first, second = (dict(parse_qsl(body.decode())) for body in receiver.bodies)
    assert first["notify_id"] != second["notify_id"]  # each try is a new notification
    assert [log.outcome for log in notifier.log] == ["refused: 200", "acked"]


@pytest.mark.parametrize(
    ("fault", "deliveries_now", "deliveries_later"),
    [
        (Fault.LOST_NOTIFICATION, 0, 0),
        (Fault.DUPLICATE_NOTIFICATION, 2, 0),
        (Fault.REORDERED_NOTIFICATION, 0, 1),
    ],
)
def test_notification_faults(
    adapter: AlipayAdapter,
    sandbox: AlipaySandbox,
    notifier: Notifier,
    receiver: VerifyingReceiver,
    clock: FixedClock,
    fault: Fault,
    deliveries_now: int,
    deliveries_later: int,
) -> None:
    sandbox.faults = FaultPlan().force(fault, "n-3")
    adapter.pay(order("n-3", notify_url=receiver.url))
    sandbox.pay("n-3")
    assert notifier.run_due() == deliveries_now
    clock.advance(timedelta(hours=1))
    assert notifier.run_due() == deliveries_later
    # Duplicates carry the same trade: the receiver sees the same payment twice.
    assert {n.payment.channel_txn_id for n in receiver.notifications if n.payment} <= {
        sandbox.trade("n-3").trade_no  # type: ignore[union-attr]
    }


def test_refund_notification(
    adapter: AlipayAdapter, sandbox: AlipaySandbox, notifier: Notifier, receiver: VerifyingReceiver
) -> None:
    adapter.pay(order("n-4", notify_url=receiver.url))
    sandbox.pay("n-4")
    adapter.refund(refund("rf-n4", "n-4", "2.00"))
    assert notifier.run_due() == 2
    note = receiver.notifications[1]
    assert note.refund_no == "rf-n4"
    assert note.refund is not None
    assert note.refund.status is ChannelStatus.SUCCEEDED
    assert note.refund.refunded_at == START
    fields = dict(parse_qsl(receiver.bodies[1].decode()))
    assert (fields["refund_fee"], fields["trade_status"]) == ("2.00", "TRADE_SUCCESS")


def _signed_body(creds: AlipayCredentials, **changes: str) -> bytes:
    params = {
        "notify_type": "trade_status_sync",
        "notify_id": "n",
        "notify_time": "2026-11-02 10:00:00",
        "app_id": creds.app_id,
        "out_trade_no": "x-1",
        "trade_no": "2026110222001000000000000009",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "1.00",
        "gmt_payment": "2026-11-02 10:00:00",
        "sign_type": "RSA2",
        **changes,
    }
    return urlencode(
        protocol.sign_notification(params, creds.require_alipay_private_key())
    ).encode()


def test_bad_notifications_are_refused(creds: AlipayCredentials, merchant: AlipayAdapter) -> None:
    good = _signed_body(creds)
    assert merchant.parse_notification({}, good).payment is not None
    forged = good.replace(b"total_amount=1.00", b"total_amount=9.00")
    with pytest.raises(BadNotification, match="signature"):
        merchant.parse_notification({}, forged)
    with pytest.raises(BadNotification, match="app_id"):
        merchant.parse_notification({}, _signed_body(creds, app_id="2021000000000000"))
    with pytest.raises(BadNotification, match="trade_status"):
        merchant.parse_notification({}, _signed_body(creds, trade_status="WHATEVER"))
    with pytest.raises(BadNotification):
        merchant.parse_notification({}, b"\xff\xfe")
    with pytest.raises(BadNotification):
        merchant.parse_notification({}, b"")


def test_ack_bodies(merchant: AlipayAdapter) -> None:
    assert merchant.ack(True) == Ack(200, "success", "text/plain")
    assert merchant.ack(False).body == "failure"
