"""The Alipay OpenAPI adapter: ``ChannelPort`` over gateway.do.

Every answer's ``sign`` is verified over the exact text of its ``<method>_response`` before
anything in it is believed; an answer that does not verify is ``UNKNOWN``/``BAD_SIGNATURE``.
Alipay settles CNY only, and cannot take a JSAPI payment (that is WeChat's): both are refused
here before any call (``UNSUPPORTED_CURRENCY`` / ``UNSUPPORTED_METHOD``).

How Alipay's answers map, where it is not obvious:

- A query answered ``ACQ.TRADE_NOT_EXIST`` is ``PENDING``: Alipay only creates a precreated
  trade when the buyer scans the code, so an order nobody has scanned yet is "not found".
- A close answered ``ACQ.TRADE_NOT_EXIST`` is ``CLOSED`` for the same reason: nothing was paid
  under the order, and the code expires at ``timeout_express`` (a payment arriving later anyway
  comes by notification and is a late payment to refund).
- A close answered ``ACQ.TRADE_STATUS_ERROR`` and a payment answered ``ACQ.TRADE_HAS_SUCCESS``
  are ``UNKNOWN``: the trade is (probably) paid; query it.
- ``TRADE_CLOSED`` with a payment date is a paid trade refunded in full: ``SUCCEEDED``.
- A refund answered ``fund_change=N`` moved no money in this call (a retry of a refund already
  made, or one still in progress): the adapter asks the refund query for the truth.
- A refund query that finds no refund is ``FAILED``/``REFUND_NOT_FOUND``: Alipay holds no
  refund under that request number, so no money moved; sending the refund again with the same
  ``refund_no`` is safe (Alipay deduplicates by ``out_request_no``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from clearhouse.clock import Clock, SystemClock
from clearhouse.errors import ClearhouseError, MoneyError
from clearhouse.gateway.channels import transport
from clearhouse.gateway.channels.alipay import protocol
from clearhouse.gateway.channels.alipay.protocol import CURRENCY, AlipayCredentials, BadAnswer
from clearhouse.gateway.channels.port import (
    Ack,
    BadNotification,
    ChannelResult,
    ChannelStatus,
    Notification,
    PayMethod,
    PayOrder,
    RefundOrder,
    RefundResult,
)
from clearhouse.gateway.channels.transport import NoAnswer

_TRADE_STATES = {
    "WAIT_BUYER_PAY": ChannelStatus.PENDING,
    "TRADE_SUCCESS": ChannelStatus.SUCCEEDED,
    "TRADE_FINISHED": ChannelStatus.SUCCEEDED,  # paid, and the refund window is over
    "TRADE_CLOSED": ChannelStatus.CLOSED,
}
# Answers that say nothing final: Alipay was busy, or the trade is in a state to query.
_SYSTEM_BUSY = {"20000", "ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.ACQ.SYSTEM_ERROR"}
_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
_PRECREATE = "alipay.trade.precreate"
_PAGE_PAY = "alipay.trade.page.pay"


class BillUnavailable(ClearhouseError):
    """A bill could not be fetched (``details["reason"]`` says why)."""

    code = "BILL_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class _Reply:
    raw: str
    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.data.get("code") == protocol.SUCCESS_CODE

    @property
    def error(self) -> str:
        """Alipay's most precise code for a refusal: the sub_code, else the code."""
        return str(self.data.get("sub_code") or self.data.get("code") or "BAD_RESPONSE")

    @property
    def busy(self) -> bool:
        return self.data.get("code") in _SYSTEM_BUSY or self.error in _SYSTEM_BUSY


