"""Fixtures: one credential set per session, a sandbox served over real HTTP, the adapter, and a
webhook receiver that answers with the adapter's own verification and acknowledgement.

The clock starts at the real "now": the PayPal SDK times its OAuth token with the system clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.paypal.protocol import PaypalCredentials
from clearhouse.gateway.channels.port import PayMethod, PayOrder
from clearhouse.money import Money
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.paypal import PaypalSandbox, create_app, make_notifier
from clearhouse.sandbox.serving import ServedApp
from tests.channels.receiver import VerifyingReceiver, verifying_receiver


@pytest.fixture(scope="session")
def creds() -> PaypalCredentials:
    return PaypalCredentials.generate()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def notifier(clock: FixedClock) -> Iterator[Notifier]:
    with httpx.Client(timeout=5) as client:
        yield make_notifier(clock, client)


@pytest.fixture
def sandbox(creds: PaypalCredentials, clock: FixedClock, notifier: Notifier) -> PaypalSandbox:
    return PaypalSandbox(creds, clock, notifier=notifier, timeout_delay_s=1.0)


@pytest.fixture
def served(sandbox: PaypalSandbox) -> Iterator[ServedApp]:
    with ServedApp(create_app(sandbox)) as served:
        sandbox.public_url = served.base_url
        yield served


@pytest.fixture
def adapter(
    creds: PaypalCredentials, clock: FixedClock, served: ServedApp
) -> Iterator[PaypalAdapter]:
    adapter = PaypalAdapter(creds.merchant_view(), served.base_url, timeout=0.5, clock=clock)
    yield adapter
    adapter.close_client()


@pytest.fixture
def receiver(
    creds: PaypalCredentials, clock: FixedClock, served: ServedApp, sandbox: PaypalSandbox
) -> Iterator[VerifyingReceiver]:
    merchant = PaypalAdapter(creds.merchant_view(), served.base_url, timeout=5, clock=clock)
    with verifying_receiver(merchant, "/webhooks/paypal") as receiver:
        sandbox.webhook_url = receiver.url
        yield receiver
    merchant.close_client()


def usd(text: str) -> Money:
    return Money.parse(text, "USD")


def pay_order(attempt_id: str, amount: str = "10.00", currency: str = "USD") -> PayOrder:
    return PayOrder(
        attempt_id=attempt_id,
        amount=Money.parse(amount, currency),
        description="laundry order",
        method=PayMethod.PAGE,
        notify_url="https://merchant.example/webhooks/paypal",
        expires_at=datetime.now(UTC) + timedelta(hours=3),
    )
