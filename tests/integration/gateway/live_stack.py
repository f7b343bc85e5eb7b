"""Every sandbox, the gateway and its API served over real HTTP, with a CNY and a USD merchant:
the stack the live channel tests drive. The two quick pay acquirers share one card network;
``customer`` opens real-name customers whose identities are the test cards' holders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from clearhouse.api.app import create_api
from clearhouse.api.client import MerchantClient
from clearhouse.bootstrap import App, upgrade_database
from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.service import Gateway, build_gateway
from clearhouse.sandbox.quickpay import QuickpaySandbox
from clearhouse.sandbox.quickpay.banks import CatalogueCard
from clearhouse.sandbox.runner import CHANNELS, SandboxCredentials, Sandboxes
from clearhouse.sandbox.serving import LateBound, ServedApp
from clearhouse.sealing import Sealer
from tests.card_support import DEBIT, PII_KEY, add_customer, bind_body
from tests.gateway_support import add_merchant

ADAPTER_TIMEOUT_S = 0.3
# Card calls do RSA work on both sides and the card tests inject no timeouts: a slow moment of
# a loaded machine must not read as one.
CARD_CHANNELS, CARD_TIMEOUT_S = ("quickpay", "quickpay_b"), 5.0


@pytest.fixture(scope="module")
def credentials() -> SandboxCredentials:
    return SandboxCredentials.generate()  # RSA key generation is slow: once per module


@dataclass
class Stack:
    app: App
    clock: FixedClock
    sandboxes: Sandboxes
    gateway: Gateway
    client: MerchantClient  # a CNY merchant
    usd_client: MerchantClient  # a USD merchant (Stripe, PayPal)
    merchant_id: str  # the CNY merchant's: the customers ``customer`` opens are its

    def pay_and_notify(self, channel: str, attempt_id: str) -> None:
        self.sandboxes.pay(channel, attempt_id)
        self.sandboxes.run_due()

    def payment(self, payment_id: str, client: MerchantClient | None = None) -> dict[str, object]:
        response = (client or self.client).get(f"/v1/payments/{payment_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    # --- cards ----------------------------------------------------------------------------

    def quickpay(self, channel: str) -> QuickpaySandbox:
        return self.sandboxes.quickpay_b if channel == "quickpay_b" else self.sandboxes.quickpay

    def bind_card(
        self, customer_id: str, card: CatalogueCard, channel: str = "quickpay", **change: Any
    ) -> dict[str, Any]:
        """Both binding steps through the API, with the code the channel sent the holder."""
        body = bind_body(card, **change) | {"channel": channel}
        started = self.client.post(f"/v1/customers/{customer_id}/cards", body)
        assert started.status_code == 201, started.text
        code = self.quickpay(channel).last_sms_code(card.phone)
        confirm = {"sms_code": code}
        bound = self.client.post(f"/v1/card-bindings/{started.json()['id']}/confirm", confirm)
        assert bound.status_code == 200, bound.text
        return dict(bound.json())

    def sign_on(
        self, card_id: str, card: CatalogueCard, channel: str, cvv: str | None = None
    ) -> dict[str, Any]:
        body = {"channel": channel, "id_number": card.id_number} | ({"cvv": cvv} if cvv else {})
        started = self.client.post(f"/v1/cards/{card_id}/signings", body)
        assert started.status_code == 201, started.text
        code = {"sms_code": self.quickpay(channel).last_sms_code(card.phone)}
        bound = self.client.post(f"/v1/card-bindings/{started.json()['id']}/confirm", code)
        assert bound.status_code == 200, bound.text
        return dict(bound.json())

    def card_payment(
        self, order: str, amount: int, card_id: str, phone: str, channel: str = "card"
    ) -> dict[str, Any]:
        """A card payment as a cashier makes it: above the channel's exemption the gateway
        asks for the payer's code, the code is sent, and the same request goes again with it."""
        body = {
            "merchant_order_id": order,
            "amount": amount,
            "currency": "CNY",
            "description": "Longjing, spring picking",
            "channel": channel,
            "method": "card",
            "payer_id": card_id,
            "settlement": "escrow",
        }
        made = self.client.post("/v1/payments", body)
        if made.status_code == 402:
            assert made.json()["error"]["code"] == "VERIFICATION_REQUIRED", made.text
            payment_id = made.json()["error"]["payment_id"]
            sent = self.client.post(f"/v1/payments/{payment_id}/sms", {})
            assert sent.status_code == 200, sent.text
            code = self.quickpay(sent.json()["channel"]).last_sms_code(phone)
            made = self.client.post("/v1/payments", body | {"verification": code})
        assert made.status_code == 201, made.text
        return dict(made.json())


@pytest.fixture
def stack(app: App, clock: FixedClock, credentials: SandboxCredentials) -> Iterator[Stack]:
    upgrade_database(app)
    sandboxes = Sandboxes(credentials, clock, timeout_delay_s=1.0)
    apps = sandboxes.apps()
    with ExitStack() as served:
        served.callback(sandboxes.close)  # last: notifications to the API may still be going
        urls = {name: served.enter_context(ServedApp(apps[name])).base_url for name in CHANNELS}
        api_server = served.enter_context(ServedApp(late := LateBound()))  # URL needed first
        sandboxes.notify_to(api_server.base_url)
        document = credentials.merchant_document(urls)
        ports = ports_from_document(
            {n: e for n, e in document.items() if n not in CARD_CHANNELS},
            clock,
            timeout=ADAPTER_TIMEOUT_S,
        )
        cards = {n: e for n, e in document.items() if n in CARD_CHANNELS}
        ports |= ports_from_document(cards, clock, timeout=CARD_TIMEOUT_S)
        gateway = build_gateway(
            app.engine, app.ledger, clock, Sealer(b"k"), ports, api_server.base_url, pii_key=PII_KEY
        )
        served.callback(gateway.close)
        late.app = create_api(gateway)
        http = served.enter_context(httpx.Client(base_url=api_server.base_url, timeout=10))
        clients, merchant_ids = [], []
        for currency in ("CNY", "USD"):
            merchant = add_merchant(app, gateway, currency=currency, name=f"Shop {currency}")
            merchant_ids.append(merchant.id)
            clients.append(
                MerchantClient(
                    http,
                    merchant.key.key_id,
                    merchant.key.secret,
                    lambda: clock.now().timestamp(),
                )
            )
        yield Stack(app, clock, sandboxes, gateway, clients[0], clients[1], merchant_ids[0])


@pytest.fixture
def customer(stack: Stack) -> Callable[..., str]:
    """Opens a real-name customer (KYC class II) of the CNY merchant whose identity is a test
    card holder's; ``name`` / ``id_number`` make one whose identity differs from the card's."""

    def make(card: CatalogueCard = DEBIT, **change: Any) -> str:
        return add_customer(stack.app, card, merchant_id=stack.merchant_id, **change)

    return make
