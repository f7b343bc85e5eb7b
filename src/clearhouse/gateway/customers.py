"""Customers as merchants see them: who may act for whom, and buyers opened through the API.

A customer is one real identity of the platform (A1), but a merchant acts only for the
customers enrolled with it (``merchant_customers``) and, if it sells on a marketplace, for the
marketplace's: a seller takes payments from its marketplace's buyers. The rule looks upward
only: a marketplace does not act for a customer only its seller enrolled, and nothing reaches
across marketplaces. An account, a card or a card binding is in scope when its customer is.

Everything a merchant names (a customer id, an account id, a card id) is checked here, inside
the transaction that uses it, before anything about it is read or told. Out of scope answers
exactly as unknown (the same code, message and details), so a merchant cannot find out whether
an id it was not given exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, exists, or_, select, update
from sqlalchemy.engine import Connection

from clearhouse.accounts import handlers
from clearhouse.accounts.model import CustomerKind, KycLevel, Role, normalise_id_number
from clearhouse.clock import Clock
from clearhouse.db.schema import (
    accounts,
    card_bindings,
    cards,
    customers,
    fund_accounts,
    merchant_customers,
    merchants,
)
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.card_model import BindingNotFound, CardNotFound, CustomerNotFound
from clearhouse.gateway.errors import GatewayError
from clearhouse.gateway.merchants import active_merchant, load_merchant
from clearhouse.ledger.chart import Chart
from clearhouse.sealing import Sealer
from clearhouse.wallet.errors import AccountNotFound

PHONE = "customer.phone"  # seal purpose
# A buyer opened through the API has given a real name and an ID number, nothing more: the
# lowest real-name class. Raising it is the platform's verification, not a merchant's call.
OPENED_AT = KycLevel.CLASS_I
MAX_NAME = 60  # a card's holder name is no longer, and these buyers bind cards
_NAME_FORBIDDEN = re.compile(r"[&{}=\x00-\x1f\x7f]")  # what card channels' wire syntax forbids
_ID_NUMBER = re.compile(r"[0-9]{17}[0-9X]")  # resident identity card
_PHONE = re.compile(r"1[0-9]{10}")  # mainland mobile


class InvalidCustomer(GatewayError):
    """An element of a new customer that cannot be right; ``field`` names it, never its value."""

    code = "INVALID_CUSTOMER"


# --- the rule ------------------------------------------------------------------------------


def _in_scope(merchant_id: str, customer_id: ColumnElement[str] | str) -> ColumnElement[bool]:
    """True where ``customer_id`` is enrolled with the merchant or with its marketplace."""
    parent = select(merchants.c.parent_id).where(merchants.c.id == merchant_id).scalar_subquery()
    m = merchant_customers.c
    # A merchant without a marketplace has a NULL parent: that comparison matches nothing.
    return exists().where(
        m.customer_id == customer_id, or_(m.merchant_id == merchant_id, m.merchant_id == parent)
    )


def customer_in_scope(conn: Connection, merchant_id: str, customer_id: str) -> bool:
    return bool(conn.execute(select(_in_scope(merchant_id, customer_id))).scalar())


def require_customer(conn: Connection, merchant_id: str, customer_id: str) -> None:
    if not customer_in_scope(conn, merchant_id, customer_id):
        raise CustomerNotFound(f"no customer {customer_id!r}", customer_id=customer_id)


def require_account(conn: Connection, merchant_id: str, account_id: str) -> None:
    found = conn.execute(
        select(accounts.c.id).where(
            accounts.c.id == account_id, _in_scope(merchant_id, accounts.c.customer_id)
        )
    ).first()
    if found is None:
        raise AccountNotFound(f"no account {account_id!r}", account_id=account_id)


def card_in_scope(conn: Connection, merchant_id: str, card_id: str) -> bool:
    found = conn.execute(
        select(cards.c.id).where(cards.c.id == card_id, _in_scope(merchant_id, cards.c.customer_id))
    ).first()
    return found is not None


def require_card(conn: Connection, merchant_id: str, card_id: str) -> None:
    if not card_in_scope(conn, merchant_id, card_id):
        raise CardNotFound(f"no card {card_id!r}", card_id=card_id)


def require_binding(conn: Connection, merchant_id: str, bind_id: str) -> None:
    found = conn.execute(
        select(card_bindings.c.id).where(
            card_bindings.c.id == bind_id, _in_scope(merchant_id, card_bindings.c.customer_id)
        )
    ).first()
    if found is None:
        raise BindingNotFound(f"no card binding {bind_id!r}", binding_id=bind_id)


def enrol(conn: Connection, merchant_id: str, customer_id: str, now: datetime) -> bool:
    """Let the merchant (and its sellers) act for the customer; False if it already could by
    its own enrolment. Run with ``retry_integrity``: two enrolments racing meet on the key."""
    load_merchant(conn, merchant_id)
    known = conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first()
    if known is None:
        raise handlers.UnknownCustomer(f"no customer {customer_id!r}")
    m = merchant_customers.c
    done = conn.execute(
        select(m.customer_id).where(m.merchant_id == merchant_id, m.customer_id == customer_id)
    ).first()
    if done is not None:
        return False
    conn.execute(
        merchant_customers.insert().values(
            merchant_id=merchant_id, customer_id=customer_id, enrolled_at=now
        )
    )
    return True


def enrolments(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """The merchants a customer is enrolled with, oldest first (for operators)."""
    m = merchant_customers.c
    rows = conn.execute(
        select(m.merchant_id, m.enrolled_at)
        .where(m.customer_id == customer_id)
        .order_by(m.enrolled_at, m.merchant_id)
    )
    return [{"merchant_id": r.merchant_id, "enrolled_at": r.enrolled_at.isoformat()} for r in rows]


# --- buyers opened through the merchant API -------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuyerRequest:
    """A real-name individual as the merchant's sign-up form has it."""

    name: str
    id_number: str = field(repr=False)
    phone: str = field(repr=False)


