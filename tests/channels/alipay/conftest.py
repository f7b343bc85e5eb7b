"""Fixtures: one key set per session, a sandbox served over real HTTP, and a notification receiver
that answers with the adapter's own verification and acknowledgement."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.alipay.adapter import AlipayAdapter
from clearhouse.gateway.channels.alipay.protocol import AlipayCredentials
from clearhouse.gateway.channels.port import PayMethod, PayOrder
from clearhouse.money import Money
from clearhouse.sandbox.alipay import AlipaySandbox, alipay_notifier, create_app
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.serving import ServedApp
from tests.channels.receiver import VerifyingReceiver, verifying_receiver

# 10:00 in Beijing: the business day 2026-11-02 is well under way.
START = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def creds() -> AlipayCredentials:
    return AlipayCredentials.generate()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture(scope="session")
def merchant(creds: AlipayCredentials) -> AlipayAdapter:
    """An adapter used only to verify notifications (it never calls out)."""
    return AlipayAdapter(creds.merchant_view(), base_url="http://127.0.0.1:9")


@pytest.fixture
def receiver(merchant: AlipayAdapter) -> Iterator[VerifyingReceiver]:
    with verifying_receiver(merchant, "/notify") as receiver:
        yield receiver


@pytest.fixture
def notifier(clock: FixedClock) -> Iterator[Notifier]:
    with httpx.Client(timeout=5) as client:
        yield alipay_notifier(clock, client)


@pytest.fixture
def sandbox(creds: AlipayCredentials, clock: FixedClock, notifier: Notifier) -> AlipaySandbox:
    return AlipaySandbox(creds, clock, notifier=notifier, timeout_delay_s=1)


@pytest.fixture
def served(sandbox: AlipaySandbox) -> Iterator[ServedApp]:
    with ServedApp(create_app(sandbox)) as served:
        yield served


@pytest.fixture
def adapter(
    creds: AlipayCredentials, served: ServedApp, clock: FixedClock
) -> Iterator[AlipayAdapter]:
    adapter = AlipayAdapter(creds.merchant_view(), base_url=served.base_url, timeout=5, clock=clock)
    yield adapter
    adapter.close_client()


def cny(text: str) -> Money:
    return Money.parse(text, "CNY")


def order(
    attempt_id: str,
    amount: str = "12.34",
    method: PayMethod = PayMethod.NATIVE,
    notify_url: str = "http://127.0.0.1:9/notify",
) -> PayOrder:
    return PayOrder(
        attempt_id=attempt_id,
        amount=cny(amount),
        description="洗衣订单",
        method=method,
        notify_url=notify_url,
        expires_at=START + timedelta(minutes=30),
    )
