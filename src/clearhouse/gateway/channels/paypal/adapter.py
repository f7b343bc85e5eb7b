"""The PayPal Orders v2 adapter: ``ChannelPort`` over PayPal's REST API with OAuth2 client
credentials.

Approval is not payment. ``pay`` creates an order (intent CAPTURE) and answers ``PENDING`` with
the approval URL the payer is sent to; money moves only when the order is captured, which
``query`` does once it finds the order ``APPROVED``. Every state-changing call carries a
``PayPal-Request-Id`` derived from our own numbers (the attempt id; the attempt id plus
``:capture``; the refund number), so a retry after a lost answer repeats the call instead of
making a second order, capture or refund.

Finding an order again. PayPal cannot look an order up by our reference: the order id comes
only in the create answer. The adapter keeps attempt id -> order id in memory (``order_ids``),
and reads it back from what the gateway stored otherwise (after a restart, or in another
worker): the attempt's ``credential`` is the approval link of ``pay``'s ``PENDING`` answer,
which carries the order id as its ``token`` (``stored_link``, given by the gateway's wiring).
The attempt's ``channel_txn_id`` does not serve: it becomes the capture's id once paid, and
refunds need the order. When neither is there because the create answer was lost, the adapter
replays the create call with the same body and ``PayPal-Request-Id``, which PayPal answers with
the order it made the first time (its documented idempotency, kept 6 hours by default); that
needs the body this process sent. Without any of them, ``query`` is
``UNKNOWN``/``ORDER_ID_UNKNOWN``: the payer never got a link, so no money can have moved.

How PayPal's answers map, where it is not obvious:

- ``CREATED``/``PAYER_ACTION_REQUIRED``: ``PENDING``; ``VOIDED``: ``CLOSED``; an order PayPal no
  longer knows (404) was never approved and has expired: ``CLOSED``.
- A capture answered ``ORDER_NOT_APPROVED`` is ``PENDING``; ``ORDER_ALREADY_CAPTURED`` sends the
  adapter to read the order; a capture ``DECLINED``/``FAILED`` is ``FAILED`` with that status.
- ``close``: Orders v2 has no call to cancel a CAPTURE order; an order nobody captures moves no
  money and expires. So ``close`` answers ``CLOSED`` for any order not captured, and this adapter
  never captures a closed attempt afterwards (the gateway's own attempt state is the durable
  guard). A completed order is ``UNKNOWN``/``ORDER_COMPLETED``: it is paid, query it.
- A refund query that finds no refund under our number is ``FAILED``/``REFUND_NOT_FOUND``: no
  money moved, and sending it again with the same ``refund_no`` is safe.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from clearhouse.clock import Clock, SystemClock
from clearhouse.errors import ClearhouseError
from clearhouse.gateway.channels import transport
from clearhouse.gateway.channels.paypal import protocol
from clearhouse.gateway.channels.paypal.protocol import BadAmount, PaypalCredentials
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

_ORDER_STATES = {
    "CREATED": ChannelStatus.PENDING,
    "SAVED": ChannelStatus.PENDING,
    "PAYER_ACTION_REQUIRED": ChannelStatus.PENDING,
    "APPROVED": ChannelStatus.PENDING,  # approved, not captured: no money has moved
    "VOIDED": ChannelStatus.CLOSED,
}
_CAPTURE_STATES = {
    "COMPLETED": ChannelStatus.SUCCEEDED,
    "PARTIALLY_REFUNDED": ChannelStatus.SUCCEEDED,  # paid, then refunded: the payment stands
    "REFUNDED": ChannelStatus.SUCCEEDED,
    "PENDING": ChannelStatus.PENDING,
    "DECLINED": ChannelStatus.FAILED,
    "FAILED": ChannelStatus.FAILED,
}
_REFUND_STATES = {
    "COMPLETED": ChannelStatus.SUCCEEDED,
    "PENDING": ChannelStatus.PENDING,
    "FAILED": ChannelStatus.FAILED,
    "CANCELLED": ChannelStatus.FAILED,
}
# Refusals that say nothing final: PayPal is busy with it, or the id collided with a retry.
_NOT_FINAL = {"ORDER_COMPLETION_IN_PROGRESS", "PREVIOUS_REQUEST_IN_PROGRESS", "INTERNAL_ERROR"}
_TOKEN_MARGIN = timedelta(minutes=5)  # renew a token this long before PayPal expires it

# The approval link the gateway stored for an attempt (its ``credential``), or None.
StoredLink = Callable[[str], str | None]


class ReportUnavailable(ClearhouseError):
    """A settlement report could not be fetched (``details["reason"]`` says why)."""

    code = "REPORT_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    text: str
    data: dict[str, Any]

    @property
    def issue(self) -> str:
        return protocol.error_issue(self.data) or f"HTTP_{self.status}"


class PaypalAdapter(transport.HttpAdapter):
    name = "paypal"

    def __init__(
        self,
        credentials: PaypalCredentials,
        base_url: str = "https://api-m.paypal.com",
        timeout: float = 10.0,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
        order_ids: MutableMapping[str, str] | None = None,
        notification_tolerance: timedelta = timedelta(minutes=5),
        stored_link: StoredLink | None = None,
    ) -> None:
        """``clock`` times tokens and checks notifications' transmission times (within
        ``notification_tolerance``); ``order_ids``: attempt id -> PayPal order id;
        ``stored_link``: where an order id this process did not see is read back from."""
        self._creds = credentials.merchant_view()
        self._clock = clock or SystemClock()
        self._base = urlsplit(base_url)
        super().__init__(client, timeout, base_url)
        self._order_ids: MutableMapping[str, str] = {} if order_ids is None else order_ids
        self.stored_link = stored_link
        self._tolerance = notification_tolerance
        self._creates: dict[str, dict[str, Any]] = {}  # create bodies, to replay a lost answer
        self._closed: set[str] = set()
        self._refund_ids: dict[str, str] = {}
        self._certs: dict[str, x509.Certificate] = {}
        self._token: tuple[str, datetime] | None = None
        self._lock = threading.Lock()

    # --- payments ------------------------------------------------------------------------------

    def pay(self, order: PayOrder) -> ChannelResult:
        if order.method is not PayMethod.PAGE:
            why = f"PayPal takes a payer-approved (page) payment, not {order.method.value}"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_METHOD")
        if order.amount.currency not in protocol.CURRENCIES:
            why = f"PayPal does not take {order.amount.currency}"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="UNSUPPORTED_CURRENCY")
        try:
            amount = protocol.to_amount(order.amount)
        except BadAmount as exc:
            return ChannelResult(
                ChannelStatus.FAILED, str(exc), error_code="DECIMALS_NOT_SUPPORTED"
            )
        body = {
            "intent": "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": order.attempt_id,
                    "custom_id": order.attempt_id,
                    "invoice_id": order.attempt_id,
                    "description": order.description[:127],
                    "amount": amount,
                }
            ],
        }
        self._creates[order.attempt_id] = body
        return self._create(order.attempt_id, body)

    def _create(self, attempt_id: str, body: dict[str, Any]) -> ChannelResult:
        try:
            reply = self._call("POST", "/v2/checkout/orders", body, request_id=attempt_id)
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status not in (200, 201):
            return self._payment_refusal(reply)
        return self._order_result(reply, attempt_id)

    def _order_id(self, attempt_id: str) -> str | None:
        """The attempt's order id: known to this process, or read from the stored link."""
        found = self._order_ids.get(attempt_id)
        if found is None and self.stored_link is not None:
            link = self.stored_link(attempt_id)
            found = None if link is None else protocol.order_id_from_link(link)
            if found is not None:
                self._order_ids[attempt_id] = found
        return found

    def query(self, attempt_id: str) -> ChannelResult:
        order_id = self._order_id(attempt_id)
        if order_id is None:
            body = self._creates.get(attempt_id)
            if body is None:
                why = "no PayPal order id is known for this attempt"
                return ChannelResult(ChannelStatus.UNKNOWN, why, error_code="ORDER_ID_UNKNOWN")
            found = self._create(attempt_id, body)  # the same Request-Id: the same order
            if found.status is not ChannelStatus.PENDING or attempt_id in self._closed:
                return found
            order_id = self._order_ids[attempt_id]
        try:
            reply = self._call("GET", f"/v2/checkout/orders/{segment(order_id)}")
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status == 404:
            return ChannelResult(ChannelStatus.CLOSED, reply.text, error_code=reply.issue)
        if reply.status != 200:
            return self._payment_refusal(reply)
        state = reply.data.get("status")
        if attempt_id in self._closed and state != "COMPLETED":
            return ChannelResult(ChannelStatus.CLOSED, reply.text, channel_txn_id=order_id)
        if state == "APPROVED":
            return self._capture(attempt_id, order_id)
        return self._order_result(reply, attempt_id)

    def _capture(self, attempt_id: str, order_id: str) -> ChannelResult:
        target = f"/v2/checkout/orders/{segment(order_id)}/capture"
        try:
            reply = self._call("POST", target, {}, request_id=f"{attempt_id}:capture")
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status in (200, 201):
            return self._order_result(reply, attempt_id)
        if reply.issue == "ORDER_NOT_APPROVED":
            return ChannelResult(ChannelStatus.PENDING, reply.text, error_code=reply.issue)
        if reply.issue == "ORDER_ALREADY_CAPTURED":
            try:
                again = self._call("GET", f"/v2/checkout/orders/{segment(order_id)}")
            except NoAnswer as exc:
                return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
            if again.status == 200:
                return self._order_result(again, attempt_id)
            return self._payment_refusal(again)
        return self._payment_refusal(reply)

    def close(self, attempt_id: str) -> ChannelResult:
        self._closed.add(attempt_id)  # first: a query racing this close must not capture
        order_id = self._order_id(attempt_id)
        if order_id is None:
            why = "no order known: nothing can be captured under this attempt"
            return ChannelResult(ChannelStatus.CLOSED, why, error_code="ORDER_ID_UNKNOWN")
        try:
            reply = self._call("GET", f"/v2/checkout/orders/{segment(order_id)}")
        except NoAnswer as exc:
            return ChannelResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status == 404:
            return ChannelResult(ChannelStatus.CLOSED, reply.text, error_code=reply.issue)
        if reply.status != 200:
            return self._payment_refusal(reply)
        if reply.data.get("status") == "COMPLETED":
            return ChannelResult(ChannelStatus.UNKNOWN, reply.text, error_code="ORDER_COMPLETED")
        return ChannelResult(ChannelStatus.CLOSED, reply.text, channel_txn_id=order_id)

    def _payment_refusal(self, reply: _Reply) -> ChannelResult:
        status, code = _refusal(reply)
        return ChannelResult(status, reply.text, error_code=code)

    def _order_result(self, reply: _Reply, attempt_id: str) -> ChannelResult:
        data, raw = reply.data, reply.text
        order_id, state = data.get("id"), data.get("status")
        units = data.get("purchase_units")
        unit = units[0] if isinstance(units, list) and units and isinstance(units[0], dict) else {}
        if not isinstance(order_id, str) or not order_id:
            return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
        if unit and unit.get("custom_id", attempt_id) != attempt_id:
            return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
        self._order_ids[attempt_id] = order_id
        if state == "COMPLETED":
            captures = (unit.get("payments") or {}).get("captures")
            if not isinstance(captures, list) or not captures:
                return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
            return _capture_result(captures[0], raw)
        status = _ORDER_STATES.get(str(state))
        if status is None:
            return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
        approve = _link(data, "payer-action") or _link(data, "approve")
        if status is ChannelStatus.PENDING and state != "APPROVED" and approve is None:
            return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
        try:
            amount = protocol.parse_amount(unit["amount"]) if "amount" in unit else None
        except BadAmount:
            return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
        return ChannelResult(
            status, raw, channel_txn_id=order_id, amount=amount, credential=approve
        )

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, order: RefundOrder) -> RefundResult:
        try:
            amount = protocol.to_amount(order.refund)
        except BadAmount as exc:
            return RefundResult(ChannelStatus.FAILED, str(exc), error_code="DECIMALS_NOT_SUPPORTED")
        capture_id = self._capture_id(order.attempt_id)
        if isinstance(capture_id, RefundResult):
            return capture_id
        body = {"amount": amount, "invoice_id": order.refund_no, "note_to_payer": order.reason}
        target = f"/v2/payments/captures/{segment(capture_id)}/refund"
        try:
            reply = self._call("POST", target, body, request_id=order.refund_no)
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status not in (200, 201):
            status, code = _refusal(reply)
            return RefundResult(status, reply.text, error_code=code)
        return self._refund_result(reply.data, reply.text, order.refund_no)

    def query_refund(self, refund_no: str, attempt_id: str) -> RefundResult:
        refund_id = self._refund_ids.get(refund_no)
        if refund_id is None:
            # Refunds carry our number as invoice_id, and the order lists its refunds.
            found = self._order_for_refunds(attempt_id)
            if isinstance(found, RefundResult):
                return found
            payments = found.get("payments") or {}
            for item in payments.get("refunds") or []:
                if isinstance(item, dict) and item.get("invoice_id") == refund_no:
                    refund_id = str(item.get("id"))
                    break
            else:
                why = f"the order holds no refund {refund_no}"
                return RefundResult(ChannelStatus.FAILED, why, error_code="REFUND_NOT_FOUND")
        try:
            reply = self._call("GET", f"/v2/payments/refunds/{segment(refund_id)}")
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        if reply.status != 200:
            status, code = _refusal(reply)
            return RefundResult(status, reply.text, error_code=code)
        return self._refund_result(reply.data, reply.text, refund_no)

    def _order_for_refunds(self, attempt_id: str) -> dict[str, Any] | RefundResult:
        """The purchase unit of the attempt's order, as PayPal shows it now."""
        order_id = self._order_id(attempt_id)
        if order_id is None:
            why = "no PayPal order id is known for this attempt"
            return RefundResult(ChannelStatus.UNKNOWN, why, error_code="ORDER_ID_UNKNOWN")
        try:
            reply = self._call("GET", f"/v2/checkout/orders/{segment(order_id)}")
        except NoAnswer as exc:
            return RefundResult(ChannelStatus.UNKNOWN, exc.raw, error_code=exc.error_code)
        units = reply.data.get("purchase_units")
        if reply.status != 200 or not isinstance(units, list) or not units:
            status, code = _refusal(reply)
            return RefundResult(status, reply.text, error_code=code)
        unit = units[0]
        return unit if isinstance(unit, dict) else {}

    def _capture_id(self, attempt_id: str) -> str | RefundResult:
        unit = self._order_for_refunds(attempt_id)
        if isinstance(unit, RefundResult):
            return unit
        captures = (unit.get("payments") or {}).get("captures")
        if not isinstance(captures, list) or not captures or not captures[0].get("id"):
            why = "the order has no capture to refund"
            return RefundResult(ChannelStatus.FAILED, why, error_code="NOT_CAPTURED")
        return str(captures[0]["id"])

    def _refund_result(self, data: Mapping[str, Any], raw: str, refund_no: str) -> RefundResult:
        status = _REFUND_STATES.get(str(data.get("status")))
        refund_id = data.get("id")
        if status is None or not isinstance(refund_id, str):
            return RefundResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
        if data.get("invoice_id", refund_no) != refund_no:
            return RefundResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
        self._refund_ids[refund_no] = refund_id
        try:
            amount = protocol.parse_amount(data["amount"]) if "amount" in data else None
            at = _time(data.get("update_time") or data.get("create_time"))
        except (BadAmount, ValueError):
            return RefundResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
        return RefundResult(
            status,
            raw,
            channel_refund_id=refund_id,
            amount=amount,
            refunded_at=at if status is ChannelStatus.SUCCEEDED else None,
            error_code=str(data.get("status")) if status is ChannelStatus.FAILED else None,
        )

    # --- notifications -------------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        lower = {k.lower(): v for k, v in headers.items()}
        tid, at, sig, cert_url, algo = (lower.get(name, "") for name in protocol.HEADERS)
        if not (tid and at and sig and cert_url):
            raise BadNotification("PayPal transmission headers missing")
        if algo != protocol.AUTH_ALGO:
            raise BadNotification("not signed with SHA256withRSA", algo=algo)
        try:
            sent = protocol.parse_time(at)
        except ValueError:
            raise BadNotification("malformed transmission time") from None
        now = self._clock.now()
        if abs(now - sent) > self._tolerance:
            raise BadNotification("transmission time outside the tolerance", sent=at)
        cert = self._certificate(cert_url)
        message = protocol.transmission_message(tid, at, self._creds.webhook_id, body)
        if not protocol.verify_transmission(cert, message, sig, now):
            raise BadNotification("the transmission signature does not verify")
        try:
            event = json.loads(body)
        except ValueError:
            raise BadNotification("not a JSON body") from None
        resource = event.get("resource") if isinstance(event, dict) else None
        if not isinstance(resource, dict):
            raise BadNotification("an event without a resource")
        return _notification(str(event.get("event_type")), resource, body.decode("utf-8"))

    def _certificate(self, url: str) -> x509.Certificate:
        """The signer's certificate, fetched only from the API's own host and cached: a cert URL
        elsewhere would let anyone sign notifications with a key of their own."""
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != (self._base.scheme, self._base.netloc):
            raise BadNotification("certificate URL not on PayPal's API host", cert_url=url)
        with self._lock:
            cached = self._certs.get(url)
        if cached is not None:
            return cached
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            response = transport.request(self._http, "GET", target)
        except NoAnswer as exc:
            raise BadNotification("certificate unavailable", reason=exc.error_code) from None
        if response.status_code != 200:
            raise BadNotification("certificate unavailable", reason=response.status_code)
        try:
            cert = protocol.load_certificate(response.content)
        except ValueError:
            raise BadNotification("not a certificate", cert_url=url) from None
        with self._lock:
            self._certs[url] = cert
        return cert

    def ack(self, ok: bool) -> Ack:
        """Any 2xx acknowledges; anything else makes PayPal retry (up to 3 days)."""
        if ok:
            return Ack(200, "", "application/json")
        return Ack(400, '{"error":"not accepted"}', "application/json")

    # --- reports -------------------------------------------------------------------------------

    def download_settlement_report(self, day: date) -> bytes:
        """The day's Settlement Report (STL CSV). PayPal serves it over SFTP
        (``/ppreports/outgoing``); this fetches the same file name over HTTPS from the API host,
        which the sandbox serves. Raises ``ReportUnavailable``."""
        target = f"/ppreports/outgoing/STL-{day:%Y%m%d}.01.009.CSV"
        try:
            response = self._send("GET", target, None, None)
        except NoAnswer as exc:
            raise ReportUnavailable(exc.raw, reason=exc.error_code) from None
        if response.status_code != 200 or not response.content.startswith(b'"RH"'):
            raise ReportUnavailable(response.text, reason=f"HTTP_{response.status_code}")
        return response.content

    # --- transport -----------------------------------------------------------------------------

    def _access_token(self, renew: bool) -> str:
        with self._lock:
            if not renew and self._token is not None and self._clock.now() < self._token[1]:
                return self._token[0]
        response = transport.request(
            self._http,
            "POST",
            "/v1/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(self._creds.client_id, self._creds.client_secret),
            headers={"Accept": "application/json"},
        )
        try:
            data = response.json()
            token, expires_in = str(data["access_token"]), int(data["expires_in"])
        except (ValueError, KeyError, TypeError):
            reason = "AUTHENTICATION_FAILURE" if response.status_code == 401 else "BAD_RESPONSE"
            raise NoAnswer(reason, f"token: HTTP {response.status_code}: {response.text}") from None
        expiry = self._clock.now() + timedelta(seconds=expires_in) - _TOKEN_MARGIN
        with self._lock:
            self._token = (token, expiry)
        return token

    def _send(
        self, method: str, target: str, payload: Mapping[str, Any] | None, request_id: str | None
    ) -> httpx.Response:
        """Send with a bearer token; a 401 (token revoked or expired early) renews it once."""
        headers = {"Accept": "application/json", "Prefer": "return=representation"}
        if request_id is not None:
            headers["PayPal-Request-Id"] = request_id
        content = None if payload is None else protocol.dumps(payload)
        if content is not None:
            headers["Content-Type"] = "application/json"
        for renew in (False, True):
            headers["Authorization"] = f"Bearer {self._access_token(renew)}"
            response = transport.request(
                self._http, method, target, content=content, headers=headers
            )
            if response.status_code != 401:
                break
        return response

    def _call(
        self,
        method: str,
        target: str,
        payload: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> _Reply:
        """Send; return the parsed JSON answer or raise ``NoAnswer``."""
        response = self._send(method, target, payload, request_id)
        text = response.text
        if response.status_code >= 500 and not response.content:
            raise NoAnswer(f"HTTP_{response.status_code}", text)
        data = transport.json_object(response.content) if response.content else {}
        if data is None:
            code = f"HTTP_{response.status_code}" if response.status_code >= 500 else "BAD_RESPONSE"
            raise NoAnswer(code, text)
        return _Reply(response.status_code, text, data)


def _refusal(reply: _Reply) -> tuple[ChannelStatus, str]:
    """A clear refusal is FAILED with PayPal's issue; throttling, server errors, authentication
    trouble and "in progress" answers are UNKNOWN (query again)."""
    issue = reply.issue
    if reply.status >= 500 or reply.status in (401, 403, 429) or issue in _NOT_FINAL:
        return ChannelStatus.UNKNOWN, issue
    if 400 <= reply.status < 500:
        return ChannelStatus.FAILED, issue
    return ChannelStatus.UNKNOWN, "BAD_RESPONSE"


def _capture_result(capture: object, raw: str) -> ChannelResult:
    if not isinstance(capture, dict):
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    state = str(capture.get("status"))
    status = _CAPTURE_STATES.get(state)
    capture_id = capture.get("id")
    if status is None or not isinstance(capture_id, str):
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    try:
        amount = protocol.parse_amount(capture.get("amount"))
        paid_at = _time(capture.get("update_time") or capture.get("create_time"))
    except (BadAmount, ValueError):
        return ChannelResult(ChannelStatus.UNKNOWN, raw, error_code="BAD_RESPONSE")
    succeeded = status is ChannelStatus.SUCCEEDED
    return ChannelResult(
        status,
        raw,
        channel_txn_id=capture_id,
        amount=amount,
        paid_at=paid_at if succeeded else None,
        error_code=state if status is ChannelStatus.FAILED else None,
    )


def _notification(event_type: str, resource: dict[str, Any], raw: str) -> Notification:
    custom = resource.get("custom_id")
    if event_type == "CHECKOUT.ORDER.APPROVED":
        # Approved, not paid: a PENDING payment carrying the order id; querying captures it.
        units = resource.get("purchase_units") or [{}]
        attempt_id = units[0].get("custom_id") if isinstance(units[0], dict) else None
        order_id = resource.get("id")
        if not isinstance(attempt_id, str) or not attempt_id or not isinstance(order_id, str):
            raise BadNotification("approved order without custom_id")
        payment = ChannelResult(ChannelStatus.PENDING, raw, channel_txn_id=order_id)
        return Notification(attempt_id, raw, payment=payment)
    if not isinstance(custom, str) or not custom:
        raise BadNotification("resource without custom_id", event_type=event_type)
    if event_type in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED"):
        payment = _capture_result(resource, raw)
        if payment.status is ChannelStatus.UNKNOWN:
            raise BadNotification("capture does not parse")
        return Notification(custom, raw, payment=payment)
    if event_type == "PAYMENT.CAPTURE.REFUNDED":
        refund_no, refund_id = resource.get("invoice_id"), resource.get("id")
        status = _REFUND_STATES.get(str(resource.get("status")))
        if not isinstance(refund_no, str) or not isinstance(refund_id, str) or status is None:
            raise BadNotification("refund does not parse")
        try:
            amount = protocol.parse_amount(resource.get("amount"))
            at = _time(resource.get("update_time") or resource.get("create_time"))
        except (BadAmount, ValueError):
            raise BadNotification("refund amount or time does not parse") from None
        refund = RefundResult(
            status, raw, channel_refund_id=refund_id, amount=amount, refunded_at=at
        )
        return Notification(custom, raw, refund_no=refund_no, refund=refund)
    raise BadNotification("unsupported event type", event_type=event_type)


def _link(data: Mapping[str, Any], rel: str) -> str | None:
    for link in data.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == rel and isinstance(link.get("href"), str):
            return str(link["href"])
    return None


def _time(text: object) -> datetime | None:
    return protocol.parse_time(text) if isinstance(text, str) and text else None
