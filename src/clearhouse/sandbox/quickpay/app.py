"""``QuickpaySandbox``: one simulated quick pay channel instance over HTTP. The gateway paths
(``/gateway/api/*.do``) verify the merchant's signature, decrypt the sensitive fields, let the
state decide and answer signed; control routes for tests and demos live under ``/sandbox``
(the SMS outbox, the daily file, orders, the fault plan).

Several instances may share one ``Issuers``: each has its own merchant keys, tokens and limits,
while the issuers' per-card limits hold across all of them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response

from clearhouse import fees
from clearhouse.clock import Clock
from clearhouse.errors import MoneyError
from clearhouse.fees import FeeSchedule
from clearhouse.gateway.channels.quickpay import protocol as qp
from clearhouse.gateway.channels.quickpay.protocol import QuickpayCredentials
from clearhouse.money import Money
from clearhouse.sandbox import control
from clearhouse.sandbox.faults import NO_FAULTS, Fault, FaultPlan
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.quickpay.banks import Issuers
from clearhouse.sandbox.quickpay.files import daily_file, file_name
from clearhouse.sandbox.quickpay.state import (
    DEFAULT_LIMITS,
    DEFAULT_SMS_EXEMPT,
    SMS_VALIDITY,
    Binding,
    ChannelLimits,
    QuickpayState,
    Refusal,
    SentSms,
    Txn,
)

FORM_UTF8 = "application/x-www-form-urlencoded;charset=UTF-8"
_log = logging.getLogger(__name__)
_ECHO = ("version", "encoding", "bizType", "txnType", "txnSubType", "accessType", "merId")
_REQUIRED = (*_ECHO, "signMethod", "certId", "signature", "txnTime")
_MUTATING = frozenset({qp.CONSUME, qp.REFUND})  # TIMEOUT lets their effect stand


@dataclass(frozen=True, slots=True)
class Answer:
    body: str
    delay_s: float = 0


def _required(params: dict[str, str], *names: str) -> list[str]:
    missing = [name for name in names if not params.get(name)]
    if missing:
        raise Refusal("13")
    return [params[name] for name in names]


class QuickpaySandbox:
    def __init__(
        self,
        credentials: QuickpayCredentials,
        issuers: Issuers,
        clock: Clock,
        *,
        name: str = "quickpay",
        faults: FaultPlan = NO_FAULTS,
        fee: FeeSchedule = fees.QUICKPAY,
        notifier: Notifier | None = None,
        limits: ChannelLimits = DEFAULT_LIMITS,
        sms_exempt: Money = DEFAULT_SMS_EXEMPT,
        timeout_delay_s: float = 15.0,
    ) -> None:
        """``credentials`` must hold the channel's private keys (the sandbox is the channel).
        ``sms_exempt``: consumptions up to this amount need no SMS code. ``timeout_delay_s``:
        how late the answer comes under a TIMEOUT fault."""
        self._sign_key, self._decrypt_key = credentials.require_channel_keys()
        self.name = name
        self.timeout_delay_s = timeout_delay_s
        self.state = QuickpayState(
            credentials,
            issuers,
            clock,
            faults,
            fee,
            notifier,
            limits,
            sms_exempt,
            self._notification_builder,
        )
        self._handlers: dict[tuple[str, str, str], Callable[[dict[str, str]], dict[str, str]]] = {
            (qp.BACK_TRANS_PATH, *qp.BIND_OPEN): self._bind_open,
            (qp.BACK_TRANS_PATH, *qp.BIND_CONFIRM): self._bind_confirm,
            (qp.BACK_TRANS_PATH, *qp.BIND_QUERY): self._bind_query,
            (qp.BACK_TRANS_PATH, *qp.UNBIND): self._unbind,
            (qp.BACK_TRANS_PATH, *qp.PAY_SMS): self._pay_sms,
            (qp.BACK_TRANS_PATH, *qp.CONSUME): self._consume,
            (qp.BACK_TRANS_PATH, *qp.REFUND): self._refund,
            (qp.QUERY_PATH, *qp.QUERY): self._query,
            (qp.FILE_PATH, *qp.FILE): self._file,
        }

    @property
    def credentials(self) -> QuickpayCredentials:
        return self.state.credentials

    @property
    def issuers(self) -> Issuers:
        return self.state.issuers

    @property
    def faults(self) -> FaultPlan:
        return self.state.faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        with self.state.lock:
            self.state.faults = plan

    @property
    def notifier(self) -> Notifier | None:
        return self.state.notifier

    def sms_outbox(self, phone: str) -> list[SentSms]:
        """Every SMS this channel sent to ``phone``, oldest first (test and demo only)."""
        with self.state.lock:
            return list(self.state.outbox.get(phone, []))

    def last_sms_code(self, phone: str) -> str:
        return self.sms_outbox(phone)[-1].code

    def transaction(self, order_id: str) -> Txn | None:
        with self.state.lock:
            return self.state.txns.get(order_id)

    def daily_file(self, day: date) -> str:
        with self.state.lock:
            lines = list(self.state.journal.get(day, []))
        return daily_file(self.credentials.mer_id, day, lines, self.state.clock.now())

    # -- messages ------------------------------------------------------------------------------

    def handle(self, path: str, raw: str) -> Answer:
        """One request to a gateway path; the answer is always signed and never echoes a
        sensitive field."""
        try:
            params = qp.decode_form(raw)
        except ValueError:
            params = {}
        echo = {name: params.get(name, "") for name in (*_ECHO, "orderId", "txnTime")}
        kind = (params.get("txnType", ""), params.get("txnSubType", ""))
        try:
            handler = self._check(path, params)
            with self.state.lock:
                fields = handler(params)
        except Refusal as refusal:
            return self._answer(echo, refusal.code, {})
        except (ValueError, MoneyError):
            return self._answer(echo, "10", {})
        delay = 0.0
        if kind in _MUTATING and self.faults.hits(Fault.TIMEOUT, params.get("orderId", "")):
            delay = self.timeout_delay_s
        return self._answer(echo, qp.SUCCESS, fields, delay)

    def _check(self, path: str, params: dict[str, str]) -> Callable[[dict[str, str]], Any]:
        if not params:
            raise Refusal("10")
        _required(params, *_REQUIRED)
        creds = self.credentials
        if params["merId"] != creds.mer_id:
            raise Refusal("32")
        if params["certId"] != creds.cert_id or not qp.verify(
            params, creds.merchant_public_key_pem
        ):
            raise Refusal("11")
        if (params["version"], params["bizType"]) != (qp.VERSION, qp.BIZ_TYPE):
            raise Refusal("10")
        handler = self._handlers.get((path, params["txnType"], params["txnSubType"]))
        if handler is None:
            raise Refusal("32")
        return handler

    def _answer(
        self, echo: dict[str, str], code: str, fields: dict[str, str], delay: float = 0
    ) -> Answer:
        _log.debug("%s %s/%s -> %s", self.name, echo["txnType"], echo["txnSubType"], code)
        params = {**echo, **fields, "respCode": code, "respMsg": qp.code_message(code)}
        params = {k: v for k, v in params.items() if v}
        signed = qp.sign(params, self.credentials.channel_cert_id, self._sign_key)
        return Answer(qp.encode_form(signed), delay)

    def _decrypted(self, params: dict[str, str], name: str) -> str:
        if params.get("encryptCertId") != self.credentials.encrypt_cert_id:
            raise Refusal("10")
        return qp.decrypt(_required(params, name)[0], self._decrypt_key)

    def _customer(self, params: dict[str, str]) -> dict[str, str]:
        blob = params.get("customerInfo")
        if not blob:
            return {}
        if params.get("encryptCertId", self.credentials.encrypt_cert_id) != (
            self.credentials.encrypt_cert_id
        ):
            raise Refusal("10")
        return qp.unpack_customer_info(blob, self._decrypt_key)

    def _order_id(self, params: dict[str, str]) -> str:
        order_id = _required(params, "orderId")[0]
        if not qp.ORDER_ID.fullmatch(order_id):
            raise Refusal("10")
        return order_id

    def _bind_open(self, params: dict[str, str]) -> dict[str, str]:
        card_no = self._decrypted(params, "accNo")
        elements = self._customer(params)
        if elements.get("certifTp") != qp.CERT_TYPE_ID_CARD:
            raise Refusal("13")
        _required(elements, "customerNm", "certifId")
        request = self.state.bind_open(self._order_id(params), card_no, elements)
        challenge = request.challenge
        return {
            "maskedPhone": qp.mask_phone(challenge.phone),
            "smsExpireTime": qp.format_time(challenge.sent_at + SMS_VALIDITY),
        }

    def _bind_confirm(self, params: dict[str, str]) -> dict[str, str]:
        (sms_code,) = _required(self._customer(params), "smsCode")
        return self._binding_fields(self.state.bind_confirm(self._order_id(params), sms_code))

    def _bind_query(self, params: dict[str, str]) -> dict[str, str]:
        return self._binding_fields(self.state.binding(_required(params, "token")[0]))

    def _unbind(self, params: dict[str, str]) -> dict[str, str]:
        return {"token": self.state.unbind(_required(params, "token")[0]).token}

    def _binding_fields(self, binding: Binding) -> dict[str, str]:
        single, daily = self.state.limits.of(binding.kind)
        card = self.issuers.card(binding.card_no)
        if card is None:
            raise Refusal("61")
        return {
            "token": binding.token,
            "maskedAccNo": qp.mask_card(binding.card_no),
            "issInsCode": card.issuer.code,
            "issInsName": binding.bank,
            "cardType": binding.kind.value,
            "singleLimit": qp.format_fen(single),
            "dailyLimit": qp.format_fen(daily),
            "issSingleLimit": qp.format_fen(card.single_limit),
            "issDailyLimit": qp.format_fen(card.daily_limit),
        }

    def _amount(self, params: dict[str, str]) -> Money:
        (amount, currency) = _required(params, "txnAmt", "currencyCode")
        if currency != qp.CURRENCY_CODE:
            raise Refusal("10")
        return qp.parse_fen(amount)

    def _pay_sms(self, params: dict[str, str]) -> dict[str, str]:
        (token,) = _required(params, "token")
        sms = self.state.send_pay_sms(self._order_id(params), token, self._amount(params))
        return {
            "maskedPhone": qp.mask_phone(sms.challenge.phone),
            "smsExpireTime": qp.format_time(sms.challenge.sent_at + SMS_VALIDITY),
        }

    def _consume(self, params: dict[str, str]) -> dict[str, str]:
        token, back_url = _required(params, "token", "backUrl")
        timeout = params.get("payTimeout")
        txn = self.state.consume(
            self._order_id(params),
            token,
            self._amount(params),
            self._customer(params).get("smsCode"),
            back_url,
            qp.parse_time(params["txnTime"]),
            qp.parse_time(timeout) if timeout else None,
            merchant_verified=params.get("authMethod") == qp.AUTH_MERCHANT_PASSWORD,
        )
        return {"queryId": txn.query_id, "txnAmt": qp.format_fen(txn.amount)}

    def _refund(self, params: dict[str, str]) -> dict[str, str]:
        (orig,) = _required(params, "origOrderId")
        txn = self.state.refund(
            self._order_id(params),
            orig,
            self._amount(params),
            params.get("backUrl", ""),
            qp.parse_time(params["txnTime"]),
        )
        return {"queryId": txn.query_id, "origOrderId": orig, "txnAmt": qp.format_fen(txn.amount)}

    def _query(self, params: dict[str, str]) -> dict[str, str]:
        txn = self.state.txns.get(self._order_id(params))
        if txn is None:
            raise Refusal("34")
        return {**self._result_fields(txn, txn.query_id), "origTxnType": txn.txn_type}

    def _result_fields(self, txn: Txn, query_id: str) -> dict[str, str]:
        fields = {
            "queryId": query_id,
            "txnAmt": qp.format_fen(txn.amount),
            "currencyCode": qp.CURRENCY_CODE,
            "origRespCode": txn.result,
            "origRespMsg": qp.code_message(txn.result),
            "origOrderId": txn.orig_order_id,
        }
        if txn.completed_at is not None:
            fields["completeTime"] = qp.format_time(txn.completed_at)
            fields["settleDate"] = f"{qp.business_day(txn.completed_at):%Y%m%d}"
        return fields

    def _file(self, params: dict[str, str]) -> dict[str, str]:
        (text,) = _required(params, "settleDate")
        day = datetime.strptime(text, "%Y%m%d").date()
        # A day's file exists once that Beijing day is over.
        if day >= qp.business_day(self.state.clock.now()):
            raise Refusal("98")
        content = self.daily_file(day).encode("utf-8")
        return {
            "settleDate": text,
            "fileName": file_name(self.credentials.mer_id, day),
            "fileContent": base64.b64encode(content).decode("ascii"),
        }

    def _notification_builder(
        self, txn: Txn, query_id: str
    ) -> Callable[[], tuple[bytes, dict[str, str]]]:
        def build() -> tuple[bytes, dict[str, str]]:
            with self.state.lock:
                fields = self._result_fields(txn, query_id)
            # The notification's respCode is the transaction's result.
            result, message = fields.pop("origRespCode"), fields.pop("origRespMsg")
            subtype = qp.CONSUME[1] if txn.txn_type == qp.CONSUME[0] else qp.REFUND[1]
            params = {
                "version": qp.VERSION,
                "encoding": qp.ENCODING,
                "bizType": qp.BIZ_TYPE,
                "txnType": txn.txn_type,
                "txnSubType": subtype,
                "accessType": qp.ACCESS_TYPE,
                "merId": self.credentials.mer_id,
                "orderId": txn.order_id,
                "txnTime": qp.format_time(txn.txn_time),
                **fields,
                "respCode": result,
                "respMsg": message,
            }
            params = {k: v for k, v in params.items() if v}
            signed = qp.sign(params, self.credentials.channel_cert_id, self._sign_key)
            headers = {"Content-Type": FORM_UTF8}
            return qp.encode_form(signed).encode("ascii"), headers

        return build


def _txn_json(txn: Txn) -> dict[str, Any]:
    return {
        "order_id": txn.order_id,
        "txn_type": txn.txn_type,
        "query_id": txn.query_id,
        "result": txn.result,
        "amount": txn.amount.amount,
        "fee": txn.fee.amount,
        "refunded": txn.refunded.amount,
        "card": qp.mask_card(txn.card_no),
        "completed_at": txn.completed_at.isoformat() if txn.completed_at else None,
    }


def create_app(sandbox: QuickpaySandbox) -> FastAPI:
    app = FastAPI(title=f"{sandbox.name} sandbox", docs_url="/sandbox/docs", openapi_url=None)

    async def gateway(request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", errors="replace")
        answer = sandbox.handle(request.url.path, raw)
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return Response(answer.body, media_type=FORM_UTF8)

    for path in (qp.BACK_TRANS_PATH, qp.QUERY_PATH, qp.FILE_PATH):
        app.add_api_route(path, gateway, methods=["POST"])

    @app.get("/sandbox/sms/{phone}")
    def sms(phone: str) -> list[dict[str, str]]:
        return [
            {"code": s.code, "text": s.text, "sent_at": s.sent_at.isoformat()}
            for s in sandbox.sms_outbox(phone)
        ]

    @app.get("/sandbox/files/{day}")
    def file(day: str) -> Response:
        try:
            parsed = datetime.strptime(day, "%Y%m%d").date()
        except ValueError:
            raise HTTPException(404, "no such file") from None
        name = file_name(sandbox.credentials.mer_id, parsed)
        return Response(
            sandbox.daily_file(parsed),
            media_type="text/plain;charset=UTF-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/sandbox/orders/{order_id}")
    def order(order_id: str) -> dict[str, Any]:
        txn = sandbox.transaction(order_id)
        if txn is None:
            raise HTTPException(404, "no such order")
        return _txn_json(txn)

    control.fault_routes(app, sandbox)

    return app
