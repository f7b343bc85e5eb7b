"""The WeChat Pay API v3 adapter: ``ChannelPort`` over signed HTTP.

Every answer's signature is verified (public key mode) before anything in it is believed; an
answer that does not verify is ``UNKNOWN``/``BAD_SIGNATURE``, never a refusal. Domestic WeChat
Pay settles only CNY: a payment or refund in another currency is refused here, before any call,
as ``FAILED``/``UNSUPPORTED_CURRENCY`` (the channel would refuse it the same way); so is a
method WeChat cannot take (``UNSUPPORTED_METHOD``: page pay, or JSAPI without an openid).
A query answered 404 ``ORDER_NOT_EXIST`` is ``FAILED``: WeChat holds no such order, so nothing
was or can be paid under it until it is created again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import httpx

from clearhouse.clock import Clock, SystemClock
from clearhouse.errors import ClearhouseError
from clearhouse.gateway.channels import transport
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
from clearhouse.gateway.channels.transport import NoAnswer, segment
from clearhouse.gateway.channels.wechatpay import protocol
from clearhouse.gateway.channels.wechatpay.protocol import WechatPayCredentials
from clearhouse.money import Money

CURRENCY = "CNY"
_TRADE_STATES = {
    "SUCCESS": ChannelStatus.SUCCEEDED,
    "REFUND": ChannelStatus.SUCCEEDED,  # paid, then (partly) refunded: the payment stands
    "NOTPAY": ChannelStatus.PENDING,
    "USERPAYING": ChannelStatus.PENDING,
    "ACCEPT": ChannelStatus.PENDING,
    "CLOSED": ChannelStatus.CLOSED,
    "REVOKED": ChannelStatus.CLOSED,
    "PAYERROR": ChannelStatus.FAILED,
}
_REFUND_STATES = {
    "PROCESSING": ChannelStatus.PENDING,
    "SUCCESS": ChannelStatus.SUCCEEDED,
    "ABNORMAL": ChannelStatus.FAILED,
    "CLOSED": ChannelStatus.FAILED,
}
# Refusals that do not mean "nothing happened": the order exists (maybe paid); query it.
_NOT_FINAL = {"ORDERPAID", "ORDER_CLOSED", "OUT_TRADE_NO_USED", "USER_PAYING", "SYSTEM_ERROR"}
_BILLS = {"tradebill": "bill_type=ALL", "fundflowbill": "account_type=BASIC"}


class BillUnavailable(ClearhouseError):
    """A bill could not be fetched or did not verify (``details["reason"]`` says why)."""

    code = "BILL_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    text: str
    data: dict[str, Any]


class WechatPayAdapter(transport.HttpAdapter):
    name = "wechatpay"

    def __init__(
        self,
        credentials: WechatPayCredentials,
        base_url: str = "https://api.mch.weixin.qq.com",
        timeout: float = 10.0,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        """``clock`` dates request signatures and checks answers' timestamps (5-minute window)."""
        self._creds = credentials.merchant_view()
        self._clock = clock or SystemClock()
        super().__init__(client, timeout, base_url)

    # --- payments ------------------------------------------------------------------------------

    def pay(self, order: PayOrder) -> ChannelResult:
        if order.amount.currency != CURRENCY:
            why = f"WeChat Pay settles CNY, not {order.amount.currency}"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_CURRENCY")
        body: dict[str, Any] = {
            "appid": self._creds.appid,
            "mchid": self._creds.mchid,
            "description": order.description,
            "out_trade_no": order.attempt_id,
            "time_expire": protocol.format_time(order.expires_at),
            "notify_url": order.notify_url,
            "amount": {"total": order.amount.amount, "currency": CURRENCY},
        }
        if order.method is PayMethod.NATIVE:
            path, field = "/v3/pay/transactions/native", "code_url"
        elif order.method is PayMethod.JSAPI and order.payer_id:
            path, field = "/v3/pay/transactions/jsapi", "prepay_id"
            body["payer"] = {"openid": order.payer_id}
        else:
            why = f"WeChat Pay cannot take a {order.method.value} payment without an openid"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_METHOD")
        try:
            reply = self._call("POST", path, body)
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status != 200:
            return self._payment_refusal(reply)
        credential = reply.data.get(field)
        if not isinstance(credential, str) or not credential:
            return ChannelResult(ChannelStatus.UNKNOWN, reply.text, error_code="BAD_RESPONSE")
        return ChannelResult(ChannelStatus.PENDING, reply.text, credential=credential)

    def query(self, attempt_id: str) -> ChannelResult:
        target = (
            f"/v3/pay/transactions/out-trade-no/{segment(attempt_id)}?mchid={self._creds.mchid}"
        )
        try:
            reply = self._call("GET", target)
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status != 200:
            return self._payment_refusal(reply)
        return _payment_result(reply.data, reply.text, attempt_id)

    def close(self, attempt_id: str) -> ChannelResult:
        target = f"/v3/pay/transactions/out-trade-no/{segment(attempt_id)}/close"
        try:
            reply = self._call("POST", target, {"mchid": self._creds.mchid})
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status == 204:
            return ChannelResult(ChannelStatus.CLOSED, reply.text)
        return self._payment_refusal(reply)

    def _payment_refusal(self, reply: _Reply) -> ChannelResult:
        status, code = _refusal(reply)
        return ChannelResult(status, reply.text, error_code=code)

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, order: RefundOrder) -> RefundResult:
        if order.refund.currency != CURRENCY or order.total.currency != CURRENCY:
            return RefundResult(
                ChannelStatus.FAILED, "refund not in CNY", error_code="UNSUPPORTED_CURRENCY"
            )
        # WeChat takes the order or one of its transactions (transaction_id), not both.
        target = (
            {"transaction_id": order.channel_txn_id}
            if order.channel_txn_id
            else {"out_trade_no": order.attempt_id}
        )
        body: dict[str, Any] = {
            **target,
            "out_refund_no": order.refund_no,
            "reason": order.reason,
            "amount": {
                "refund": order.refund.amount,
                "total": order.total.amount,
                "currency": CURRENCY,
            },
        }
        if order.notify_url:
            body["notify_url"] = order.notify_url
        try:
            reply = self._call("POST", "/v3/refund/domestic/refunds", body)
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        return self._refund_answer(reply, order.attempt_id)

    def query_refund(self, refund_no: str, attempt_id: str) -> RefundResult:
        try:
            reply = self._call("GET", f"/v3/refund/domestic/refunds/{segment(refund_no)}")
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        return self._refund_answer(reply, attempt_id)

    def _refund_answer(self, reply: _Reply, attempt_id: str) -> RefundResult:
        if reply.status != 200:
            status, code = _refusal(reply)
            return RefundResult(status, reply.text, error_code=code)
        return _refund_result(reply.data, reply.text, attempt_id, "status")

    # --- notifications -------------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        try:
            event, plain, resource = protocol.open_notification(
                self._creds, headers, body, self._clock.now()
            )
        except protocol.WechatPayProtocolError as exc:
            raise BadNotification(exc.message, reason=exc.code) from None
        if resource.get("mchid") != self._creds.mchid:
            raise BadNotification("notification for another merchant")
        attempt_id = resource.get("out_trade_no")
        if not isinstance(attempt_id, str) or not attempt_id:
            raise BadNotification("notification without out_trade_no")
        if event == "TRANSACTION.SUCCESS":
            payment = _payment_result(resource, plain, attempt_id)
            if payment.status is ChannelStatus.UNKNOWN:
                raise BadNotification("payment notification does not parse")
            return Notification(attempt_id, plain, payment=payment)
        if event in ("REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"):
            refund = _refund_result(resource, plain, attempt_id, "refund_status")
            refund_no = resource.get("out_refund_no")
            if refund.status is ChannelStatus.UNKNOWN or not isinstance(refund_no, str):
                raise BadNotification("refund notification does not parse")
            return Notification(attempt_id, plain, refund_no=refund_no, refund=refund)
        raise BadNotification("unsupported event type", event_type=event)

    def ack(self, ok: bool) -> Ack:
        """WeChat takes 200/204 as received; any other status (with a FAIL body) is retried."""
        if ok:
            return Ack(204, "", "application/json")
        return Ack(500, '{"code":"FAIL","message":"失败"}', "application/json")

    # --- bills ---------------------------------------------------------------------------------

    def download_bill(self, kind: str, bill_date: date) -> bytes:
        """The raw bill of a day (``tradebill`` ALL or ``fundflowbill`` BASIC), its SHA1 checked
        against the signed descriptor; raises ``BillUnavailable``."""
        if kind not in _BILLS:
            raise ValueError(f"unknown bill kind {kind!r}")
        target = f"/v3/bill/{kind}?bill_date={bill_date.isoformat()}&{_BILLS[kind]}"
        try:
            reply = self._call("GET", target)
        except NoAnswer as exc:
            raise BillUnavailable(exc.raw, reason=exc.error_code) from None
        if reply.status != 200:
            raise BillUnavailable(reply.text, reason=str(reply.data.get("code", reply.status)))
        url, digest = reply.data.get("download_url"), reply.data.get("hash_value")
        if not isinstance(url, str) or not isinstance(digest, str):
            raise BillUnavailable(reply.text, reason="BAD_RESPONSE")
        # Only the path and query are followed, on our own connection: the descriptor's host
        # never receives our signature.
        parts = urlsplit(url)
        file_target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            response = self._send("GET", file_target, b"")
        except NoAnswer as exc:
            raise BillUnavailable(exc.raw, reason=exc.error_code) from None
        if response.status_code != 200:
            raise BillUnavailable(response.text, reason=f"HTTP_{response.status_code}")
        if hashlib.sha1(response.content).hexdigest() != digest.lower():
            raise BillUnavailable("bill file does not match its hash", reason="BAD_HASH")
        return response.content

    # --- transport -----------------------------------------------------------------------------

    def _send(self, method: str, target: str, body: bytes) -> httpx.Response:
        headers = {
            "Authorization": protocol.build_authorization(
                self._creds, method, target, body, self._clock.now()
            ),
            "Accept": "application/json",
            "User-Agent": "clearhouse-wechatpay/1",
        }
        if body:
            headers["Content-Type"] = "application/json"
        return transport.request(self._http, method, target, content=body, headers=headers)

    def _call(self, method: str, target: str, payload: Mapping[str, Any] | None = None) -> _Reply:
        """Send a signed request; return its verified answer or raise ``NoAnswer``."""
        body = b"" if payload is None else protocol.dumps(payload)
        response = self._send(method, target, body)
        text = response.text
        try:
            protocol.verify_signed(
                response.headers, response.content, self._creds, self._clock.now()
            )
        except protocol.SignatureError as exc:
            if response.status_code >= 500:
                raise NoAnswer(f"HTTP_{response.status_code}", text) from None
            raise NoAnswer("BAD_SIGNATURE", f"{exc.message}: {text}") from None
        if not response.content:
            return _Reply(response.status_code, text, {})
        data = transport.json_object(response.content)
        if data is None:
            raise NoAnswer("BAD_RESPONSE", text)
        return _Reply(response.status_code, text, data)


