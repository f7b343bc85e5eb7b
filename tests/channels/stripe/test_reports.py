"""The payout reconciliation report: rows add up, amounts are exact major units, times twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.port import PayMethod, PayOrder, RefundOrder
from clearhouse.gateway.channels.stripe.adapter import StripeAdapter
from clearhouse.money import Money
from clearhouse.sandbox.faults import NO_FAULTS, Fault
from clearhouse.sandbox.stripe import reports
from clearhouse.sandbox.stripe.state import StripeSandbox
from tests.channels.stripe.conftest import parse_report


def _pay(adapter: StripeAdapter, clock: FixedClock, attempt: str, cents: int) -> None:
    adapter.pay(
        PayOrder(
            attempt, Money(cents, "USD"), "tea", PayMethod.CARD, "", clock.now(), "pm_card_visa"
        )
    )


def test_report_rows_add_up_to_the_payout(
    adapter: StripeAdapter, sandbox: StripeSandbox, clock: FixedClock
) -> None:
    sandbox.faults = NO_FAULTS.force(Fault.WRONG_FEE, "att-b")
    _pay(adapter, clock, "att-a", 1234)  # fee 2.9% = 35.786 -> 36, + 30 = 66
    _pay(adapter, clock, "att-b", 10)  # fee 0.29 -> 0, + 30 = 30, + 1 by fault
    adapter.refund(RefundOrder("rf-a", "att-a", Money(234, "USD"), Money(1234, "USD"), "r", ""))
    clock.advance(timedelta(days=2))
    payout = sandbox.run_payout("usd", clock.now().date() + timedelta(days=1))
    assert payout is not None
    assert payout["amount"] == (1234 - 66) + (10 - 31) - 234

    data = adapter.download_report(payout=payout["id"], timezone="America/New_York")
    rows = parse_report(data)
    assert (
        data.decode()
        .splitlines()[0]
        .startswith("automatic_payout_id,automatic_payout_effective_at_utc")
    )
    by_category = {(r["reporting_category"], r["payment_metadata[attempt_id]"]): r for r in rows}
    charge = by_category[("charge", "att-a")]
    assert (charge["gross"], charge["fee"], charge["net"]) == ("12.34", "0.66", "11.68")
    small = by_category[("charge", "att-b")]
    assert (small["gross"], small["fee"], small["net"]) == ("0.10", "0.31", "-0.21")
    refund = by_category[("refund", "att-a")]
    assert (refund["gross"], refund["fee"], refund["net"]) == ("-2.34", "0.00", "-2.34")
    assert refund["refund_metadata[refund_no]"] == "rf-a"
    assert refund["charge_id"] == charge["charge_id"] != ""
    for row in rows:
        assert Decimal(row["gross"]) - Decimal(row["fee"]) == Decimal(row["net"])
        assert row["automatic_payout_id"] == payout["id"]
        assert row["currency"] == "usd"
    total = sum(Money.parse(r["net"], "USD").amount for r in rows)
    assert total == payout["amount"]

    # Local columns are the UTC ones moved to the report's zone.
    utc = datetime.strptime(charge["created_utc"], reports.TIME_FORMAT).replace(tzinfo=UTC)
    local = datetime.strptime(charge["created"], reports.TIME_FORMAT)
    offset = utc.astimezone(reports.ZoneInfo("America/New_York")).utcoffset()
    assert offset is not None
    assert local == (utc + offset).replace(tzinfo=None)
    assert charge["created_utc"] != charge["created"]


def test_pure_report_formatting() -> None:
    at = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)  # 01:30 in Los Angeles, before DST starts
    row = reports.ReportRow(
        automatic_payout_id="po_1",
        automatic_payout_effective_at=at + timedelta(days=2),
        balance_transaction_id="txn_1",
        created=at,
        available_on=at + timedelta(days=2),  # after the DST change: UTC-7
        currency="usd",
        gross=-30,
        fee=0,
        net=-30,
        reporting_category="refund",
        source_id="re_1",
        payment_metadata={"order": "o,1"},
    )
    jpy = reports.ReportRow(
        "po_2",
        at,
        "txn_2",
        at,
        at,
        "jpy",
        1000,
        66,
        934,
        "charge",
        "ch_2",
        customer_facing_amount=1000,
    )
    rows = parse_report(reports.payout_reconciliation([row, jpy], "America/Los_Angeles"))
    assert (rows[0]["gross"], rows[0]["net"], rows[0]["fee"]) == ("-0.30", "-0.30", "0.00")
    assert (rows[0]["created_utc"], rows[0]["created"]) == (
        "2026-03-08 09:30:00",
        "2026-03-08 01:30:00",
    )
    assert rows[0]["available_on"] == "2026-03-10 02:30:00"
    assert rows[0]["payment_metadata[order]"] == "o,1"
    assert (rows[1]["gross"], rows[1]["fee"], rows[1]["customer_facing_amount"]) == (
        "1000",
        "66",
        "1000",
    )
    picked = reports.payout_reconciliation([row], columns=["balance_transaction_id", "net"])
    assert picked.decode() == "balance_transaction_id,net\ntxn_1,-0.30\n"
    assert reports.major(123456789012345678, "usd") == "1234567890123456.78"


def test_balance_change_report_lists_the_interval_s_activity(
    adapter: StripeAdapter, sandbox: StripeSandbox, clock: FixedClock
) -> None:
    start = clock.now()
    _pay(adapter, clock, "att-a", 1234)
    adapter.refund(RefundOrder("rf-a", "att-a", Money(234, "USD"), Money(1234, "USD"), "r", ""))
    clock.advance(timedelta(hours=1))
    _pay(adapter, clock, "att-late", 500)  # created after the interval's end
    clock.advance(timedelta(days=2))
    payout = sandbox.run_payout("usd", clock.now().date())
    assert payout is not None
    end = start + timedelta(minutes=30)

    # Default columns: Stripe's set for this report, no payout, ids or metadata.
    run = adapter.start_report_run(
        interval_start=start,
        interval_end=end,
        timezone="America/Los_Angeles",
        report_type=reports.BALANCE_CHANGE_TYPE,
    )
    data = adapter.report_file(run)
    assert data is not None
    assert data.decode().splitlines()[0] == ",".join(reports.BALANCE_CHANGE_COLUMNS)
    rows = parse_report(data)
    assert [(r["reporting_category"], r["gross"], r["fee"]) for r in rows] == [
        ("charge", "12.34", "0.66"),
        ("refund", "-2.34", "0.00"),
    ]

    # Requested columns, in the order asked: the payout that settled them, ids and metadata.
    asked = [
        "balance_transaction_id",
        "payment_metadata[attempt_id]",
        "refund_metadata[refund_no]",
        "automatic_payout_id",
        "payment_intent_id",
        "net",
    ]
    run = adapter.start_report_run(
        interval_start=start,
        interval_end=end,
        report_type=reports.BALANCE_CHANGE_TYPE,
        columns=asked,
    )
    data = adapter.report_file(run)
    assert data is not None
    assert data.decode().splitlines()[0] == ",".join(asked)
    charge, refund = parse_report(data)
    assert charge["payment_metadata[attempt_id]"] == refund["payment_metadata[attempt_id]"]
    assert charge["payment_metadata[attempt_id]"] == "att-a"
    assert (charge["refund_metadata[refund_no]"], refund["refund_metadata[refund_no]"]) == (
        "",
        "rf-a",
    )
    assert {charge["automatic_payout_id"], refund["automatic_payout_id"]} == {payout["id"]}
    assert charge["payment_intent_id"].startswith("pi_")
    assert (charge["net"], refund["net"]) == ("11.68", "-2.34")

    # The payout itself is not activity: a window over it lists only the late payment.
    later = adapter.start_report_run(
        interval_start=end,
        interval_end=clock.now() + timedelta(seconds=1),
        report_type=reports.BALANCE_CHANGE_TYPE,
        columns=["reporting_category", "payment_metadata[attempt_id]", "automatic_payout_id"],
    )
    late = adapter.report_file(later)
    assert late is not None
    assert parse_report(late) == [
        {
            "reporting_category": "charge",
            "payment_metadata[attempt_id]": "att-late",
            "automatic_payout_id": payout["id"],
        }
    ]


def test_unpaid_rows_write_no_payout() -> None:
    at = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)
    row = reports.ReportRow("", None, "txn_1", at, at, "usd", 100, 33, 67, "charge", "ch_1")
    rows = parse_report(reports.payout_reconciliation([row]))
    assert (rows[0]["automatic_payout_id"], rows[0]["automatic_payout_effective_at"]) == ("", "")
    assert rows[0]["automatic_payout_effective_at_utc"] == ""
    assert parse_report(reports.balance_change([row]))[0]["created_utc"] == "2026-03-08 09:30:00"
