"""Who takes part in the demo's marketplace day: a tea marketplace and one of its sellers
(CNY), a shop abroad (USD), and buyers with real names, balances and bank cards bound through
the merchant API (the cards are the card network sandbox's test cards, so the banks know them).
The buyers are the marketplace's customers: it, and its seller, may act for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import httpx
from sqlalchemy.engine import Connection

from clearhouse.accounts.handlers import Holder, open_holder
from clearhouse.accounts.model import CustomerKind, KycLevel, Role
from clearhouse.api.client import MerchantClient
from clearhouse.bootstrap import App
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.customers import enrol
from clearhouse.gateway.merchants import IssuedKey, Merchant, create_merchant
from clearhouse.gateway.service import Gateway
from clearhouse.sandbox.quickpay import TEST_CARDS, CardKind
from clearhouse.sandbox.quickpay.banks import CatalogueCard
from clearhouse.sandbox.runner import Sandboxes

# The buyers are the holders of these test cards (docs/channels/quickpay.md).
BUYER_CARDS = ("张三", "李四", "赵六")


@dataclass(frozen=True)
class Buyer:
    customer_id: str
    account_id: str  # holds the buyer's balance
    card_id: str  # bound through the API; the payer_id of card payments
    phone: str  # where the bank sends the payment codes


@dataclass(frozen=True)
class Merchants:
    marketplace_id: str
    marketplace_key: IssuedKey
    marketplace_webhook_secret: str
    seller_id: str  # sells on the marketplace: its orders go into combined carts
    shop_key: IssuedKey  # the USD shop (Stripe, PayPal)


def open_merchants(app: App, gateway: Gateway, webhook_url: str) -> Merchants:
    def make(
        name: str, currency: str, hook: str | None = None, parent: str | None = None
    ) -> tuple[Merchant, IssuedKey, str]:
        return run_in_transaction(
            app.engine,
            lambda c: create_merchant(
                c,
                app.chart,
                gateway.sealer,
                name=name,
                currency=currency,
                commission_bps=500,
                webhook_url=hook,
                pii_key=app.settings.pii_key,
                now=app.clock.now(),
                parent_id=parent,
            ),
        )

    market, key, secret = make("Mingqian Tea House", "CNY", webhook_url)
    seller, _seller_key, _ = make("Yunnan Tea Farm", "CNY", parent=market.id)
    _shop, shop_key, _ = make("Mingqian Tea USA", "USD")
    return Merchants(market.id, key, secret, seller.id, shop_key)


def open_buyers(
    app: App, client: MerchantClient, sandboxes: Sandboxes, marketplace_id: str
) -> list[Buyer]:
    """Each buyer opens a balance with the marketplace (``client`` is its), then binds their
    card through the API: the bank checks the elements and texts a code to the registered
    phone, which the buyer types back. 张三's card is signed on the second acquirer too, so
    routing has two channels for it. The platform has verified the buyers to class II already,
    so they are opened and enrolled here rather than through ``POST /v1/customers`` (class I)."""
    cards = {card.holder_name: card for card in TEST_CARDS}
    buyers = []
    for holder in BUYER_CARDS:
        card = cards[holder]
        opened = run_in_transaction(
            app.engine, partial(_open_buyer, app=app, card=card, marketplace_id=marketplace_id)
        )
        card_id = _bind(client, sandboxes, opened.customer_id, card)
        if holder == "张三":
            _sign_on(client, sandboxes, card_id, card, "quickpay_b")
        buyers.append(Buyer(opened.customer_id, opened.account_id, card_id, card.phone))
    return buyers


def _open_buyer(conn: Connection, *, app: App, card: CatalogueCard, marketplace_id: str) -> Holder:
    holder = open_holder(
        conn,
        app.chart,
        name=card.holder_name,
        login=f"buyer:{card.phone}",
        kind=CustomerKind.PERSON,
        kyc_level=KycLevel.CLASS_II,
        roles=[Role.BUYER_BALANCE],
        currency="CNY",
        pii_key=app.settings.pii_key,
        now=app.clock.now(),
        id_number=card.id_number,
    )
    enrol(conn, marketplace_id, holder.customer_id, app.clock.now())
    return holder


def _bind(
    client: MerchantClient, sandboxes: Sandboxes, customer_id: str, card: CatalogueCard
) -> str:
    body: dict[str, object] = {
        "holder_name": card.holder_name,
        "id_number": card.id_number,
        "card_number": card.card_no,
        "phone": card.phone,
        "channel": "quickpay",
    }
    if card.kind is CardKind.CREDIT:
        body |= {"expiry": card.expiry, "cvv": sandboxes.issuers.printed_cvv(card.card_no)}
    started = _ok(client.post(f"/v1/customers/{customer_id}/cards", body))
    code = sandboxes.quickpay.last_sms_code(card.phone)
    bound = _ok(client.post(f"/v1/card-bindings/{started['id']}/confirm", {"sms_code": code}))
    return str(bound["id"])


def _sign_on(
    client: MerchantClient, sandboxes: Sandboxes, card_id: str, card: CatalogueCard, channel: str
) -> None:
    body = {"channel": channel, "id_number": card.id_number}
    started = _ok(client.post(f"/v1/cards/{card_id}/signings", body))
    code = sandboxes.quickpay_b.last_sms_code(card.phone)
    _ok(client.post(f"/v1/card-bindings/{started['id']}/confirm", {"sms_code": code}))


def _ok(response: httpx.Response) -> dict[str, object]:
    if response.status_code >= 300:
        raise RuntimeError(f"demo set-up refused: {response.status_code} {response.text}")
    return dict(response.json())
