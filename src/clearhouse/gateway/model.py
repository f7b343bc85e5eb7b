"""Payments as pure values and rules: statuses, the forward-only state machine, what a payment
or a refund posts to the ledger, and the refund policy. No I/O here (an architecture test holds
this file to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from clearhouse.fees import FeeSchedule
from clearhouse.gateway.channels.port import ChannelStatus
from clearhouse.money import Money, allocate


class Settlement(StrEnum):
    INSTANT = "instant"  # straight to the merchant's settlement account, less commission
    ESCROW = "escrow"  # held by the platform until the order completes (guaranteed transaction)


class IntentStatus(StrEnum):
    PROCESSING = "PROCESSING"  # an attempt is out at the channel
    SUCCEEDED = "SUCCEEDED"  # paid; escrow funds still held
    COMPLETED = "COMPLETED"  # escrow released to the merchant
    FAILED = "FAILED"
    CLOSED = "CLOSED"  # closed unpaid


class AttemptStatus(StrEnum):
    CREATED = "CREATED"  # stored, not yet answered by the channel
    PENDING = "PENDING"  # the channel has it; the payer has not paid
    UNKNOWN = "UNKNOWN"  # the channel's answer was lost or unreadable: query, never guess
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CLOSED = "CLOSED"


class RefundStatus(StrEnum):
    PENDING = "PENDING"  # sent, or to be sent again with the same refund number
    UNKNOWN = "UNKNOWN"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    PAYOUT_REQUIRED = "PAYOUT_REQUIRED"  # the channel refused: the money goes back by payout


FINAL_ATTEMPT = frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.CLOSED})
FINAL_REFUND = frozenset(
    {RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.PAYOUT_REQUIRED}
)

# Forward moves only. UNKNOWN may learn it was PENDING; nothing returns to UNKNOWN or CREATED;
# final states absorb everything.
_ATTEMPT_MOVES: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.CREATED: frozenset(AttemptStatus) - {AttemptStatus.CREATED},
    AttemptStatus.UNKNOWN: frozenset(FINAL_ATTEMPT | {AttemptStatus.PENDING}),
    AttemptStatus.PENDING: FINAL_ATTEMPT,
    AttemptStatus.SUCCEEDED: frozenset(),
    AttemptStatus.FAILED: frozenset(),
    AttemptStatus.CLOSED: frozenset(),
}

_FROM_CHANNEL = {
    ChannelStatus.PENDING: AttemptStatus.PENDING,
    ChannelStatus.SUCCEEDED: AttemptStatus.SUCCEEDED,
    ChannelStatus.FAILED: AttemptStatus.FAILED,
    ChannelStatus.CLOSED: AttemptStatus.CLOSED,
    ChannelStatus.UNKNOWN: AttemptStatus.UNKNOWN,
}


def advance_attempt(current: AttemptStatus, observed: ChannelStatus) -> AttemptStatus:
    """The attempt's status after the channel said ``observed``: a move the machine allows, or
    no move at all (a stale, duplicate or out-of-order answer changes nothing)."""
    target = _FROM_CHANNEL[observed]
    return target if target in _ATTEMPT_MOVES[current] else current


def can_move(current: AttemptStatus, target: AttemptStatus) -> bool:
    return target in _ATTEMPT_MOVES[current]


def advance_refund(current: RefundStatus, observed: ChannelStatus) -> RefundStatus:
    if current in FINAL_REFUND:
        return current
    if observed is ChannelStatus.SUCCEEDED:
        return RefundStatus.SUCCEEDED
    if observed is ChannelStatus.FAILED:
        return RefundStatus.FAILED
    if observed is ChannelStatus.PENDING:
        return RefundStatus.PENDING
    return current


def intent_status_after(attempt: AttemptStatus) -> IntentStatus:
    """An intent carries one live attempt at a time: its status follows the attempt's."""
    return {
        AttemptStatus.SUCCEEDED: IntentStatus.SUCCEEDED,
        AttemptStatus.FAILED: IntentStatus.FAILED,
        AttemptStatus.CLOSED: IntentStatus.CLOSED,
    }.get(attempt, IntentStatus.PROCESSING)


# --- polling --------------------------------------------------------------------------------

# Waits between queries of an attempt or refund that has no final answer: quick at first (most
# payers pay within a minute), then spread out; the last wait repeats.
POLL_BACKOFF = tuple(timedelta(seconds=s) for s in (5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))


def next_poll(polls_done: int, now: datetime) -> datetime:
    return now + POLL_BACKOFF[min(polls_done, len(POLL_BACKOFF) - 1)]


# --- money ----------------------------------------------------------------------------------


def commission(amount: Money, commission_bps: int) -> Money:
    """The platform's commission: the bps share of ``amount`` by the one allocation function,
    so commission + merchant share is exactly the amount."""
    if commission_bps == 0:
        return Money.zero(amount.currency)
    share, _rest = allocate(amount.amount, [commission_bps, 10_000 - commission_bps])
    return Money(share, amount.currency)


