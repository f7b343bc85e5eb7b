"""Fixtures: fresh keys, a sandbox served over real HTTP, a webhook receiver.

The clock starts at the real "now": stripe-python checks webhook timestamps against the system
clock, and the sandbox signs with its own.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI, Request, Response

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.stripe.adapter import StripeAdapter
from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sandbox.stripe.app import create_app
from clearhouse.sandbox.stripe.events import make_notifier
from clearhouse.sandbox.stripe.state import StripeSandbox


@pytest.fixture
def creds() -> StripeCredentials:
    return StripeCredentials.generate()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@dataclass
class Receiver:
    """A merchant's webhook endpoint: records what arrives, answers from a script."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status per delivery; then 200
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/webhooks")
        async def webhook(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            return Response(status_code=self.answers.pop(0) if self.answers else 200)

        return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with ServedApp(receiver.app()) as served:
        receiver.url = f"{served.base_url}/webhooks"
        yield receiver


@pytest.fixture
def notifier(clock: FixedClock) -> Notifier:
    return make_notifier(clock)


@pytest.fixture
def sandbox(
    creds: StripeCredentials, clock: FixedClock, notifier: Notifier, receiver: Receiver
) -> StripeSandbox:
    return StripeSandbox(
        creds, clock, notifier=notifier, timeout_delay_s=1.0, webhook_url=receiver.url
    )


@pytest.fixture
def served(sandbox: StripeSandbox) -> Iterator[ServedApp]:
    with ServedApp(create_app(sandbox)) as served:
        yield served


@pytest.fixture
def adapter(
    creds: StripeCredentials, clock: FixedClock, served: ServedApp
) -> Iterator[StripeAdapter]:
    adapter = StripeAdapter(creds.merchant_view(), served.base_url, timeout=0.5, clock=clock)
    yield adapter
    adapter.close_client()


def parse_report(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
