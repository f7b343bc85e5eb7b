"""Stripe and PayPal end to end over real HTTP, on SQLite and PostgreSQL: merchant API ->
routing -> adapter -> sandbox -> signed webhook -> ledger."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from clearhouse.db.schema import journal_entries
from tests.integration.gateway.live_stack import Stack, credentials, stack

__all__ = ["credentials", "stack"]


def create(stack: Stack, order: str, amount: int, **fields: object) -> dict[str, object]:
    body = {
        "merchant_order_id": order,
        "amount": amount,
        "currency": "USD",
        "description": "Darjeeling first flush",
        "settlement": "escrow",
    } | fields
    response = stack.usd_client.post("/v1/payments", body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def codes(stack: Stack) -> list[str]:
    with stack.app.engine.connect() as conn:
        return sorted(conn.execute(select(journal_entries.c.code)).scalars())


def attempt(payment: dict[str, object]) -> dict[str, str]:
    found = payment["attempt"]
    assert isinstance(found, dict)
    return found


def test_a_card_payment_routed_to_stripe_succeeds_at_once_and_its_webhook_changes_nothing(stack):
    paid = create(stack, "s-1", 10_000, channel="card", method="card", payer_id="pm_card_visa")
    assert paid["status"] == "SUCCEEDED"
    assert attempt(paid)["channel"] == "stripe"
    assert str(attempt(paid)["channel_txn_id"]).startswith("pi_")
    assert paid["fee"] == 320  # 2.9% of 100.00 + 0.30
    routing = stack.usd_client.get(f"/v1/payments/{paid['id']}/routing").json()
    assert routing["chosen"] == "stripe"
    assert codes(stack) == ["1004", "1204"]
    stack.sandboxes.run_due()  # payment_intent.succeeded arrives, signed: acknowledged, no-op
    log = stack.sandboxes.notifiers["stripe"].log
    assert log
    assert all(entry.outcome == "acked" for entry in log)
    assert codes(stack) == ["1004", "1204"]
    assert stack.app.ledger.check() == []


def test_a_declined_card_fails_and_books_nothing(stack):
    declined = create(
        stack, "s-2", 5_000, channel="stripe", method="card", payer_id="pm_card_chargeDeclined"
    )
    assert declined["status"] == "FAILED"
    assert attempt(declined)["error_code"] == "generic_decline"
    assert codes(stack) == []


def test_a_stripe_refund_keeps_the_fee(stack):
    paid = create(stack, "s-3", 10_000, channel="stripe", method="card", payer_id="pm_card_visa")
    refund = stack.usd_client.post(
        f"/v1/payments/{paid['id']}/refunds", {"amount": 2_500, "currency": "USD", "reason": "r"}
    )
    assert refund.status_code == 201, refund.text
    stack.sandboxes.run_due()
    stack.clock.advance(timedelta(seconds=6))
    stack.gateway.poller.run_once()
    done = stack.usd_client.get(f"/v1/refunds/{refund.json()['id']}").json()
    assert done["status"] == "SUCCEEDED"
    assert done["fee_returned"] == 0
    assert codes(stack) == ["1004", "1204", "3004", "3004"]  # the hold, then its capture
    assert stack.app.ledger.check() == []


def test_paypal_approval_then_capture_by_the_poller_once(stack):
    created = create(stack, "p-1", 10_000, channel="paypal", method="page")
    assert created["status"] == "PROCESSING"
    assert "checkoutnow" in str(attempt(created)["credential"])
    stack.pay_and_notify("paypal", attempt(created)["id"])  # approved: not yet paid
    approved = stack.sandboxes.notifiers["paypal"].log
    assert [entry.outcome for entry in approved] == ["acked"]  # verified, understood
    assert stack.payment(str(created["id"]), stack.usd_client)["status"] == "PROCESSING"
    stack.clock.advance(timedelta(seconds=31))
    stack.gateway.poller.run_once()  # the query captures
    paid = stack.payment(str(created["id"]), stack.usd_client)
    assert paid["status"] == "SUCCEEDED"
    assert paid["fee"] == 398  # 3.49% of 100.00 + 0.49
    assert len(stack.sandboxes.paypal.captures) == 1
    stack.sandboxes.run_due()  # PAYMENT.CAPTURE.COMPLETED: a duplicate of what we know
    assert codes(stack) == ["1005", "1205"]
    assert len(stack.sandboxes.paypal.captures) == 1

    refund = stack.usd_client.post(
        f"/v1/payments/{paid['id']}/refunds", {"amount": 5_000, "currency": "USD", "reason": "r"}
    )
    assert refund.status_code == 201, refund.text
    stack.sandboxes.run_due()
    stack.clock.advance(timedelta(seconds=6))
    stack.gateway.poller.run_once()
    done = stack.usd_client.get(f"/v1/refunds/{refund.json()['id']}").json()
    assert done["status"] == "SUCCEEDED"
    assert done["fee_returned"] == 175  # half the percentage part; PayPal keeps the 0.49
    assert stack.app.ledger.check() == []
