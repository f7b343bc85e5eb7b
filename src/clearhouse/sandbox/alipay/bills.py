"""The daily trade bill as Alipay serves it: a ZIP of two GBK CSV files.

``<pid>_<yyyymmdd>_业务明细.csv`` lists each payment and refund between ``#`` header and footer
lines; ``<pid>_<yyyymmdd>_业务明细(汇总).csv`` sums them. Identifiers carry a tab so spreadsheets
keep them as text (28-digit numbers would otherwise turn into floats). Encoded as GB18030, which
writes every GBK character exactly as GBK does and does not fail on the rest.
"""

# Alipay's texts use full-width punctuation; they are reproduced as Alipay sends them.
# ruff: noqa: RUF001

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from clearhouse.gateway.channels.alipay.protocol import (
    BEIJING,
    CURRENCY,
    format_amount,
    format_time,
)
from clearhouse.money import Money
from clearhouse.sandbox.alipay.state import BillLine

DETAIL_COLUMNS = (
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
)
SUMMARY_COLUMNS = (
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
)
DETAIL_START = "#" + "-" * 41 + "业务明细列表" + "-" * 40
DETAIL_END = "#" + "-" * 41 + "业务明细列表结束" + "-" * 36
SUMMARY_START = "#" + "-" * 41 + "业务汇总列表" + "-" * 40
SUMMARY_END = "#" + "-" * 41 + "业务汇总列表结束" + "-" * 35
ENCODING = "gb18030"
_ZERO = "0.00"


def _chinese_time(instant: datetime) -> str:
    return f"{instant.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}"


def _header(title: str, pid: str, day: date) -> list[str]:
    start = datetime.combine(day, time(0), BEIJING)
    end = start + timedelta(days=1)
    return [
        f"#{title}",
        f"#账号：[{pid}0156]",
        f"#起始日期：[{_chinese_time(start)}]   终止日期：[{_chinese_time(end)}]",
    ]


def _csv_line(cells: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


def _detail_row(line: BillLine) -> list[str]:
    amount = format_amount(line.amount)
    return [
        f"{line.trade_no}\t",
        f"{line.out_trade_no}\t",
        line.kind,
        line.subject,
        format_time(line.created_at),
        format_time(line.completed_at),
        "",
        "",
        "",
        "",
        line.buyer,
        amount,
        amount,
        _ZERO,
        _ZERO,
        _ZERO,
        _ZERO,
        _ZERO,
        "",
        _ZERO,
        _ZERO,
        f"{line.out_request_no}\t" if line.out_request_no else "",
        format_amount(line.fee),
        _ZERO,
        "",
    ]


def _total(lines: Sequence[BillLine], attr: str) -> Money:
    return sum((getattr(line, attr) for line in lines), Money.zero(CURRENCY))


def detail_csv(pid: str, day: date, lines: Sequence[BillLine], exported_at: datetime) -> str:
    payments = [line for line in lines if line.kind == "交易"]
    refunds = [line for line in lines if line.kind == "退款"]
    rows = [
        *_header("支付宝业务明细查询", pid, day),
        DETAIL_START,
        _csv_line(DETAIL_COLUMNS),
        *(_csv_line(_detail_row(line)) for line in lines),
        DETAIL_END,
        f"#交易合计：{len(payments)}笔，商家实收共{format_amount(_total(payments, 'amount'))}元，"
        f"商家优惠共{_ZERO}元",
        f"#退款合计：{len(refunds)}笔，商家实收退款共{format_amount(_total(refunds, 'amount'))}元，"
        f"商家优惠退款共{_ZERO}元",
        f"#导出时间：[{_chinese_time(exported_at)}]",
    ]
    return "\r\n".join(rows) + "\r\n"


def summary_csv(pid: str, day: date, lines: Sequence[BillLine], exported_at: datetime) -> str:
    refunds = sum(1 for line in lines if line.kind == "退款")
    amount = _total(lines, "amount")
    fee = _total(lines, "fee")
    total_row = [
        "合计",
        "",
        str(len(lines) - refunds),
        str(refunds),
        format_amount(amount),
        format_amount(amount),
        _ZERO,
        _ZERO,
        _ZERO,
        format_amount(fee),
        _ZERO,
        format_amount(amount + fee),
    ]
    rows = [
        *_header("支付宝业务汇总查询", pid, day),
        SUMMARY_START,
        _csv_line(SUMMARY_COLUMNS),
        _csv_line(total_row),
        SUMMARY_END,
        f"#导出时间：[{_chinese_time(exported_at)}]",
    ]
    return "\r\n".join(rows) + "\r\n"


def bill_zip(pid: str, day: date, lines: Sequence[BillLine], exported_at: datetime) -> bytes:
    stem = f"{pid}_{day:%Y%m%d}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            f"{stem}_业务明细.csv", detail_csv(pid, day, lines, exported_at).encode(ENCODING)
        )
        archive.writestr(
            f"{stem}_业务明细(汇总).csv", summary_csv(pid, day, lines, exported_at).encode(ENCODING)
        )
    return buffer.getvalue()
