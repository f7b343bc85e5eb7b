"""The gateway's services, wired once: what the API, the CLI, the workers and tests share."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from clearhouse.clock import Clock
from clearhouse.gateway.channels.port import ChannelPort
from clearhouse.gateway.channels.registry import Channels, ChannelTerms
from clearhouse.gateway.notifications import Notifications
from clearhouse.gateway.payments import Payments
from clearhouse.gateway.poller import Poller
from clearhouse.gateway.refunds import Refunds
from clearhouse.gateway.router import Router
from clearhouse.ledger.service import Ledger
from clearhouse.outbox.webhooks import Webhooks
from clearhouse.risk.checkpoint import AllowAll, RiskCheck
from clearhouse.sealing import Sealer


@dataclass
class Gateway:
    engine: Engine
    clock: Clock
    sealer: Sealer
    payments: Payments
    router: Router
    refunds: Refunds
    notifications: Notifications
    poller: Poller
    webhooks: Webhooks

    def close(self) -> None:
        """Release the channels' and the webhooks' HTTP connections."""
        for name in self.payments.channels.names():
            self.payments.channels.get(name).port.close_client()
        self.webhooks.client.close()


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
) -> Gateway:
    channels = Channels(ports, terms)
    router = Router(engine, clock, channels, ledger.zone, seed=routing_seed)
    payments = Payments(
        engine, ledger, clock, channels, risk or AllowAll(), notify_base_url, router
    )
    refunds = Refunds(payments)
    return Gateway(
        engine=engine,
        clock=clock,
        sealer=sealer,
        payments=payments,
        router=router,
        refunds=refunds,
        notifications=Notifications(payments, refunds),
        poller=Poller(payments, refunds),
        webhooks=webhooks or Webhooks(engine, clock, sealer),
    )
