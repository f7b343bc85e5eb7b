"""Large synthetic WeChat Pay and Alipay bills in the channels' published layouts, for benchmarks
and tests (the sandbox writes small ones from its journal, one Python object per row; these are
built column-wise, a million rows in about a second).

Row ``i`` is a payment, except every ``refund_every``-th row, which refunds half of the payment
just before it (same channel order id, its own refund id). The fee is 0.6%, rounded half up to the
fen per payment; a refund gives back its share of the payment's fee. Times spread over the bill day
in Beijing time.
"""

# Alipay's texts use full-width punctuation; they are reproduced as Alipay writes them.
# ruff: noqa: RUF001

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "Synthetic",
    "alipay_bill_zip",
    "synthetic",
    "wechat_fundflow_bill",
    "wechat_trade_bill",
]

_CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class Synthetic:
    """The rows behind a sample bill, as int64 / bool numpy columns."""

    day: date
    is_refund: np.ndarray  # bool
    amount: np.ndarray  # fen, positive: the payment's total or the refund's amount
    fee: np.ndarray  # fen: charged (> 0) on payments, given back (<= 0) on refunds
    seconds: np.ndarray  # seconds after the day's Beijing midnight
    serial: np.ndarray  # the payment's number (a refund shares its payment's)

    @property
    def rows(self) -> int:
        return len(self.amount)


