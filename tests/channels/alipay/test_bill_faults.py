"""BILL_AMOUNT in Alipay's trade bill: only the planted trade's 商家实收 differs from the order,
and matching the parsed bill with our records finds it as an amount mismatch."""

from __future__ import annotations

from datetime import timedelta

from clearhouse import fees
from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.alipay.adapter import AlipayAdapter
from clearhouse.money import Money
from clearhouse.reconciliation.matching import match
from clearhouse.reconciliation.statements import alipay as parser
from clearhouse.sandbox.alipay import AlipaySandbox
from clearhouse.sandbox.faults import Fault, FaultPlan, billed_amount
from tests.unit.reconciliation.match_support import lines_table, ours, ours_table

from .conftest import cny
from .test_adapter import refund
from .test_bills import DAY, pay

ORDERS = {"amt-1": "123.45", "amt-2": "100.00", "amt-3": "8.99"}


def test_bill_amount_changes_only_the_planted_trade_and_is_an_amount_mismatch(
    adapter: AlipayAdapter, sandbox: AlipaySandbox, clock: FixedClock
) -> None:
    sandbox.faults = FaultPlan().force(Fault.BILL_AMOUNT, "amt-1")
    for attempt, amount in ORDERS.items():
        pay(adapter, sandbox, attempt, amount)
    assert adapter.query("amt-1").amount == cny("123.45")  # what we are told, and book
    adapter.refund(refund("rf-amt2", "amt-2", "30.00", total="100.00"))  # a partial refund
    clock.advance(timedelta(days=1))

    statement = parser.parse_bill(sandbox.bill(DAY), file="bill.zip", bill_date=DAY)
    lines = statement.lines.to_pylist()
    payments = {r["merchant_ref"]: r for r in lines if r["kind"] == "payment"}
    for attempt, amount in ORDERS.items():
        asked = cny(amount).amount
        moved = billed_amount(asked) if attempt == "amt-1" else asked
        assert payments[attempt]["amount"] == moved
        assert payments[attempt]["fee"] == fees.ALIPAY.fee(Money(moved, "CNY")).amount
    assert payments["amt-1"]["amount"] == 12_222
    (refunded,) = [r for r in lines if r["kind"] == "refund"]
    assert (refunded["merchant_ref"], refunded["parent_ref"], refunded["amount"]) == (
        "rf-amt2",
        "amt-2",
        -3_000,
    )

    records = [
        ours(
            channel="alipay",
            merchant_ref=attempt,
            amount=cny(amount).amount,
            expected_fee=fees.ALIPAY.fee(cny(amount)).amount,
            business_date=DAY,
        )
        for attempt, amount in ORDERS.items()
    ]
    payment_lines = [r for r in lines if r["kind"] == "payment"]
    result = match(lines_table(payment_lines), ours_table(records))
    found = result.differences.to_pylist()
    assert [(d["type"], d["attempt_id"], d["delta"]) for d in found] == [
        ("AMOUNT_MISMATCH", "amt-1", -123)
    ]
    assert result.counts["matched_ref"] == 2
