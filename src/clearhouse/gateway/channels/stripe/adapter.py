"""The Stripe API adapter: ``ChannelPort`` over form-encoded HTTPS with the secret key.

Stripe takes only card payments here (``PayMethod.CARD``: ``payer_id`` is a PaymentMethod the
account already holds, ``pm_...``), created and confirmed in one call. Every state-changing call
carries an ``Idempotency-Key`` derived from our own reference (``pay-<attempt_id>``,
``refund-<refund_no>``), so a retry after a timeout replays Stripe's first answer instead of
charging or refunding twice (Stripe keeps keys for 24 hours).

How Stripe's answers map, where it is not obvious:

- 402 is a declined card: ``FAILED`` with the ``decline_code`` (or the error code).
- ``idempotency_error`` (our key with other parameters), 409 (the same key in flight), 429 and
  5xx are ``UNKNOWN``: the first request may have done its work.
- Stripe has no lookup by our reference, so ``query`` uses the search API on
  ``metadata['attempt_id']``. Search lags writes (under a minute, longer in incidents), so
  "nothing found" is ``UNKNOWN``/``NOT_FOUND``, never a refusal; ``close`` finding nothing is
  ``CLOSED`` (there is nothing to cancel; a payment that surfaces later arrives by webhook as a
  late payment to refund).
- Refunds are found by listing the PaymentIntent's refunds (lists are consistent) and matching
  ``metadata[refund_no]``; none found is ``FAILED``/``REFUND_NOT_FOUND``: no money moved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

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
from clearhouse.gateway.channels.stripe import protocol
from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.gateway.channels.transport import NoAnswer, segment
from clearhouse.money import Money

PAYOUT_REPORT = "payout_reconciliation.itemized.5"  # the report a run asks for by default

_PI_STATES = {
    "succeeded": ChannelStatus.SUCCEEDED,
    "processing": ChannelStatus.PENDING,
    "requires_capture": ChannelStatus.PENDING,
    "requires_action": ChannelStatus.PENDING,  # the payer must authenticate (3-D Secure)
    "requires_confirmation": ChannelStatus.PENDING,
    "requires_payment_method": ChannelStatus.PENDING,  # FAILED when it carries an error
    "canceled": ChannelStatus.CLOSED,
}
_REFUND_STATES = {
    "pending": ChannelStatus.PENDING,
    "requires_action": ChannelStatus.PENDING,
    "succeeded": ChannelStatus.SUCCEEDED,
    "failed": ChannelStatus.FAILED,
    "canceled": ChannelStatus.FAILED,
}
_PAGE = 100


class ReportUnavailable(ClearhouseError):
    """A report or a balance listing could not be fetched (``details["reason"]`` says why)."""

    code = "REPORT_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    text: str
    data: dict[str, Any]

    @property
    def error(self) -> dict[str, Any]:
        error = self.data.get("error")
        return error if isinstance(error, dict) else {}


class StripeAdapter(transport.HttpAdapter):
    name = "stripe"

    def __init__(
        self,
        credentials: StripeCredentials,
        base_url: str = "https://api.stripe.com",
        timeout: float = 10.0,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
        files_url: str | None = None,
    ) -> None:
        """``clock`` checks webhook timestamps; ``files_url`` is where report files are fetched
        (files.stripe.com; the API's base by default, as the sandbox serves both)."""
        self._creds = credentials.merchant_view()
        self._clock = clock or SystemClock()
        super().__init__(client, timeout, base_url)
        self._files_url = (files_url or base_url).rstrip("/")

    # --- payments ------------------------------------------------------------------------------

    def pay(self, order: PayOrder) -> ChannelResult:
        if order.method is not PayMethod.CARD or not order.payer_id:
            why = f"Stripe takes a card on file (payer_id pm_...), not {order.method.value}"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_METHOD")
        params = {
            "amount": order.amount.amount,
            "currency": order.amount.currency.lower(),
            "payment_method": order.payer_id,
            "payment_method_types": ["card"],
            "confirm": True,
            "capture_method": "automatic",
            "description": order.description,
            "metadata": {"attempt_id": order.attempt_id},
            "expand": ["latest_charge.balance_transaction"],
        }
        try:
            reply = self._call("POST", "/v1/payment_intents", params, f"pay-{order.attempt_id}")
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status != 200:
            return self._payment_refusal(reply)
        return _payment_result(reply.data, reply.text, order.attempt_id)

    def query(self, attempt_id: str) -> ChannelResult:
        try:
            found, reply = self._find_intent(attempt_id)
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status != 200:
            return self._payment_refusal(reply)
        if found is None:
            return ChannelResult(ChannelStatus.UNKNOWN, reply.text, error_code="NOT_FOUND")
        return _payment_result(found, _text(found), attempt_id)

    def close(self, attempt_id: str) -> ChannelResult:
        try:
            found, reply = self._find_intent(attempt_id)
            if reply.status != 200:
                return self._payment_refusal(reply)
            if found is None:
                return ChannelResult(ChannelStatus.CLOSED, reply.text, error_code="NOT_FOUND")
            if found.get("status") in ("succeeded", "canceled"):
                return _payment_result(found, _text(found), attempt_id)
            target = f"/v1/payment_intents/{segment(str(found['id']))}/cancel"
            reply = self._call("POST", target, {}, f"close-{attempt_id}")
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status != 200:
            return self._payment_refusal(reply)
        return _payment_result(reply.data, reply.text, attempt_id)

    def _find_intent(self, attempt_id: str) -> tuple[dict[str, Any] | None, _Reply]:
        """The PaymentIntent carrying ``metadata[attempt_id]``; a succeeded one wins if several
        (there should be one: creation is idempotent on the attempt)."""
        escaped = attempt_id.replace("\\", "\\\\").replace("'", "\\'")
        params = {
            "query": f"metadata['attempt_id']:'{escaped}'",
            "limit": _PAGE,
            "expand": ["data.latest_charge.balance_transaction"],
        }
        reply = self._call("GET", "/v1/payment_intents/search", params)
        data = reply.data.get("data")
        if reply.status != 200 or not isinstance(data, list):
            return None, reply
        intents = [i for i in data if isinstance(i, dict)]
        intents.sort(key=lambda i: i.get("status") != "succeeded")
        return (intents[0] if intents else None), reply

    def _payment_refusal(self, reply: _Reply) -> ChannelResult:
        status, code = _refusal(reply)
        return ChannelResult(status, reply.text, error_code=code)

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, order: RefundOrder) -> RefundResult:
        try:
            found, reply = self._find_intent(order.attempt_id)
            if reply.status != 200:
                status, code = _refusal(reply)
                return RefundResult(status, reply.text, error_code=code)
            if found is None:
                return RefundResult(ChannelStatus.UNKNOWN, reply.text, error_code="NOT_FOUND")
            params = {
                "payment_intent": found["id"],
                "amount": order.refund.amount,
                "reason": "requested_by_customer",
                "metadata": {
                    "refund_no": order.refund_no,
                    "attempt_id": order.attempt_id,
                    "reason": order.reason[:500],
                },
            }
            reply = self._call("POST", "/v1/refunds", params, f"refund-{order.refund_no}")
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status != 200:
            status, code = _refusal(reply)
            return RefundResult(status, reply.text, error_code=code)
        return _refund_result(reply.data, reply.text)

    def query_refund(self, refund_no: str, attempt_id: str) -> RefundResult:
        try:
            found, reply = self._find_intent(attempt_id)
            if reply.status != 200:
                status, code = _refusal(reply)
                return RefundResult(status, reply.text, error_code=code)
            if found is None:
                return RefundResult(ChannelStatus.UNKNOWN, reply.text, error_code="NOT_FOUND")
            refunds = self._list("/v1/refunds", {"payment_intent": found["id"]})
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        for refund in refunds:
            if (refund.get("metadata") or {}).get("refund_no") == refund_no:
                return _refund_result(refund, _text(refund))
        why = f"no refund with metadata refund_no {refund_no!r} on {found['id']}"
        return RefundResult(ChannelStatus.FAILED, why, error_code="REFUND_NOT_FOUND")

    # --- notifications -------------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            protocol.verify_signature(
                body,
                lower.get(protocol.SIGNATURE_HEADER.lower(), ""),
                self._creds.webhook_secret,
                self._clock.now(),
            )
        except protocol.SignatureError as exc:
            raise BadNotification(exc.message, reason=exc.code) from None
        try:
            event = json.loads(body)
            event_type, obj = event["type"], event["data"]["object"]
        except (ValueError, KeyError, TypeError):
            raise BadNotification("event does not parse") from None
        if not isinstance(obj, dict) or not isinstance(event_type, str):
            raise BadNotification("event has an unexpected shape")
        raw = json.dumps(obj)
        attempt_id = (obj.get("metadata") or {}).get("attempt_id")
        if not isinstance(attempt_id, str) or not attempt_id:
            raise BadNotification("event object without metadata attempt_id", event_type=event_type)
        if event_type.startswith("payment_intent.") and obj.get("object") == "payment_intent":
            payment = _payment_result(obj, raw, attempt_id, at=event.get("created"))
            if payment.status is ChannelStatus.UNKNOWN:
                raise BadNotification("payment event does not parse")
            return Notification(attempt_id, raw, payment=payment)
        if event_type.startswith("refund.") and obj.get("object") == "refund":
            refund = _refund_result(obj, raw, at=event.get("created"))
            refund_no = (obj.get("metadata") or {}).get("refund_no")
            if refund.status is ChannelStatus.UNKNOWN or not isinstance(refund_no, str):
                raise BadNotification("refund event does not parse")
            return Notification(attempt_id, raw, refund_no=refund_no, refund=refund)
        raise BadNotification("unsupported event type", event_type=event_type)

    def ack(self, ok: bool) -> Ack:
        """Stripe takes any 2xx as delivered and retries anything else for three days."""
        if ok:
            return Ack(200, '{"received":true}', "application/json")
        return Ack(400, '{"received":false}', "application/json")

    # --- reconciliation ------------------------------------------------------------------------

    def list_balance_transactions(
        self,
        payout: str | None = None,
        type: str | None = None,  # Stripe's parameter name
        created_gte: datetime | None = None,
        created_lt: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Every matching balance transaction, newest first, across pages; raises
        ``ReportUnavailable``."""
        created = {
            k: int(v.timestamp()) for k, v in (("gte", created_gte), ("lt", created_lt)) if v
        }
        params: dict[str, Any] = {"payout": payout, "type": type, "created": created or None}
        try:
            return self._list("/v1/balance_transactions", params)
        except NoAnswer as exc:
            raise ReportUnavailable(exc.raw, reason=exc.error_code) from None

    def download_report(
        self,
        payout: str | None = None,
        interval_start: datetime | None = None,
        interval_end: datetime | None = None,
        timezone: str = "Etc/UTC",
        report_type: str = PAYOUT_REPORT,
        columns: Sequence[str] | None = None,
    ) -> bytes:
        """Run a report (by default payout reconciliation) and fetch its CSV; raises
        ``ReportUnavailable`` (also while the run is still pending: ``report_file`` it again
        later)."""
        run_id = self.start_report_run(
            payout, interval_start, interval_end, timezone, report_type, columns
        )
        data = self.report_file(run_id)
        if data is None:
            raise ReportUnavailable(f"report run {run_id} is pending", reason="NOT_READY")
        return data

    def start_report_run(
        self,
        payout: str | None = None,
        interval_start: datetime | None = None,
        interval_end: datetime | None = None,
        timezone: str = "Etc/UTC",
        report_type: str = PAYOUT_REPORT,
        columns: Sequence[str] | None = None,
    ) -> str:
        """Start a report run (``POST /v1/reporting/report_runs``); its id. ``columns`` picks
        and orders the file's columns (the report type's defaults when None). Raises
        ``ReportUnavailable``."""
        parameters: dict[str, Any] = {
            "timezone": timezone,
            "payout": payout,
            "columns": list(columns) if columns else None,
        }
        for name, instant in (("interval_start", interval_start), ("interval_end", interval_end)):
            if instant is not None:
                parameters[name] = int(instant.astimezone(UTC).timestamp())
        params = {"report_type": report_type, "parameters": parameters}
        try:
            reply = self._call("POST", "/v1/reporting/report_runs", params)
        except NoAnswer as exc:
            raise ReportUnavailable(exc.raw, reason=exc.error_code) from None
        run_id = reply.data.get("id")
        if reply.status != 200:
            raise ReportUnavailable(reply.text, reason=_refusal(reply)[1])
        if not isinstance(run_id, str) or not run_id:
            raise ReportUnavailable(reply.text, reason="BAD_RESPONSE")
        return run_id

    def report_file(self, run_id: str) -> bytes | None:
        """The file of a report run once it has succeeded, None while it is pending
        (``GET /v1/reporting/report_runs/{id}``). Raises ``ReportUnavailable`` (reason
        ``REPORT_FAILED`` for a run that failed)."""
        try:
            reply = self._call("GET", f"/v1/reporting/report_runs/{segment(run_id)}", {})
            if reply.status != 200:
                raise ReportUnavailable(reply.text, reason=_refusal(reply)[1])
            status, result = reply.data.get("status"), reply.data.get("result")
            if status == "pending":
                return None
            if status != "succeeded" or not isinstance(result, dict):
                raise ReportUnavailable(reply.text, reason="REPORT_FAILED")
            # Only the file's id is followed, on our files host: the key never goes to a host
            # named by the answer.
            target = f"{self._files_url}/v1/files/{segment(str(result.get('id')))}/contents"
            response = transport.request(self._http, "GET", target, headers=self._headers())
        except NoAnswer as exc:
            raise ReportUnavailable(exc.raw, reason=exc.error_code) from None
        if response.status_code != 200:
            raise ReportUnavailable(response.text, reason=f"HTTP_{response.status_code}")
        return response.content

    # --- transport -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._creds.secret_key}",
            "Stripe-Version": protocol.API_VERSION,
            "Accept": "application/json",
            "User-Agent": "clearhouse-stripe/1",
        }

    def _call(
        self,
        method: str,
        target: str,
        params: Mapping[str, Any],
        idempotency_key: str | None = None,
    ) -> _Reply:
        """Send a request; return its parsed answer or raise ``NoAnswer``."""
        headers = self._headers()
        form = protocol.encode_form(params)
        if method == "GET":
            response = transport.request(
                self._http, method, f"{target}?{form}" if form else target, headers=headers
            )
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            response = transport.request(
                self._http, method, target, content=form.encode(), headers=headers
            )
        text = response.text
        data = _json_object(response.content)
        if data is None:
            code = f"HTTP_{response.status_code}" if response.status_code >= 500 else "BAD_RESPONSE"
            raise NoAnswer(code, text)
        return _Reply(response.status_code, text, data)

    def _list(self, target: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            reply = self._call("GET", target, {**params, "limit": _PAGE, "starting_after": cursor})
            data = reply.data.get("data")
            if reply.status != 200 or not isinstance(data, list):
                raise NoAnswer(_refusal(reply)[1], reply.text)
            items.extend(d for d in data if isinstance(d, dict))
            if not reply.data.get("has_more") or not data:
                return items
            cursor = str(data[-1].get("id"))


def _refusal(reply: _Reply) -> tuple[ChannelStatus, str]:
    """A non-200 answer: a declined card or a clear refusal is FAILED with Stripe's code; a key
    reuse, a conflict, throttling and server errors are UNKNOWN (the caller must query)."""
    error = reply.error
    code = error.get("decline_code") or error.get("code") or error.get("type")
    code = code if isinstance(code, str) and code else f"HTTP_{reply.status}"
    if error.get("type") == "idempotency_error":
        return ChannelStatus.UNKNOWN, "idempotency_error"
    if reply.status >= 500 or reply.status in (409, 429):
        return ChannelStatus.UNKNOWN, code
    if 400 <= reply.status < 500:
        return ChannelStatus.FAILED, code
    return ChannelStatus.UNKNOWN, "BAD_RESPONSE"


def _payment_result(
    data: Mapping[str, Any], raw: str, attempt_id: str, at: object = None
) -> ChannelResult:
    status = _PI_STATES.get(str(data.get("status")))
    metadata = data.get("metadata") or {}
    if status is None or metadata.get("attempt_id") != attempt_id:
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    error = data.get("last_payment_error")
    code = None
    if data.get("status") == "requires_payment_method" and isinstance(error, dict):
        status = ChannelStatus.FAILED
        code = str(error.get("decline_code") or error.get("code") or "payment_failed")
    try:
        currency = str(data["currency"]).upper()
        received = data.get("amount_received") or 0
        amount = Money(received if status is ChannelStatus.SUCCEEDED else data["amount"], currency)
        paid_at = (
            _paid_at(data.get("latest_charge"), at) if status is ChannelStatus.SUCCEEDED else None
        )
    except (KeyError, ValueError, TypeError, ClearhouseError):
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    return ChannelResult(
        status,
        raw,
        channel_txn_id=str(data["id"]) if data.get("id") else None,
        amount=amount,
        paid_at=paid_at,
        error_code=code,
        fx_rate=_fx_rate(data.get("latest_charge"), currency),
    )


def _fx_rate(charge: object, currency: str) -> Decimal | None:
    """The rate of the charge's balance transaction when it settled in another currency (it
    must have been expanded); None otherwise, or when the rate is not an exact number."""
    txn = charge.get("balance_transaction") if isinstance(charge, dict) else None
    if not isinstance(txn, dict) or str(txn.get("currency", "")).upper() == currency:
        return None
    rate = txn.get("exchange_rate")
    if isinstance(rate, int) and not isinstance(rate, bool):
        rate = Decimal(rate)
    return rate if isinstance(rate, Decimal) and rate.is_finite() and rate > 0 else None


def _json_object(content: bytes) -> dict[str, Any] | None:
    """The answer's JSON object, fractions (exchange rates) read exactly; None if not one."""
    try:
        data = protocol.loads(content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _text(obj: Mapping[str, Any]) -> str:
    """An object of an answer as evidence text (its numbers as they came)."""
    return protocol.dumps(obj).decode()


def _paid_at(charge: object, at: object) -> datetime | None:
    """The charge's time when it was expanded, else the event's (a webhook has no charge)."""
    seconds = charge.get("created") if isinstance(charge, dict) else at
    return datetime.fromtimestamp(seconds, UTC) if isinstance(seconds, int) else None


def _refund_result(data: Mapping[str, Any], raw: str, at: object = None) -> RefundResult:
    state = str(data.get("status"))
    status = _REFUND_STATES.get(state)
    if status is None:
        return RefundResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    try:
        amount = Money(data["amount"], str(data["currency"]).upper())
    except (KeyError, ValueError, TypeError, ClearhouseError):
        return RefundResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    when = at if isinstance(at, int) else data.get("created")
    done = status is ChannelStatus.SUCCEEDED and isinstance(when, int)
    return RefundResult(
        status,
        raw,
        channel_refund_id=str(data["id"]) if data.get("id") else None,
        amount=amount,
        refunded_at=datetime.fromtimestamp(when, UTC) if done and isinstance(when, int) else None,
        error_code=str(data.get("failure_reason") or state)
        if status is ChannelStatus.FAILED
        else None,
    )
