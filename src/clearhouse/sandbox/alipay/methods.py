"""The simulated gateway.do: common-parameter checks, the request signature, the OpenAPI methods,
and the signed answers, with the codes real Alipay gives (10000 Success; 40001 missing argument;
40002 invalid argument, including isv.invalid-signature; 40004 Business Failed + ACQ.*)."""

# Alipay's texts use full-width punctuation; they are reproduced as Alipay sends them.
# ruff: noqa: RUF001

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from clearhouse.errors import InvalidAmount
from clearhouse.gateway.channels.alipay.protocol import (
    SIGN_TYPE,
    SUCCESS_CODE,
    build_answer,
    format_amount,
    format_time,
    parse_amount,
    parse_time,
    request_sign_string,
    response_key,
    verify_request,
)
from clearhouse.sandbox.alipay.state import AlipayState, Trade, business_day
from clearhouse.sandbox.faults import Fault

_MESSAGES = {
    "40001": "Missing Required Arguments",
    "40002": "Invalid Arguments",
    "40004": "Business Failed",
}
# Without time_expire / timeout_express a precreated code stays payable for two hours.
DEFAULT_EXPIRY = timedelta(hours=2)
# The methods whose effect a TIMEOUT fault lets stand while the answer comes too late.
_MUTATING = frozenset({"alipay.trade.precreate", "alipay.trade.close", "alipay.trade.refund"})
PAGE_PAY = "alipay.trade.page.pay"


class Failure(Exception):
    def __init__(self, code: str, sub_code: str, sub_msg: str, **extra: str) -> None:
        super().__init__(f"{sub_code}: {sub_msg}")
        self.payload: dict[str, str] = {
            "code": code,
            "msg": _MESSAGES.get(code, "Business Failed"),
            "sub_code": sub_code,
            "sub_msg": sub_msg,
            **extra,
        }


def _not_exist() -> Failure:
    return Failure("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在")


@dataclass(frozen=True, slots=True)
class Answer:
    body: str
    delay_s: float = 0
    trade: Trade | None = None  # page.pay: the trade whose cashier page to show
    page_error: dict[str, str] | None = None  # page.pay: why the cashier page cannot show


def _ok(**fields: str) -> dict[str, str]:
    return {"code": SUCCESS_CODE, "msg": "Success", **fields}


