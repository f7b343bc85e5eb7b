"""The Stripe sandbox's balance: balance transactions, payouts and the itemized report rows.

Every movement of the balance is a balance transaction (``txn_``): ``charge`` (gross, fee per
the schedule, net), ``refund`` (negative, no fee: Stripe keeps the charge's fee),
``refund_failure`` (the money back), ``payout`` (negative). A transaction is ``pending`` until its
``available_on``, then ``available``. An automatic payout sweeps the available transactions not yet
paid out and records itself on each of them, which is what ``?payout=`` and the report follow.
Callers hold the sandbox's lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from clearhouse.money import Money, Rounding, convert
from clearhouse.sandbox.stripe.events import ApiError, new_id
from clearhouse.sandbox.stripe.reports import ReportRow

if TYPE_CHECKING:
    from clearhouse.sandbox.stripe.state import StripeSandbox

# The sandbox's market: US dollars per unit of each currency (Stripe's exchange rates move;
# these stand still, so a run can be replayed). Cross rates go through the dollar.
USD_PER_UNIT: dict[str, Decimal] = {
    "USD": Decimal(1),
    "EUR": Decimal("1.0845"),
    "GBP": Decimal("1.2713"),
    "CAD": Decimal("0.7312"),
    "AUD": Decimal("0.6587"),
    "CHF": Decimal("1.1298"),
    "JPY": Decimal("0.006712"),
    "CNY": Decimal("0.1382"),
    "HKD": Decimal("0.1281"),
    "SGD": Decimal("0.7436"),
}
RATE_PLACES = Decimal("0.000001")  # Stripe reports exchange_rate to six decimals


def exchange_rate(source: str, target: str) -> Decimal:
    """Units of ``target`` per unit of ``source`` (Stripe's ``exchange_rate``: the amount in
    ``source`` times it is the amount in ``target``); an unquoted currency is an ApiError."""
    try:
        rate = USD_PER_UNIT[source.upper()] / USD_PER_UNIT[target.upper()]
    except KeyError:
        raise ApiError(
            400,
            "invalid_request_error",
            f"Conversion from {source} to {target} is not supported.",
            "currency_conversion_unsupported",
        ) from None
    return rate.quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def converted(amount: int, source: str, target: str, rate: Decimal) -> int:
    """``amount`` minor units of ``source`` in minor units of ``target``, half up."""
    money = Money(amount, source.upper())
    return convert(money, target.upper(), rate, Rounding.HALF_UP).target.amount


@dataclass(frozen=True, slots=True)
class Resettlement:
    """A charge that settles at another rate than the one its balance transaction showed when
    it was made (FX_RATE_DRIFT): applied when its funds become available."""

    presented: Money  # the charge, in its own currency
    rate: Decimal  # the rate it settles at
    extra_fee: int  # WRONG_FEE's unit, kept through the re-conversion


_CATEGORY = {
    "charge": "charge",
    "refund": "refund",
    "refund_failure": "refund_failure",
    "payout": "payout",
}


class Ledger:
    def __init__(self, sandbox: StripeSandbox, availability_delay: timedelta) -> None:
        self._sandbox = sandbox
        self.availability_delay = availability_delay
        self._payout_of: dict[str, str] = {}  # txn id -> the automatic payout that settled it
        self.resettle: dict[str, Resettlement] = {}  # txn id -> its settlement, once available

    def add(
        self,
        kind: str,
        amount: int,
        fee: int,
        source: str,
        currency: str,
        created: datetime,
        description: str,
        exchange_rate: Decimal | None = None,
    ) -> dict[str, Any]:
        """``exchange_rate``: the charge was in another currency, converted into ``currency``
        at that rate (written as a JSON number, as Stripe does)."""
        # Charges wait out the settlement delay; debits take effect at once.
        delay = self.availability_delay if kind == "charge" else timedelta(0)
        return self._sandbox.store(
            {
                "id": new_id("txn"),
                "object": "balance_transaction",
                "amount": amount,
                "available_on": int((created + delay).timestamp()),
                "created": int(created.timestamp()),
                "currency": currency,
                "description": description,
                "exchange_rate": exchange_rate,
                "fee": fee,
                "fee_details": _fee_details(fee, currency),
                "net": amount - fee,
                "reporting_category": _CATEGORY[kind],
                "source": source,
                "status": "pending",
                "type": kind,
            }
        )

    def view(self, txn: dict[str, Any]) -> dict[str, Any]:
        txn["status"] = "available" if self._sandbox.now() >= txn["available_on"] else "pending"
        if txn["status"] == "available" and txn["id"] in self.resettle:
            self._settle_at(txn, self.resettle.pop(txn["id"]))
        return txn

    def _settle_at(self, txn: dict[str, Any], how: Resettlement) -> None:
        """Convert the charge again at the settlement rate: its amount, fee and net move."""
        currency = txn["currency"]
        amount = converted(how.presented.amount, how.presented.currency, currency, how.rate)
        fee = self._sandbox.fee.fee(Money(amount, currency.upper())).amount + how.extra_fee
        txn.update(
            amount=amount,
            fee=fee,
            fee_details=_fee_details(fee, currency),
            net=amount - fee,
            exchange_rate=how.rate,
        )

    def transactions(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Balance transactions newest first, filtered as ``GET /v1/balance_transactions``."""
        sandbox = self._sandbox
        payout, kind = params.get("payout"), params.get("type")
        source, currency = params.get("source"), params.get("currency")
        created = params.get("created")
        found = []
        for txn_id in reversed(sandbox.order.get("balance_transaction", [])):
            txn = self.view(sandbox.objects[txn_id])
            if payout is not None:
                payout_obj = sandbox.get("payout", str(payout))
                own = txn["id"] == payout_obj["balance_transaction"]
                if not own and self._payout_of.get(txn_id) != payout:
                    continue
            if (kind is not None and txn["type"] != kind) or (
                source is not None and txn["source"] != source
            ):
                continue
            if currency is not None and txn["currency"] != str(currency).lower():
                continue
            if created is not None and not _in_range(txn["created"], created):
                continue
            found.append(txn)
        return found

    def balance(self) -> dict[str, Any]:
        available: dict[str, int] = {}
        pending: dict[str, int] = {}
        for txn_id in self._sandbox.order.get("balance_transaction", []):
            txn = self.view(self._sandbox.objects[txn_id])
            bucket = available if txn["status"] == "available" else pending
            bucket[txn["currency"]] = bucket.get(txn["currency"], 0) + txn["net"]
        return {
            "object": "balance",
            "available": [{"amount": a, "currency": c} for c, a in sorted(available.items())],
            "pending": [{"amount": a, "currency": c} for c, a in sorted(pending.items())],
            "livemode": False,
        }

    # --- payouts -------------------------------------------------------------------------------

    def create_payout(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A manual payout: it must fit the available balance, and settles no particular
        transactions (Stripe cannot say which ones a manual payout paid)."""
        raw, currency = params.get("amount"), str(params.get("currency", "")).lower()
        if not isinstance(raw, str) or not raw.isdigit() or int(raw) < 1:
            raise ApiError(
                400, "invalid_request_error", f"Invalid integer: {raw}", "parameter_invalid_integer"
            )
        amount = int(raw)
        available = next(
            (b["amount"] for b in self.balance()["available"] if b["currency"] == currency), 0
        )
        if amount > available:
            raise ApiError(
                400,
                "invalid_request_error",
                "You have insufficient funds in your Stripe account for this transfer.",
                "balance_insufficient",
            )
        now = self._sandbox.clock.now()
        arrival = now.date() + timedelta(days=2)
        return self._payout(amount, currency, arrival, automatic=False, params=params)

    def run_payout(self, currency: str, arrival_date: date) -> dict[str, Any] | None:
        sandbox = self._sandbox
        swept = [
            txn
            for txn_id in sandbox.order.get("balance_transaction", [])
            if (txn := self.view(sandbox.objects[txn_id]))["currency"] == currency
            and not self._automatic_payout(txn)
            and txn["status"] == "available"
            and txn_id not in self._payout_of
        ]
        amount = sum(t["net"] for t in swept)
        if not swept or amount <= 0:
            return None
        payout = self._payout(amount, currency, arrival_date, automatic=True, params={})
        for txn in swept:
            self._payout_of[txn["id"]] = payout["id"]
        sandbox.events.emit("payout.paid", payout)
        return payout

    def _automatic_payout(self, txn: Mapping[str, Any]) -> bool:
        # A manual payout's debit is swept like any other movement (so the automatic payout
        # never exceeds the balance); an automatic payout's own debit is not.
        source = self._sandbox.objects.get(txn["source"], {})
        return txn["type"] == "payout" and bool(source.get("automatic"))

    def _payout(
        self,
        amount: int,
        currency: str,
        arrival: date,
        automatic: bool,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        sandbox = self._sandbox
        payout_id = new_id("po")
        arrives = datetime.combine(arrival, time(), tzinfo=UTC)
        txn = self.add(
            "payout", -amount, 0, payout_id, currency, sandbox.clock.now(), "STRIPE PAYOUT"
        )
        metadata = params.get("metadata")
        return sandbox.store(
            {
                "id": payout_id,
                "object": "payout",
                "amount": amount,
                "arrival_date": int(arrives.timestamp()),
                "automatic": automatic,
                "balance_transaction": txn["id"],
                "created": sandbox.now(),
                "currency": currency,
                "description": params.get("description", "STRIPE PAYOUT"),
                "destination": "ba_sandbox",
                "livemode": False,
                "metadata": dict(metadata) if isinstance(metadata, dict) else {},
                "method": "standard",
                "reconciliation_status": "completed" if automatic else "not_applicable",
                "source_type": "card",
                "statement_descriptor": None,
                # Automatic payouts are paid at once: the sandbox compresses bank days.
                "status": "paid" if automatic else "pending",
                "type": "bank_account",
            }
        )

    # --- reconciliation ------------------------------------------------------------------------

    def report_rows(
        self, start: int | None, end: int | None, payout: str | None
    ) -> list[ReportRow]:
        """The itemized rows of the automatic payouts arriving in ``[start, end)`` (or of one)."""
        sandbox, rows = self._sandbox, []
        for payout_id in sandbox.order.get("payout", []):
            po = sandbox.objects[payout_id]
            effective = po["arrival_date"]
            if not po["automatic"] or (payout is not None and payout_id != payout):
                continue
            if (start is not None and effective < start) or (end is not None and effective >= end):
                continue
            for txn_id in sandbox.order.get("balance_transaction", []):
                if self._payout_of.get(txn_id) == payout_id:
                    rows.append(self._row(po, sandbox.objects[txn_id]))
        return rows

    def activity_rows(self, start: int | None, end: int | None) -> list[ReportRow]:
        """The itemized balance change rows: every balance transaction created in
        ``[start, end)`` except payouts, with the automatic payout that settled it, if any."""
        sandbox, rows = self._sandbox, []
        for txn_id in sandbox.order.get("balance_transaction", []):
            txn = self.view(sandbox.objects[txn_id])
            created = txn["created"]
            if txn["type"] == "payout" or (start is not None and created < start):
                continue
            if end is not None and created >= end:
                continue
            payout = sandbox.objects.get(self._payout_of.get(txn_id, ""))
            rows.append(self._row(payout, txn))
        return rows

    def _row(self, payout: Mapping[str, Any] | None, txn: Mapping[str, Any]) -> ReportRow:
        objects = self._sandbox.objects
        source = objects.get(txn["source"], {})
        charge = objects.get(source.get("charge", txn["source"]), {})
        intent = objects.get(charge.get("payment_intent") or "", {})
        refund = source if source.get("object") == "refund" else {}
        facing = txn["amount"] if txn["type"] in ("charge", "refund") else None
        return ReportRow(
            automatic_payout_id=payout["id"] if payout else "",
            automatic_payout_effective_at=(
                datetime.fromtimestamp(payout["arrival_date"], UTC) if payout else None
            ),
            balance_transaction_id=txn["id"],
            created=datetime.fromtimestamp(txn["created"], UTC),
            available_on=datetime.fromtimestamp(txn["available_on"], UTC),
            currency=txn["currency"],
            gross=txn["amount"],
            fee=txn["fee"],
            net=txn["net"],
            reporting_category=txn["reporting_category"],
            source_id=txn["source"],
            description=str(intent.get("description") or txn["description"] or ""),
            customer_facing_amount=facing,
            customer_facing_currency=txn["currency"] if facing is not None else "",
            payment_intent_id=str(intent.get("id", "")),
            charge_id=str(charge.get("id", "")),
            payment_metadata=dict(intent.get("metadata", {})),
            refund_metadata=dict(refund.get("metadata", {})),
        )


def _fee_details(fee: int, currency: str) -> list[dict[str, Any]]:
    if not fee:
        return []
    return [
        {
            "amount": fee,
            "application": None,
            "currency": currency,
            "description": "Stripe processing fees",
            "type": "stripe_fee",
        }
    ]


def _in_range(value: int, bounds: object) -> bool:
    """``created=<t>`` or ``created[gt|gte|lt|lte]=<t>``, in unix seconds."""
    if isinstance(bounds, str):
        return bounds.isdigit() and value == int(bounds)
    if not isinstance(bounds, dict):
        return True
    checks = {
        "gt": lambda b: value > b,
        "gte": lambda b: value >= b,
        "lt": lambda b: value < b,
        "lte": lambda b: value <= b,
    }
    for op, raw in bounds.items():
        if op not in checks or not str(raw).isdigit():
            raise ApiError(
                400, "invalid_request_error", f"Invalid created[{op}]", "parameter_invalid_integer"
            )
        if not checks[op](int(raw)):
            return False
    return True
