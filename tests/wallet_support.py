"""Buyers with balances and bound cards, the platform's bank reserve, and the payout bank
sandbox served over HTTP, for the wallet's integration and HTTP tests.

Cards are written straight into the cards table (sealed as the card flows seal them): the
wallet only reads a card's owner, state, number and holder, and binding is the card tests'
subject."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import func, select, update

from clearhouse.accounts import handlers
from clearhouse.accounts.model import KycLevel, LimitKind, Role
from clearhouse.bootstrap import App
from clearhouse.db.schema import cards, limit_usage
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.cards import HOLDER, PAN
from clearhouse.gateway.service import Gateway
from clearhouse.ids import new_id
from clearhouse.sandbox.bank import PayoutBank, create_app
from clearhouse.sandbox.faults import NO_FAULTS, FaultPlan
from clearhouse.sandbox.quickpay.banks import CatalogueCard
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sealing import Sealer
from clearhouse.wallet.bankwire.adapter import BankAdapter
from clearhouse.wallet.bankwire.protocol import BankCredentials
from clearhouse.wallet.model import RailPolicy
from tests.card_support import CAPPED, DEBIT
from tests.conftest import open_party
from tests.gateway_support import SERVER_SECRET, enrol, make_gateway

__all__ = ["CAPPED", "DEBIT"]


@dataclass(frozen=True)
class Buyer:
    customer_id: str
    account_id: str
    fund_id: int
    card_id: str


def bind_card(
    app: App,
    customer_id: str,
    card: CatalogueCard = DEBIT,
    *,
    holder: str | None = None,
    status: str = "active",
) -> str:
    sealer = Sealer(SERVER_SECRET)
    card_id = new_id("card")
    now = app.clock.now()
    run_in_transaction(
        app.engine,
        lambda c: c.execute(
            cards.insert().values(
                id=card_id,
                customer_id=customer_id,
                pan_digest=hashlib.sha256(card.card_no.encode()).digest(),
                pan_sealed=sealer.seal(card.card_no.encode(), PAN),
                masked_pan=card.card_no[:6] + "******" + card.card_no[-4:],
                card_type="debit",
                holder_sealed=sealer.seal((holder or card.holder_name).encode(), HOLDER),
                status=status,
                created_at=now,
                updated_at=now,
            )
        ),
    )
    return card_id


def unbind(app: App, card_id: str) -> None:
    run_in_transaction(
        app.engine,
        lambda c: c.execute(update(cards).where(cards.c.id == card_id).values(status="unbound")),
    )


def add_buyer(
    app: App,
    name: str = "buyer",
    *,
    merchant_id: str,
    balance: int = 0,
    card: CatalogueCard | None = DEBIT,
    kyc: KycLevel = KycLevel.CLASS_II,
    currency: str = "CNY",
) -> Buyer:
    """A buyer of the merchant's (enrolled with it), with a balance and a bound card."""
    party = open_party(app, name, (Role.BUYER_BALANCE,), kyc=kyc, currency=currency)
    enrol(app, merchant_id, party.customer_id)
    if balance:
        top_up(app, party.account_id, balance, currency)
    card_id = bind_card(app, party.customer_id, card) if card is not None else ""
    return Buyer(
        party.customer_id, party.account_id, party.fund_accounts[Role.BUYER_BALANCE], card_id
    )


def second_account(app: App, buyer: Buyer, balance: int = 0) -> str:
    """Another login account of the same identity, with a buyer balance."""
    now = app.clock.now()

    def work(conn):  # type: ignore[no-untyped-def]
        aid = handlers.open_account(
            conn, customer_id=buyer.customer_id, login=f"alt-{uuid.uuid4().hex[:8]}", now=now
        )
        handlers.open_fund_account(
            conn, app.chart, account_id=aid, role=Role.BUYER_BALANCE, currency="CNY", now=now
        )
        return aid

    account_id: str = run_in_transaction(app.engine, work)
    if balance:
        top_up(app, account_id, balance)
    return account_id


def top_up(app: App, account_id: str, amount: int, currency: str = "CNY") -> None:
    """Money already in a balance (a top-up booked straight in the ledger)."""
    code = "4002" if currency == "CNY" else "4004"
    outcome = app.ledger.post(
        f"seed-{uuid.uuid4().hex}",
        code,
        currency,
        {"amount": amount},
        parties={"buyer": account_id},
    )
    assert outcome.ok, outcome


def fund_reserve(app: App, amount: int = 100_000_000) -> None:
    """Capital in the platform's bank account: what withdrawals are paid out of."""
    assert app.ledger.post(f"capital-{uuid.uuid4().hex}", "9001", "CNY", {"amount": amount}).ok


def available(app: App, buyer: Buyer | int) -> int:
    fund = buyer if isinstance(buyer, int) else buyer.fund_id
    return app.ledger.balance(fund).available


def posted(app: App, buyer: Buyer | int) -> int:
    fund = buyer if isinstance(buyer, int) else buyer.fund_id
    return app.ledger.balance(fund).posted


def used(app: App, customer_id: str, kind: LimitKind) -> int:
    with app.engine.connect() as conn:
        total = conn.execute(
            select(func.coalesce(func.max(limit_usage.c.used_minor), 0)).where(
                limit_usage.c.customer_id == customer_id,
                limit_usage.c.kind == kind.value,
                limit_usage.c.period == "day",
            )
        ).scalar()
    return int(total or 0)


@dataclass
class BankStack:
    bank: PayoutBank
    gateway: Gateway
    base_url: str


@contextmanager
def served_bank(
    app: App,
    ports: dict[str, object],
    *,
    faults: FaultPlan = NO_FAULTS,
    policy: RailPolicy | None = None,
    timeout: float = 2.0,
    late_by: float = 1.0,
) -> Iterator[BankStack]:
    """The payout bank sandbox over HTTP and a gateway whose withdrawals it pays."""
    creds = BankCredentials.generate()
    rails = policy or RailPolicy()
    bank = PayoutBank(creds, app.clock, faults=faults, policy=rails, timeout_delay_s=late_by)
    with ServedApp(create_app(bank)) as served:
        adapter = BankAdapter(creds, served.base_url, timeout=timeout, clock=app.clock)
        gateway = make_gateway(app, ports, bank=adapter, rail_policy=rails)  # type: ignore[arg-type]
        try:
            yield BankStack(bank, gateway, served.base_url)
        finally:
            gateway.close()


def settle_topup(client, channel, attempt_id: str) -> None:  # type: ignore[no-untyped-def]
    """The payer pays a top-up at the fake channel; its notification reaches the API."""
    channel.payer_pays(attempt_id)
    headers, note = channel.notification(attempt_id)
    assert client.http.post("/notify/wechatpay", content=note, headers=headers).status_code == 200