class Gateway:
    def __init__(self, state: AlipayState, timeout_delay_s: float) -> None:
        self.state = state
        self.timeout_delay_s = timeout_delay_s
        self._methods: dict[str, Callable[[dict[str, Any], dict[str, str], str], Any]] = {
            "alipay.trade.precreate": self._precreate,
            PAGE_PAY: self._page_pay,
            "alipay.trade.query": self._query,
            "alipay.trade.close": self._close,
            "alipay.trade.refund": self._refund,
            "alipay.trade.fastpay.refund.query": self._refund_query,
            "alipay.data.dataservice.bill.downloadurl.query": self._bill_url,
        }

    def handle(self, params: dict[str, str], base_url: str) -> Answer:
        creds = self.state.credentials
        key = creds.require_alipay_private_key()
        method = params.get("method", "")
        handler = self._methods.get(method)
        if handler is None:
            unknown = Failure("40002", "isv.invalid-method", "不存在的方法名")
            return Answer(build_answer("error_response", unknown.payload, None))
        answer_key = response_key(method)
        if params.get("app_id") != creds.app_id:
            # Alipay cannot know which key to sign with for an app it does not know.
            stranger = Failure("40002", "isv.invalid-app-id", "无效的AppID参数")
            return self._answer(method, stranger.payload, None)
        try:
            self._check_common(params)
            biz = json.loads(params.get("biz_content") or "{}")
            if not isinstance(biz, dict):
                raise Failure("40002", "isv.invalid-parameter", "biz_content 不是 JSON 对象")
            with self.state.lock:
                result = handler(biz, params, base_url)
        except Failure as failure:
            return self._answer(method, failure.payload, key)
        except (json.JSONDecodeError, InvalidAmount, ValueError) as exc:
            invalid = Failure("40004", "ACQ.INVALID_PARAMETER", f"参数无效: {exc}")
            return self._answer(method, invalid.payload, key)
        if method == PAGE_PAY:
            return Answer("", trade=result)
        delay = 0.0
        out_trade_no = str(biz.get("out_trade_no", ""))
        if method in _MUTATING and self.state.faults.hits(Fault.TIMEOUT, out_trade_no):
            delay = self.timeout_delay_s
        return Answer(build_answer(answer_key, result, key), delay_s=delay)

    def _answer(self, method: str, payload: dict[str, str], key: str | None) -> Answer:
        if method == PAGE_PAY:
            return Answer("", page_error=payload)
        return Answer(build_answer(response_key(method), payload, key))

    def _check_common(self, params: dict[str, str]) -> None:
        for name in ("sign", "sign_type", "timestamp", "charset", "version"):
            if not params.get(name):
                raise Failure("40001", f"isv.missing-{name.replace('_', '-')}", f"缺少{name}参数")
        if params["sign_type"] != SIGN_TYPE:
            raise Failure("40002", "isv.invalid-signature-type", "无效的签名类型")
        if params["charset"].lower() not in ("utf-8", "utf8"):
            raise Failure("40002", "isv.invalid-charset", "字符集错误")
        if not verify_request(params, self.state.credentials.app_public_key_pem):
            raise Failure(
                "40002",
                "isv.invalid-signature",
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："
                + request_sign_string(params),
            )

    # -- trades --------------------------------------------------------------------------------

    def _find(self, biz: dict[str, Any]) -> Trade | None:
        trade = self.state.trades.get(str(biz.get("out_trade_no", "")))
        if trade is None and biz.get("trade_no"):
            trade_no = biz["trade_no"]
            trade = next(
                (
                    t
                    for t in self.state.trades.values()
                    if t.trade_no == trade_no or trade_no in t.extras
                ),
                None,
            )
        if trade is not None:
            self.state.refresh(trade)
        return trade

    def _expiry(self, biz: dict[str, Any], now: datetime) -> datetime:
        if biz.get("time_expire"):
            return parse_time(str(biz["time_expire"]))
        express = str(biz.get("timeout_express", ""))
        units = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
        if express[-1:] in units and express[:-1].isdigit():
            return now + int(express[:-1]) * units[express[-1]]
        return now + DEFAULT_EXPIRY

    def _create(self, biz: dict[str, Any], params: dict[str, str], scanned: bool) -> Trade:
        for name in ("out_trade_no", "total_amount", "subject"):
            if not biz.get(name):
                raise Failure("40002", "isv.missing-parameter", f"缺少{name}参数")
        out_trade_no = str(biz["out_trade_no"])
        total = parse_amount(str(biz["total_amount"]))
        if total.amount <= 0:
            raise Failure("40004", "ACQ.INVALID_PARAMETER", "订单金额必须大于0")
        trade = self._find(biz)
        if trade is not None:
            if trade.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                raise Failure("40004", "ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if trade.status == "TRADE_CLOSED":
                raise Failure("40004", "ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if trade.total != total:
                raise Failure("40004", "ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            trade.scanned = trade.scanned or scanned
            return trade
        now = self.state.clock.now()
        trade = Trade(
            out_trade_no=out_trade_no,
            trade_no=self.state.new_trade_no(now),
            subject=str(biz["subject"]),
            total=total,
            notify_url=params.get("notify_url"),
            created_at=now,
            expires_at=self._expiry(biz, now),
            scanned=scanned,
        )
        self.state.created(trade)
        return trade

    def _precreate(self, biz: dict[str, Any], params: dict[str, str], base: str) -> dict[str, str]:
        trade = self._create(biz, params, scanned=False)
        qr_code = f"{base}/sandbox/qr/{quote(trade.out_trade_no, safe='')}"
        return _ok(out_trade_no=trade.out_trade_no, qr_code=qr_code)

    def _page_pay(self, biz: dict[str, Any], params: dict[str, str], base: str) -> Trade:
        # The buyer's browser brings this request: the cashier is open, the trade is known.
        return self._create(biz, params, scanned=True)

    def _query(self, biz: dict[str, Any], params: dict[str, str], base: str) -> dict[str, str]:
        trade = self._find(biz)
        if trade is None or not trade.scanned:
            raise _not_exist()
        paid = trade.paid_at is not None
        amount = format_amount(trade.total) if paid else "0.00"
        answer = _ok(
            trade_no=trade.trade_no,
            out_trade_no=trade.out_trade_no,
            buyer_logon_id=trade.buyer_logon_id,
            buyer_user_id=trade.buyer_user_id,
            trade_status=trade.status,
            total_amount=format_amount(trade.total),
            buyer_pay_amount=amount,
            receipt_amount=amount,
            invoice_amount=amount,
            point_amount="0.00",
        )
        if trade.paid_at is not None:
            answer["send_pay_date"] = format_time(trade.paid_at)
        return answer

    def _close(self, biz: dict[str, Any], params: dict[str, str], base: str) -> dict[str, str]:
        trade = self._find(biz)
        if trade is None:
            raise _not_exist()
        if not trade.scanned:
            # Alipay does not know an unscanned trade, yet the code must not be payable later.
            trade.status = "TRADE_CLOSED"
            raise _not_exist()
        if trade.status == "WAIT_BUYER_PAY" or (
            trade.status == "TRADE_CLOSED" and trade.paid_at is None
        ):
            trade.status = "TRADE_CLOSED"
            return _ok(trade_no=trade.trade_no, out_trade_no=trade.out_trade_no)
        raise Failure("40004", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")

    # -- refunds -------------------------------------------------------------------------------

    def _refund(self, biz: dict[str, Any], params: dict[str, str], base: str) -> dict[str, str]:
        trade = self._find(biz)
        if trade is None or not trade.scanned:
            raise _not_exist()
        amount = parse_amount(str(biz.get("refund_amount", "")))
        # Without out_request_no a refund is a full refund keyed by the order itself.
        out_request_no = str(biz.get("out_request_no") or trade.out_trade_no)
        existing = self.state.refunds.get((trade.out_trade_no, out_request_no))
        if existing is not None:
            # A retry of a refund already made: the same refund, and no money moves this time.
            return self._refund_answer(
                trade, existing.refunded_at, fund_change="N", extra=existing.trade_no
            )
        # trade_no naming a duplicate payment's extra trade refunds that one (Alipay takes
        # trade_no before out_trade_no).
        extra = str(biz.get("trade_no") or "")
        extra = extra if extra in trade.extras else ""
        refunded = trade.extras[extra] if extra else trade.refunded
        zero = {"refund_fee": "0.00", "send_back_fee": "0.00"}
        if trade.status == "TRADE_FINISHED":
            raise Failure("40004", "ACQ.TRADE_HAS_FINISHED", "交易已完结", **zero)
        if trade.status != "TRADE_SUCCESS":
            raise Failure("40004", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法", **zero)
        if amount.amount <= 0:
            raise Failure("40004", "ACQ.INVALID_PARAMETER", "退款金额无效", **zero)
        if not biz.get("out_request_no") and amount != trade.total:
            raise Failure(
                "40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "撤销或退款金额与订单金额不一致", **zero
            )
        if refunded + amount > trade.total:
            raise Failure("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限或无效", **zero)
        refund = self.state.record_refund(
            trade, out_request_no, amount, str(biz.get("refund_reason", "")), extra
        )
        return self._refund_answer(trade, refund.refunded_at, fund_change="Y", extra=extra)

    def _refund_answer(
        self, trade: Trade, at: datetime, fund_change: str, extra: str = ""
    ) -> dict[str, str]:
        refunded = format_amount(trade.extras[extra] if extra else trade.refunded)
        return _ok(
            trade_no=extra or trade.trade_no,
            out_trade_no=trade.out_trade_no,
            buyer_logon_id=trade.buyer_logon_id,
            buyer_user_id=trade.buyer_user_id,
            fund_change=fund_change,
            refund_fee=refunded,
            send_back_fee=refunded,
            gmt_refund_pay=format_time(at),
        )

    def _refund_query(
        self, biz: dict[str, Any], params: dict[str, str], base: str
    ) -> dict[str, str]:
        if not biz.get("out_request_no"):
            raise Failure("40002", "isv.missing-parameter", "缺少out_request_no参数")
        trade = self._find(biz)
        if trade is None or not trade.scanned:
            raise _not_exist()
        out_request_no = str(biz["out_request_no"])
        refund = self.state.refunds.get((trade.out_trade_no, out_request_no))
        if refund is None:
            # Alipay answers Success with no refund data when it has no such refund.
            return _ok(out_trade_no=trade.out_trade_no, out_request_no=out_request_no)
        return _ok(
            trade_no=refund.trade_no or trade.trade_no,
            out_trade_no=trade.out_trade_no,
            out_request_no=out_request_no,
            total_amount=format_amount(trade.total),
            refund_amount=format_amount(refund.amount),
            refund_status="REFUND_SUCCESS",
            gmt_refund_pay=format_time(refund.refunded_at),
        )

    # -- bills ---------------------------------------------------------------------------------

    def _bill_url(self, biz: dict[str, Any], params: dict[str, str], base: str) -> dict[str, str]:
        if biz.get("bill_type") != "trade":
            raise Failure("40004", "isp.bill_not_exist", "账单不存在")
        day = datetime.strptime(str(biz.get("bill_date", "")), "%Y-%m-%d").date()
        # A day's bill exists once that Beijing day is over.
        if day >= business_day(self.state.clock.now()):
            raise Failure("40004", "isp.bill_not_exist", "账单不存在")
        return _ok(bill_download_url=f"{base}/sandbox/bills/{day:%Y%m%d}.csv.zip")
