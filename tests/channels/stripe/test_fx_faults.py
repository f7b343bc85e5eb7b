"""Stripe's conversion into the account's settlement currency, the rate the adapter reports, and
the report faults: FX_RATE_DRIFT (settled at another rate) and BILL_AMOUNT (another amount)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from clearhouse import fees
from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.port import ChannelResult, ChannelStatus, PayMethod, PayOrder
from clearhouse.gateway.channels.stripe.adapter import StripeAdapter
from clearhouse.money import Money
from clearhouse.reconciliation.matching import match
from clearhouse.reconciliation.statements import stripe as parser
from clearhouse.sandbox.faults import NO_FAULTS, Fault, billed_amount
from clearhouse.sandbox.stripe.state import StripeSandbox
from tests.unit.reconciliation.match_support import lines_table, ours, ours_table

EUR_USD = Decimal("1.084500")  # the sandbox's rate: 1.0845 / 1


def _pay(adapter: StripeAdapter, clock: FixedClock, attempt: str, amount: Money) -> ChannelResult:
    order = PayOrder(attempt, amount, "tea", PayMethod.CARD, "", clock.now(), "pm_card_visa")
    result = adapter.pay(order)
    assert result.status is ChannelStatus.SUCCEEDED
    return result


def _report_lines(
    adapter: StripeAdapter, sandbox: StripeSandbox, clock: FixedClock, currency: str
) -> tuple[date, dict[str, dict[str, object]]]:
    clock.advance(timedelta(days=2))  # the charges become available
    day = clock.now().date()
    payout = sandbox.run_payout(currency, day + timedelta(days=1))
    assert payout is not None
    data = adapter.download_report(payout=payout["id"])
    statement = parser.parse(data, "report.csv", account="acct_sandbox", business_date=day)
    lines = [r for r in statement.lines.to_pylist() if r["kind"] in ("payment", "refund")]
    total = sum(r["net"] for r in statement.lines.to_pylist())
    assert total == payout["amount"]  # the payout is what its rows settle, drift and all
    return day, {str(r["merchant_ref"]): r for r in lines}


def _record(ref: str, amount: Money, rate: Decimal | None, day: date) -> dict[str, object]:
    return ours(
        channel="stripe",
        merchant_ref=ref,
        currency=amount.currency,
        amount=amount.amount,
        expected_fee=fees.STRIPE.fee(amount).amount,
        fx_rate=rate,
        business_date=day,
    )


def test_a_converted_charge_reports_its_rate_and_fx_rate_drift_is_an_fx_difference(
    adapter: StripeAdapter, sandbox: StripeSandbox, clock: FixedClock
) -> None:
    sandbox.settlement_currency = "usd"
    sandbox.faults = NO_FAULTS.force(Fault.FX_RATE_DRIFT, "att-fx2")
    charges = {"att-fx1": Money(10_000, "EUR"), "att-fx2": Money(25_000, "EUR")}
    charges["att-fx3"] = Money(1_234, "USD")  # already in the settlement currency
    results = {ref: _pay(adapter, clock, ref, amount) for ref, amount in charges.items()}
    # At confirmation both conversions show the market rate: that is what we record.
    assert [results[r].fx_rate for r in charges] == [EUR_USD, EUR_USD, None]
    assert [results[r].amount for r in charges] == list(charges.values())

    day, lines = _report_lines(adapter, sandbox, clock, "usd")
    settled = {ref: (r["currency"], r["amount"], r["fee"]) for ref, r in lines.items()}
    assert settled == {
        "att-fx1": ("USD", 10_845, 345),  # 100.00 EUR * 1.0845; 2.9 % + 30 on the dollars
        "att-fx2": ("USD", 27_655, 832),  # at 1.0845 * 1.02 = 1.106190, not 271.13
        "att-fx3": ("USD", 1_234, 66),
    }

    records = [_record(ref, charges[ref], results[ref].fx_rate, day) for ref in charges]
    result = match(lines_table(list(lines.values())), ours_table(records))
    found = result.differences.to_pylist()
    assert [(d["type"], d["attempt_id"], d["expected"], d["delta"]) for d in found] == [
        ("FX_DIFFERENCE", "att-fx2", 27_113, 542)
    ]
    assert result.counts["matched_ref"] == 2


def test_a_refund_of_a_converted_charge_is_converted_at_the_same_rate(
    adapter: StripeAdapter, sandbox: StripeSandbox, clock: FixedClock
) -> None:
    sandbox.settlement_currency = "usd"
    _pay(adapter, clock, "att-fxr", Money(10_000, "EUR"))
    refund = sandbox.create_refund(
        {"payment_intent": sandbox.order["payment_intent"][-1], "amount": "4000"}
    )
    txn = sandbox.retrieve("balance_transaction", refund["balance_transaction"])
    assert (txn["currency"], txn["amount"], txn["exchange_rate"]) == ("usd", -4_338, EUR_USD)


def test_bill_amount_changes_only_the_planted_charge_and_is_an_amount_mismatch(
    adapter: StripeAdapter, sandbox: StripeSandbox, clock: FixedClock
) -> None:
    sandbox.faults = NO_FAULTS.force(Fault.BILL_AMOUNT, "att-amt1")
    charges = {"att-amt1": Money(12_345, "USD"), "att-amt2": Money(5_000, "USD")}
    results = {ref: _pay(adapter, clock, ref, amount) for ref, amount in charges.items()}
    assert results["att-amt1"].amount == charges["att-amt1"]  # what we are told, and book

    day, lines = _report_lines(adapter, sandbox, clock, "usd")
    assert {ref: r["amount"] for ref, r in lines.items()} == {
        "att-amt1": billed_amount(12_345),
        "att-amt2": 5_000,
    }
    assert lines["att-amt1"]["fee"] == fees.STRIPE.fee(Money(12_222, "USD")).amount

    records = [_record(ref, charges[ref], None, day) for ref in charges]
    result = match(lines_table(list(lines.values())), ours_table(records))
    found = result.differences.to_pylist()
    assert [(d["type"], d["attempt_id"], d["delta"]) for d in found] == [
        ("AMOUNT_MISMATCH", "att-amt1", -123)
    ]
