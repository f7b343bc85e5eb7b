"""stripe-python, unchanged but for its API base, drives the sandbox over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import httpx
import pytest
import stripe

from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sandbox.stripe.state import StripeSandbox


@pytest.fixture
def client(creds: StripeCredentials, served: ServedApp) -> Iterator[stripe.StripeClient]:
    http = stripe.RequestsClient()  # closed after the test: the SDK keeps its session open
    yield stripe.StripeClient(
        creds.secret_key, base_addresses={"api": served.base_url}, http_client=http
    )
    http.close()


def _intent(
    client: stripe.StripeClient, pm: str = "pm_card_visa", **params: object
) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={"amount": 2000, "currency": "usd", "payment_method": pm, "confirm": True, **params}  # type: ignore[typeddict-item]
    )


def test_automatic_and_manual_capture_and_cancel(client: stripe.StripeClient) -> None:
    paid = _intent(client, metadata={"order": "o-1"}, expand=["latest_charge"])
    assert (paid.status, paid.amount_received, paid.metadata["order"]) == ("succeeded", 2000, "o-1")
    assert isinstance(paid.latest_charge, stripe.Charge)
    assert paid.latest_charge.balance_transaction is not None
    txn = client.v1.balance_transactions.retrieve(str(paid.latest_charge.balance_transaction))
    assert (txn.type, txn.amount, txn.fee, txn.net, txn.status) == (
        "charge",
        2000,
        88,
        1912,
        "pending",
    )
    assert txn.fee_details[0].type == "stripe_fee"

    held = _intent(client, capture_method="manual")
    assert (held.status, held.amount_capturable) == ("requires_capture", 2000)
    captured = client.v1.payment_intents.capture(held.id, params={"amount_to_capture": 1500})
    assert (captured.status, captured.amount_received) == ("succeeded", 1500)

    open_intent = client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    assert open_intent.status == "requires_payment_method"
    confirmed = client.v1.payment_intents.confirm(
        open_intent.id, params={"payment_method": "pm_card_visa"}
    )
    assert confirmed.status == "succeeded"

    to_cancel = client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    canceled = client.v1.payment_intents.cancel(
        to_cancel.id, params={"cancellation_reason": "abandoned"}
    )
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.payment_intents.cancel(paid.id)
    assert err.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_intents.retrieve("pi_missing")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")


def test_declined_card(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as err:
        _intent(client, pm="pm_card_chargeDeclined")
    assert (err.value.http_status, err.value.code) == (402, "card_declined")
    assert err.value.error is not None
    assert err.value.error.decline_code == "generic_decline"
    intent_id = err.value.error.payment_intent.id  # type: ignore[union-attr]
    intent = client.v1.payment_intents.retrieve(intent_id)
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None
    assert intent.last_payment_error.decline_code == "generic_decline"
    with pytest.raises(stripe.CardError) as poor:
        _intent(client, pm="pm_card_chargeDeclinedInsufficientFunds")
    assert poor.value.error is not None
    assert poor.value.error.decline_code == "insufficient_funds"


def test_refunds_partial_then_the_rest(client: stripe.StripeClient, sandbox: StripeSandbox) -> None:
    paid = _intent(client)
    part = client.v1.refunds.create(
        params={"payment_intent": paid.id, "amount": 500, "metadata": {"refund_no": "r1"}}
    )
    assert (part.status, part.amount, part.metadata["refund_no"]) == ("succeeded", 500, "r1")
    rest = client.v1.refunds.create(params={"payment_intent": paid.id})
    assert rest.amount == 1500
    assert client.v1.refunds.retrieve(rest.id).status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as done:
        client.v1.refunds.create(params={"payment_intent": paid.id, "amount": 1})
    assert done.value.code == "charge_already_refunded"

    other = _intent(client)
    with pytest.raises(stripe.InvalidRequestError) as big:
        client.v1.refunds.create(params={"payment_intent": other.id, "amount": 2001})
    assert big.value.code == "amount_too_large"
    listed = client.v1.refunds.list(params={"payment_intent": paid.id})
    assert {r.id for r in listed.data} == {part.id, rest.id}
    refund_txn = client.v1.balance_transactions.retrieve(str(part.balance_transaction))
    assert (refund_txn.type, refund_txn.amount, refund_txn.fee, refund_txn.net) == (
        "refund",
        -500,
        0,
        -500,
    )


def test_balance_transactions_paginate_and_payouts(
    client: stripe.StripeClient, sandbox: StripeSandbox
) -> None:
    for _ in range(5):
        _intent(client)
    first = client.v1.balance_transactions.list(params={"limit": 2})
    assert (len(first.data), first.has_more) == (2, True)
    second = client.v1.balance_transactions.list(
        params={"limit": 2, "starting_after": first.data[-1].id}
    )
    assert not {t.id for t in first.data} & {t.id for t in second.data}
    every = list(client.v1.balance_transactions.list(params={"limit": 2}).auto_paging_iter())
    assert len(every) == 5
    assert [
        t.type for t in client.v1.balance_transactions.list(params={"type": "charge"}).data
    ] == ["charge"] * 5

    with pytest.raises(stripe.InvalidRequestError) as early:
        client.v1.payouts.create(params={"amount": 100, "currency": "usd"})
    assert early.value.code == "balance_insufficient"  # still pending
    sandbox.clock.advance(sandbox.ledger.availability_delay)  # type: ignore[attr-defined]
    payout = client.v1.payouts.create(params={"amount": 1000, "currency": "usd"})
    assert (payout.amount, payout.automatic) == (1000, False)
    auto = sandbox.run_payout("usd", date.today())
    assert auto is not None
    assert auto["amount"] == 5 * 1912 - 1000  # the available balance, after the manual payout
    swept = client.v1.balance_transactions.list(params={"payout": auto["id"], "limit": 100})
    assert len(swept.data) == 7  # five charges, the manual payout, the payout itself
    own = [t for t in swept.data if t.source == auto["id"]]
    assert [t.amount for t in own] == [-auto["amount"]]
    assert sum(t.net for t in swept.data if t.source != auto["id"]) == auto["amount"]
    assert client.v1.balance.retrieve().available[0].amount == 0
    assert client.v1.payouts.retrieve(auto["id"]).status == "paid"


def test_idempotent_replay_and_conflict(
    client: stripe.StripeClient, served: ServedApp, creds: StripeCredentials
) -> None:
    options = {"idempotency_key": "order-42"}
    first = client.v1.payment_intents.create(
        params={"amount": 300, "currency": "usd"}, options=options
    )  # type: ignore[arg-type]
    again = client.v1.payment_intents.create(
        params={"amount": 300, "currency": "usd"}, options=options
    )  # type: ignore[arg-type]
    assert again.id == first.id
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create(params={"amount": 301, "currency": "usd"}, options=options)  # type: ignore[arg-type]

    # Basic auth with the key as the user is accepted; a wrong key is a 401 in Stripe's shape.
    basic = httpx.get(f"{served.base_url}/v1/balance", auth=(creds.secret_key, ""))
    assert basic.status_code == 200
    wrong = httpx.get(
        f"{served.base_url}/v1/balance", headers={"Authorization": "Bearer sk_test_nope"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient(
            "sk_test_wrong", base_addresses={"api": served.base_url}
        ).v1.balance.retrieve()


def test_global_api_base_and_search(creds: StripeCredentials, served: ServedApp) -> None:
    stripe.api_key, stripe.api_base = creds.secret_key, served.base_url
    try:
        intent = stripe.PaymentIntent.create(
            amount=450,
            currency="usd",
            payment_method="pm_card_visa",
            confirm=True,
            metadata={"attempt_id": "it's-1"},
        )
        found = stripe.PaymentIntent.search(query="metadata['attempt_id']:'it\\'s-1'")
        assert [i.id for i in found.data] == [intent.id]
        with pytest.raises(stripe.InvalidRequestError):
            stripe.PaymentIntent.search(query="nonsense")
    finally:
        stripe.api_key, stripe.api_base = None, "https://api.stripe.com"