def synthetic(rows: int, day: date, refund_every: int = 10) -> Synthetic:
    index = np.arange(rows, dtype=np.int64)
    is_refund = (index % refund_every == refund_every - 1) if refund_every else index < 0
    serial = np.where(is_refund, index - 1, index)
    paid = 100 + (serial * 7919) % 100_000
    amount = np.where(is_refund, paid // 2, paid)
    charged = (paid * 6 + 500) // 1000
    # What the fee schedule gives back (``FeeSchedule.refunded_fee``): the refund's share of
    # the payment's fee, half up, so the matcher's fee check finds no difference.
    returned = (2 * charged * amount + paid) // (2 * paid)
    fee = np.where(is_refund, -returned, charged)
    seconds = (index * 86_399) // max(rows, 1)
    return Synthetic(day, is_refund, amount, fee, seconds, serial)


# -- text columns ------------------------------------------------------------------------------


def _text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _yuan(fen: np.ndarray, decimals: int = 2) -> pa.Array:
    """Fen as yuan text, ``-12.30``; ``decimals`` > 2 pads zeros (WeChat writes fees so)."""
    magnitude = np.abs(fen)
    sign = pc.if_else(pa.array(fen < 0), "-", "")
    cents = pc.utf8_lpad(_text(magnitude % 100), 2, "0")
    return _join(sign, _text(magnitude // 100), ".", cents, "0" * (decimals - 2))


def _times(data: Synthetic) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS`` from whole-number arithmetic (strftime is far slower)."""

    def two(values: np.ndarray) -> pa.Array:
        return pc.utf8_lpad(_text(values), 2, "0")

    seconds = data.seconds
    clock = pc.binary_join_element_wise(
        two(seconds // 3600), two(seconds // 60 % 60), two(seconds % 60), ":"
    )
    return _join(f"{data.day:%Y-%m-%d} ", clock)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    return _join(prefix, pc.utf8_lpad(_text(numbers), width, "0"))


def _constant(value: str, rows: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value])
    ).cast(pa.string())


def _rows(fields: list[pa.Array], separator: str, guard: str) -> bytes:
    """Rows of ``fields`` as CRLF-terminated text, straight from Arrow's string buffer."""
    if not fields or len(fields[0]) == 0:
        return b""
    joined = pc.binary_join_element_wise(*fields, separator + guard)
    lines = pc.binary_join_element_wise(guard, joined, _CRLF, "")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return bytes(lines.buffers()[2].to_pybytes()[start:end])


# -- WeChat Pay --------------------------------------------------------------------------------

_WECHAT_ALL = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
_WECHAT_SUCCESS = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注"
)
_WECHAT_REFUND = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,"
    "退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,"
    "费率备注"
)
_WECHAT_SUMMARY = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
_WECHAT_SUCCESS_SUMMARY = "总交易单数,应结订单总金额,手续费总金额,订单总金额"


def _fen(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 100}.{abs(value) % 100:02d}"


def wechat_trade_bill(
    rows: int,
    *,
    day: date = date(2024, 3, 1),
    bill_type: str = "ALL",
    mchid: str = "1900000001",
    appid: str = "wx8888888888888888",
    refund_every: int = 10,
) -> bytes:
    """A WeChat Pay trade bill of ``rows`` detail rows; SUCCESS keeps only payments and REFUND
    only refunds (so it has fewer rows), each with its own published columns and summary."""
    data = synthetic(rows, day, refund_every)
    keep = {"ALL": None, "SUCCESS": ~data.is_refund, "REFUND": data.is_refund}[bill_type]
    if keep is not None:
        data = Synthetic(
            day,
            data.is_refund[keep],
            data.amount[keep],
            data.fee[keep],
            data.seconds[keep],
            data.serial[keep],
        )
    n = data.rows
    refund = data.is_refund
    zero = np.zeros(n, dtype=np.int64)
    settled = np.where(refund, 0, data.amount)
    refunded = np.where(refund, data.amount, 0)
    mask = pa.array(refund)
    when = _times(data)
    columns = {
        "交易时间": when,
        "公众账号ID": _constant(appid, n),
        "商户号": _constant(mchid, n),
        "特约商户号": _constant("0", n),
        "设备号": _constant("", n),
        "微信订单号": _ids("42000", data.serial, 23),
        "商户订单号": _ids("ord", data.serial, 12),
        "用户标识": _constant("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", n),
        "交易类型": _constant("JSAPI", n),
        "交易状态": pc.if_else(mask, "REFUND", "SUCCESS"),
        "付款银行": _constant("OTHERS", n),
        "货币种类": _constant("CNY", n),
        "应结订单金额": _yuan(settled),
        "代金券金额": _yuan(zero),
        "退款申请时间": pc.if_else(mask, when, ""),
        "退款成功时间": pc.if_else(mask, when, ""),
        "微信退款单号": pc.if_else(mask, _ids("503", data.serial, 26), "0"),
        "商户退款单号": pc.if_else(mask, _ids("rf", data.serial, 12), "0"),
        "退款金额": _yuan(refunded),
        "充值券退款金额": _yuan(zero),
        "退款类型": pc.if_else(mask, "ORIGINAL", ""),
        "退款状态": pc.if_else(mask, "SUCCESS", ""),
        "商品名称": _constant("样品商品", n),
        "商户数据包": _constant("", n),
        "手续费": _yuan(data.fee, 5),
        "费率": _constant("0.60%", n),
        "订单金额": _yuan(settled),
        "申请退款金额": _yuan(refunded),
        "费率备注": _constant("", n),
    }
    header = {"ALL": _WECHAT_ALL, "SUCCESS": _WECHAT_SUCCESS, "REFUND": _WECHAT_REFUND}[bill_type]
    body = _rows([columns[name] for name in header.split(",")], ",", "`")
    settled_total, refund_total = int(settled.sum()), int(refunded.sum())
    fee_total = int(data.fee.sum())
    if bill_type == "SUCCESS":
        summary_header = _WECHAT_SUCCESS_SUMMARY
        totals = [str(n), _fen(settled_total), _fen(fee_total) + "000", _fen(settled_total)]
    else:
        summary_header = _WECHAT_SUMMARY
        totals = [str(n), _fen(settled_total), _fen(refund_total), "0.00"]
        totals += [_fen(fee_total) + "000", _fen(settled_total), _fen(refund_total)]
    tail = summary_header + _CRLF + ",".join("`" + value for value in totals) + _CRLF
    return "\ufeff".encode() + (header + _CRLF).encode() + body + tail.encode()


_WECHAT_FUND = (
    "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),"
    "资金变更提交申请人,备注,业务凭证号"
)


def wechat_fundflow_bill(
    rows: int, *, day: date = date(2024, 3, 1), refund_every: int = 10, opening: int = 0
) -> bytes:
    """A fund-flow bill of ``rows`` payments and refunds: two flows each (the money and its
    fee), so ``2 * rows`` detail rows; balances run from ``opening`` fen."""
    data = synthetic(rows, day, refund_every)
    refund = np.repeat(data.is_refund, 2)
    is_fee = np.tile(np.array([False, True]), rows)
    money = np.repeat(data.amount, 2)
    fee = np.repeat(data.fee, 2)
    # Payment: +amount then -fee; refund: -amount then +returned fee (fee is <= 0 there).
    change = np.where(is_fee, -fee, np.where(refund, -money, money))
    keep = change != 0
    change, refund, is_fee = change[keep], refund[keep], is_fee[keep]
    serial = np.repeat(data.serial, 2)[keep]
    seconds = np.repeat(data.seconds, 2)[keep]
    n = len(change)
    income = change > 0
    balance = opening + np.cumsum(change)
    stamps = _times(Synthetic(day, refund, change, change, seconds, serial))
    business_no = pc.if_else(pa.array(refund), _ids("503", serial, 26), _ids("42000", serial, 23))
    kind = pc.if_else(
        pa.array(is_fee),
        pc.if_else(pa.array(refund), "退还交易手续费", "扣除交易手续费"),
        pc.if_else(pa.array(refund), "退款", "交易"),
    )
    columns = [
        stamps,
        business_no,
        _join(business_no, pc.if_else(pa.array(is_fee), "2", "1")),
        pc.if_else(pa.array(refund), "退款", "交易"),
        kind,
        pc.if_else(pa.array(income), "收入", "支出"),
        _yuan(np.abs(change)),
        _yuan(balance),
        _constant("system", n),
        _constant("", n),
        pc.if_else(pa.array(refund), _ids("rf", serial, 12), _ids("ord", serial, 12)),
    ]
    body = _rows(columns, ",", "`")
    income_total = int(change[income].sum())
    expense_total = int(-change[~income].sum())
    summary = [str(n), str(int(income.sum())), _fen(income_total)]
    summary += [str(int((~income).sum())), _fen(expense_total)]
    tail = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额" + _CRLF
    tail += ",".join("`" + value for value in summary) + _CRLF
    return "\ufeff".encode() + (_WECHAT_FUND + _CRLF).encode() + body + tail.encode()


# -- Alipay ------------------------------------------------------------------------------------

_ALIPAY_DETAIL = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,"
    "对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注"
)
_ALIPAY_SUMMARY = (
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,"
    "商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
)
_DASHES = "-" * 41


