"""Webhooks: signed transmissions delivered through the Notifier to a receiver that verifies
them with the adapter; forged, stale and foreign-certificate transmissions; PayPal's
verification API; notification faults."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.port import BadNotification, ChannelStatus, RefundOrder
from clearhouse.sandbox.faults import Fault
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.paypal import PaypalSandbox
from clearhouse.sandbox.serving import ServedApp
from tests.channels.paypal.conftest import pay_order, usd
from tests.channels.receiver import VerifyingReceiver


def event_types(receiver: VerifyingReceiver) -> list[str]:
    return [json.loads(body)["event_type"] for body in receiver.bodies]


def test_payment_lifecycle_events(
    adapter: PaypalAdapter, sandbox: PaypalSandbox, notifier: Notifier, receiver: VerifyingReceiver
) -> None:
    created = adapter.pay(pay_order("att-wh-1", "30.00"))
    sandbox.approve(created.channel_txn_id or "")
    paid = adapter.query("att-wh-1")
    refund = RefundOrder("rf-wh-1", "att-wh-1", usd("5.00"), usd("30.00"), "r", "https://m.example")
    adapter.refund(refund)
    assert notifier.run_due() == 3
    assert event_types(receiver) == [
        "CHECKOUT.ORDER.APPROVED",
        "PAYMENT.CAPTURE.COMPLETED",
        "PAYMENT.CAPTURE.REFUNDED",
    ]
    assert not receiver.rejected
    approved, completed, refunded = receiver.notifications
    assert approved.attempt_id == "att-wh-1"
    assert approved.payment is not None
    assert (approved.payment.status, approved.payment.channel_txn_id) == (
        ChannelStatus.PENDING,
        created.channel_txn_id,
    )
    assert completed.payment is not None
    assert (completed.payment.status, completed.payment.channel_txn_id) == (
        ChannelStatus.SUCCEEDED,
        paid.channel_txn_id,
    )
    assert completed.payment.amount == usd("30.00")
    assert (refunded.attempt_id, refunded.refund_no) == ("att-wh-1", "rf-wh-1")
    assert refunded.refund is not None
    assert (refunded.refund.status, refunded.refund.amount) == (
        ChannelStatus.SUCCEEDED,
        usd("5.00"),
    )
    assert json.loads(receiver.bodies[0])["id"].startswith("WH-")


def test_denied_capture_event(
    adapter: PaypalAdapter, sandbox: PaypalSandbox, notifier: Notifier, receiver: VerifyingReceiver
) -> None:
    created = adapter.pay(pay_order("att-wh-2"))
    sandbox.approve(created.channel_txn_id or "", decline=True)
    adapter.query("att-wh-2")
    notifier.run_due()
    denied = receiver.notifications[-1]
    assert denied.payment is not None
    assert (denied.payment.status, denied.payment.error_code) == (ChannelStatus.FAILED, "DECLINED")


def signed(sandbox: PaypalSandbox) -> tuple[bytes, dict[str, str]]:
    resource = {"id": "CAPTURE1", "status": "COMPLETED", "custom_id": "att-x",
                "amount": {"currency_code": "USD", "value": "1.00"}}  # fmt: skip
    return sandbox.webhook("PAYMENT.CAPTURE.COMPLETED", "Payment completed", "capture", resource)


def test_verified_forged_stale_and_foreign(
    adapter: PaypalAdapter, sandbox: PaypalSandbox, clock: FixedClock, served: ServedApp
) -> None:
    body, headers = signed(sandbox)
    good = adapter.parse_notification(headers, body)
    assert good.payment is not None
    assert (good.attempt_id, good.payment.status) == ("att-x", ChannelStatus.SUCCEEDED)

    forged = body.replace(b'"1.00"', b'"9.00"')
    with pytest.raises(BadNotification, match="does not verify"):
        adapter.parse_notification(headers, forged)
    other_webhook = {**headers, "PAYPAL-TRANSMISSION-ID": "0" * 32}
    with pytest.raises(BadNotification, match="does not verify"):
        adapter.parse_notification(other_webhook, body)

    clock.advance(timedelta(minutes=6))
    with pytest.raises(BadNotification, match="tolerance"):
        adapter.parse_notification(headers, body)
    clock.advance(timedelta(minutes=-6))

    foreign = {**headers, "PAYPAL-CERT-URL": "https://attacker.example/cert.pem"}
    with pytest.raises(BadNotification, match="certificate URL"):
        adapter.parse_notification(foreign, body)
    missing = {**headers, "PAYPAL-CERT-URL": f"{served.base_url}/v1/notifications/certs/nope"}
    with pytest.raises(BadNotification, match="certificate unavailable"):
        adapter.parse_notification(missing, body)
    with pytest.raises(BadNotification, match="SHA256withRSA"):
        adapter.parse_notification({**headers, "PAYPAL-AUTH-ALGO": "SHA1withRSA"}, body)


def test_verification_api(creds: Any, sandbox: PaypalSandbox, served: ServedApp) -> None:
    body, headers = signed(sandbox)
    with httpx.Client(base_url=served.base_url) as http:
        token = http.post(
            "/v1/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(creds.client_id, creds.client_secret),
        ).json()["access_token"]
        request = {
            "auth_algo": headers["PAYPAL-AUTH-ALGO"],
            "cert_url": headers["PAYPAL-CERT-URL"],
            "transmission_id": headers["PAYPAL-TRANSMISSION-ID"],
            "transmission_sig": headers["PAYPAL-TRANSMISSION-SIG"],
            "transmission_time": headers["PAYPAL-TRANSMISSION-TIME"],
            "webhook_id": creds.webhook_id,
            "webhook_event": json.loads(body),
        }
        auth = {"Authorization": f"Bearer {token}"}
        url = "/v1/notifications/verify-webhook-signature"
        ok = http.post(url, json=request, headers=auth).json()
        bad = http.post(url, json={**request, "webhook_id": "OTHER"}, headers=auth).json()
        unauthenticated = http.post(url, json=request)
    assert ok == {"verification_status": "SUCCESS"}
    assert bad == {"verification_status": "FAILURE"}
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"] == "invalid_token"


def test_refused_deliveries_are_retried(
    adapter: PaypalAdapter,
    sandbox: PaypalSandbox,
    notifier: Notifier,
    receiver: VerifyingReceiver,
    clock: FixedClock,
) -> None:
    receiver.accept = False
    created = adapter.pay(pay_order("att-wh-retry"))
    sandbox.approve(created.channel_txn_id or "")
    assert notifier.run_due() == 0
    assert notifier.pending() == ["att-wh-retry"]
    receiver.accept = True
    clock.advance(timedelta(minutes=1))  # PayPal's first retry
    assert notifier.run_due() == 1
    first, second = receiver.bodies
    assert first == second  # the same event, in a new transmission
    assert [log.outcome for log in notifier.log] == ["refused: 400", "acked"]


def test_notification_faults(
    adapter: PaypalAdapter,
    sandbox: PaypalSandbox,
    notifier: Notifier,
    receiver: VerifyingReceiver,
    clock: FixedClock,
) -> None:
    faults = sandbox.faults.force(Fault.LOST_NOTIFICATION, "att-lost")
    faults = faults.force(Fault.DUPLICATE_NOTIFICATION, "att-dup")
    sandbox.faults = faults.force(Fault.REORDERED_NOTIFICATION, "att-late")
    for attempt in ("att-late", "att-lost", "att-dup"):
        sandbox.approve(adapter.pay(pay_order(attempt)).channel_txn_id or "")
    notifier.run_due()
    assert [n.attempt_id for n in receiver.notifications] == ["att-dup", "att-dup"]
    clock.advance(timedelta(minutes=5))
    notifier.run_due()
    assert [n.attempt_id for n in receiver.notifications][-1] == "att-late"
    assert "att-lost" not in {n.attempt_id for n in receiver.notifications}