@dataclass(frozen=True, slots=True)
class ChannelCodes:
    """Posting-rule codes of one channel (see ledger/posting_rules.toml)."""

    escrow: str
    instant: str
    fee: str
    fee_returned: str
    refund_escrow: str
    refund_settled: str
    topup: str  # a buyer balance topped up through the channel


CHANNEL_CODES = {
    "quickpay": ChannelCodes("1001", "1101", "1201", "1211", "3001", "3101", "4001"),
    "wechatpay": ChannelCodes("1002", "1102", "1202", "1212", "3002", "3102", "4002"),
    "alipay": ChannelCodes("1003", "1103", "1203", "1213", "3003", "3103", "4003"),
    "stripe": ChannelCodes("1004", "1104", "1204", "1214", "3004", "3104", "4004"),
    "paypal": ChannelCodes("1005", "1105", "1205", "1215", "3005", "3105", "4005"),
}


@dataclass(frozen=True, slots=True)
class PlannedPost:
    """One ledger post, before the ledger has seen it: key suffix, rule code and amounts."""

    suffix: str
    code: str
    amounts: dict[str, int]


def payment_posts(
    channel: str, settlement: Settlement, amount: Money, commission_: Money, fee: Money
) -> list[PlannedPost]:
    codes = CHANNEL_CODES[channel]
    if settlement is Settlement.ESCROW:
        posts = [PlannedPost("paid", codes.escrow, {"amount": amount.amount})]
    else:
        merchant = (amount - commission_).amount
        posts = [
            PlannedPost(
                "paid",
                codes.instant,
                {"merchant_amount": merchant, "commission": commission_.amount},
            )
        ]
    if fee.amount > 0:
        posts.append(PlannedPost("fee", codes.fee, {"fee": fee.amount}))
    return posts


def completion_post(amount: Money, commission_: Money) -> PlannedPost:
    merchant = (amount - commission_).amount
    return PlannedPost(
        "completed", "2001", {"merchant_amount": merchant, "commission": commission_.amount}
    )


def refund_posts(
    channel: str,
    settled: bool,
    refund: Money,
    refund_commission: Money,
    fee_returned: Money,
) -> list[PlannedPost]:
    """A refund out of escrow (not yet settled) or back from the merchant and the platform's
    commission (settled), plus the fee share the channel returns."""
    codes = CHANNEL_CODES[channel]
    if settled:
        merchant = (refund - refund_commission).amount
        posts = [
            PlannedPost(
                "refunded",
                codes.refund_settled,
                {"merchant_amount": merchant, "commission": refund_commission.amount},
            )
        ]
    else:
        posts = [PlannedPost("refunded", codes.refund_escrow, {"amount": refund.amount})]
    if fee_returned.amount > 0:
        posts.append(PlannedPost("fee-returned", codes.fee_returned, {"fee": fee_returned.amount}))
    return posts


# --- refunds --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundPolicy:
    """A channel's refund terms (P8)."""

    window: timedelta
    max_refunds: int
    fees: FeeSchedule


class RefundRefusal(StrEnum):
    NOT_REFUNDABLE = "PAYMENT_NOT_REFUNDABLE"
    EXCEEDS_REFUNDABLE = "REFUND_EXCEEDS_REFUNDABLE"
    LIMIT_REACHED = "REFUND_LIMIT_REACHED"
    WINDOW_CLOSED = "REFUND_WINDOW_CLOSED"


def check_refund(
    policy: RefundPolicy,
    status: IntentStatus,
    paid: Money,
    refunded: Money,
    refund_count: int,
    paid_at: datetime | None,
    refund: Money,
    now: datetime,
) -> RefundRefusal | None:
    """Why a refund of ``refund`` may not be made now, or None. ``refunded`` counts refunds
    already asked for that have not failed: two refunds racing cannot both take the remainder."""
    if status not in (IntentStatus.SUCCEEDED, IntentStatus.COMPLETED) or paid_at is None:
        return RefundRefusal.NOT_REFUNDABLE
    if refund.amount > (paid - refunded).amount:
        return RefundRefusal.EXCEEDS_REFUNDABLE
    if refund_count >= policy.max_refunds:
        return RefundRefusal.LIMIT_REACHED
    if now > paid_at + policy.window:
        return RefundRefusal.WINDOW_CLOSED
    return None


def prorated(part: Money, paid: Money, before: Money, refund: Money) -> Money:
    """The share of ``part`` (a commission) that a refund of ``refund`` takes back, after
    ``before`` already refunded. Cumulative floors, so the shares of any sequence of partial
    refunds add up to exactly ``part`` once the whole payment is refunded."""
    after = before + refund
    return Money(
        part.amount * after.amount // paid.amount - part.amount * before.amount // paid.amount,
        part.currency,
    )
