"""Building a gateway over the test app, with merchants and the customers they may act for."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import Connection

from clearhouse.bootstrap import App, upgrade_database
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.channels.port import ChannelPort
from clearhouse.gateway.customers import enrol as enrol_customer
from clearhouse.gateway.merchants import IssuedKey, Merchant, create_merchant
from clearhouse.gateway.service import Gateway, build_gateway
from clearhouse.sealing import Sealer
from tests.fake_channel import FakeChannel

SERVER_SECRET = b"test-server-secret"


@dataclass(frozen=True)
class MerchantFixture:
    merchant: Merchant
    key: IssuedKey
    webhook_secret: str

    @property
    def id(self) -> str:
        return self.merchant.id


def make_gateway(app: App, ports: dict[str, ChannelPort], **kwargs: object) -> Gateway:
    return build_gateway(
        app.engine,
        app.ledger,
        app.clock,
        Sealer(SERVER_SECRET),
        ports,
        "http://clearhouse.test",
        **kwargs,  # type: ignore[arg-type]
    )


def add_merchant(
    app: App,
    gateway: Gateway,
    *,
    commission_bps: int = 500,
    webhook_url: str | None = None,
    name: str = "Tea House",
    currency: str = "CNY",
    parent_id: str | None = None,
) -> MerchantFixture:
    merchant, key, secret = run_in_transaction(
        app.engine,
        lambda c: create_merchant(
            c,
            app.chart,
            gateway.sealer,
            name=name,
            currency=currency,
            parent_id=parent_id,
            commission_bps=commission_bps,
            webhook_url=webhook_url,
            pii_key=b"test",
            now=app.clock.now(),
        ),
    )
    return MerchantFixture(merchant, key, secret)


def enrol(app: App, merchant_id: str, *customer_ids: str) -> None:
    """Let the merchant (and its sellers) act for these customers."""
    now = app.clock.now()

    def work(conn: Connection) -> None:
        for customer_id in customer_ids:
            enrol_customer(conn, merchant_id, customer_id, now)

    run_in_transaction(app.engine, work)


# Fixtures shared by the gateway's integration and HTTP tests (imported by their conftests).


@pytest.fixture
def channel() -> FakeChannel:
    return FakeChannel()


@pytest.fixture
def gateway(app: App, channel: FakeChannel) -> Iterator[Gateway]:
    upgrade_database(app)
    built = make_gateway(app, {"wechatpay": channel})
    yield built
    built.close()  # its webhook client's connections


@pytest.fixture
def merchant(app: App, gateway: Gateway) -> MerchantFixture:
    return add_merchant(app, gateway)