def check_buyer(req: BuyerRequest) -> BuyerRequest:
    """Refuse elements that cannot be right before anything is stored; the normal form."""
    name = req.name.strip()
    if not name or len(name) > MAX_NAME or _NAME_FORBIDDEN.search(name):
        raise InvalidCustomer("the name is not a name", field="name")
    id_number = normalise_id_number(req.id_number)
    if not _ID_NUMBER.fullmatch(id_number):
        raise InvalidCustomer("the ID number is not a resident ID card number", field="id_number")
    phone = "".join(req.phone.split())
    if not _PHONE.fullmatch(phone):
        raise InvalidCustomer("the phone is not a mobile number", field="phone")
    return BuyerRequest(name, id_number, phone)


def mask_phone(phone: str) -> str:
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


class Customers:
    def __init__(
        self, engine: Engine, clock: Clock, sealer: Sealer, chart: Chart, pii_key: bytes
    ) -> None:
        """``pii_key``: the key of the customers' ID number digests (``Settings.pii_key``)."""
        self.engine = engine
        self.clock = clock
        self.sealer = sealer
        self.chart = chart
        self._pii_key = pii_key

    def open_buyer(self, merchant_id: str, req: BuyerRequest) -> dict[str, Any]:
        """A person at the lowest real-name class with one account holding a buyer balance in
        the merchant's currency, enrolled with the merchant. An ID number that is a customer's
        already is refused: the identity is not handed to a second merchant by knowing it."""
        req = check_buyer(req)
        return run_in_transaction(
            self.engine, lambda c: self._open(c, merchant_id, req), retry_integrity=True
        )

    def _open(self, conn: Connection, merchant_id: str, req: BuyerRequest) -> dict[str, Any]:
        now = self.clock.now()
        merchant = active_merchant(conn, merchant_id)
        existing = handlers.find_identity(conn, req.id_number, self._pii_key)
        if existing is not None:
            if customer_in_scope(conn, merchant_id, existing):
                raise handlers.DuplicateIdentity(
                    "this identity is your customer already", customer_id=existing
                )
            # Said without the id: the caller learns no more than that the identity is taken.
            raise handlers.DuplicateIdentity(
                "this identity is a customer of the platform already; the platform enrols it "
                "with another merchant"
            )
        customer_id = handlers.open_customer(
            conn,
            name=req.name,
            kind=CustomerKind.PERSON,
            kyc_level=OPENED_AT,
            id_number=req.id_number,
            pii_key=self._pii_key,
            now=now,
        )
        conn.execute(
            update(customers)
            .where(customers.c.id == customer_id)
            .values(
                phone_sealed=self.sealer.seal(req.phone.encode(), PHONE),
                phone_masked=mask_phone(req.phone),
            )
        )
        account_id = handlers.open_account(
            conn, customer_id=customer_id, login=f"buyer:{customer_id}", now=now
        )
        handlers.open_fund_account(
            conn,
            self.chart,
            account_id=account_id,
            role=Role.BUYER_BALANCE,
            currency=merchant.currency,
            now=now,
        )
        enrol(conn, merchant_id, customer_id, now)
        return customer_view(conn, customer_id)

    def get(self, merchant_id: str, customer_id: str) -> dict[str, Any]:
        def read(conn: Connection) -> dict[str, Any]:
            require_customer(conn, merchant_id, customer_id)
            return customer_view(conn, customer_id)

        return run_in_transaction(self.engine, read, readonly=True)


def customer_view(conn: Connection, customer_id: str) -> dict[str, Any]:
    """A customer as a merchant in its scope sees it: the ID number and phone masked, its
    accounts with the currencies of their buyer balances."""
    row = conn.execute(select(customers).where(customers.c.id == customer_id)).one()
    held = conn.execute(
        select(accounts.c.id, accounts.c.status, fund_accounts.c.currency)
        .outerjoin(
            fund_accounts,
            (fund_accounts.c.account_id == accounts.c.id)
            & (fund_accounts.c.role == Role.BUYER_BALANCE.value)
            & (fund_accounts.c.sub == ""),
        )
        .where(accounts.c.customer_id == customer_id)
        .order_by(accounts.c.created_at, accounts.c.id, fund_accounts.c.currency)
    ).all()
    shown: dict[str, dict[str, Any]] = {}
    for a in held:
        one = shown.setdefault(a.id, {"id": a.id, "status": a.status, "balances": []})
        if a.currency is not None:
            one["balances"].append(a.currency)
    return {
        "id": row.id,
        "kind": row.kind,
        "name": row.name,
        "id_number": row.id_number_masked,
        "phone": row.phone_masked,
        "kyc_level": row.kyc_level,
        "status": row.status,
        "accounts": list(shown.values()),
        "created_at": row.created_at.isoformat(),
    }
