"""Every sandbox, the gateway and its API served over real HTTP, with a CNY and a USD merchant:
the stack the live channel tests drive."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from clearhouse.api.app import create_api
from clearhouse.api.client import MerchantClient
from clearhouse.bootstrap import App, upgrade_database
from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.service import Gateway, build_gateway
from clearhouse.sandbox.runner import CHANNELS, SandboxCredentials, Sandboxes
from clearhouse.sandbox.serving import LateBound, ServedApp
from clearhouse.sealing import Sealer
from tests.gateway_support import add_merchant

ADAPTER_TIMEOUT_S = 0.3


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

    def pay_and_notify(self, channel: str, attempt_id: str) -> None:
        self.sandboxes.pay(channel, attempt_id)
        self.sandboxes.run_due()

    def payment(self, payment_id: str, client: MerchantClient | None = None) -> dict[str, object]:
        response = (client or self.client).get(f"/v1/payments/{payment_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def stack(app: App, clock: FixedClock, credentials: SandboxCredentials) -> Iterator[Stack]:
    upgrade_database(app)
    sandboxes = Sandboxes(credentials, clock, timeout_delay_s=1.0)
    apps = sandboxes.apps()
    with ExitStack() as served:
        urls = {name: served.enter_context(ServedApp(apps[name])).base_url for name in CHANNELS}
        api_server = served.enter_context(ServedApp(late := LateBound()))  # URL needed first
        sandboxes.notify_to(api_server.base_url)
        ports = ports_from_document(
            credentials.merchant_document(urls), clock, timeout=ADAPTER_TIMEOUT_S
        )
        gateway = build_gateway(
            app.engine, app.ledger, clock, Sealer(b"k"), ports, api_server.base_url
        )
        served.callback(gateway.close)
        late.app = create_api(gateway)
        http = served.enter_context(httpx.Client(base_url=api_server.base_url, timeout=10))
        clients = []
        for currency in ("CNY", "USD"):
            merchant = add_merchant(app, gateway, currency=currency, name=f"Shop {currency}")
            clients.append(
                MerchantClient(
                    http,
                    merchant.key.key_id,
                    merchant.key.secret,
                    lambda: clock.now().timestamp(),
                )
            )
        yield Stack(app, clock, sandboxes, gateway, clients[0], clients[1])
