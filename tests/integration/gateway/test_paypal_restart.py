"""A PayPal payment outlives the process that created it, on SQLite and PostgreSQL: a gateway
built afresh (new adapter, nothing in memory) queries, captures, refunds and closes orders an
earlier one created, reading each order id from what the gateway stored."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from clearhouse.bootstrap import App, upgrade_database
from clearhouse.clock import FixedClock
from clearhouse.db.schema import payment_events
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.paypal.protocol import PaypalCredentials, order_id_from_link
from clearhouse.gateway.model import IntentStatus, RefundStatus, Settlement
from clearhouse.gateway.payments import PaymentRequest
from clearhouse.gateway.service import Gateway
from clearhouse.money import Money
from clearhouse.sandbox.paypal import PaypalSandbox, create_app
from clearhouse.sandbox.serving import ServedApp
from tests.gateway_support import MerchantFixture, add_merchant, make_gateway

NewGateway = Callable[[], Gateway]


@pytest.fixture(scope="module")
def creds() -> PaypalCredentials:
    return PaypalCredentials.generate()  # RSA key generation is slow: once per module


@pytest.fixture
def sandbox(creds: PaypalCredentials, clock: FixedClock) -> Iterator[PaypalSandbox]:
    sandbox = PaypalSandbox(creds, clock, timeout_delay_s=1.0)
    with ServedApp(create_app(sandbox)) as served:
        sandbox.public_url = served.base_url
        yield sandbox


@pytest.fixture
def new_gateway(
    app: App, clock: FixedClock, creds: PaypalCredentials, sandbox: PaypalSandbox
) -> Iterator[NewGateway]:
    """A gateway as a fresh process builds it: its own PayPal adapter, nothing remembered."""
    upgrade_database(app)
    built: list[Gateway] = []

    def make() -> Gateway:
        adapter = PaypalAdapter(creds.merchant_view(), sandbox.public_url, timeout=2, clock=clock)
        gateway = make_gateway(app, {"paypal": adapter})
        built.append(gateway)
        return gateway

    yield make
    for gateway in built:
        gateway.close()


@pytest.fixture
def merchant(app: App, new_gateway: NewGateway) -> MerchantFixture:
    return add_merchant(app, new_gateway(), currency="USD", name="Tea Abroad")


def usd(amount: int) -> Money:
    return Money(amount, "USD")


def pay(gateway: Gateway, merchant: MerchantFixture, order: str) -> tuple[str, str, str]:
    """A PayPal payment created through ``gateway``: its id, its attempt's and the order's."""
    req = PaymentRequest(order, usd(10_000), "Darjeeling", "paypal", "page", Settlement.ESCROW)
    intent = gateway.payments.create(merchant.id, req)
    attempt = gateway.payments.attempts(intent.id)[-1]
    assert intent.status is IntentStatus.PROCESSING
    order_id = order_id_from_link(attempt.credential or "")
    assert order_id is not None
    return intent.id, attempt.id, order_id


def test_a_new_gateway_captures_and_refunds_an_order_an_old_one_created(
    app, clock, sandbox, new_gateway, merchant
):
    old = new_gateway()
    payment_id, _attempt_id, order_id = pay(old, merchant, "pp-1")
    old.close()  # the process that created the order is gone

    sandbox.approve(order_id)
    clock.advance(timedelta(seconds=31))
    assert new_gateway().poller.run_once().changed == 1  # its query captures the order
    paid = new_gateway().payments.get(merchant.id, payment_id)
    assert paid.status is IntentStatus.SUCCEEDED
    assert paid.fee == usd(398)  # 3.49% of 100.00 + 0.49
    assert len(sandbox.captures) == 1

    refund = new_gateway().refunds.create(merchant.id, payment_id, usd(5_000), "half")
    if refund.status is not RefundStatus.SUCCEEDED:
        clock.advance(timedelta(seconds=31))
        new_gateway().poller.run_once()  # a refund number no process remembers
    done = new_gateway().refunds.get(merchant.id, refund.id)
    assert done.status is RefundStatus.SUCCEEDED
    assert len(sandbox.refunds) == 1
    assert app.ledger.check() == []


def test_a_new_gateway_closing_an_order_paid_meanwhile_finds_it_paid(
    app, sandbox, new_gateway, merchant
):
    old = new_gateway()
    payment_id, attempt_id, order_id = pay(old, merchant, "pp-2")
    sandbox.approve(order_id)
    # The old process captured the order, then died before it stored the answer.
    captured = old.payments.channels.get("paypal").port.query(attempt_id)
    assert captured.status.value == "SUCCEEDED"
    old.close()

    after = new_gateway().payments.close(merchant.id, payment_id)
    assert after.status is IntentStatus.SUCCEEDED  # not closed over money that moved
    with app.engine.connect() as conn:
        anomalies = conn.execute(
            select(payment_events.c.id).where(payment_events.c.kind == "anomaly")
        ).all()
    assert anomalies == []
    assert app.ledger.check() == []


def test_a_new_gateway_closes_an_unpaid_order_and_never_captures_it(
    app, sandbox, new_gateway, merchant
):
    old = new_gateway()
    payment_id, _attempt_id, order_id = pay(old, merchant, "pp-3")
    old.close()
    fresh = new_gateway()
    closed = fresh.payments.close(merchant.id, payment_id)
    assert closed.status is IntentStatus.CLOSED
    with app.engine.connect() as conn:
        said = conn.execute(
            select(payment_events.c.detail).where(
                payment_events.c.intent_id == payment_id, payment_events.c.kind == "close"
            )
        ).scalar_one()
    assert json.loads(said)["id"] == order_id  # the close read the order itself, not a guess
    sandbox.approve(order_id)  # too late
    fresh.poller.run_once()
    assert not sandbox.captures
    assert fresh.payments.get(merchant.id, payment_id).status is IntentStatus.CLOSED
