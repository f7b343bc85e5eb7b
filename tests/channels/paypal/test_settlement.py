"""The Settlement Report (STL): record layout, counts and totals that add up, exact unsigned
amounts with their CR/DR direction; and the file the sandbox serves for a real day of traffic."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.port import ChannelStatus, RefundOrder
from clearhouse.money import Money
from clearhouse.sandbox.faults import Fault
from clearhouse.sandbox.paypal import PaypalSandbox
from clearhouse.sandbox.paypal.settlement import COLUMNS, Entry, settlement_report
from tests.channels.paypal.conftest import pay_order, usd

LA = ZoneInfo("America/Los_Angeles")
DAY = date(2026, 11, 2)


def records(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def body_rows(rows: list[list[str]]) -> list[dict[str, str]]:
    (header,) = (r for r in rows if r[0] == "CH")
    return [dict(zip(header[1:], r[1:], strict=True)) for r in rows if r[0] == "SB"]


def entry(txn: str, at: datetime, gross: Money, fee: Money, refund: bool = False) -> Entry:
    return Entry(
        transaction_id=txn,
        invoice_id=f"inv-{txn}",
        reference_id=f"ref-{txn}",
        reference_type="TXN" if refund else "ODR",
        event_code="T1107" if refund else "T0006",
        initiated_at=at - timedelta(minutes=1),
        completed_at=at,
        gross=gross,
        gross_direction="DR" if refund else "CR",
        fee=fee,
        fee_direction="CR" if refund else "DR",
        custom=f"att-{txn}",
    )


def test_layout_counts_and_totals() -> None:
    morning = datetime(2026, 11, 2, 9, 0, tzinfo=LA)
    entries = [
        entry("P1", morning, usd("25.00"), usd("1.36")),
        entry("P2", morning + timedelta(hours=2), Money(1500, "JPY"), Money(101, "JPY")),
        entry("R1", morning + timedelta(hours=3), usd("10.00"), usd("0.35"), refund=True),
        entry("P0", morning - timedelta(days=1), usd("99.00"), usd("3.95")),  # the day before
        entry("P3", datetime(2026, 11, 3, 0, 0, 5, tzinfo=LA), usd("1.00"), usd("0.52")),
    ]
    generated = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    rows = records(settlement_report(entries, DAY, LA, "MERCHANT12345", generated))
    kinds = [r[0] for r in rows]
    assert kinds == [
        "RH",
        "FH",
        "SH",
        "CH",
        "SB",
        "SB",
        "SB",
        "SF",
        "SF",
        "SC",
        "RF",
        "RF",
        "RC",
        "FF",
    ]
    assert rows[0] == ["RH", "2026/11/03 02:00:00 -0800", "X", "MERCHANT12345", "009"]
    assert rows[2][1:4] == [
        "2026/11/02 00:00:00 -0800",
        "2026/11/02 23:59:59 -0800",
        "MERCHANT12345",
    ]
    assert tuple(rows[3][1:]) == COLUMNS

    body = body_rows(rows)
    assert [b["Transaction ID"] for b in body] == ["P1", "P2", "R1"]
    p1, p2, r1 = body
    assert (p1["Transaction  Debit or Credit"], p1["Gross Transaction Amount"]) == ("CR", "2500")
    assert (p1["Fee Debit or Credit"], p1["Fee Amount"], p1["Fee Currency"]) == ("DR", "136", "USD")
    assert (p2["Gross Transaction Amount"], p2["Gross Transaction Currency"]) == ("1500", "JPY")
    assert (r1["Transaction Event Code"], r1["Transaction  Debit or Credit"]) == ("T1107", "DR")
    assert (r1["Gross Transaction Amount"], r1["Fee Debit or Credit"], r1["Fee Amount"]) == (
        "1000",
        "CR",
        "35",
    )
    assert p1["Transaction Completion Date"] == "2026/11/02 09:00:00 -0800"

    footers = {r[1]: r[2:] for r in rows if r[0] == "SF"}
    assert footers["USD"] == ["CR", "2500", "DR", "1000", "CR", "35", "DR", "136"]
    assert footers["JPY"] == ["CR", "1500", "DR", "0", "CR", "0", "DR", "101"]
    assert {r[1]: r[2:] for r in rows if r[0] == "RF"} == footers
    for currency, totals in footers.items():  # the footer is the sum of the section's rows
        rows_of = [b for b in body if b["Gross Transaction Currency"] == currency]
        credit = sum(
            int(b["Gross Transaction Amount"])
            for b in rows_of
            if b["Transaction  Debit or Credit"] == "CR"
        )
        fee_debit = sum(int(b["Fee Amount"]) for b in rows_of if b["Fee Debit or Credit"] == "DR")
        assert (int(totals[1]), int(totals[7])) == (credit, fee_debit)
    counts = {r[0]: int(r[1]) for r in rows if r[0] in ("SC", "RC", "FF")}
    assert counts == {"SC": 3, "RC": 3, "FF": 3}
    assert b'"SB","P1"' in settlement_report(entries, DAY, LA, "M", generated)  # text quoted


def test_empty_day_still_has_a_report() -> None:
    rows = records(settlement_report([], DAY, LA, "M", datetime(2026, 11, 3, tzinfo=UTC)))
    assert [r[0] for r in rows] == ["RH", "FH", "SH", "CH", "SC", "RC", "FF"]
    assert [r[1] for r in rows if r[0] in ("SC", "RC", "FF")] == ["0", "0", "0"]


def test_served_report_of_a_day(
    adapter: PaypalAdapter, sandbox: PaypalSandbox, clock: FixedClock
) -> None:
    clock.set(datetime(2026, 11, 2, 18, 0, tzinfo=UTC))  # 10:00 in Los Angeles
    faults = sandbox.faults.force(Fault.WRONG_FEE, "att-stl-2")
    sandbox.faults = faults.force(Fault.LATE_RESULT, "att-stl-3")
    for attempt, amount in (("att-stl-1", "25.00"), ("att-stl-2", "10.00"), ("att-stl-3", "3.00")):
        sandbox.approve(adapter.pay(pay_order(attempt, amount)).channel_txn_id or "")
        assert adapter.query(attempt).status is ChannelStatus.SUCCEEDED
    refund = RefundOrder(
        "rf-stl-1", "att-stl-1", usd("10.00"), usd("25.00"), "r", "https://m.example"
    )
    assert adapter.refund(refund).status is ChannelStatus.SUCCEEDED

    today = body_rows(records(adapter.download_settlement_report(DAY)))
    assert [(b["Custom Field"], b["Transaction Event Code"]) for b in today] == [
        ("att-stl-1", "T0006"),
        ("att-stl-2", "T0006"),
        ("att-stl-1", "T1107"),
    ]
    fees = [b["Fee Amount"] for b in today]
    assert fees == ["136", "85", "35"]  # 0.87 + 0.49; WRONG_FEE: 0.84 + one cent; refund: 0.35 back
    assert today[0]["Invoice ID"] == "att-stl-1"
    assert today[2]["Invoice ID"] == "rf-stl-1"
    late = body_rows(records(adapter.download_settlement_report(DAY + timedelta(days=1))))
    assert [b["Custom Field"] for b in late] == ["att-stl-3"]  # LATE_RESULT: after the cut-off
