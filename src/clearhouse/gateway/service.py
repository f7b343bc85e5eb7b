"""The gateway's services, wired once: what the API, the CLI, the workers and tests share."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine

from clearhouse.clock import Clock
from clearhouse.config import DEFAULT_PII_KEY
from clearhouse.gateway import records
from clearhouse.gateway.cards import Cards, card_ports
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.port import ChannelPort
from clearhouse.gateway.channels.registry import Channels, ChannelTerms
from clearhouse.gateway.customers import Customers
from clearhouse.gateway.groups import Groups
from clearhouse.gateway.notifications import Notifications
from clearhouse.gateway.payments import Payments
from clearhouse.gateway.poller import Poller
from clearhouse.gateway.refunds import Refunds
from clearhouse.gateway.router import Router
from clearhouse.ledger.chart import Chart, load_chart
from clearhouse.ledger.service import Ledger
from clearhouse.outbox.webhooks import Webhooks
from clearhouse.risk.checkpoint import AllowAll, RiskCheck
from clearhouse.sealing import Sealer
from clearhouse.wallet.bank import PayoutPort
from clearhouse.wallet.model import RailPolicy
from clearhouse.wallet.service import Wallet, build_wallet


@dataclass
class Gateway:
    engine: Engine
    clock: Clock
    sealer: Sealer
    payments: Payments
    groups: Groups
    router: Router
    refunds: Refunds
    notifications: Notifications
    poller: Poller
    webhooks: Webhooks
    cards: Cards
    wallet: Wallet
    customers: Customers

    def close(self) -> None:
        """Release the channels' and the webhooks' HTTP connections."""
        for name in self.payments.channels.names():
            self.payments.channels.get(name).port.close_client()
        self.webhooks.client.close()
        self.wallet.close()


def build_gateway(
    engine: Engine,
    ledger: Ledger,
    clock: Clock,
    sealer: Sealer,
    ports: dict[str, ChannelPort],
    notify_base_url: str,
    risk: RiskCheck | None = None,
    webhooks: Webhooks | None = None,
    routing_seed: int = 0,
    terms: dict[str, ChannelTerms] | None = None,
    pii_key: bytes = DEFAULT_PII_KEY.encode(),
    bank: PayoutPort | None = None,
    rail_policy: RailPolicy | None = None,
    chart: Chart | None = None,
) -> Gateway:
    """``pii_key``: the key of the customers' ID number digests (cards check the holder's
    identity against it). ``bank``: the payout bank withdrawals are paid through. ``chart``:
    the chart of accounts buyers' balances are opened under (the packaged one by default)."""
    channels = Channels(ports, terms)
    # Quick pay instances take our card ids: their ports swap them for the channel's tokens.
    channels = Channels({**ports, **card_ports(engine, channels)}, terms)
    for name in channels.names():
        port = channels.get(name).port
        if isinstance(port, PaypalAdapter):
            # PayPal finds an order only by the id its create answer gave: a process that did
            # not see that answer reads it from the approval link the attempt stored.
            port.stored_link = partial(_stored_link, engine)
    router = Router(engine, clock, channels, ledger.zone, seed=routing_seed)
    cards = Cards(engine, clock, sealer, pii_key, channels)
    router.cards = cards
    payments = Payments(
        engine, ledger, clock, channels, risk or AllowAll(), notify_base_url, router
    )
    refunds = Refunds(payments)
    payments.compensate = refunds.compensate
    return Gateway(
        engine=engine,
        clock=clock,
        sealer=sealer,
        payments=payments,
        groups=Groups(payments),
        router=router,
        refunds=refunds,
        notifications=Notifications(payments, refunds),
        poller=Poller(payments, refunds),
        webhooks=webhooks or Webhooks(engine, clock, sealer),
        cards=cards,
        wallet=build_wallet(engine, ledger, clock, sealer, payments, bank, rail_policy),
        customers=Customers(engine, clock, sealer, chart or load_chart(), pii_key),
    )


def _stored_link(engine: Engine, attempt_id: str) -> str | None:
    """What the payer was given for an attempt (its approval link, for PayPal)."""
    with engine.connect() as conn:
        found = records.attempt(conn, attempt_id)
    return None if found is None else found.credential
