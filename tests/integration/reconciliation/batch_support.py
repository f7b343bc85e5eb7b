"""Building reconciliation batches in tests: bills as parsed statements, real gateway records."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import func, select

from clearhouse.accounts.model import Role
from clearhouse.bootstrap import App
from clearhouse.db.schema import recon_actions, recon_differences
from clearhouse.gateway.channels.registry import TERMS
from clearhouse.gateway.service import Gateway
from clearhouse.ledger.eod import trial_balance
from clearhouse.money import Money
from clearhouse.reconciliation.batches import BatchConfig, Reconciler
from clearhouse.reconciliation.handling import PaymentsPort, ReviewPolicy
from clearhouse.reconciliation.statements.model import LINES, Statement
from clearhouse.reconciliation.store import StatementStore
from tests.conftest import platform_fund
from tests.fake_channel import FakeChannel
from tests.gateway_support import MerchantFixture
from tests.integration.gateway.test_payments import request, settle_via_notification

DAY = date(2026, 11, 2)  # the tests' clock starts at 09:00 Beijing time on this day


def fee(amount: int) -> int:
    return TERMS["wechatpay"].fees.fee(Money(amount, "CNY")).amount


def reconciler(
    app: App,
    root: Path,
    payments: PaymentsPort | None,
    **review: Any,
) -> Reconciler:
    store = StatementStore(app.engine, root, app.clock)
    config = BatchConfig(review=ReviewPolicy(**review))
    return Reconciler(app.engine, store, app.ledger, app.clock, payments=payments, config=config)


def line(
    ref: str | None,
    amount: int,
    txn: str,
    *,
    day: date = DAY,
    line_fee: int | None = None,
    status: str = "SUCCESS",
) -> dict[str, Any]:
    """A WeChat Pay payment line, occurring at noon Beijing time on ``day``."""
    charged = fee(amount) if line_fee is None else line_fee
    return {
        "source": "wechatpay",
        "account": "1900000109",
        "business_date": day,
        "occurred_at": datetime.combine(day, time(4), tzinfo=UTC),
        "kind": "payment",
        "channel_txn_id": txn,
        "channel_refund_id": None,
        "merchant_ref": ref,
        "parent_ref": None,
        "status": status,
        "currency": "CNY",
        "amount": amount,
        "fee": charged,
        "net": amount - charged,
        "payout_id": None,
        "memo": None,
        "line_no": 0,
    }


def put_bill(rec: Reconciler, lines: list[dict[str, Any]], day: date = DAY, tag: str = "") -> str:
    """Import a day's trade bill (its digest: its lines and ``tag``, a re-issue's mark)."""
    numbered = [dict(one, line_no=n) for n, one in enumerate(lines, 1)]
    table = pa.Table.from_pylist(numbered, schema=LINES)
    raw = json.dumps([numbered, str(day), tag], default=str).encode()
    statement = Statement(
        source="wechatpay",
        file=f"trade-{day}{tag}.csv",
        sha256=hashlib.sha256(raw).hexdigest(),
        account="1900000109",
        business_date=day,
        lines=table,
    )
    return rec.store.put(statement, "wechatpay-trade", "tester").sha256


def paid(
    gateway: Gateway, channel: FakeChannel, merchant: MerchantFixture, order: str, amount: int
):  # type: ignore[no-untyped-def]
    """A payment confirmed now; its attempt."""
    intent = gateway.payments.create(merchant.id, request(order, amount))
    attempt_id = gateway.payments.attempts(intent.id)[-1].id
    settle_via_notification(gateway, channel, attempt_id)
    return gateway.payments.attempts(intent.id)[-1]


def pending(gateway: Gateway, merchant: MerchantFixture, order: str, amount: int):  # type: ignore[no-untyped-def]
    intent = gateway.payments.create(merchant.id, request(order, amount))
    return gateway.payments.attempts(intent.id)[-1]


def differences(app: App) -> list[dict[str, Any]]:
    d = recon_differences
    with app.engine.connect() as conn:
        rows = conn.execute(select(d).order_by(d.c.business_date, d.c.key)).mappings()
        return [dict(r) for r in rows]


def actions(app: App, difference_id: str | None = None) -> list[dict[str, Any]]:
    a = recon_actions
    query = select(a).order_by(a.c.at, a.c.id)
    if difference_id is not None:
        query = query.where(a.c.difference_id == difference_id)
    with app.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def count(app: App, table: Any) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def suspense(app: App) -> int:
    """The suspense account's posted balance (debit side positive)."""
    return app.ledger.balance(platform_fund(app, Role.SUSPENSE)).posted


def assert_books_balance(app: App) -> None:
    assert app.ledger.check() == []
    with app.engine.connect() as conn:
        lines = trial_balance(conn)
    for currency in {one.currency for one in lines}:
        mine = [one for one in lines if one.currency == currency]
        assert sum(one.debit for one in mine) == sum(one.credit for one in mine)


def next_day(clock: Any, days: int = 1) -> None:
    clock.advance(timedelta(days=days))
