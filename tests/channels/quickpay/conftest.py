"""Fixtures: key sets per session, the seeded issuers, a channel instance served over real HTTP,
an adapter whose every request and answer is recorded, and a notification receiver that answers
with the adapter's own verification and acknowledgement."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.port import PayMethod, PayOrder
from clearhouse.gateway.channels.quickpay.adapter import (
    BoundCard,
    CardElements,
    CardStatus,
    QuickpayAdapter,
)
from clearhouse.gateway.channels.quickpay.protocol import QuickpayCredentials
from clearhouse.money import Money
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.quickpay import TEST_CARDS, Issuers, QuickpaySandbox, create_app
from clearhouse.sandbox.quickpay import quickpay_notifier as make_notifier
from clearhouse.sandbox.quickpay.banks import CatalogueCard
from clearhouse.sandbox.serving import ServedApp
from tests.channels.receiver import VerifyingReceiver, verifying_receiver

# 10:00 in Beijing: the business day 2026-11-02 is well under way.
START = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
CARDS = {card.holder_name: card for card in TEST_CARDS}
DEBIT = CARDS["张三"]  # 100000.00 balance
CREDIT = CARDS["李四"]
THIN = CARDS["王五"]  # 100.00 balance
CAPPED = CARDS["赵六"]  # issuer daily limit 3000.00
EXPIRED = CARDS["钱七"]


@pytest.fixture(scope="session")
def creds() -> QuickpayCredentials:
    return QuickpayCredentials.generate()


@pytest.fixture(scope="session")
def creds_b() -> QuickpayCredentials:
    """A second channel instance's merchant keys."""
    return QuickpayCredentials.generate()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def issuers() -> Issuers:
    return Issuers.seeded()


class Recorder(httpx.BaseTransport):
    """Forwards to the real server and keeps every request and answer body."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.requests: list[bytes] = []
        self.responses: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.read())
        response = self._inner.handle_request(request)
        body = response.read()
        self.responses.append(body)
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    def close(self) -> None:
        self._inner.close()


@pytest.fixture(scope="session")
def merchant(creds: QuickpayCredentials) -> QuickpayAdapter:
    """An adapter used only to verify notifications (it never calls out)."""
    return QuickpayAdapter(creds.merchant_view(), base_url="http://127.0.0.1:9")


@pytest.fixture
def receiver(merchant: QuickpayAdapter) -> Iterator[VerifyingReceiver]:
    with verifying_receiver(merchant, "/notify") as receiver:
        yield receiver


@pytest.fixture
def notifier(clock: FixedClock) -> Iterator[Notifier]:
    with httpx.Client(timeout=5) as client:
        yield make_notifier(clock, client)


@pytest.fixture
def sandbox(
    creds: QuickpayCredentials, issuers: Issuers, clock: FixedClock, notifier: Notifier
) -> QuickpaySandbox:
    return QuickpaySandbox(creds, issuers, clock, notifier=notifier, timeout_delay_s=1)


@pytest.fixture
def served(sandbox: QuickpaySandbox) -> Iterator[ServedApp]:
    with ServedApp(create_app(sandbox)) as served:
        yield served


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def adapter(
    creds: QuickpayCredentials, served: ServedApp, clock: FixedClock, recorder: Recorder
) -> Iterator[QuickpayAdapter]:
    client = httpx.Client(transport=recorder, timeout=5)
    adapter = QuickpayAdapter(
        creds.merchant_view(), base_url=served.base_url, clock=clock, client=client
    )
    yield adapter
    adapter.close_client()


def cny(text: str) -> Money:
    return Money.parse(text, "CNY")


def elements(card: CatalogueCard, *, four: bool = False, **changes: str) -> CardElements:
    """The elements of a catalogue card as its holder would type them: 3, or 4 with the
    phone; ``changes`` overrides or adds (a credit card's ``expiry`` and ``cvv``)."""
    typed = CardElements(
        card.holder_name, card.id_number, card.card_no, card.phone if four else None
    )
    return replace(typed, **changes)


def bind(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, card_elements: CardElements
) -> BoundCard:
    """Both binding steps with the code the sandbox sent; the card must verify."""
    challenge = adapter.bind_start(card_elements)
    assert challenge.status is CardStatus.OK, challenge.error_code
    record = sandbox.issuers.card(card_elements.card_no)
    assert record is not None
    bound = adapter.bind_confirm(challenge.request_id, sandbox.last_sms_code(record.phone))
    assert bound.status is CardStatus.OK, bound.error_code
    return bound


def credit_elements(sandbox: QuickpaySandbox, card: CatalogueCard = CREDIT) -> CardElements:
    return elements(card, expiry=card.expiry, cvv=sandbox.issuers.printed_cvv(card.card_no))


def order(
    attempt_id: str,
    token: str,
    amount: str = "12.34",
    notify_url: str = "http://127.0.0.1:9/notify",
    verification: str | None = None,
) -> PayOrder:
    return PayOrder(
        attempt_id=attempt_id,
        amount=cny(amount),
        description="洗衣订单",
        method=PayMethod.CARD,
        notify_url=notify_url,
        expires_at=START + timedelta(days=60),
        payer_id=token,
        verification=verification,
    )
