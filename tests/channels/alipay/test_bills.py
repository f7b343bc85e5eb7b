"""The trade bill ZIP: Alipay's layout, GBK text, fees with half-up rounding, and the bill faults
(wrong fee, duplicate payment, late result) visible where reconciliation will look."""

# The bill's texts use full-width punctuation, as Alipay writes them.
# ruff: noqa: RUF001

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import date, timedelta
from decimal import Decimal

import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.alipay.adapter import AlipayAdapter, BillUnavailable
from clearhouse.gateway.channels.alipay.protocol import AlipayCredentials
from clearhouse.sandbox.alipay import AlipaySandbox
from clearhouse.sandbox.alipay.bills import DETAIL_COLUMNS
from clearhouse.sandbox.faults import Fault, FaultPlan

from .conftest import cny, order
from .test_adapter import refund

DAY = date(2026, 11, 2)


def read_bill(archive: bytes, pid: str, day: date = DAY) -> tuple[list[str], list[list[str]], str]:
    """The detail file's '#' lines, its data rows (without the column line) and the summary."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        stem = f"{pid}_{day:%Y%m%d}"
        assert sorted(zf.namelist()) == [f"{stem}_业务明细(汇总).csv", f"{stem}_业务明细.csv"]
        detail = zf.read(f"{stem}_业务明细.csv").decode("gb18030")
        summary = zf.read(f"{stem}_业务明细(汇总).csv").decode("gb18030")
    comments = [line for line in detail.splitlines() if line.startswith("#")]
    table = [line for line in detail.splitlines() if line and not line.startswith("#")]
    rows = list(csv.reader(table))
    assert rows[0] == list(DETAIL_COLUMNS)
    return comments, rows[1:], summary


def yuan(cell: str) -> Decimal:
    return Decimal(cell)


def pay(adapter: AlipayAdapter, sandbox: AlipaySandbox, attempt: str, amount: str) -> None:
    adapter.pay(order(attempt, amount))
    sandbox.pay(attempt)


def test_bill_layout_and_totals(
    adapter: AlipayAdapter, sandbox: AlipaySandbox, creds: AlipayCredentials, clock: FixedClock
) -> None:
    pay(adapter, sandbox, "b-1", "100.00")
    pay(adapter, sandbox, "b-2", "7.50")  # fee 4.5 fen: half-up makes it 5, not 4
    adapter.refund(refund("rf-b1", "b-1", "30.00", total="100.00"))
    with pytest.raises(BillUnavailable):
        adapter.download_bill(DAY)  # the day is not over in Beijing yet
    clock.advance(timedelta(days=1))
    comments, rows, summary = read_bill(adapter.download_bill(DAY), creds.pid)

    assert comments[0] == "#支付宝业务明细查询"
    assert comments[1].startswith(f"#账号：[{creds.pid}")
    assert (
        comments[2] == "#起始日期：[2026年11月02日 00:00:00]   终止日期：[2026年11月03日 00:00:00]"
    )
    assert "业务明细列表结束" in comments[4]
    assert comments[-1].startswith("#导出时间：[2026年11月03日")

    by_order = {(r[1].strip(), r[2]): r for r in rows}
    payment = by_order[("b-1", "交易")]
    assert payment[0].endswith("\t")
    assert payment[1] == "b-1\t"
    assert (payment[11], payment[12], payment[22]) == ("100.00", "100.00", "-0.60")
    assert by_order[("b-2", "交易")][22] == "-0.05"
    back = by_order[("b-1", "退款")]
    assert (back[11], back[21], back[22]) == ("-30.00", "rf-b1\t", "0.18")

    trades = [r for r in rows if r[2] == "交易"]
    refunds = [r for r in rows if r[2] == "退款"]
    trade_total = sum(yuan(r[12]) for r in trades)
    refund_total = sum(yuan(r[12]) for r in refunds)
    footer = "\n".join(comments)
    match = re.search(r"#交易合计：(\d+)笔，商家实收共(-?[\d.]+)元", footer)
    assert match
    assert (int(match[1]), yuan(match[2])) == (len(trades), trade_total)
    match = re.search(r"#退款合计：(\d+)笔，商家实收退款共(-?[\d.]+)元", footer)
    assert match
    assert (int(match[1]), yuan(match[2])) == (len(refunds), refund_total)
    assert refund_total == Decimal("-30.00")

    total_row = next(line for line in summary.splitlines() if line.startswith("合计"))
    cells = total_row.split(",")
    fees = sum(yuan(r[22]) for r in rows)
    assert (cells[2], cells[3]) == ("2", "1")
    assert yuan(cells[5]) == trade_total + refund_total
    assert yuan(cells[9]) == fees == Decimal("-0.47")
    assert yuan(cells[11]) == trade_total + refund_total + fees


def test_fault_lines_in_the_bill(
    adapter: AlipayAdapter, sandbox: AlipaySandbox, creds: AlipayCredentials, clock: FixedClock
) -> None:
    sandbox.faults = (
        FaultPlan()
        .force(Fault.WRONG_FEE, "wrong")
        .force(Fault.DUPLICATE_PAYMENT, "twice")
        .force(Fault.LATE_RESULT, "late")
    )
    pay(adapter, sandbox, "wrong", "100.00")
    pay(adapter, sandbox, "twice", "10.00")
    pay(adapter, sandbox, "late", "5.00")
    trade = sandbox.trade("wrong")
    assert trade is not None
    assert trade.fee == cny("0.61")
    clock.advance(timedelta(days=2))
    _, rows, _ = read_bill(sandbox.bill(DAY), creds.pid)
    lines = {}
    for row in rows:
        lines.setdefault(row[1].strip(), []).append(row)
    assert lines["wrong"][0][22] == "-0.61"  # schedule says 0.60
    assert len({row[0] for row in lines["twice"]}) == 2  # two trades for one order
    assert "late" not in lines  # completed after midnight: on the next day's bill
    _, next_rows, _ = read_bill(
        sandbox.bill(DAY + timedelta(days=1)), creds.pid, DAY + timedelta(days=1)
    )
    assert [row[1] for row in next_rows] == ["late\t"]
    assert next_rows[0][5] == "2026-11-03 00:00:05"
    assert adapter.query("late").paid_at is not None
