"""BILL_AMOUNT in PayPal's settlement report: only the planted capture's gross differs from the
order, and matching the parsed report with our records finds it as an amount mismatch."""

from __future__ import annotations

from datetime import UTC, date, datetime

from clearhouse import fees
from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.port import ChannelStatus, RefundOrder
from clearhouse.money import Money
from clearhouse.reconciliation.matching import match
from clearhouse.reconciliation.statements import paypal as parser
from clearhouse.sandbox.faults import Fault, billed_amount
from clearhouse.sandbox.paypal import PaypalSandbox
from tests.channels.paypal.conftest import pay_order, usd
from tests.unit.reconciliation.match_support import lines_table, ours, ours_table

DAY = date(2026, 11, 2)
ORDERS = {"att-amt-1": "123.45", "att-amt-2": "40.00"}


def test_bill_amount_changes_only_the_planted_capture_and_is_an_amount_mismatch(
    adapter: PaypalAdapter, sandbox: PaypalSandbox, clock: FixedClock
) -> None:
    clock.set(datetime(2026, 11, 2, 18, 0, tzinfo=UTC))  # 10:00 in Los Angeles
    sandbox.faults = sandbox.faults.force(Fault.BILL_AMOUNT, "att-amt-1")
    for attempt, amount in ORDERS.items():
        sandbox.approve(adapter.pay(pay_order(attempt, amount)).channel_txn_id or "")
        told = adapter.query(attempt)
        assert (told.status, told.amount) == (ChannelStatus.SUCCEEDED, usd(amount))
    partial = RefundOrder("rf-amt-2", "att-amt-2", usd("15.00"), usd("40.00"), "r", "")
    assert adapter.refund(partial).status is ChannelStatus.SUCCEEDED

    data = adapter.download_settlement_report(DAY)
    lines = parser.parse(data, "STL.CSV").lines.to_pylist()
    payments = {r["merchant_ref"]: r for r in lines if r["kind"] == "payment"}
    for attempt, amount in ORDERS.items():
        asked = usd(amount).amount
        moved = billed_amount(asked) if attempt == "att-amt-1" else asked
        assert payments[attempt]["amount"] == moved
        assert payments[attempt]["fee"] == fees.PAYPAL.fee(Money(moved, "USD")).amount
    (refund,) = [r for r in lines if r["kind"] == "refund"]
    assert (refund["merchant_ref"], refund["parent_ref"], refund["amount"]) == (
        "rf-amt-2",
        "att-amt-2",
        -1_500,
    )

    records = [
        ours(
            channel="paypal",
            merchant_ref=attempt,
            currency="USD",
            amount=usd(amount).amount,
            expected_fee=fees.PAYPAL.fee(usd(amount)).amount,
            business_date=DAY,
        )
        for attempt, amount in ORDERS.items()
    ]
    result = match(lines_table(list(payments.values())), ours_table(records))
    found = result.differences.to_pylist()
    assert [(d["type"], d["attempt_id"], d["delta"]) for d in found] == [
        ("AMOUNT_MISMATCH", "att-amt-1", -123)
    ]
    assert result.counts["matched_ref"] == 1
