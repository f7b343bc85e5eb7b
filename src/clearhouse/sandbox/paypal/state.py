"""The simulated PayPal business account: OAuth tokens, Orders v2, captures, refunds, the payer,
webhook events and the journal the Settlement Report is cut from. No HTTP here: ``app`` parses,
this decides.

Methods take and return PayPal's JSON shapes and raise ``ApiError`` with PayPal's HTTP status
and issue code. Thread-safe: the served app and the notifier thread share one instance. Money is
``Money`` (minor units); decimal strings exist only in answers.
"""

from __future__ import annotations

import secrets
import threading
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from clearhouse import fees
from clearhouse.clock import Clock
from clearhouse.gateway.channels.paypal import protocol
from clearhouse.gateway.channels.paypal.protocol import (
    BadAmount,
    PaypalCredentials,
    format_time,
    paypal_id,
)
from clearhouse.money import Money
from clearhouse.sandbox.faults import (
    NO_FAULTS,
    Fault,
    FaultPlan,
    FirstTimeouts,
    billed_amount,
)
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.paypal import resources, settlement
from clearhouse.sandbox.paypal.resources import OPEN, Capture, Order, Refund
from clearhouse.sandbox.paypal.settlement import Entry

# PayPal retries an unacknowledged webhook up to 25 times over 3 days, backing off.
RETRY_SCHEDULE = tuple(
    timedelta(minutes=m) for m in (1, 2, 4, 8, 15, 30, 60, 60, 120, 120, 180, 180, *[240] * 13)
)
TOKEN_TTL = timedelta(seconds=32400)  # PayPal's access tokens live nine hours
REORDER_DELAY = timedelta(minutes=5)  # how long a "reordered" webhook is held back
REPORT_ZONE = ZoneInfo("America/Los_Angeles")  # reporting window X


def is_ack(response: httpx.Response) -> bool:
    """PayPal counts any 2xx as delivered; anything else is retried."""
    return 200 <= response.status_code < 300


def make_notifier(clock: Clock, client: httpx.Client | None = None) -> Notifier:
    return Notifier(clock, RETRY_SCHEDULE, is_ack, client)


class ApiError(Exception):
    def __init__(self, status: int, issue: str, description: str) -> None:
        super().__init__(f"{status} {issue}: {description}")
        self.status, self.issue, self.description = status, issue, description