def _refusal(reply: _Reply) -> tuple[ChannelStatus, str]:
    """A non-success answer: a clear refusal is FAILED with WeChat's code; throttling, server
    errors and "already exists/paid" answers are UNKNOWN (the caller must query)."""
    code = reply.data.get("code")
    code = code if isinstance(code, str) and code else f"HTTP_{reply.status}"
    message = str(reply.data.get("message", ""))
    if reply.status >= 500 or reply.status == 429 or code in _NOT_FINAL or _duplicate(message):
        return ChannelStatus.UNKNOWN, code
    if 400 <= reply.status < 500:
        return ChannelStatus.FAILED, code
    return ChannelStatus.UNKNOWN, "BAD_RESPONSE"


def _duplicate(message: str) -> bool:
    # WeChat answers INVALID_REQUEST "201 商户订单号重复" / "...已存在" to a reused number: the
    # thing exists, so the answer is not a refusal of it.
    return "重复" in message or "已存在" in message


def _payment_result(data: Mapping[str, Any], raw: str, attempt_id: str) -> ChannelResult:
    status = _TRADE_STATES.get(str(data.get("trade_state")))
    amount = data.get("amount")
    if status is None or data.get("out_trade_no") != attempt_id or not isinstance(amount, dict):
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    try:
        paid = Money(amount["total"], str(amount.get("currency", CURRENCY)))
        success = data.get("success_time")
        paid_at = protocol.parse_time(success) if isinstance(success, str) else None
    except (KeyError, ValueError, ClearhouseError):
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    txn = data.get("transaction_id")
    return ChannelResult(
        status,
        raw,
        channel_txn_id=txn if isinstance(txn, str) and txn else None,
        amount=paid,
        paid_at=paid_at,
        error_code=None if status is not ChannelStatus.FAILED else str(data.get("trade_state")),
    )


def _refund_result(
    data: Mapping[str, Any], raw: str, attempt_id: str, status_field: str
) -> RefundResult:
    state = str(data.get(status_field))
    status = _REFUND_STATES.get(state)
    amount = data.get("amount")
    if status is None or data.get("out_trade_no") != attempt_id or not isinstance(amount, dict):
        return RefundResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    try:
        refunded = Money(amount["refund"], str(amount.get("currency", CURRENCY)))
        success = data.get("success_time")
        at = protocol.parse_time(success) if isinstance(success, str) else None
    except (KeyError, ValueError, ClearhouseError):
        return RefundResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    refund_id = data.get("refund_id")
    return RefundResult(
        status,
        raw,
        channel_refund_id=refund_id if isinstance(refund_id, str) else None,
        amount=refunded,
        refunded_at=at,
        error_code=state if status is ChannelStatus.FAILED else None,
    )