class AlipayAdapter(transport.HttpAdapter):
    name = "alipay"

    def __init__(
        self,
        credentials: AlipayCredentials,
        base_url: str = "https://openapi.alipay.com",
        timeout: float = 10.0,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        """``base_url``: the gateway is ``base_url + "/gateway.do"``; ``clock`` stamps requests
        (Alipay wants Beijing time within a few minutes of its own)."""
        self._creds = credentials.merchant_view()
        self._key = self._creds.require_app_private_key()
        self._gateway = base_url.rstrip("/") + "/gateway.do"
        self._clock = clock or SystemClock()
        super().__init__(client, timeout)

    # --- payments ------------------------------------------------------------------------------

    def pay(self, order: PayOrder) -> ChannelResult:
        if order.amount.currency != CURRENCY:
            why = f"Alipay settles CNY, not {order.amount.currency}"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_CURRENCY")
        biz: dict[str, Any] = {
            "out_trade_no": order.attempt_id,
            "total_amount": protocol.format_amount(order.amount),
            "subject": order.description,
        }
        if order.method is PayMethod.PAGE:
            # The cashier URL is signed here and opened by the buyer's browser: no call now.
            biz["product_code"] = "FAST_INSTANT_TRADE_PAY"
            biz["time_expire"] = protocol.format_time(order.expires_at)
            params = self._signed(_PAGE_PAY, biz, order.notify_url)
            url = f"{self._gateway}?{urlencode(params)}"
            return ChannelResult(ChannelStatus.PENDING, url, credential=url)
        if order.method is not PayMethod.NATIVE:
            why = f"Alipay cannot take a {order.method.value} payment"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_METHOD")
        biz["product_code"] = "FACE_TO_FACE_PAYMENT"
        biz["timeout_express"] = self._timeout_express(order.expires_at)
        try:
            reply = self._call(_PRECREATE, biz, order.notify_url)
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if not reply.ok:
            return self._payment_refusal(reply, query_codes={"ACQ.TRADE_HAS_SUCCESS"})
        qr_code = reply.data.get("qr_code")
        if not isinstance(qr_code, str) or not qr_code:
            return ChannelResult(ChannelStatus.UNKNOWN, reply.raw, error_code="BAD_RESPONSE")
        return ChannelResult(ChannelStatus.PENDING, reply.raw, credential=qr_code)

    def _timeout_express(self, expires_at: datetime) -> str:
        # Whole minutes, rounded down so Alipay never accepts a payment after expires_at.
        minutes = int((expires_at - self._clock.now()).total_seconds()) // 60
        return f"{max(minutes, 1)}m"

    def query(self, attempt_id: str) -> ChannelResult:
        try:
            reply = self._call("alipay.trade.query", {"out_trade_no": attempt_id})
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.ok:
            return _payment_result(reply.data, reply.raw, "send_pay_date")
        if reply.error == _NOT_EXIST:
            return ChannelResult(ChannelStatus.PENDING, reply.raw, error_code=_NOT_EXIST)
        return self._payment_refusal(reply)

    def close(self, attempt_id: str) -> ChannelResult:
        try:
            reply = self._call("alipay.trade.close", {"out_trade_no": attempt_id})
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.ok:
            return ChannelResult(
                ChannelStatus.CLOSED, reply.raw, channel_txn_id=reply.data.get("trade_no")
            )
        if reply.error == _NOT_EXIST:
            return ChannelResult(ChannelStatus.CLOSED, reply.raw, error_code=_NOT_EXIST)
        return self._payment_refusal(reply, query_codes={"ACQ.TRADE_STATUS_ERROR"})

    def _payment_refusal(self, reply: _Reply, query_codes: set[str] | None = None) -> ChannelResult:
        """A refusal is final unless Alipay was busy or the code says the trade needs a query."""
        unclear = reply.busy or reply.error in (query_codes or set())
        status = ChannelStatus.UNKNOWN if unclear else ChannelStatus.FAILED
        return ChannelResult(status, reply.raw, error_code=reply.error)

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, order: RefundOrder) -> RefundResult:
        if order.refund.currency != CURRENCY:
            why = f"Alipay settles CNY, not {order.refund.currency}"
            return RefundResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_CURRENCY")
        biz = {
            "out_trade_no": order.attempt_id,
            "refund_amount": protocol.format_amount(order.refund),
            "out_request_no": order.refund_no,  # the same on every retry: Alipay deduplicates
            "refund_reason": order.reason,
        }
        if order.channel_txn_id:
            biz["trade_no"] = order.channel_txn_id  # Alipay takes trade_no first when given
        try:
            reply = self._call("alipay.trade.refund", biz)
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if not reply.ok:
            status = ChannelStatus.UNKNOWN if reply.busy else ChannelStatus.FAILED
            return RefundResult(status, reply.raw, error_code=reply.error)
        if reply.data.get("fund_change") == "Y":
            refunded_at = _time(reply.data.get("gmt_refund_pay"))
            return RefundResult(
                ChannelStatus.SUCCEEDED, reply.raw, amount=order.refund, refunded_at=refunded_at
            )
        found = self.query_refund(order.refund_no, order.attempt_id)
        if found.error_code == "REFUND_NOT_FOUND":
            return RefundResult(ChannelStatus.PENDING, reply.raw)
        return found

    def query_refund(self, refund_no: str, attempt_id: str) -> RefundResult:
        biz = {
            "out_trade_no": attempt_id,
            "out_request_no": refund_no,
            "query_options": ["gmt_refund_pay"],
        }
        try:
            reply = self._call("alipay.trade.fastpay.refund.query", biz)
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if not reply.ok:
            status = ChannelStatus.UNKNOWN if reply.busy else ChannelStatus.FAILED
            return RefundResult(status, reply.raw, error_code=reply.error)
        data = reply.data
        refund_status = data.get("refund_status")
        if refund_status is None and data.get("refund_amount") is None:
            return RefundResult(ChannelStatus.FAILED, reply.raw, error_code="REFUND_NOT_FOUND")
        # Older answers carry no refund_status: any refund data then means the refund is done.
        if refund_status not in (None, "REFUND_SUCCESS"):
            return RefundResult(ChannelStatus.PENDING, reply.raw)
        try:
            amount = protocol.parse_amount(str(data["refund_amount"]))
            refunded_at = _time(data.get("gmt_refund_pay"))
        except (KeyError, MoneyError, ValueError):
            return RefundResult(ChannelStatus.UNKNOWN, reply.raw, error_code="BAD_RESPONSE")
        return RefundResult(
            ChannelStatus.SUCCEEDED, reply.raw, amount=amount, refunded_at=refunded_at
        )

    # --- notifications -------------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        try:
            raw = body.decode("utf-8")
            pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadNotification("not a UTF-8 form body") from exc
        params = dict(pairs)
        if len(params) != len(pairs):
            raise BadNotification("a parameter appears twice")
        if params.get("sign_type", protocol.SIGN_TYPE) != protocol.SIGN_TYPE:
            raise BadNotification("not signed with RSA2")
        if not protocol.verify_notification(params, self._creds.alipay_public_key_pem):
            raise BadNotification("the signature does not verify")
        if params.get("app_id") != self._creds.app_id:
            raise BadNotification("the notification is for another app_id")
        if params.get("seller_id", self._creds.pid) != self._creds.pid:
            raise BadNotification("the notification is for another seller")
        if params.get("notify_type") != "trade_status_sync" or not params.get("out_trade_no"):
            raise BadNotification("not a trade status notification")
        attempt_id = params["out_trade_no"]
        refund_no = params.get("out_biz_no")
        if refund_no and params.get("gmt_refund"):
            try:
                refunded_at = _time(params["gmt_refund"])
            except ValueError as exc:
                raise BadNotification(f"malformed gmt_refund: {exc}") from exc
            # refund_fee is the trade's cumulative refunded total, not this refund's amount, so
            # the amount is left for the caller, who knows what it asked for.
            refund = RefundResult(ChannelStatus.SUCCEEDED, raw, refunded_at=refunded_at)
            return Notification(attempt_id, raw, refund_no=refund_no, refund=refund)
        payment = _payment_result(params, raw, "gmt_payment")
        if payment.error_code == "BAD_RESPONSE":
            raise BadNotification("unknown trade_status or malformed fields")
        return Notification(attempt_id, raw, payment=payment)

    def ack(self, ok: bool) -> Ack:
        # Alipay stops retrying only on the exact body "success".
        return Ack(200, "success" if ok else "failure", "text/plain")

    # --- bills ---------------------------------------------------------------------------------

    def download_bill(self, bill_date: date) -> bytes:
        """The trade bill ZIP of one Beijing business day (``bill_type=trade``)."""
        biz = {"bill_type": "trade", "bill_date": bill_date.isoformat()}
        try:
            reply = self._call("alipay.data.dataservice.bill.downloadurl.query", biz)
        except NoAnswer as exc:
            raise BillUnavailable("no usable answer", reason=exc.error_code) from exc
        url = reply.data.get("bill_download_url")
        if not reply.ok or not isinstance(url, str):
            raise BillUnavailable("Alipay refused the bill", reason=reply.error)
        try:
            response = self._http.get(url, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise BillUnavailable("download failed", reason=type(exc).__name__) from exc
        if response.status_code != 200 or not response.content.startswith(b"PK"):
            raise BillUnavailable("not a bill archive", reason=f"HTTP {response.status_code}")
        return response.content

    # --- transport -----------------------------------------------------------------------------

    def _signed(
        self, method: str, biz: Mapping[str, Any], notify_url: str | None = None
    ) -> dict[str, str]:
        params = {
            "app_id": self._creds.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": protocol.SIGN_TYPE,
            "timestamp": protocol.format_time(self._clock.now()),
            "version": "1.0",
            "biz_content": protocol.dump_json(biz),
        }
        if notify_url:
            params["notify_url"] = notify_url
        return protocol.sign_request(params, self._key)

    def _call(self, method: str, biz: Mapping[str, Any], notify_url: str | None = None) -> _Reply:
        params = self._signed(method, biz, notify_url)
        # charset in the query string too, as Alipay reads it before decoding the form.
        response = transport.request(
            self._http, "POST", self._gateway, params={"charset": "utf-8"}, data=params
        )
        raw = response.text
        if response.status_code != 200:
            raise NoAnswer("BAD_RESPONSE", f"HTTP {response.status_code}: {raw}")
        try:
            data = protocol.read_answer(raw, method, self._creds.alipay_public_key_pem)
        except BadAnswer as exc:
            raise NoAnswer(exc.kind, raw) from exc
        return _Reply(raw, data)


def _time(text: object) -> datetime | None:
    return protocol.parse_time(text) if isinstance(text, str) and text else None


def _payment_result(data: Mapping[str, Any], raw: str, paid_field: str) -> ChannelResult:
    """A trade's state from a query answer (``send_pay_date``) or a notification
    (``gmt_payment``)."""
    status = _TRADE_STATES.get(str(data.get("trade_status")))
    if status is None:
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    try:
        paid_at = _time(data.get(paid_field))
        if status is ChannelStatus.CLOSED and paid_at is not None:
            status = ChannelStatus.SUCCEEDED  # paid, then refunded in full
        succeeded = status is ChannelStatus.SUCCEEDED
        amount = protocol.parse_amount(str(data["total_amount"])) if succeeded else None
    except (KeyError, MoneyError, ValueError):
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    return ChannelResult(
        status,
        raw,
        channel_txn_id=data.get("trade_no"),
        amount=amount,
        paid_at=paid_at if succeeded else None,
    )
