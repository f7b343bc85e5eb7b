"""WeChat Pay bill files, cut from the sandbox's journal in WeChat's published format.

UTF-8 with a byte-order mark, comma-separated; a plain header row, detail rows whose every field
starts with a backtick (so spreadsheets keep long numbers as text), then a summary header row and
a backticked summary row. Amounts are yuan with two decimals. A bill's day is the Asia/Shanghai
date of the money movement (payment or refund success time).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from clearhouse.gateway.channels.wechatpay.protocol import CHINA_TZ
from clearhouse.money import Money

BOM = "\ufeff"
TRADE_COLUMNS = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
TRADE_SUMMARY = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
FUND_COLUMNS = (
    "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),"
    "资金变更提交申请人,备注,业务凭证号"
)
FUND_SUMMARY = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额"


@dataclass(frozen=True, slots=True)
class Entry:
    """One money movement of the merchant account: a payment or a refund that succeeded."""

    kind: str  # "PAYMENT" or "REFUND"
    at: datetime
    appid: str
    mchid: str
    transaction_id: str  # the payment's WeChat order id, on refunds too
    out_trade_no: str
    openid: str
    trade_type: str
    description: str
    attach: str
    amount: int  # fen: the payment's total, or the refund's amount
    fee: int  # fen: charged on a payment (> 0), returned on a refund (<= 0)
    currency: str = "CNY"
    refund_id: str = ""
    out_refund_no: str = ""
    # A payment's 交易状态 in the trade bill: SUCCESS, or REVOKED when the channel reversed it
    # after telling us it succeeded.
    trade_state: str = "SUCCESS"

    def business_day(self) -> date:
        return self.at.astimezone(CHINA_TZ).date()


def yuan(fen: int, currency: str = "CNY") -> str:
    return str(Money(fen, currency).to_decimal())


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).quantize(Decimal('0.01'))}%"


def _row(fields: Iterable[str]) -> str:
    return ",".join("`" + f for f in fields)


def _time(at: datetime) -> str:
    return at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def trade_bill(entries: Sequence[Entry], day: date, bill_type: str, rate: Decimal) -> bytes:
    """The trade bill of ``day``: ``ALL`` rows, or only ``SUCCESS`` (payments) or ``REFUND``."""
    wanted = {"ALL": {"PAYMENT", "REFUND"}, "SUCCESS": {"PAYMENT"}, "REFUND": {"REFUND"}}[bill_type]
    rows = [e for e in sorted(entries, key=lambda e: e.at) if e.business_day() == day]
    rows = [e for e in rows if e.kind in wanted]
    out = [TRADE_COLUMNS]
    settled = refunded = fees = ordered = 0
    for e in rows:
        pay = e.kind == "PAYMENT"
        settled += e.amount if pay else 0
        ordered += e.amount if pay else 0
        refunded += 0 if pay else e.amount
        fees += e.fee
        out.append(
            _row(
                [
                    _time(e.at),
                    e.appid,
                    e.mchid,
                    "0",  # no sub-merchant: a direct merchant
                    "",
                    e.transaction_id,
                    e.out_trade_no,
                    e.openid,
                    e.trade_type,
                    e.trade_state if pay else "REFUND",
                    "OTHERS",
                    e.currency,
                    yuan(e.amount if pay else 0),
                    "0.00",
                    "0" if pay else e.refund_id,
                    "0" if pay else e.out_refund_no,
                    yuan(0 if pay else e.amount),
                    "0.00",
                    "" if pay else "ORIGINAL",
                    "" if pay else "SUCCESS",
                    e.description,
                    e.attach,
                    yuan(e.fee),
                    _percent(rate),
                    yuan(e.amount if pay else 0),
                    yuan(0 if pay else e.amount),
                    "",
                ]
            )
        )
    out.append(TRADE_SUMMARY)
    totals = [settled, refunded, 0, fees, ordered, refunded]
    out.append(_row([str(len(rows)), *(yuan(v) for v in totals)]))
    return (BOM + "\r\n".join(out) + "\r\n").encode()


def fundflow_bill(entries: Sequence[Entry], day: date) -> bytes:
    """The basic account's fund flow of ``day``; the balance runs over the whole journal."""
    out = [FUND_COLUMNS]
    balance = 0
    count = income_n = expense_n = income = expense = 0
    for e in sorted(entries, key=lambda e: e.at):
        if e.business_day() > day:
            break
        pay = e.kind == "PAYMENT"
        ref = e.transaction_id if pay else e.refund_id
        # (flow suffix, business name, business type, income?, amount): a payment credits the
        # amount and debits its fee; a refund debits the amount and credits the returned fee.
        moves = (
            [("1", "交易", "交易", True, e.amount), ("2", "交易", "扣除交易手续费", False, e.fee)]
            if pay
            else [
                ("3", "退款", "退款", False, e.amount),
                ("4", "退款", "退还交易手续费", True, -e.fee),
            ]
        )
        for suffix, name, kind, incoming, amount in moves:
            if amount == 0:
                continue
            balance += amount if incoming else -amount
            if e.business_day() != day:
                continue
            count += 1
            income_n, income = (income_n + 1, income + amount) if incoming else (income_n, income)
            expense_n, expense = (
                (expense_n + 1, expense + amount) if not incoming else (expense_n, expense)
            )
            out.append(
                _row(
                    [
                        _time(e.at),
                        ref,
                        f"{ref}{suffix}",
                        name,
                        kind,
                        "收入" if incoming else "支出",
                        yuan(amount),
                        yuan(balance),
                        "system",
                        e.out_trade_no if pay else e.out_refund_no,
                        ref,
                    ]
                )
            )
    out.append(FUND_SUMMARY)
    out.append(_row([str(count), str(income_n), yuan(income), str(expense_n), yuan(expense)]))
    return (BOM + "\r\n".join(out) + "\r\n").encode()
