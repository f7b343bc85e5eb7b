"""The rate a channel converted a payment at: recorded on the attempt once, exported with our
records, and what the matcher checks a converted statement line against (SQLite, PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import pyarrow.compute as pc
import pytest
from sqlalchemy import select

from clearhouse.db.schema import payment_attempts
from clearhouse.gateway.channels.port import ChannelResult, ChannelStatus
from clearhouse.money import Money
from clearhouse.reconciliation.matching import match
from clearhouse.reconciliation.ours import day_window, export_ours
from tests.integration.gateway.test_payments import request
from tests.integration.reconciliation.test_ours import DAY, refund_intent
from tests.unit.reconciliation.match_support import line, lines_table

RATE = Decimal("0.138200")  # US dollars per yuan, as the channel reported it


def _confirm(gateway, clock, attempt_id, rate):  # type: ignore[no-untyped-def]
    result = ChannelResult(
        ChannelStatus.SUCCEEDED,
        "{}",
        channel_txn_id=f"txn-{attempt_id}",
        amount=Money(10_000, "CNY"),
        paid_at=clock.now(),
        fx_rate=rate,
    )
    return gateway.payments.apply(attempt_id, result, "query")


def _stored_rate(app, attempt_id):  # type: ignore[no-untyped-def]
    with app.engine.connect() as conn:
        query = select(payment_attempts.c.fx_rate).where(payment_attempts.c.id == attempt_id)
        return conn.execute(query).scalar_one()


def test_the_first_reported_rate_is_kept_and_exported_with_payment_and_refund(
    app, gateway, channel, merchant, clock
):
    intent = gateway.payments.create(merchant.id, request("order-fx", 10_000))
    attempt_id = gateway.payments.attempts(intent.id)[-1].id
    assert _stored_rate(app, attempt_id) is None
    assert _confirm(gateway, clock, attempt_id, None)  # confirmed, no rate yet (a notification)
    assert _stored_rate(app, attempt_id) is None
    assert not _confirm(gateway, clock, attempt_id, RATE)  # the answer with the rate: kept
    assert not _confirm(gateway, clock, attempt_id, Decimal("0.2"))  # a later one changes nothing
    assert _stored_rate(app, attempt_id) == RATE
    refund = refund_intent(gateway, channel, merchant, intent.id, 4_000)

    with app.engine.connect() as conn:
        table = export_ours(conn, "wechatpay", *day_window("wechatpay", DAY))
    rows = {r["merchant_ref"]: r for r in table.to_pylist()}
    assert rows[attempt_id]["fx_rate"] == RATE
    assert rows[refund.id]["fx_rate"] == RATE  # a refund converts at the payment's rate

    # 100.00 CNY at 0.1382 is 13.82 USD: that line agrees; two cents more is an FX difference.
    lines = [
        line(merchant_ref=attempt_id, currency="USD", amount=1_382, fee=8),
        line(merchant_ref=attempt_id, currency="USD", amount=1_384, fee=8),
    ]
    for listed, expected in zip(lines, ([], [("FX_DIFFERENCE", 1_382, 2)]), strict=True):
        found = match(lines_table([listed]), table.filter(pc.equal(table["kind"], "payment")))
        got = [(d["type"], d["expected"], d["delta"]) for d in found.differences.to_pylist()]
        assert got == expected


def test_a_rate_must_be_a_positive_decimal(app, gateway, merchant, clock):
    intent = gateway.payments.create(merchant.id, request("order-bad-fx", 10_000))
    attempt_id = gateway.payments.attempts(intent.id)[-1].id
    with pytest.raises(Exception, match="a rate is a positive Decimal"):
        _confirm(gateway, clock, attempt_id, Decimal(0))
    assert _stored_rate(app, attempt_id) is None
