"""Fixtures: one set of keys per session, a sandbox served over real HTTP, a notification receiver.

The clock starts at the real "now" because the wechatpayv3 SDK dates its signatures with the
system clock and the sandbox checks them against its own clock (5-minute window).
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
from clearhouse.gateway.channels.wechatpay.adapter import WechatPayAdapter
from clearhouse.gateway.channels.wechatpay.protocol import WechatPayCredentials
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sandbox.wechatpay.app import create_app
from clearhouse.sandbox.wechatpay.state import WechatPaySandbox, make_notifier


@pytest.fixture(scope="session")
def creds() -> WechatPayCredentials:
    return WechatPayCredentials.generate()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.now(UTC).replace(microsecond=0))


@dataclass
class Receiver:
    """A merchant's notify endpoint: records what arrives, answers from a script."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status per delivery; then 204
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/notify")
        async def notify(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            status = self.answers.pop(0) if self.answers else 204
            return Response(status_code=status)

        return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with ServedApp(receiver.app()) as served:
        receiver.url = f"{served.base_url}/notify"
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