class OAuthError(Exception):
    """An OAuth answer (``{"error": ..., "error_description": ...}``), not PayPal's API shape."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}")
        self.status, self.error, self.description = status, error, description


class PaypalSandbox:
    def __init__(
        self,
        credentials: PaypalCredentials,
        clock: Clock,
        faults: FaultPlan = NO_FAULTS,
        fee: fees.FeeSchedule = fees.PAYPAL,
        notifier: Notifier | None = None,
        auto_pay: bool = False,
        webhook_url: str = "",
        public_url: str = "",
        report_zone: tzinfo = REPORT_ZONE,
        timeout_delay_s: float = 15.0,
    ) -> None:
        """``auto_pay``: every order is approved by its payer as soon as it is created.
        ``public_url``: where the sandbox is reachable (links, the certificate URL); the app
        learns it from the first request when it is left empty."""
        credentials.require_signer()
        self.credentials = credentials
        self.clock = clock
        self.faults = faults
        self.fee = fee
        self.notifier = notifier
        self.auto_pay = auto_pay
        self.webhook_url = webhook_url
        self.public_url = public_url.rstrip("/")
        self.report_zone = report_zone
        self.timeout_delay_s = timeout_delay_s
        self.tokens: dict[str, datetime] = {}
        self.orders: dict[str, Order] = {}
        self.captures: dict[str, Capture] = {}
        self.refunds: dict[str, Refund] = {}
        self.journal: list[Entry] = []
        self._replays: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._timeouts = FirstTimeouts()
        self._lock = threading.RLock()

    # --- OAuth ---------------------------------------------------------------------------------

    def issue_token(self, client_id: str, secret: str, grant_type: str) -> dict[str, Any]:
        creds = self.credentials
        if client_id != creds.client_id or not secrets.compare_digest(secret, creds.client_secret):
            raise OAuthError(401, "invalid_client", "Client Authentication failed")
        if grant_type != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", f"unsupported grant_type {grant_type}")
        token = f"A21AA{secrets.token_urlsafe(48)}"
        with self._lock:
            self.tokens[token] = self.clock.now() + TOKEN_TTL
        return {
            "scope": "https://uri.paypal.com/services/payments/payment "
            "https://uri.paypal.com/services/payments/refund",
            "access_token": token,
            "token_type": "Bearer",
            "app_id": f"APP-{paypal_id(17)}",
            "expires_in": int(TOKEN_TTL.total_seconds()),
            "nonce": f"{format_time(self.clock.now())}{secrets.token_urlsafe(32)}",
        }

    def authenticate(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            expiry = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or self.clock.now() >= expiry:
            raise OAuthError(401, "invalid_token", "Token signature verification failed")

    # --- idempotency, faults -------------------------------------------------------------------

    def replayed(self, operation: str, request_id: str | None, body: dict[str, Any]) -> str | None:
        """The resource an earlier call under the same PayPal-Request-Id made, or ``None``."""
        if not request_id:
            return None
        found = self._replays.get((operation, request_id))
        if found is None:
            return None
        if found[0] != body:
            raise ApiError(422, "DUPLICATE_REQUEST_ID", "PayPal-Request-Id reused for another body")
        return found[1]

    def remember(
        self, operation: str, request_id: str | None, body: dict[str, Any], made: str
    ) -> None:
        if request_id:
            self._replays[(operation, request_id)] = (dict(body), made)

    def take_timeout(self, operation: str, subject: str) -> bool:
        """Whether this answer must come too late (``FirstTimeouts``)."""
        return self._timeouts.take(self.faults, operation, subject)

    # --- orders --------------------------------------------------------------------------------

    def create_order(self, body: dict[str, Any], request_id: str | None) -> dict[str, Any]:
        with self._lock:
            made = self.replayed("order", request_id, body)
            if made is not None:
                return self.order_view(self.orders[made])
            order = self._new_order(body)
            self.orders[order.id] = order
            self.remember("order", request_id, body, order.id)
            if self.auto_pay:
                self.approve(order.id)
            return self.order_view(order)

    def _new_order(self, body: dict[str, Any]) -> Order:
        if body.get("intent") != "CAPTURE":
            raise ApiError(422, "INTENT_NOT_SUPPORTED", "only intent CAPTURE is simulated")
        units = body.get("purchase_units")
        if not isinstance(units, list) or len(units) != 1 or not isinstance(units[0], dict):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "exactly one purchase_unit is needed")
        unit = units[0]
        try:
            amount = protocol.parse_amount(unit.get("amount"))
        except BadAmount as exc:
            raise ApiError(400, "DECIMAL_PRECISION", str(exc)) from None
        if amount.currency not in protocol.CURRENCIES:
            raise ApiError(422, "CURRENCY_NOT_SUPPORTED", f"{amount.currency} is not supported")
        if amount.amount <= 0:
            raise ApiError(422, "AMOUNT_NOT_POSITIVE", "amount must be greater than zero")
        source = body.get("payment_source")
        paypal = source.get("paypal") if isinstance(source, dict) else None
        context = paypal.get("experience_context", {}) if isinstance(paypal, dict) else {}
        legacy = body.get("application_context")
        return_url = (context or {}).get("return_url") or (
            legacy.get("return_url") if isinstance(legacy, dict) else None
        )
        return Order(
            id=paypal_id(17),
            request=dict(body),
            amount=amount,
            reference_id=str(unit.get("reference_id") or "default"),
            custom_id=str(unit.get("custom_id") or ""),
            invoice_id=str(unit.get("invoice_id") or ""),
            description=str(unit.get("description") or ""),
            payer_action=isinstance(paypal, dict),
            return_url=str(return_url or ""),
            created_at=self.clock.now(),
        )

    def get_order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            return self.order_view(self._order(order_id))

    def approve(self, order_id: str, decline: bool = False) -> dict[str, Any]:
        """The payer logs in and approves (``decline``: with funding that will be declined)."""
        with self._lock:
            order = self._order(order_id)
            if order.status not in OPEN:
                raise ApiError(422, "ORDER_ALREADY_APPROVED", f"the order is {order.status}")
            order.status, order.decline = "APPROVED", decline
            order.payer_id, order.updated_at = paypal_id(13), self.clock.now()
            view = self.order_view(order)
            self._notify(
                "CHECKOUT.ORDER.APPROVED",
                "An order has been approved by buyer",
                "checkout-order",
                view,
                order.custom_id or order.id,
            )
            return view

    def capture(
        self, order_id: str, body: dict[str, Any], request_id: str | None
    ) -> dict[str, Any]:
        with self._lock:
            made = self.replayed(f"capture:{order_id}", request_id, body)
            if made is not None:
                return self.order_view(self.orders[made])
            order = self._order(order_id)
            if order.status == "COMPLETED":
                raise ApiError(422, "ORDER_ALREADY_CAPTURED", "the order is already captured")
            if order.status != "APPROVED":
                raise ApiError(422, "ORDER_NOT_APPROVED", "the payer has not approved the order")
            subject, now = order.custom_id or order.id, self.clock.now()
            completed = now
            if self.faults.hits(Fault.LATE_RESULT, subject):
                # Lands just after the report day's cut-off: in the next day's settlement report.
                local_day = now.astimezone(self.report_zone).date()
                completed = settlement.day_bounds(local_day, self.report_zone)[1]
                completed += timedelta(seconds=6)
            # The report shows what the payer was charged: the order's amount, but under
            # BILL_AMOUNT (the capture still says the amount); the fee follows it.
            billed = order.amount
            if self.faults.hits(Fault.BILL_AMOUNT, subject):
                billed = Money(billed_amount(billed.amount), billed.currency)
            fee = self.fee.fee(billed)
            if self.faults.hits(Fault.WRONG_FEE, subject):
                fee = fee + Money(1, fee.currency)
            capture = Capture(
                id=paypal_id(17),
                order_id=order.id,
                amount=order.amount,
                fee=fee,
                custom_id=order.custom_id,
                invoice_id=order.invoice_id,
                created_at=now,
                completed_at=completed,
                status="DECLINED" if order.decline else "COMPLETED",
            )
            self.captures[capture.id] = capture
            order.status, order.capture_id, order.updated_at = "COMPLETED", capture.id, now
            self.remember(f"capture:{order_id}", request_id, body, order.id)
            if capture.status == "COMPLETED":
                self._journal_capture(order, capture, billed)
                event, summary = "PAYMENT.CAPTURE.COMPLETED", "Payment completed"
            else:
                event, summary = "PAYMENT.CAPTURE.DENIED", "Payment denied"
            self._notify(event, summary, "capture", self.capture_view(capture), subject)
            return self.order_view(order)

    def _journal_capture(self, order: Order, capture: Capture, billed: Money) -> None:
        self.journal.append(
            Entry(
                transaction_id=capture.id,
                invoice_id=capture.invoice_id,
                reference_id=order.id,
                reference_type="ODR",
                event_code=settlement.CHECKOUT_PAYMENT,
                initiated_at=order.created_at,
                completed_at=capture.completed_at,
                gross=billed,
                gross_direction=settlement.CREDIT,
                fee=capture.fee,
                fee_direction=settlement.DEBIT,
                custom=capture.custom_id,
                consumer_id=f"{order.payer_id.lower()}@payer.example",
            )
        )

    def _order(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise ApiError(404, "INVALID_RESOURCE_ID", f"no order {order_id}")
        return order

    # --- captures and refunds ------------------------------------------------------------------

    def get_capture(self, capture_id: str) -> dict[str, Any]:
        with self._lock:
            return self.capture_view(self._capture(capture_id))

    def _capture(self, capture_id: str) -> Capture:
        capture = self.captures.get(capture_id)
        if capture is None:
            raise ApiError(404, "INVALID_RESOURCE_ID", f"no capture {capture_id}")
        return capture

    def refund(
        self, capture_id: str, body: dict[str, Any], request_id: str | None
    ) -> dict[str, Any]:
        with self._lock:
            made = self.replayed(f"refund:{capture_id}", request_id, body)
            if made is not None:
                return self.refund_view(self.refunds[made])
            capture = self._capture(capture_id)
            if capture.status not in ("COMPLETED", "PARTIALLY_REFUNDED"):
                raise ApiError(422, "CAPTURE_FULLY_REFUNDED", f"the capture is {capture.status}")
            refunded = capture.refunded or Money.zero(capture.amount.currency)
            remaining = capture.amount - refunded
            amount = remaining
            if body.get("amount") is not None:
                try:
                    amount = protocol.parse_amount(body["amount"])
                except BadAmount as exc:
                    raise ApiError(400, "DECIMAL_PRECISION", str(exc)) from None
                if amount.currency != capture.amount.currency:
                    raise ApiError(422, "REFUND_CURRENCY_MISMATCH", "not the capture's currency")
                if amount.amount <= 0:
                    raise ApiError(422, "INVALID_PARAMETER_VALUE", "amount must be positive")
            if amount > remaining:
                raise ApiError(422, "REFUND_AMOUNT_EXCEEDED", "more than the capture's remainder")
            returned = self.fee.refunded_fee(capture.amount, capture.fee, refunded, amount)
            now = self.clock.now()
            refund = Refund(
                id=paypal_id(17),
                capture_id=capture.id,
                amount=amount,
                fee_returned=returned,
                invoice_id=str(body.get("invoice_id") or ""),
                note_to_payer=str(body.get("note_to_payer") or ""),
                created_at=now,
                refunded_total=refunded + amount,
            )
            self.refunds[refund.id] = refund
            capture.refunded = refunded + amount
            capture.refund_ids.append(refund.id)
            full = capture.refunded == capture.amount
            capture.status = "REFUNDED" if full else "PARTIALLY_REFUNDED"
            self.remember(f"refund:{capture_id}", request_id, body, refund.id)
            self.journal.append(
                Entry(
                    transaction_id=refund.id,
                    invoice_id=refund.invoice_id,
                    reference_id=capture.id,
                    reference_type="TXN",
                    event_code=settlement.MERCHANT_REFUND,
                    initiated_at=now,
                    completed_at=now,
                    gross=amount,
                    gross_direction=settlement.DEBIT,
                    fee=returned,
                    fee_direction=settlement.CREDIT,
                    custom=capture.custom_id,
                )
            )
            view = self.refund_view(refund)
            self._notify(
                "PAYMENT.CAPTURE.REFUNDED",
                "A capture was refunded",
                "refund",
                view,
                refund.invoice_id or refund.id,
            )
            return view

    def get_refund(self, refund_id: str) -> dict[str, Any]:
        with self._lock:
            refund = self.refunds.get(refund_id)
            if refund is None:
                raise ApiError(404, "INVALID_RESOURCE_ID", f"no refund {refund_id}")
            return self.refund_view(refund)

    def order_view(self, order: Order) -> dict[str, Any]:
        merchant = self.credentials.merchant_id
        return resources.order_view(order, self.public_url, merchant, self.captures, self.refunds)

    def capture_view(self, capture: Capture) -> dict[str, Any]:
        return resources.capture_view(capture, self.public_url)

    def refund_view(self, refund: Refund) -> dict[str, Any]:
        return resources.refund_view(refund, self.captures[refund.capture_id], self.public_url)

    # --- webhooks ------------------------------------------------------------------------------

    def cert_url(self) -> str:
        return (
            f"{self.public_url}/v1/notifications/certs/CERT-sandbox-{self.credentials.webhook_id}"
        )

    def webhook(
        self, event_type: str, summary: str, resource_type: str, resource: dict[str, Any]
    ) -> tuple[bytes, dict[str, str]]:
        """One event, signed now; see ``transmit`` for the retries of the same event."""
        event = protocol.webhook_event(
            f"WH-{paypal_id(8)}-{paypal_id(17)}",
            event_type,
            summary,
            resource_type,
            resource,
            self.clock.now(),
            self.public_url,
        )
        return self.transmit(protocol.dumps(event))

    def transmit(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        """A transmission of ``body``: a new id and time on every try, the event unchanged."""
        key_pem, _ = self.credentials.require_signer()
        transmission_id, at = secrets.token_hex(16), format_time(self.clock.now())
        message = protocol.transmission_message(
            transmission_id, at, self.credentials.webhook_id, body
        )
        headers = {
            "Content-Type": "application/json",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": at,
            "PAYPAL-TRANSMISSION-SIG": protocol.sign_transmission(key_pem, message),
            "PAYPAL-CERT-URL": self.cert_url(),
            "PAYPAL-AUTH-ALGO": protocol.AUTH_ALGO,
        }
        return body, headers

    def _notify(
        self,
        event_type: str,
        summary: str,
        resource_type: str,
        resource: dict[str, Any],
        subject: str,
    ) -> None:
        if not self.notifier or not self.webhook_url:
            return
        if self.faults.hits(Fault.LOST_NOTIFICATION, subject):
            return
        body, _ = self.webhook(event_type, summary, resource_type, resource)

        def build() -> tuple[bytes, dict[str, str]]:
            return self.transmit(body)

        delay = timedelta(0)
        if self.faults.hits(Fault.REORDERED_NOTIFICATION, subject):
            delay = REORDER_DELAY
        copies = 2 if self.faults.hits(Fault.DUPLICATE_NOTIFICATION, subject) else 1
        for _ in range(copies):
            self.notifier.enqueue(self.webhook_url, build, subject, delay)

    def verify_webhook_signature(self, request: dict[str, Any]) -> dict[str, str]:
        """PayPal's verification API. The event comes back parsed, so the CRC is over its compact
        re-serialisation: exact for the events this sandbox sends, in the order it sent them."""
        try:
            cert = protocol.load_certificate(self.require_cert().encode("ascii"))
            body = protocol.dumps(request["webhook_event"])
            message = protocol.transmission_message(
                str(request["transmission_id"]),
                str(request["transmission_time"]),
                str(request["webhook_id"]),
                body,
            )
            ok = (
                request.get("auth_algo") == protocol.AUTH_ALGO
                and request.get("cert_url") == self.cert_url()
                and protocol.verify_transmission(
                    cert, message, str(request["transmission_sig"]), self.clock.now()
                )
            )
        except (KeyError, ValueError):
            raise ApiError(400, "VALIDATION_ERROR", "missing or malformed fields") from None
        return {"verification_status": "SUCCESS" if ok else "FAILURE"}

    def require_cert(self) -> str:
        return self.credentials.require_signer()[1]

    # --- reports -------------------------------------------------------------------------------

    def settlement_report(self, day: date) -> bytes:
        with self._lock:
            entries = list(self.journal)
        return settlement.settlement_report(
            entries, day, self.report_zone, self.credentials.merchant_id, self.clock.now()
        )
