"""Cards and customers are scoped to the marketplace that enrolled them, over real HTTP against
the quick pay sandboxes, on SQLite and PostgreSQL: another marketplace cannot list, bind,
sign, unbind, confirm or charge them (each answers exactly as an unknown id, and nothing is
sent or stored); the marketplace's seller can."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from clearhouse.api.client import MerchantClient
from clearhouse.db.schema import card_bindings, cards, payment_intents
from tests.card_support import CAPPED, DEBIT, bind_body, card_rows
from tests.gateway_support import MerchantFixture, add_merchant
from tests.integration.gateway.live_stack import Stack, credentials, customer, stack

__all__ = ["credentials", "customer", "stack"]


def client_of(stack: Stack, merchant: MerchantFixture) -> MerchantClient:
    return MerchantClient(
        stack.client.http,
        merchant.key.key_id,
        merchant.key.secret,
        lambda: stack.clock.now().timestamp(),
    )


def as_unknown(send: Any, known: str, unknown: str) -> tuple[int, str]:
    """``send(id)`` answers for ``known`` what it answers for an id that does not exist, but
    the id; returns the status and the code."""
    seen: httpx.Response = send(known)
    baseline: httpx.Response = send(unknown)
    assert seen.status_code == baseline.status_code, seen.text
    assert seen.text.replace(known, unknown) == baseline.text
    return seen.status_code, str(seen.json()["error"]["code"])


def rows(stack: Stack, table: Any) -> int:
    with stack.app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def pay_body(order: str, card_id: str, amount: int = 1_000) -> dict[str, Any]:
    return {
        "merchant_order_id": order,
        "amount": amount,
        "currency": "CNY",
        "description": "Longjing, spring picking",
        "channel": "card",
        "method": "card",
        "payer_id": card_id,
    }


def test_another_marketplace_cannot_touch_its_customers_or_cards(stack, customer):
    zhang = customer(DEBIT)  # the marketplace's (stack.client's) customer
    card = stack.bind_card(zhang, DEBIT)["id"]
    capped = customer(CAPPED)
    pending = stack.client.post(f"/v1/customers/{capped}/cards", bind_body(CAPPED)).json()
    them = client_of(stack, add_merchant(stack.app, stack.gateway, name="Elsewhere"))
    quickpay = stack.quickpay("quickpay")
    before = (card_rows(stack.app), rows(stack, payment_intents), len(quickpay.state.bind_requests))
    sms_before = len(quickpay.sms_outbox(DEBIT.phone))

    answers = [
        as_unknown(lambda c: them.get(f"/v1/customers/{c}"), zhang, "cus_nobody"),
        as_unknown(lambda c: them.get(f"/v1/customers/{c}/cards"), zhang, "cus_nobody"),
        as_unknown(
            lambda c: them.post(f"/v1/customers/{c}/cards", bind_body(DEBIT)), zhang, "cus_nobody"
        ),
        as_unknown(lambda c: them.post(f"/v1/cards/{c}/unbind", {}), card, "card_nobody"),
        as_unknown(
            lambda c: them.post(
                f"/v1/cards/{c}/signings", {"channel": "quickpay_b", "id_number": DEBIT.id_number}
            ),
            card,
            "card_nobody",
        ),
        as_unknown(
            lambda b: them.post(
                f"/v1/card-bindings/{b}/confirm",
                {"sms_code": quickpay.last_sms_code(CAPPED.phone)},
            ),
            pending["id"],
            "bnd_nobody",
        ),
        # Charging the card by its id: to them it is no card of ours, as an unknown id.
        as_unknown(lambda c: them.post("/v1/payments", pay_body("o-1", c)), card, "card_nobody"),
    ]
    assert answers == [
        (404, "CUSTOMER_NOT_FOUND"),
        (404, "CUSTOMER_NOT_FOUND"),
        (404, "CUSTOMER_NOT_FOUND"),
        (404, "CARD_NOT_FOUND"),
        (404, "CARD_NOT_FOUND"),
        (404, "BINDING_NOT_FOUND"),
        (422, "NO_ROUTE"),
    ]
    # Nothing was sent to the channel, stored, texted or changed.
    after = (card_rows(stack.app), rows(stack, payment_intents), len(quickpay.state.bind_requests))
    assert after == before
    assert len(quickpay.sms_outbox(DEBIT.phone)) == sms_before
    assert quickpay.state.txns == {}
    with stack.app.engine.connect() as conn:
        assert conn.execute(select(cards.c.status).where(cards.c.id == card)).scalar() == "active"
        status = select(card_bindings.c.status).where(card_bindings.c.id == pending["id"])
        assert conn.execute(status).scalar() == "pending"
    # Their owner's requests still go through.
    assert [c["id"] for c in stack.client.get(f"/v1/customers/{zhang}/cards").json()] == [card]
    code = {"sms_code": quickpay.last_sms_code(CAPPED.phone)}
    confirmed = stack.client.post(f"/v1/card-bindings/{pending['id']}/confirm", code)
    assert confirmed.status_code == 200, confirmed.text


def test_a_seller_binds_lists_and_charges_its_marketplaces_customers_cards(stack, customer):
    seller = client_of(
        stack, add_merchant(stack.app, stack.gateway, name="Tea Farm", parent_id=stack.merchant_id)
    )
    zhang = customer(DEBIT)
    shown = seller.get(f"/v1/customers/{zhang}")
    assert (shown.status_code, shown.json()["id"]) == (200, zhang)
    started = seller.post(f"/v1/customers/{zhang}/cards", bind_body(DEBIT))
    assert started.status_code == 201, started.text
    code = {"sms_code": stack.quickpay("quickpay").last_sms_code(DEBIT.phone)}
    card = seller.post(f"/v1/card-bindings/{started.json()['id']}/confirm", code).json()
    listed = stack.client.get(f"/v1/customers/{zhang}/cards").json()  # the marketplace's too
    assert [c["id"] for c in listed] == [card["id"]]
    paid = seller.post("/v1/payments", pay_body("s-1", card["id"], 8_800))
    assert paid.status_code == 201, paid.text
    assert paid.json()["attempt"]["status"] == "PENDING"
    unbound = seller.post(f"/v1/cards/{card['id']}/unbind", {})
    assert (unbound.status_code, unbound.json()["status"]) == (200, "unbound")
