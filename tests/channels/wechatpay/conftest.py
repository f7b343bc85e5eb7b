"""Fixtures: one set of keys per session, a sandbox served over real HTTP, a notification receiver.

The clock starts at the real "now" because the wechatpayv3 SDK dates its signatures with the
system clock and the sandbox checks them against its own clock (5-minute window).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.wechatpay.adapter import WechatPayAdapter
from clearhouse.gateway.channels.wechatpay.protocol import WechatPayCredentials
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sandbox.wechatpay.app import create_app
from clearhouse.sandbox.wechatpay.state import WechatPaySandbox, make_notifier
from tests.channels.receiver import ScriptedReceiver, scripted_receiver


@pytest.fixture(scope="session")
def creds() -> WechatPayCredentials:
    return WechatPayCredentials.generate()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def receiver() -> Iterator[ScriptedReceiver]:
    """A merchant's notify endpoint: answers 204 unless scripted."""
    with scripted_receiver("/notify", default_status=204) as receiver:
        yield receiver


@pytest.fixture
def notifier(clock: FixedClock) -> Notifier:
    return make_notifier(clock)


@pytest.fixture
def sandbox(creds: WechatPayCredentials, clock: FixedClock, notifier: Notifier) -> WechatPaySandbox:
    return WechatPaySandbox(creds, clock, notifier=notifier, timeout_delay_s=1.0)


@pytest.fixture
def served(sandbox: WechatPaySandbox) -> Iterator[ServedApp]:
    with ServedApp(create_app(sandbox)) as served:
        yield served


@pytest.fixture
def adapter(
    creds: WechatPayCredentials, clock: FixedClock, served: ServedApp
) -> Iterator[WechatPayAdapter]:
    adapter = WechatPayAdapter(creds.merchant_view(), served.base_url, timeout=0.5, clock=clock)
    yield adapter
    adapter.close_client()


def parse_bill(data: bytes) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Detail rows and the summary of a WeChat bill file, backticks stripped."""
    text = data.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    header, *body = rows
    cut = next(i for i, r in enumerate(body) if not r[0].startswith("`"))
    details = [dict(zip(header, (v.removeprefix("`") for v in r), strict=True)) for r in body[:cut]]
    summary_header, summary_values = body[cut], body[cut + 1]
    summary = dict(zip(summary_header, (v.removeprefix("`") for v in summary_values), strict=True))
    return details, summary
