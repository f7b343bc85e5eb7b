"""Fixtures: fresh keys, a sandbox served over real HTTP, a webhook receiver.

The clock starts at the real "now": stripe-python checks webhook timestamps against the system
clock, and the sandbox signs with its own.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.stripe.adapter import StripeAdapter
from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sandbox.stripe.app import create_app
from clearhouse.sandbox.stripe.events import make_notifier
from clearhouse.sandbox.stripe.state import StripeSandbox
from tests.channels.receiver import ScriptedReceiver, scripted_receiver


@pytest.fixture
def creds() -> StripeCredentials:
    return StripeCredentials.generate()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def receiver() -> Iterator[ScriptedReceiver]:
    """A merchant's webhook endpoint: answers 200 unless scripted."""
    with scripted_receiver("/webhooks", default_status=200) as receiver:
        yield receiver


@pytest.fixture
def notifier(clock: FixedClock) -> Notifier:
    return make_notifier(clock)


@pytest.fixture
def sandbox(
    creds: StripeCredentials, clock: FixedClock, notifier: Notifier, receiver: ScriptedReceiver
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
