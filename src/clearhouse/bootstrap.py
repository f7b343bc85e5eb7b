"""The composition root: the only place that builds engines, clocks and services together."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from clearhouse.accounts.handlers import ensure_platform, seed_chart
from clearhouse.clock import Clock, SystemClock
from clearhouse.config import Settings, load_settings
from clearhouse.db import migrate
from clearhouse.db.engine import make_engine
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.channels.port import ChannelPort
from clearhouse.gateway.service import Gateway, build_gateway
from clearhouse.ledger.chart import Chart, load_chart
from clearhouse.ledger.rules import PostingRules, load_rules
from clearhouse.ledger.service import Ledger
from clearhouse.sealing import Sealer
from clearhouse.wallet.bank import PayoutPort

PLATFORM_CURRENCIES = ("CNY", "USD")


@dataclass
class App:
    settings: Settings
    engine: Engine
    clock: Clock
    chart: Chart
    rules: PostingRules
    ledger: Ledger

    def close(self) -> None:
        self.engine.dispose()


def build_app(
    settings: Settings | None = None, clock: Clock | None = None, *, pool_size: int = 5
) -> App:
    settings = settings or load_settings()
    clock = clock or SystemClock()
    engine = make_engine(settings.database_url, pool_size=pool_size)
    chart = load_chart()
    rules = load_rules()
    ledger = Ledger(engine, clock, rules, zone=settings.ledger_zone)
    return App(settings, engine, clock, chart, rules, ledger)


def upgrade_database(app: App, currencies: tuple[str, ...] = PLATFORM_CURRENCIES) -> None:
    """Migrate the schema, then make sure the reference data exists: the chart of accounts and
    the platform's own fund accounts in each operating currency."""
    migrate.upgrade(app.engine)

    def seed(conn):  # type: ignore[no-untyped-def]
        seed_chart(conn, app.chart)
        for cur in currencies:
            ensure_platform(conn, app.chart, app.rules, cur, app.clock.now())

    run_in_transaction(app.engine, seed, retry_integrity=True)


def gateway_for(
    app: App,
    ports: dict[str, ChannelPort],
    notify_base_url: str,
    bank: PayoutPort | None = None,
) -> Gateway:
    """The payment gateway over this app's database and ledger; channels send their
    notifications to ``notify_base_url``/notify/<channel>; withdrawals are paid through
    ``bank``."""
    return build_gateway(
        app.engine,
        app.ledger,
        app.clock,
        Sealer(app.settings.secret_key),
        ports,
        notify_base_url,
        pii_key=app.settings.pii_key,
        bank=bank,
        chart=app.chart,
    )
