"""Real-name customers and card requests for the card tests (integration and HTTP).

The sandbox's test cards (``docs/channels/quickpay.md``) carry their holders' identities: a
customer opened with a card's holder name and ID number is who the issuer expects."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from clearhouse.accounts import handlers
from clearhouse.accounts.model import CustomerKind, KycLevel
from clearhouse.bootstrap import App
from clearhouse.db.schema import card_bindings, card_signings, card_usage, cards
from clearhouse.db.transaction import run_in_transaction
from clearhouse.sandbox.quickpay import TEST_CARDS
from clearhouse.sandbox.quickpay.banks import CatalogueCard
from tests.gateway_support import enrol

PII_KEY = b"test"  # what the tests' customers and merchants are opened with
BY_HOLDER = {card.holder_name: card for card in TEST_CARDS}
DEBIT = BY_HOLDER["张三"]  # 100,000.00; issuer 50,000 / 50,000
CREDIT = BY_HOLDER["李四"]  # credit: expiry and CVV
CAPPED = BY_HOLDER["赵六"]  # issuer daily limit 3,000.00
CARD_TABLES = (cards, card_signings, card_bindings, card_usage)


def add_customer(
    app: App,
    card: CatalogueCard,
    *,
    merchant_id: str,
    kyc: KycLevel = KycLevel.CLASS_II,
    name: str | None = None,
    id_number: str | None = None,
) -> str:
    """A person whose verified identity is the card holder's (or ``name``/``id_number``),
    enrolled with the merchant that binds its cards."""
    customer_id: str = run_in_transaction(
        app.engine,
        lambda c: handlers.open_customer(
            c,
            name=name or card.holder_name,
            kind=CustomerKind.PERSON,
            kyc_level=kyc,
            id_number=id_number or card.id_number,
            pii_key=PII_KEY,
            now=app.clock.now(),
        ),
    )
    enrol(app, merchant_id, customer_id)
    return customer_id


def bind_body(card: CatalogueCard, *, four: bool = False, **change: Any) -> dict[str, Any]:
    """What the payer types: 3 elements, or 4 with the phone; ``change`` adds or overrides."""
    body: dict[str, Any] = {
        "holder_name": card.holder_name,
        "id_number": card.id_number,
        "card_number": card.card_no,
    }
    if four:
        body["phone"] = card.phone
    return body | change


def card_rows(app: App) -> dict[str, int]:
    with app.engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
            for t in CARD_TABLES
        }
