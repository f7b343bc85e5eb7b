"""Fault injection for the sandboxes, deterministic from a seed.

Every decision is a pure function of (seed, fault, subject): the same order meets the same fault
however requests interleave across threads, so a run can be replayed. ``forced`` names subjects
that meet a fault whatever the rate (a test's way to say "this order's notification is lost").
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class Fault(StrEnum):
    TIMEOUT = "timeout"  # the request is processed, the answer comes too late for the client
    LOST_NOTIFICATION = "lost_notification"  # never delivered, at any retry
    DUPLICATE_NOTIFICATION = "duplicate_notification"  # delivered twice
    REORDERED_NOTIFICATION = "reordered_notification"  # held back behind later ones
    LATE_RESULT = "late_result"  # booked after the day's cut-off (WeChat Pay, Alipay: paid before)
    WRONG_FEE = "wrong_fee"  # the channel charges one minor unit more than its schedule
    DUPLICATE_PAYMENT = "duplicate_payment"  # the payer pays the same order twice
    BANK_BUSY = "bank_busy"  # the payout bank refuses an item for now (a short error)
    # Reconciliation faults: what the channel's bill says differs from what it told us.
    BILL_AMOUNT = "bill_amount"  # the payer was charged another amount than the order's
    BILL_STATUS = "bill_status"  # confirmed to us, listed as reversed in the bill
    FX_RATE_DRIFT = "fx_rate_drift"  # settled at another rate than the one it confirmed


# The sandboxes that plant a fault, where not all of them do.
PLANTED_BY: dict[Fault, frozenset[str]] = {
    Fault.DUPLICATE_PAYMENT: frozenset({"wechatpay", "alipay", "quickpay", "quickpay_b"}),
    Fault.WRONG_FEE: frozenset(
        {"wechatpay", "alipay", "stripe", "paypal", "quickpay", "quickpay_b"}
    ),
    Fault.BILL_AMOUNT: frozenset({"wechatpay", "alipay", "stripe", "paypal"}),
    Fault.BILL_STATUS: frozenset({"wechatpay"}),
    Fault.FX_RATE_DRIFT: frozenset({"stripe"}),
    Fault.BANK_BUSY: frozenset({"bank"}),
}


def planted_at(fault: Fault, sandbox: str) -> bool:
    """Whether ``sandbox`` plants ``fault`` at all."""
    return sandbox in PLANTED_BY.get(fault, frozenset({sandbox}))


@dataclass(frozen=True, slots=True)
class FaultPlan:
    seed: int = 0
    # Probability of each fault per subject, in parts per million (integers: no float rounding
    # ambiguity about whether a given subject is hit).
    rates_ppm: dict[Fault, int] = field(default_factory=dict)
    forced: dict[Fault, frozenset[str]] = field(default_factory=dict)

    def hits(self, fault: Fault, subject: str) -> bool:
        if subject in self.forced.get(fault, frozenset()):
            return True
        rate = self.rates_ppm.get(fault, 0)
        if rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{fault.value}:{subject}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % 1_000_000 < rate

    def force(self, fault: Fault, *subjects: str) -> FaultPlan:
        forced = dict(self.forced)
        forced[fault] = forced.get(fault, frozenset()) | frozenset(subjects)
        return FaultPlan(self.seed, dict(self.rates_ppm), forced)


NO_FAULTS = FaultPlan()

# How far FX_RATE_DRIFT moves a rate: 2 %, enough to shift any converted amount above a few
# minor units by more than the one unit of rounding reconciliation allows.
RATE_DRIFT = Decimal("1.02")


def billed_amount(amount: int) -> int:
    """What the channel charged the payer under BILL_AMOUNT, in minor units: one percent off
    the order (a discount the merchant never agreed to), at least one unit, never zero."""
    return amount - max(1, amount // 100) if amount > 1 else amount + 1


class FirstTimeouts:
    """Which calls already had their answer delayed: only the first state-changing call per
    (operation, subject) meets the timeout fault, so a client's query or retry can find out
    what happened. Thread-safe: the served sandboxes answer on several threads."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def take(self, plan: FaultPlan, operation: str, subject: str) -> bool:
        with self._lock:
            key = (operation, subject)
            if key in self._seen or not plan.hits(Fault.TIMEOUT, subject):
                return False
            self._seen.add(key)
            return True
