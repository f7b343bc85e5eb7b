"""Money movements of a buyer's balance as pure values and rules: top-up, transfer and
withdrawal; the bank rail a withdrawal takes (P10); how a bank's refusal is classed and when a
withdrawal is suspended for an operator (P9). No I/O here (an architecture test holds this file
to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from clearhouse.money import Money


class MovementKind(StrEnum):
    TOPUP = "topup"  # a channel payment into a buyer's balance
    TRANSFER = "transfer"  # from one buyer balance to another, at once
    WITHDRAWAL = "withdrawal"  # from a buyer balance to the holder's bound bank card


class WithdrawalStatus(StrEnum):
    REQUESTED = "REQUESTED"  # held in the ledger, waiting for its rail's next batch
    SUBMITTED = "SUBMITTED"  # in a batch at the bank; its answer is not applied yet
    PAID = "PAID"
    FAILED = "FAILED"  # the bank (or the card's state) refused it for good: hold voided
    SUSPENDED = "SUSPENDED"  # too many short errors: held, waiting for an operator


FINAL_WITHDRAWAL = frozenset({WithdrawalStatus.PAID, WithdrawalStatus.FAILED})

# Forward moves only. A short error sends a submitted withdrawal back to REQUESTED (due for the
# next batch); an operator moves a suspended one on (resume or fail); PAID and FAILED absorb.
# The bank's word that it paid wins from any open state (a late answer, or a query's).
_WITHDRAWAL_MOVES: dict[WithdrawalStatus, frozenset[WithdrawalStatus]] = {
    WithdrawalStatus.REQUESTED: frozenset(
        {WithdrawalStatus.SUBMITTED, WithdrawalStatus.FAILED, WithdrawalStatus.PAID}
    ),
    WithdrawalStatus.SUBMITTED: frozenset(
        {
            WithdrawalStatus.PAID,
            WithdrawalStatus.FAILED,
            WithdrawalStatus.REQUESTED,
            WithdrawalStatus.SUSPENDED,
        }
    ),
    WithdrawalStatus.SUSPENDED: frozenset(
        {WithdrawalStatus.REQUESTED, WithdrawalStatus.FAILED, WithdrawalStatus.PAID}
    ),
    WithdrawalStatus.PAID: frozenset(),
    WithdrawalStatus.FAILED: frozenset(),
}


def can_move(current: WithdrawalStatus, target: WithdrawalStatus) -> bool:
    return target in _WITHDRAWAL_MOVES[current]


# --- rails (P10) ----------------------------------------------------------------------------


class Rail(StrEnum):
    REALTIME = "realtime"  # small amounts, any hour, settled in seconds
    BATCH = "batch"  # deferred net settlement in files, any hour
    LARGE_VALUE = "large_value"  # gross settlement, business hours only


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When the large-value system is open: local opening and closing time on working days
    (Monday is 0), less holidays."""

    zone: str = "Asia/Shanghai"
    opens: time = time(8, 30)
    closes: time = time(17, 0)
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        assert self.opens < self.closes, "a business day opens before it closes"
        assert self.weekdays, "a week has working days"
        assert self.weekdays <= set(range(7)), "weekdays are 0..6"

    def _working(self, day: date) -> bool:
        return day.weekday() in self.weekdays and day not in self.holidays

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.zone))
        return self._working(local.date()) and self.opens <= local.time() < self.closes

    def next_opening(self, at: datetime) -> datetime:
        """``at`` if open then, else the next moment the system opens (in UTC)."""
        if self.is_open(at):
            return at
        zone = ZoneInfo(self.zone)
        local = at.astimezone(zone)
        day = local.date()
        if local.time() >= self.opens:
            day += timedelta(days=1)
        # Every week has a working day unless every day of it is a holiday: bounded search.
        for _ in range(366 + 7):
            if self._working(day):
                return datetime.combine(day, self.opens, zone).astimezone(at.tzinfo)
            day += timedelta(days=1)
        raise AssertionError("no working day within a year")


# 50,000.00 CNY: the ceiling of real-time interbank transfers; above it, large-value.
DEFAULT_REALTIME_MAX_MINOR = 5_000_000
RAIL_CURRENCY = "CNY"


@dataclass(frozen=True, slots=True)
class RailPolicy:
    """Which rail carries an amount. Up to ``realtime_max_minor``: real-time, at any hour.
    Above ``large_value_above_minor``: large-value, only when it is open (otherwise the
    withdrawal waits for the next opening). Between the two: the batch rail, at any hour.
    With the defaults the two thresholds meet and the batch band is empty; a bank whose
    real-time ceiling is lower opens it."""

    realtime_max_minor: int = DEFAULT_REALTIME_MAX_MINOR
    large_value_above_minor: int = DEFAULT_REALTIME_MAX_MINOR
    currency: str = RAIL_CURRENCY
    hours: BusinessHours = field(default_factory=BusinessHours)

    def __post_init__(self) -> None:
        assert 0 < self.realtime_max_minor <= self.large_value_above_minor


@dataclass(frozen=True, slots=True)
class RailChoice:
    rail: Rail
    due_at: datetime  # the earliest moment a batch may carry it


def choose_rail(policy: RailPolicy, amount: Money, at: datetime) -> RailChoice:
    """Deterministic: the same amount at the same moment always takes the same rail."""
    assert amount.currency == policy.currency
    assert amount.amount > 0
    if amount.amount <= policy.realtime_max_minor:
        return RailChoice(Rail.REALTIME, at)
    if amount.amount > policy.large_value_above_minor:
        return RailChoice(Rail.LARGE_VALUE, policy.hours.next_opening(at))
    return RailChoice(Rail.BATCH, at)


def may_submit(policy: RailPolicy, rail: Rail, at: datetime) -> bool:
    """A batch of ``rail`` may go to the bank at ``at`` (large-value only in business hours)."""
    return rail is not Rail.LARGE_VALUE or policy.hours.is_open(at)


# --- bank answers (P9) ----------------------------------------------------------------------


class FailureClass(StrEnum):
    FINAL = "final"  # the payout can never succeed as asked: release the money
    SHORT = "short"  # the bank could not take it now: try again in a later batch


# The bank's item codes (the sandbox's, documented in docs/adr/0008-wallet-movements.md).
FINAL_CODES = frozenset(
    {
        "ACCOUNT_CLOSED",  # the card's account is closed
        "NAME_MISMATCH",  # the holder's name is not the account's
        "ACCOUNT_NOT_FOUND",  # no such card at the bank
        "CARD_UNBOUND",  # ours: the card was unbound before its batch went
        "RAIL_REFUSED",  # the rail does not take this amount
    }
)
SHORT_CODES = frozenset({"BANK_BUSY", "BANK_TIMEOUT", "OUTSIDE_BUSINESS_HOURS"})
# A withdrawal that met this many short errors is suspended, never retried forever.
MAX_SHORT_ERRORS = 3


def classify(code: str) -> FailureClass:
    """A code we do not know is short: the bank said the money did not move, so retrying is
    safe, and the suspension rule hands a persistent one to an operator instead of releasing
    money on a guess."""
    return FailureClass.FINAL if code in FINAL_CODES else FailureClass.SHORT


def after_short_error(short_errors: int) -> tuple[WithdrawalStatus, int]:
    """The status and count of short errors after one more."""
    count = short_errors + 1
    status = WithdrawalStatus.SUSPENDED if count >= MAX_SHORT_ERRORS else WithdrawalStatus.REQUESTED
    return status, count


# Withdrawals one batch carries at most (a bank file's usual cap).
MAX_BATCH_ITEMS = 500
