"""The simulated Stripe account: PaymentIntents, charges, refunds and the events they raise. No
HTTP here: ``app`` authenticates, decodes forms and replays idempotent requests; this decides.

Objects are kept as Stripe's JSON shapes (dicts), so a view is the object itself. Methods raise
``ApiError`` with Stripe's HTTP status, error type and code. The balance (balance transactions,
payouts, reports) is ``ledger.Ledger``, webhooks are ``events.Events``. Thread-safe: the served
app and the notifier threads share one instance under one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from clearhouse import fees
from clearhouse.clock import Clock
from clearhouse.errors import ClearhouseError
from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.money import Money
from clearhouse.sandbox.faults import (
    NO_FAULTS,
    RATE_DRIFT,
    Fault,
    FaultPlan,
    FirstTimeouts,
    billed_amount,
)
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.stripe.events import ApiError, Events, new_id, subject_of
from clearhouse.sandbox.stripe.ledger import (
    RATE_PLACES,
    Ledger,
    Resettlement,
    converted,
    exchange_rate,
)

__all__ = ["ApiError", "StripeSandbox"]

# Stripe's documented test PaymentMethods: the ones that charge, and the declines with their
# (code, decline_code, message).
SUCCEEDING = frozenset(
    {"pm_card_visa", "pm_card_visa_debit", "pm_card_mastercard", "pm_card_amex", "pm_card_us"}
)
DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
}
_CANCELABLE = {"requires_payment_method", "requires_confirmation", "requires_action"}
_CANCELABLE |= {"requires_capture", "processing"}
_REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}


class StripeSandbox:
    def __init__(
        self,
        credentials: StripeCredentials,
        clock: Clock,
        faults: FaultPlan = NO_FAULTS,
        fee: fees.FeeSchedule = fees.STRIPE,
        notifier: Notifier | None = None,
        auto_pay: bool = False,
        timeout_delay_s: float = 15.0,
        instant_refunds: bool = True,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        availability_delay: timedelta = timedelta(days=2),
        report_timezone: str = "America/Los_Angeles",
        settlement_currency: str | None = None,
    ) -> None:
        """``auto_pay`` is accepted for symmetry and ignored: a card payment completes when it is
        confirmed. ``webhook_url``: a default endpoint for the events the adapter handles, signed
        with ``webhook_secret`` (the credentials' by default). ``instant_refunds``: a refund
        succeeds when created; otherwise it stays pending until ``settle_refunds()``.
        ``settlement_currency``: the account's default currency, which charges in another are
        converted into (``ledger.exchange_rate``); by default each settles in its own."""
        self.credentials = credentials
        self.clock = clock
        self.faults = faults
        self.fee = fee
        self.notifier = notifier
        self.auto_pay = auto_pay
        self.timeout_delay_s = timeout_delay_s
        self.instant_refunds = instant_refunds
        self.report_timezone = report_timezone
        self.settlement_currency = settlement_currency.lower() if settlement_currency else None
        self.objects: dict[str, dict[str, Any]] = {}
        self.order: dict[str, list[str]] = {}  # object type -> ids, oldest first
        self._lock = threading.RLock()
        self._timeouts = FirstTimeouts()
        self.events = Events(self, webhook_url, webhook_secret or credentials.webhook_secret)
        self.ledger = Ledger(self, availability_delay)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def now(self) -> int:
        return int(self.clock.now().timestamp())

    def store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["id"]] = obj
        self.order.setdefault(obj["object"], []).append(obj["id"])
        return obj

    def get(self, kind: str, object_id: str) -> dict[str, Any]:
        found = self.objects.get(object_id)
        if found is None or found["object"] != kind:
            raise ApiError(
                404,
                "invalid_request_error",
                f"No such {kind}: '{object_id}'",
                code="resource_missing",
                param="id",
            )
        return found

    def retrieve(self, kind: str, object_id: str) -> dict[str, Any]:
        with self._lock:
            if kind == "balance_transaction":
                return self.ledger.view(self.get(kind, object_id))
            return self.get(kind, object_id)

    # --- payment intents -----------------------------------------------------------------------

    def create_payment_intent(self, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            amount = _positive_int(params, "amount")
            currency = _currency(params)
            capture = str(params.get("capture_method", "automatic"))
            if capture not in ("automatic", "automatic_async", "manual"):
                raise _invalid(f"Invalid capture_method: {capture}", "capture_method")
            pm = params.get("payment_method")
            intent = self.store(
                {
                    "id": new_id("pi"),
                    "object": "payment_intent",
                    "amount": amount,
                    "amount_capturable": 0,
                    "amount_received": 0,
                    "capture_method": capture,
                    "canceled_at": None,
                    "cancellation_reason": None,
                    "client_secret": f"{new_id('pi')}_secret_{new_id('s')[2:]}",
                    "confirmation_method": "automatic",
                    "created": self.now(),
                    "currency": currency,
                    "description": params.get("description"),
                    "last_payment_error": None,
                    "latest_charge": None,
                    "livemode": False,
                    "metadata": _metadata(params),
                    "payment_method": pm if isinstance(pm, str) and pm else None,
                    "payment_method_types": ["card"],
                    "status": "requires_confirmation" if pm else "requires_payment_method",
                }
            )
            if _flag(params.get("confirm")):
                return self.confirm_payment_intent(intent["id"], {})
            return intent

    def confirm_payment_intent(self, pi_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            intent = self.get("payment_intent", pi_id)
            if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
                raise _unexpected_state(intent, "confirm")
            pm = params.get("payment_method") or intent["payment_method"]
            if not isinstance(pm, str) or not pm:
                raise _invalid(
                    "You cannot confirm this PaymentIntent because it's missing a payment method.",
                    "payment_method",
                    code="payment_intent_unexpected_state",
                )
            if pm not in SUCCEEDING and pm not in DECLINES:
                raise ApiError(
                    400,
                    "invalid_request_error",
                    f"No such PaymentMethod: '{pm}'",
                    code="resource_missing",
                    param="payment_method",
                )
            intent["payment_method"] = pm
            intent["last_payment_error"] = None
            charge = self._charge(intent, pm)
            intent["latest_charge"] = charge["id"]
            if pm in DECLINES:
                return self._decline(intent, charge, pm)
            if intent["capture_method"] == "manual":
                intent["status"], intent["amount_capturable"] = "requires_capture", intent["amount"]
                self.events.emit("payment_intent.amount_capturable_updated", intent)
                return intent
            return self._capture(intent, intent["amount"])

    def _charge(self, intent: dict[str, Any], pm: str) -> dict[str, Any]:
        declined = DECLINES.get(pm)
        return self.store(
            {
                "id": new_id("ch"),
                "object": "charge",
                "amount": intent["amount"],
                "amount_captured": 0,
                "amount_refunded": 0,
                "balance_transaction": None,
                "captured": False,
                "created": self.now(),
                "currency": intent["currency"],
                "description": intent["description"],
                "failure_code": declined[0] if declined else None,
                "failure_message": declined[2] if declined else None,
                "livemode": False,
                "metadata": dict(intent["metadata"]),
                "outcome": {
                    "network_status": "declined_by_network" if declined else "approved_by_network",
                    "reason": declined[1] if declined else None,
                    "type": "issuer_declined" if declined else "authorized",
                },
                "paid": declined is None,
                "payment_intent": intent["id"],
                "payment_method": pm,
                "payment_method_details": {"type": "card", "card": _card(pm)},
                "refunded": False,
                "status": "failed" if declined else "succeeded",
            }
        )

    def _decline(self, intent: dict[str, Any], charge: dict[str, Any], pm: str) -> dict[str, Any]:
        code, decline_code, message = DECLINES[pm]
        error = {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "charge": charge["id"],
            "payment_method": {"id": pm, "object": "payment_method", "type": "card"},
        }
        intent["status"], intent["payment_method"] = "requires_payment_method", None
        intent["last_payment_error"] = error
        self.events.emit("payment_intent.payment_failed", intent)
        extra = {k: v for k, v in error.items() if k not in ("type", "code", "message")}
        raise ApiError(402, "card_error", message, code=code, payment_intent=intent, **extra)

    def capture_payment_intent(self, pi_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            intent = self.get("payment_intent", pi_id)
            if intent["status"] != "requires_capture":
                raise _unexpected_state(intent, "capture")
            amount = intent["amount_capturable"]
            if "amount_to_capture" in params:
                amount = _positive_int(params, "amount_to_capture")
                if amount > intent["amount_capturable"]:
                    raise _invalid(
                        "The amount to capture is greater than the amount capturable.",
                        "amount_to_capture",
                        code="amount_too_large",
                    )
            return self._capture(intent, amount)

    def _capture(self, intent: dict[str, Any], amount: int) -> dict[str, Any]:
        charge = self.get("charge", intent["latest_charge"])
        subject, currency = subject_of(intent), intent["currency"]
        # The balance shows what the payer was charged: the amount captured, but under
        # BILL_AMOUNT (the PaymentIntent still says the amount); the fee follows it.
        billed = billed_amount(amount) if self.faults.hits(Fault.BILL_AMOUNT, subject) else amount
        settles_in, rate = self._settlement(currency)
        gross = billed if rate is None else converted(billed, currency, settles_in, rate)
        extra_fee = 1 if self.faults.hits(Fault.WRONG_FEE, subject) else 0
        fee = self.fee.fee(Money(gross, settles_in.upper())).amount + extra_fee
        created = self.clock.now()
        if self.faults.hits(Fault.LATE_RESULT, subject):
            # Settles just after the next UTC midnight: in the next day's activity.
            midnight = datetime.combine(created.date() + timedelta(days=1), datetime.min.time())
            created = midnight.replace(tzinfo=created.tzinfo) + timedelta(seconds=5)
        txn = self.ledger.add(
            "charge", gross, fee, charge["id"], settles_in, created, "Payment", rate
        )
        if rate is not None and self.faults.hits(Fault.FX_RATE_DRIFT, subject):
            # Shown at ``rate`` now; settled at another once the funds are available.
            drifted = (rate * RATE_DRIFT).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)
            presented = Money(billed, currency.upper())
            self.ledger.resettle[txn["id"]] = Resettlement(presented, drifted, extra_fee)
        charge.update(captured=True, amount_captured=amount, balance_transaction=txn["id"])
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        self.events.emit("charge.succeeded", charge)
        self.events.emit("payment_intent.succeeded", intent)
        return intent

    def _settlement(self, currency: str) -> tuple[str, Decimal | None]:
        """The currency a movement in ``currency`` settles in, and the rate when converted."""
        target = self.settlement_currency or currency
        return target, None if target == currency else exchange_rate(currency, target)

    def _settled(self, amount: int, currency: str) -> tuple[int, str, Decimal | None]:
        target, rate = self._settlement(currency)
        return (amount if rate is None else converted(amount, currency, target, rate)), target, rate

    def cancel_payment_intent(self, pi_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            intent = self.get("payment_intent", pi_id)
            if intent["status"] not in _CANCELABLE:
                raise _unexpected_state(intent, "cancel")
            intent.update(status="canceled", canceled_at=self.now(), amount_capturable=0)
            intent["cancellation_reason"] = params.get("cancellation_reason")
            self.events.emit("payment_intent.canceled", intent)
            return intent

    def search_payment_intents(self, clauses: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """PaymentIntents matching every ``(field, value)``: ``metadata[key]``, ``status``,
        ``currency`` or ``amount``; newest first, as Stripe's search orders them."""
        with self._lock:
            found = []
            for pi_id in reversed(self.order.get("payment_intent", [])):
                intent = self.objects[pi_id]
                if all(_search_value(intent, name) == value for name, value in clauses):
                    found.append(intent)
            return found

    # --- refunds -------------------------------------------------------------------------------

    def create_refund(self, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            charge = self._refund_charge(params)
            remaining = charge["amount_captured"] - charge["amount_refunded"]
            if remaining <= 0:
                raise _invalid(
                    f"Charge {charge['id']} has already been refunded.",
                    "charge",
                    code="charge_already_refunded",
                )
            amount = _positive_int(params, "amount") if "amount" in params else remaining
            if amount > remaining:
                cur = charge["currency"]
                raise _invalid(
                    f"Refund amount ({_shown(amount, cur)}) is greater than unrefunded amount on "
                    f"charge ({_shown(remaining, cur)})",
                    "amount",
                    code="amount_too_large",
                )
            reason = params.get("reason")
            if reason is not None and reason not in _REFUND_REASONS:
                raise _invalid(f"Invalid reason: {reason}", "reason")
            refund = self.store(
                {
                    "id": new_id("re"),
                    "object": "refund",
                    "amount": amount,
                    "balance_transaction": None,
                    "charge": charge["id"],
                    "created": self.now(),
                    "currency": charge["currency"],
                    "failure_reason": None,
                    "metadata": _metadata(params),
                    "payment_intent": charge["payment_intent"],
                    "reason": reason,
                    "status": "pending",
                }
            )
            # The balance is debited when the refund is made, pending or not; Stripe keeps
            # the fee of the charge.
            moved, settles_in, rate = self._settled(amount, charge["currency"])
            txn = self.ledger.add(
                "refund", -moved, 0, refund["id"], settles_in, self.clock.now(), "REFUND", rate
            )
            refund["balance_transaction"] = txn["id"]
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
            self.events.emit("refund.created", refund)
            if self.instant_refunds:
                self._settle(refund, failed=False)
            return refund

    def _refund_charge(self, params: Mapping[str, Any]) -> dict[str, Any]:
        charge_id, pi_id = params.get("charge"), params.get("payment_intent")
        if isinstance(pi_id, str) and pi_id:
            intent = self.get("payment_intent", pi_id)
            if intent["status"] != "succeeded":
                raise _invalid(
                    f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                    "payment_intent",
                    code="charge_not_refundable",
                )
            charge_id = intent["latest_charge"]
        if not isinstance(charge_id, str) or not charge_id:
            raise _invalid("One of the following params should be provided: charge, payment_intent")
        charge = self.get("charge", charge_id)
        if not charge["captured"]:
            raise _invalid(
                f"Charge {charge_id} has not been captured.", "charge", code="charge_not_refundable"
            )
        return charge

    def settle_refunds(self, fail: Iterable[str] = ()) -> int:
        """Finish every pending refund; those whose id or ``metadata[refund_no]`` is in ``fail``
        fail (the card was closed) and their money comes back to the balance."""
        failing = set(fail)
        with self._lock:
            pending = [
                self.objects[i]
                for i in self.order.get("refund", [])
                if self.objects[i]["status"] == "pending"
            ]
            for refund in pending:
                named = {refund["id"], refund["metadata"].get("refund_no")}
                self._settle(refund, failed=bool(named & failing))
            return len(pending)

    def _settle(self, refund: dict[str, Any], failed: bool) -> None:
        charge = self.get("charge", refund["charge"])
        if failed:
            refund.update(status="failed", failure_reason="expired_or_canceled_card")
            back = self.get("balance_transaction", refund["balance_transaction"])
            self.ledger.add(
                "refund_failure",
                -back["amount"],
                0,
                refund["id"],
                back["currency"],
                self.clock.now(),
                "Refund failure",
                back["exchange_rate"],
            )
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = False
            self.events.emit("refund.failed", refund)
            return
        refund["status"] = "succeeded"
        self.events.emit("refund.updated", refund)
        self.events.emit("charge.refunded", charge)

    # --- payouts -------------------------------------------------------------------------------

    def run_payout(self, currency: str, arrival_date: date) -> dict[str, Any] | None:
        """The automatic payout of ``currency``'s available balance (``None`` if there is
        nothing to pay out)."""
        with self._lock:
            return self.ledger.run_payout(currency.lower(), arrival_date)

    # --- faults --------------------------------------------------------------------------------

    def take_timeout(self, operation: str, subject: str) -> bool:
        """Whether this answer must come too late (``FirstTimeouts``)."""
        return self._timeouts.take(self.faults, operation, subject)


def _search_value(intent: Mapping[str, Any], name: str) -> str | None:
    if name.startswith("metadata[") and name.endswith("]"):
        value = intent["metadata"].get(name[9:-1])
        return None if value is None else str(value)
    value = intent.get(name)
    return None if value is None else str(value)


def _card(pm: str) -> dict[str, Any]:
    brand = next((b for b in ("mastercard", "amex") if b in pm), "visa")
    last4 = {"visa": "4242", "mastercard": "4444", "amex": "8431"}[brand]
    return {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034, "country": "US"}


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    extra = {"param": param} if param else {}
    return ApiError(400, "invalid_request_error", message, code=code, **extra)


def _unexpected_state(intent: Mapping[str, Any], action: str) -> ApiError:
    return ApiError(
        400,
        "invalid_request_error",
        f"This PaymentIntent's {action} could not be performed because it has a status of "
        f"{intent['status']}.",
        code="payment_intent_unexpected_state",
        payment_intent=dict(intent),
    )


def _positive_int(params: Mapping[str, Any], name: str) -> int:
    raw = params.get(name)
    if not isinstance(raw, str | int) or isinstance(raw, bool) or not str(raw).isdigit():
        raise _invalid(f"Invalid integer: {raw}", name, code="parameter_invalid_integer")
    value = int(raw)
    if value < 1:
        raise _invalid("Amount must be at least 1", name, code="amount_too_small")
    return value


def _currency(params: Mapping[str, Any]) -> str:
    raw = params.get("currency")
    if not isinstance(raw, str) or len(raw) != 3 or not raw.isalpha():
        raise _invalid(f"Invalid currency: {raw}", "currency", code="parameter_missing")
    try:
        Money(0, raw.upper())
    except ClearhouseError:
        raise _invalid(f"Invalid currency: {raw}", "currency") from None
    return raw.lower()


def _metadata(params: Mapping[str, Any]) -> dict[str, str]:
    raw = params.get("metadata") or {}
    if not isinstance(raw, dict):
        raise _invalid("Invalid metadata", "metadata")
    return {str(k): str(v) for k, v in raw.items() if v != ""}


def _flag(value: object) -> bool:
    return value is True or value == "true"


def _shown(amount: int, currency: str) -> str:
    return Money(amount, currency.upper()).format()
