"""The quick pay adapter: ``ChannelPort`` over the card network's back-channel gateway, plus the
card methods (bind with real-name verification and an SMS code, query, unbind, the payment SMS,
the daily file). The wire protocol is ``docs/channels/quickpay.md``.

Card data: the card number, ID number, phone, expiry and CVN2 are encrypted for the channel
before they leave the process and never logged (only message type, order id and respCode are,
at DEBUG); ``CardElements`` masks itself in ``repr``. What the gateway keeps of a card is what
``bind_confirm`` returns: token, masked number, bank, card type and limits.

How answers map, where it is not obvious:

- A consumption answered ``00`` is only *accepted*: ``PENDING`` until the notification or a
  query brings the issuer's result. A refund likewise.
- A consumption answered ``12`` (the orderId is taken) is ``UNKNOWN``: it may be paid; query.
- A query answered ``34`` is ``FAILED``/``ORDER_NOT_FOUND``: the channel records every
  consumption it accepts at once, so nothing was (or can be, under this request) charged. A
  refund query answered ``34`` is ``FAILED``/``REFUND_NOT_FOUND``: sending the refund again with
  the same refund number is safe.
- Any other refusal of a query says nothing about the payment: ``UNKNOWN``.
- Error codes are the stable names of ``protocol.RESPONSE_CODES`` (``SMS_CODE_WRONG``,
  ``CARD_LIMIT_EXCEEDED``...); the numeric respCode stays in ``raw``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

import httpx

from clearhouse.clock import Clock, SystemClock
from clearhouse.errors import ClearhouseError, MoneyError
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
from clearhouse.gateway.channels.quickpay import (
    BindChallenge,
    BoundCard,
    CardElements,
    CardResult,
    CardStatus,
)
from clearhouse.gateway.channels.quickpay import protocol as qp
from clearhouse.gateway.channels.quickpay.protocol import BadAnswer, QuickpayCredentials
from clearhouse.gateway.channels.transport import NoAnswer
from clearhouse.money import Money

_log = logging.getLogger(__name__)
_CARD_TYPES = {"01": "debit", "02": "credit"}
_IN_PROGRESS = frozenset({"03", "05"})  # a result not known yet


class FileUnavailable(ClearhouseError):
    """The daily file could not be fetched (``details["reason"]`` says why)."""

    code = "FILE_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class _Reply:
    raw: str
    data: dict[str, str]

    @property
    def code(self) -> str:
        return self.data["respCode"]

    @property
    def ok(self) -> bool:
        return self.code == qp.SUCCESS

    @property
    def unclear(self) -> bool:
        return self.code in qp.UNCLEAR_CODES

    @property
    def error(self) -> str:
        return qp.code_name(self.code)

    def card_status(self) -> CardStatus:
        if self.ok:
            return CardStatus.OK
        return CardStatus.UNKNOWN if self.unclear else CardStatus.REFUSED


class QuickpayAdapter(transport.HttpAdapter):
    def __init__(
        self,
        credentials: QuickpayCredentials,
        base_url: str,
        timeout: float = 10.0,
        clock: Clock | None = None,
        name: str = "quickpay",
        client: httpx.Client | None = None,
    ) -> None:
        """``name``: this channel instance (several may run over the same card network, each
        with its own merchant number, keys and limits)."""
        self.name = name
        self._creds = credentials.merchant_view()
        self._key = self._creds.require_merchant_key()
        self._base = base_url.rstrip("/")
        self._clock = clock or SystemClock()
        super().__init__(client, timeout)

    # --- cards ---------------------------------------------------------------------------------

    def bind_start(self, elements: CardElements, request_id: str | None = None) -> BindChallenge:
        """Real-name verification and the SMS code. Call again with the same ``request_id`` to
        resend the code (wrong tries still count)."""
        request_id = request_id or f"bd{qp.format_time(self._clock.now())}{secrets.token_hex(6)}"
        sensitive = {"certifId": elements.id_number, "phoneNo": elements.phone or ""}
        if elements.expiry:
            sensitive["expired"] = qp.expiry_to_wire(elements.expiry)
        sensitive["cvn2"] = elements.cvv or ""
        clear = {"customerNm": elements.holder_name, "certifTp": qp.CERT_TYPE_ID_CARD}
        pub = self._creds.encrypt_public_key_pem
        fields = {
            "orderId": request_id,
            "accNo": qp.encrypt(elements.card_no, pub),
            "customerInfo": qp.pack_customer_info(clear, sensitive, pub),
            "encryptCertId": self._creds.encrypt_cert_id,
        }
        try:
            reply = self._call(qp.BACK_TRANS_PATH, qp.BIND_OPEN, fields)
        except NoAnswer as exc:
            return BindChallenge(CardStatus.UNKNOWN, exc.raw, request_id, error_code=exc.error_code)
        if not reply.ok:
            return BindChallenge(reply.card_status(), reply.raw, request_id, error_code=reply.error)
        return BindChallenge(
            CardStatus.OK,
            reply.raw,
            request_id,
            masked_phone=reply.data.get("maskedPhone"),
            expires_at=_time(reply.data.get("smsExpireTime")),
        )

    def bind_confirm(self, request_id: str, sms_code: str) -> BoundCard:
        info = qp.pack_customer_info({"smsCode": sms_code}, {}, self._creds.encrypt_public_key_pem)
        fields = {"orderId": request_id, "customerInfo": info}
        return self._bound(qp.BIND_CONFIRM, fields)

    def query_binding(self, token: str) -> BoundCard:
        return self._bound(qp.BIND_QUERY, {"token": token})

    def _bound(self, kind: tuple[str, str], fields: dict[str, str]) -> BoundCard:
        try:
            reply = self._call(qp.BACK_TRANS_PATH, kind, fields)
        except NoAnswer as exc:
            return BoundCard(CardStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if not reply.ok:
            return BoundCard(reply.card_status(), reply.raw, error_code=reply.error)
        data = reply.data
        try:
            return BoundCard(
                CardStatus.OK,
                reply.raw,
                token=data["token"],
                masked_card_no=data["maskedAccNo"],
                bank=data.get("issInsName"),
                bank_code=data.get("issInsCode"),
                card_type=_CARD_TYPES[data["cardType"]],
                single_limit=qp.parse_fen(data["singleLimit"]),
                daily_limit=qp.parse_fen(data["dailyLimit"]),
                issuer_single_limit=_fen(data.get("issSingleLimit")),
                issuer_daily_limit=_fen(data.get("issDailyLimit")),
            )
        except (KeyError, ValueError, MoneyError):
            return BoundCard(CardStatus.UNKNOWN, reply.raw, error_code="BAD_RESPONSE")

    def unbind(self, token: str) -> CardResult:
        return self._card_call(qp.UNBIND, {"token": token})

    def send_pay_sms(self, token: str, attempt_id: str, amount: Money) -> CardResult:
        """An SMS code for this payment to the card's registered phone (it goes back as the
        ``PayOrder``'s ``verification``); needed above the channel's small-amount exemption."""
        fields = {
            "orderId": attempt_id,
            "token": token,
            "txnAmt": qp.format_fen(amount),
            "currencyCode": qp.CURRENCY_CODE,
        }
        return self._card_call(qp.PAY_SMS, fields)

    def _card_call(self, kind: tuple[str, str], fields: dict[str, str]) -> CardResult:
        try:
            reply = self._call(qp.BACK_TRANS_PATH, kind, fields)
        except NoAnswer as exc:
            return CardResult(CardStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if not reply.ok:
            return CardResult(reply.card_status(), reply.raw, error_code=reply.error)
        return CardResult(
            CardStatus.OK,
            reply.raw,
            masked_phone=reply.data.get("maskedPhone"),
            expires_at=_time(reply.data.get("smsExpireTime")),
        )

    # --- payments ------------------------------------------------------------------------------

    def pay(self, order: PayOrder) -> ChannelResult:
        """A consumption of a bound card (``order.payer_id`` is the token). Above the channel's
        small-amount exemption ``order.verification`` must be the code from ``send_pay_sms``
        for this attempt and amount, or ``order.payer_verified`` (the merchant verified the
        payer's payment password); within it no code is needed (one sent anyway must be
        right)."""
        if order.amount.currency != qp.CURRENCY:
            why = f"quick pay settles CNY, not {order.amount.currency}"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_CURRENCY")
        if order.method is not PayMethod.CARD or not order.payer_id:
            why = "quick pay takes only a bound card (method card, payer_id the token)"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_METHOD")
        fields = {
            "orderId": order.attempt_id,
            "token": order.payer_id,
            "txnAmt": qp.format_fen(order.amount),
            "currencyCode": qp.CURRENCY_CODE,
            "backUrl": order.notify_url,
            "payTimeout": qp.format_time(order.expires_at),
            "orderDesc": order.description,
        }
        if order.verification is not None:
            fields["customerInfo"] = qp.pack_customer_info(
                {"smsCode": order.verification}, {}, self._creds.encrypt_public_key_pem
            )
        elif order.payer_verified:
            fields["authMethod"] = qp.AUTH_MERCHANT_PASSWORD
        try:
            reply = self._call(qp.BACK_TRANS_PATH, qp.CONSUME, fields)
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.ok:
            query_id = reply.data.get("queryId")
            return ChannelResult(ChannelStatus.PENDING, reply.raw, channel_txn_id=query_id)
        unclear = reply.unclear or reply.code == "12"
        status = ChannelStatus.UNKNOWN if unclear else ChannelStatus.FAILED
        return ChannelResult(status, reply.raw, error_code=reply.error)

    def query(self, attempt_id: str) -> ChannelResult:
        try:
            reply = self._call(qp.QUERY_PATH, qp.QUERY, {"orderId": attempt_id})
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.code == "34":
            return ChannelResult(ChannelStatus.FAILED, reply.raw, error_code="ORDER_NOT_FOUND")
        if not reply.ok:
            return ChannelResult(ChannelStatus.UNKNOWN, reply.raw, error_code=reply.error)
        if reply.data.get("origTxnType") != qp.CONSUME[0]:
            return ChannelResult(ChannelStatus.UNKNOWN, reply.raw, error_code="BAD_RESPONSE")
        return _payment_result(reply.data, reply.raw, reply.data.get("origRespCode", ""))

    def close(self, attempt_id: str) -> ChannelResult:
        """A consumption cannot be closed: the issuer answers at once. Closing asks whether it
        was charged; what was not charged can no longer be (its SMS code dies with it)."""
        found = self.query(attempt_id)
        if found.status is ChannelStatus.FAILED:
            return ChannelResult(ChannelStatus.CLOSED, found.raw, error_code=found.error_code)
        if found.status is ChannelStatus.SUCCEEDED:
            return ChannelResult(ChannelStatus.UNKNOWN, found.raw, error_code="ORDER_PAID")
        return ChannelResult(ChannelStatus.UNKNOWN, found.raw, error_code=found.error_code)

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, order: RefundOrder) -> RefundResult:
        if order.refund.currency != qp.CURRENCY:
            why = f"quick pay settles CNY, not {order.refund.currency}"
            return RefundResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_CURRENCY")
        fields = {
            "orderId": order.refund_no,  # the same on every retry: the channel deduplicates
            "origOrderId": order.attempt_id,
            "txnAmt": qp.format_fen(order.refund),
            "currencyCode": qp.CURRENCY_CODE,
            "backUrl": order.notify_url,
        }
        try:
            reply = self._call(qp.BACK_TRANS_PATH, qp.REFUND, fields)
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.ok:
            refund_id = reply.data.get("queryId")
            return RefundResult(ChannelStatus.PENDING, reply.raw, channel_refund_id=refund_id)
        if reply.code == "12":
            return self.query_refund(order.refund_no, order.attempt_id)
        status = ChannelStatus.UNKNOWN if reply.unclear else ChannelStatus.FAILED
        return RefundResult(status, reply.raw, error_code=reply.error)

    def query_refund(self, refund_no: str, attempt_id: str) -> RefundResult:
        try:
            reply = self._call(qp.QUERY_PATH, qp.QUERY, {"orderId": refund_no})
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.code == "34":
            return RefundResult(ChannelStatus.FAILED, reply.raw, error_code="REFUND_NOT_FOUND")
        if not reply.ok:
            return RefundResult(ChannelStatus.UNKNOWN, reply.raw, error_code=reply.error)
        data = reply.data
        if (data.get("origTxnType"), data.get("origOrderId")) != (qp.REFUND[0], attempt_id):
            return RefundResult(ChannelStatus.UNKNOWN, reply.raw, error_code="BAD_RESPONSE")
        return _refund_result(data, reply.raw, data.get("origRespCode", ""))

    # --- notifications -------------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        try:
            raw = body.decode("utf-8")
            data = qp.read_signed(raw, self._creds)
        except UnicodeDecodeError as exc:
            raise BadNotification("not a UTF-8 form body") from exc
        except BadAnswer as exc:
            raise BadNotification(str(exc)) from exc
        order_id, code = data.get("orderId", ""), data["respCode"]
        if data.get("txnType") == qp.CONSUME[0] and order_id:
            payment = _payment_result(data, raw, code)
            if payment.error_code == "BAD_RESPONSE":
                raise BadNotification("malformed consumption notification")
            return Notification(order_id, raw, payment=payment)
        if data.get("txnType") == qp.REFUND[0] and order_id and data.get("origOrderId"):
            refund = _refund_result(data, raw, code)
            if refund.error_code == "BAD_RESPONSE":
                raise BadNotification("malformed refund notification")
            return Notification(data["origOrderId"], raw, refund_no=order_id, refund=refund)
        raise BadNotification("not a consumption or refund notification")

    def ack(self, ok: bool) -> Ack:
        # The channel stops retrying only on HTTP 200 with the body "ok".
        return Ack(200, "ok", "text/plain") if ok else Ack(400, "fail", "text/plain")

    # --- the daily file ------------------------------------------------------------------------

    def download_file(self, day: date) -> bytes:
        """The reconciliation file of one Beijing business day (once that day is over)."""
        try:
            reply = self._call(qp.FILE_PATH, qp.FILE, {"settleDate": f"{day:%Y%m%d}"})
        except NoAnswer as exc:
            raise FileUnavailable("no usable answer", reason=exc.error_code) from exc
        if not reply.ok:
            raise FileUnavailable("the channel refused the file", reason=reply.error)
        try:
            return base64.b64decode(reply.data["fileContent"], validate=True)
        except (KeyError, binascii.Error) as exc:
            raise FileUnavailable("no file content", reason="BAD_RESPONSE") from exc

    # --- transport -----------------------------------------------------------------------------

    def _call(self, path: str, kind: tuple[str, str], fields: Mapping[str, str]) -> _Reply:
        params = {
            "version": qp.VERSION,
            "encoding": qp.ENCODING,
            "bizType": qp.BIZ_TYPE,
            "txnType": kind[0],
            "txnSubType": kind[1],
            "accessType": qp.ACCESS_TYPE,
            "channelType": qp.CHANNEL_TYPE,
            "merId": self._creds.mer_id,
            "txnTime": qp.format_time(self._clock.now()),
            **fields,
        }
        signed = qp.sign(params, self._creds.cert_id, self._key)
        order_id = fields.get("orderId", "")
        headers = {"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}
        try:
            response = transport.request(
                self._http,
                "POST",
                self._base + path,
                content=qp.encode_form(signed),
                headers=headers,
            )
        except NoAnswer as exc:
            _log.debug("%s %s/%s order=%s: %s", self.name, *kind, order_id, exc.error_code)
            raise
        raw = response.text
        if response.status_code != 200:
            raise NoAnswer("BAD_RESPONSE", f"HTTP {response.status_code}: {raw}")
        try:
            data = qp.read_signed(raw, self._creds)
        except BadAnswer as exc:
            raise NoAnswer(exc.kind, raw) from exc
        # A signed answer to some other request (replayed, or crossed) is no answer to this one.
        if (data.get("txnType"), data.get("orderId", "")) != (kind[0], order_id):
            raise NoAnswer("BAD_RESPONSE", raw)
        _log.debug("%s %s/%s order=%s -> %s", self.name, *kind, order_id, data["respCode"])
        return _Reply(raw, data)


def _time(text: str | None) -> datetime | None:
    return qp.parse_time(text) if text else None


def _fen(text: str | None) -> Money | None:
    return qp.parse_fen(text) if text else None


def _payment_result(data: Mapping[str, str], raw: str, code: str) -> ChannelResult:
    """A consumption's state from a query answer (``origRespCode``) or a notification
    (``respCode``)."""
    query_id = data.get("queryId")
    if code in _IN_PROGRESS:
        return ChannelResult(ChannelStatus.PENDING, raw, channel_txn_id=query_id)
    if code != qp.SUCCESS:
        error = qp.code_name(code) if code else "BAD_RESPONSE"
        return ChannelResult(ChannelStatus.FAILED, raw, channel_txn_id=query_id, error_code=error)
    try:
        amount = qp.parse_fen(data["txnAmt"])
        paid_at = qp.parse_time(data["completeTime"])
    except (KeyError, ValueError, MoneyError):
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    return ChannelResult(
        ChannelStatus.SUCCEEDED, raw, channel_txn_id=query_id, amount=amount, paid_at=paid_at
    )


def _refund_result(data: Mapping[str, str], raw: str, code: str) -> RefundResult:
    refund_id = data.get("queryId")
    if code in _IN_PROGRESS:
        return RefundResult(ChannelStatus.PENDING, raw, channel_refund_id=refund_id)
    if code != qp.SUCCESS:
        error = qp.code_name(code) if code else "BAD_RESPONSE"
        return RefundResult(
            ChannelStatus.FAILED, raw, channel_refund_id=refund_id, error_code=error
        )
    try:
        amount = qp.parse_fen(data["txnAmt"])
        refunded_at = qp.parse_time(data["completeTime"])
    except (KeyError, ValueError, MoneyError):
        return RefundResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    return RefundResult(
        ChannelStatus.SUCCEEDED,
        raw,
        channel_refund_id=refund_id,
        amount=amount,
        refunded_at=refunded_at,
    )
