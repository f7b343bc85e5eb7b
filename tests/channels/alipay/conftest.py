"""Fixtures: one key set per session, a sandbox served over real HTTP, and a notification receiver
that answers with the adapter's own verification and acknowledgement."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.alipay.adapter import AlipayAdapter
from clearhouse.gateway.channels.alipay.protocol import AlipayCredentials
from clearhouse.gateway.channels.port import BadNotification, Notification, PayMethod, PayOrder
from clearhouse.money import Money
from clearhouse.sandbox.alipay import AlipaySandbox, alipay_notifier, create_app
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.serving import ServedApp

# 10:00 in Beijing: the business day 2026-11-02 is well under way.
START = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def creds() -> AlipayCredentials:
    return AlipayCredentials.generate()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@dataclass
class Receiver:
    """What the merchant's notify_url received; ``accept`` decides the acknowledgement."""

    url: str = ""
    accept: bool = True
    bodies: list[bytes] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def merchant(creds: AlipayCredentials) -> AlipayAdapter:
    """An adapter used only to verify notifications (it never calls out)."""
    return AlipayAdapter(creds.merchant_view(), base_url="http://127.0.0.1:9")


@pytest.fixture
def receiver(merchant: AlipayAdapter) -> Iterator[Receiver]:
    state = Receiver()
    app = FastAPI()

    @app.post("/notify")
    async def notify(request: Request) -> Response:
        body = await request.body()
        state.bodies.append(body)
        try:
            state.notifications.append(merchant.parse_notification(dict(request.headers), body))
            ack = merchant.ack(state.accept)
        except BadNotification as exc:
            state.rejected.append(exc.message)
            ack = merchant.ack(False)
        return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)

    with ServedApp(app) as served:
        state.url = f"{served.base_url}/notify"
        yield state


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
