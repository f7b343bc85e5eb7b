"""The whole path over real HTTP, on SQLite and PostgreSQL: merchant API -> gateway -> channel
adapter -> channel sandbox -> signed, encrypted notification -> notify endpoint -> ledger.

One FixedClock drives everything (signature windows, retry schedules, the poller), so the
scenarios are deterministic and nothing sleeps except the timeout fault.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from clearhouse.accounts.model import Role
from clearhouse.db.schema import journal_entries, payment_events
from clearhouse.sandbox.faults import Fault, FaultPlan
from tests.conftest import platform_fund
from tests.integration.gateway.live_stack import Stack, credentials, stack
from tests.integration.gateway.test_payments import count

__all__ = ["credentials", "stack"]


def create(stack: Stack, channel: str, order: str, amount: int = 25_600) -> dict[str, object]:
    response = stack.client.post(
        "/v1/payments",
        {
            "merchant_order_id": order,
            "amount": amount,
            "currency": "CNY",
            "description": "Oolong gift box",
            "channel": channel,
            "method": "native",
            "settlement": "escrow",
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def attempt_of(payment: dict[str, object]) -> dict[str, str]:
    attempt = payment["attempt"]
    assert isinstance(attempt, dict)
    return attempt


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
def test_payment_confirmed_by_the_channels_notification(stack, channel):
    payment = create(stack, channel, f"{channel}-1")
    attempt = attempt_of(payment)
    assert attempt["status"] == "PENDING"
    assert attempt["credential"]  # code_url / qr_code for the payer
    stack.pay_and_notify(channel, attempt["id"])
    paid = stack.payment(str(payment["id"]))
    assert paid["status"] == "SUCCEEDED"
    assert attempt_of(paid)["channel_txn_id"]
    assert paid["fee"] == 154  # 0.6% of 256.00 = 1.536 -> 1.54, half-up
    assert stack.app.ledger.balance(platform_fund(stack.app, Role.ESCROW)).posted == 25_600
    assert stack.app.ledger.check() == []


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
def test_duplicate_notification_books_once(stack, channel):
    payment = create(stack, channel, f"{channel}-dup")
    attempt_id = attempt_of(payment)["id"]
    stack.sandboxes.set_faults(FaultPlan().force(Fault.DUPLICATE_NOTIFICATION, attempt_id))
    stack.pay_and_notify(channel, attempt_id)
    delivered = [log for log in stack.sandboxes.notifiers[channel].log if log.outcome == "acked"]
    assert len(delivered) == 2
    assert count(stack.app, journal_entries) == 2  # payment + fee, once
    assert stack.payment(str(payment["id"]))["status"] == "SUCCEEDED"


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
def test_lost_notification_is_resolved_by_the_poller(stack, channel):
    payment = create(stack, channel, f"{channel}-lost")
    attempt_id = attempt_of(payment)["id"]
    stack.sandboxes.set_faults(FaultPlan().force(Fault.LOST_NOTIFICATION, attempt_id))
    stack.pay_and_notify(channel, attempt_id)
    assert stack.payment(str(payment["id"]))["status"] == "PROCESSING"
    stack.clock.advance(timedelta(seconds=31))
    stack.gateway.poller.run_once()
    assert stack.payment(str(payment["id"]))["status"] == "SUCCEEDED"
    assert count(stack.app, journal_entries) == 2


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
def test_timeout_is_unknown_then_resolved(stack, channel):
    # The channel takes the order but its answer comes after the adapter gave up.
    stack.sandboxes.set_faults(FaultPlan(rates_ppm={Fault.TIMEOUT: 1_000_000}))
    payment = create(stack, channel, f"{channel}-slow")
    stack.sandboxes.set_faults(FaultPlan())
    attempt = attempt_of(payment)
    assert (attempt["status"], attempt["error_code"]) == ("UNKNOWN", "TIMEOUT")
    stack.pay_and_notify(channel, attempt["id"])  # the payer had the code from a retry/QR
    assert stack.payment(str(payment["id"]))["status"] == "SUCCEEDED"


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
def test_forged_notification_is_refused_and_changes_nothing(stack, channel):
    payment = create(stack, channel, f"{channel}-forged")
    attempt_id = attempt_of(payment)["id"]
    stack.sandboxes.pay(channel, attempt_id)
    # The genuine delivery is tampered with on the way: a changed amount (Alipay signs the
    # form) or a changed signature header (WeChat signs the body in headers).
    notifier = stack.sandboxes.notifiers[channel]

    def tamper(request: httpx.Request) -> httpx.Response:
        body, headers = request.content, dict(request.headers)
        if channel == "alipay":
            body = body.replace(b"total_amount=256.00", b"total_amount=999.99")
        else:
            sig = headers["wechatpay-signature"]
            headers["wechatpay-signature"] = ("B" if sig[0] != "B" else "C") + sig[1:]
        with httpx.Client() as real:
            return real.post(str(request.url), content=body, headers=headers)

    notifier._client.close()  # its pooled connection to the API, before it is replaced
    notifier._client = httpx.Client(transport=httpx.MockTransport(tamper))
    events_before = count(stack.app, payment_events)
    notifier.run_due()
    assert notifier.log
    assert all(entry.outcome != "acked" for entry in notifier.log)
    assert stack.payment(str(payment["id"]))["status"] == "PROCESSING"
    assert count(stack.app, payment_events) == events_before
    assert count(stack.app, journal_entries) == 0


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
def test_refund_through_the_channel(stack, channel):
    payment = create(stack, channel, f"{channel}-refund", amount=10_000)
    stack.pay_and_notify(channel, attempt_of(payment)["id"])
    refund = stack.client.post(
        f"/v1/payments/{payment['id']}/refunds",
        {"amount": 4_000, "currency": "CNY", "reason": "one box damaged"},
    )
    assert refund.status_code == 201, refund.text
    stack.sandboxes.run_due()
    stack.clock.advance(timedelta(seconds=6))
    stack.gateway.poller.run_once()
    done = stack.client.get(f"/v1/refunds/{refund.json()['id']}").json()
    assert done["status"] == "SUCCEEDED"
    assert done["fee_returned"] == 24  # 40% of the 60 fen fee
    with stack.app.engine.connect() as conn:
        codes = sorted(conn.execute(select(journal_entries.c.code)).scalars())
    # payment, fee; the refund's hold (at acceptance) and its capture; the fee returned
    assert (
        codes == ["1002", "1202", "1212", "3002", "3002"]
        if channel == "wechatpay"
        else [
            "1003",
            "1203",
            "1213",
            "3003",
            "3003",
        ]
    )
    assert stack.app.ledger.check() == []