def _chinese_time(day: date) -> str:
    return f"{day:%Y年%m月%d日} 00:00:00"


def alipay_bill_zip(
    rows: int,
    *,
    day: date = date(2024, 3, 1),
    pid: str = "2088102177846880",
    refund_every: int = 10,
) -> bytes:
    """Alipay's trade bill for ``day``: a ZIP of the GBK business detail and its summary."""
    data = synthetic(rows, day, refund_every)
    n = data.rows
    refund = pa.array(data.is_refund)
    signed = np.where(data.is_refund, -data.amount, data.amount)
    service = -data.fee  # Alipay writes the fee it takes as negative, what it returns positive
    zero = _yuan(np.zeros(n, dtype=np.int64))
    when = _times(data)
    trade_no = _ids(f"{day:%Y%m%d}2200", data.serial, 18)
    columns = [
        _join(trade_no, "\t"),
        _join(_ids("ord", data.serial, 12), "\t"),
        pc.if_else(refund, "退款", "交易"),
        _constant("样品商品", n),
        when,
        when,
        _constant("", n),
        _constant("", n),
        _constant("", n),
        _constant("", n),
        _constant("buy***@example.com", n),
        _yuan(signed),
        _yuan(signed),
        zero,
        zero,
        zero,
        zero,
        zero,
        _constant("", n),
        zero,
        zero,
        pc.if_else(refund, _join(_ids("rf", data.serial, 12), "\t"), ""),
        _yuan(service),
        zero,
        _constant("", n),
    ]
    body = _rows(columns, ",", "")
    span = (
        f"#起始日期：[{_chinese_time(day)}]   终止日期：[{_chinese_time(day + timedelta(days=1))}]"
    )
    head = [f"#账号：[{pid}0156]", span]
    refunds = int(data.is_refund.sum())
    paid_total = int(signed[~data.is_refund].sum())
    refund_total = int(signed[data.is_refund].sum())
    exported = f"#导出时间：[{_chinese_time(day + timedelta(days=1))}]"
    detail = _CRLF.join(
        ["#支付宝业务明细查询", *head, f"#{_DASHES}业务明细列表{'-' * 40}", _ALIPAY_DETAIL]
    )
    footer = _CRLF.join(
        [
            f"#{_DASHES}业务明细列表结束{'-' * 36}",
            f"#交易合计：{n - refunds}笔，商家实收共{_fen(paid_total)}元，商家优惠共0.00元",
            f"#退款合计：{refunds}笔，商家实收退款共{_fen(refund_total)}元，商家优惠退款共0.00元",
            exported,
        ]
    )
    total = int(signed.sum())
    fees = int(service.sum())
    total_row = ["合计", "", str(n - refunds), str(refunds), _fen(total), _fen(total), "0.00"]
    total_row += ["0.00", "0.00", _fen(fees), "0.00", _fen(total + fees)]
    summary = _CRLF.join(
        [
            "#支付宝业务汇总查询",
            *head,
            f"#{_DASHES}业务汇总列表{'-' * 40}",
            _ALIPAY_SUMMARY,
            ",".join(total_row),
            f"#{_DASHES}业务汇总列表结束{'-' * 35}",
            exported,
        ]
    )
    detail_bytes = (detail + _CRLF).encode("gb18030")
    # Arrow wrote the rows as UTF-8; only their Chinese words need re-encoding.
    detail_bytes += body.decode().encode("gb18030") + (footer + _CRLF).encode("gb18030")
    buffer = io.BytesIO()
    stem = f"{pid}_{day:%Y%m%d}"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}_业务明细.csv", detail_bytes)
        archive.writestr(f"{stem}_业务明细(汇总).csv", (summary + _CRLF).encode("gb18030"))
    return buffer.getvalue()
