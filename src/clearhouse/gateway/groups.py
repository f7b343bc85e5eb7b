"""Combined payments (P11): one channel payment for several orders, of one merchant or of a
marketplace's sellers, recorded per order and refundable per order.

Each order is an intent of its own (its merchant, commission, settlement, refunds); the group
holds them together and one attempt carries their total to the channel. When the channel
answers, every order moves with it, and the channel's one fee is shared among them by amount.
A card payment above the channel's small-amount exemption waits for the payer's SMS code or
payment password, as a single payment does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from clearhouse.db.schema import payment_groups
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway import records
from clearhouse.gateway.errors import AmountTooLarge, DuplicateOrder, InvalidPayment
from clearhouse.gateway.merchants import active_merchant
from clearhouse.gateway.model import Settlement
from clearhouse.gateway.payments import MAX_PAYMENT_MINOR, PaymentRequest, Payments, view
from clearhouse.ids import new_id
from clearhouse.money import Money

MAX_ORDERS = 50


@dataclass(frozen=True, slots=True)
class Order:
    merchant_order_id: str
    amount: Money
    description: str
    merchant_id: str | None = None  # a seller of the caller's marketplace; None: the caller


@dataclass(frozen=True, slots=True)
class CombinedRequest:
    merchant_group_id: str
    orders: tuple[Order, ...]
    channel: str
    method: str
    settlement: Settlement
    expires_at: datetime | None = None
    payer_id: str | None = None
    payer_ref: str | None = None
    # A card payment above the channel's exemption: the payer's SMS code for the group's one
    # attempt (``Cards.send_group_sms``) or payment password. As for a single payment, not
    # part of the digest, never stored, logged or shown.
    verification: str | None = field(default=None, repr=False)
    payment_password: str | None = field(default=None, repr=False)

    def order_request(self, order: Order) -> PaymentRequest:
        return PaymentRequest(
            merchant_order_id=order.merchant_order_id,
            amount=order.amount,
            description=order.description,
            channel=self.channel,
            method=self.method,
            settlement=self.settlement,
            expires_at=self.expires_at,
            payer_id=self.payer_id,
            payer_ref=self.payer_ref,
        )

    def digest(self) -> bytes:
        parts = [self.merchant_group_id]
        for order in self.orders:
            parts += [order.merchant_id or "", self.order_request(order).digest().hex()]
        return hashlib.sha256("\x1f".join(parts).encode()).digest()


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    merchant_id: str
    merchant_group_id: str
    amount: Money
    created_at: datetime


class Groups:
    def __init__(self, payments: Payments) -> None:
        self.payments = payments
        self.engine = payments.engine

    def create(self, caller_id: str, req: CombinedRequest) -> Group:
        """Validate every order, store them and the one attempt, send it. A retry with the
        same group reference and request gets the stored group, without a second send."""
        method = self.payments.pay_method(req.channel, req.method)
        group, lead, attempt_id, fresh = run_in_transaction(
            self.engine, lambda c: self._store(c, caller_id, req), retry_integrity=True
        )
        if fresh or self.payments.never_answered(attempt_id):
            # A card payment that waits for the payer (VERIFICATION_REQUIRED) is stored with
            # its attempt unsent: the same request again, with the code or password, sends it.
            self.payments.send(
                lead, attempt_id, method, req.payer_id, req.verification, req.payment_password
            )
        return group

    def _store(
        self, conn: Connection, caller_id: str, req: CombinedRequest
    ) -> tuple[Group, records.Intent, str, bool]:
        now = self.payments.clock.now()
        caller = active_merchant(conn, caller_id)
        found = conn.execute(
            select(payment_groups).where(
                payment_groups.c.merchant_id == caller_id,
                payment_groups.c.merchant_group_id == req.merchant_group_id,
            )
        ).first()
        if found is not None:
            if found.request_hash != req.digest():
                raise DuplicateOrder(
                    f"group {req.merchant_group_id!r} already has a different payment",
                    payment_id=found.id,
                )
            group = _group(found)
            lead = records.group_intents(conn, group.id)[0]
            return group, lead, records.attempts_of(conn, lead.id)[-1].id, False
        if not 2 <= len(req.orders) <= MAX_ORDERS:
            raise InvalidPayment(f"a combined payment has 2 to {MAX_ORDERS} orders")
        currency = caller.currency
        total = Money.zero(currency)
        checked = []
        for order in req.orders:
            merchant = caller
            if order.merchant_id is not None and order.merchant_id != caller_id:
                merchant = active_merchant(conn, order.merchant_id)
                if merchant.parent_id != caller_id:
                    raise InvalidPayment(
                        f"{order.merchant_id} is not a seller of this marketplace",
                        code="NOT_A_SELLER",
                    )
            preq = req.order_request(order)
            if self.payments.existing(conn, merchant.id, preq) is not None:
                raise DuplicateOrder(f"order {order.merchant_order_id!r} is already paid for")
            checked.append((merchant, preq, self.payments.validate(merchant, preq, now)))
            total = total + order.amount
        if total.amount > MAX_PAYMENT_MINOR:
            raise AmountTooLarge(f"total above {MAX_PAYMENT_MINOR}", limit=MAX_PAYMENT_MINOR)
        decision = self.payments.risk_check(caller_id, total, req.channel, req.payer_id)
        group_id = new_id("grp")
        conn.execute(
            payment_groups.insert().values(
                id=group_id,
                merchant_id=caller_id,
                merchant_group_id=req.merchant_group_id,
                amount=total.amount,
                currency=currency,
                request_hash=req.digest(),
                created_at=now,
            )
        )
        intent_ids = [
            self.payments.insert_intent(conn, merchant, preq, expires, decision, now, group_id)
            for merchant, preq, expires in checked
        ]
        lead_req = checked[0][1]
        attempt_id = self.payments.open_attempt(conn, intent_ids[0], lead_req, total, group_id, now)
        group = _group(
            conn.execute(select(payment_groups).where(payment_groups.c.id == group_id)).one()
        )
        return group, records.intent(conn, intent_ids[0]), attempt_id, True

    def get(self, caller_id: str, group_id: str) -> Group:
        def work(conn: Connection) -> Group:
            row = conn.execute(
                select(payment_groups).where(
                    payment_groups.c.id == group_id, payment_groups.c.merchant_id == caller_id
                )
            ).first()
            if row is None:
                raise InvalidPayment(f"no payment group {group_id!r}", code="PAYMENT_NOT_FOUND")
            return _group(row)

        return run_in_transaction(self.engine, work, readonly=True)

    def view(self, group: Group) -> dict[str, Any]:
        """The caller's view: the group, each order as a payment, and the channel attempt."""

        def work(conn: Connection) -> dict[str, Any]:
            orders = records.group_intents(conn, group.id)
            attempts = records.attempts_of(conn, orders[0].id)
            return {
                "id": group.id,
                "merchant_group_id": group.merchant_group_id,
                "amount": group.amount.amount,
                "currency": group.amount.currency,
                "status": _status(orders),
                "payments": [view(o, attempts) for o in orders],
                "created_at": group.created_at.isoformat(),
            }

        return run_in_transaction(self.engine, work, readonly=True)


def _status(orders: list[records.Intent]) -> str:
    statuses = {o.status.value for o in orders}
    return statuses.pop() if len(statuses) == 1 else "MIXED"


def _group(row: Any) -> Group:
    return Group(
        id=row.id,
        merchant_id=row.merchant_id,
        merchant_group_id=row.merchant_group_id,
        amount=Money(row.amount, row.currency),
        created_at=row.created_at,
    )
