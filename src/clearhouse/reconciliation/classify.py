"""What a difference is (R4) and how a statement line's status is read. Pure.

The matching engine runs these rules in SQL; ``classify_pair`` states them once in Python, and a
test holds the SQL to it. Codes are stable: they are stored with every difference and drive its
handling (R5), so a code is never renamed or reused.
"""

from __future__ import annotations

from enum import StrEnum


class DifferenceType(StrEnum):
    LONG = "LONG"  # the channel has money we have not confirmed
    SHORT = "SHORT"  # we confirmed money the channel has not (yet): usually a cut-off
    DUPLICATE = "DUPLICATE_PAYMENT"  # a second channel payment for one order or attempt
    AMOUNT = "AMOUNT_MISMATCH"  # both sides have the money, in different amounts
    FEE = "FEE_MISMATCH"  # the fee on the line is not the schedule's fee
    STATUS = "STATUS_MISMATCH"  # we confirmed; the channel says it failed or was reversed
    FX = "FX_DIFFERENCE"  # another currency, off by more than one minor unit of rounding
    PAYOUT = "PAYOUT_MISMATCH"  # a payout or bank credit is not the sum of its items


class MatchPass(StrEnum):
    """How a line and one of our records were paired, strongest first."""

    REFERENCE = "REF"  # our reference (attempt or refund id) as the channel echoes it
    TXN = "TXN"  # the channel's transaction (or refund) id we stored
    FUZZY = "FUZZY"  # normalised reference, amount within tolerance, time within the window


class LineState(StrEnum):
    """A line's status read as money: moved, not yet, or not at all."""

    OK = "ok"
    PENDING = "pending"
    FAILED = "failed"


# A statement lists money that moved; a status word only says otherwise when it is one of
# these. Upper-cased and trimmed before lookup; an unknown or empty word reads as moved.
PENDING_WORDS = frozenset(
    {
        "PENDING",
        "PROCESSING",
        "IN_PROGRESS",
        "NOTPAY",
        "USERPAYING",
        "WAIT_BUYER_PAY",
        "处理中",
        "等待付款",
    }
)
FAILED_WORDS = frozenset(
    {
        "FAIL",
        "FAILED",
        "FAILURE",
        "CLOSED",
        "TRADE_CLOSED",
        "REVOKED",
        "PAYERROR",
        "CANCELLED",
        "CANCELED",
        "DENIED",
        "DECLINED",
        "VOIDED",
        "REVERSED",
        "ABNORMAL",
        "CHANGE",  # WeChat Pay: a refund that could not reach the payer
        "失败",
        "交易关闭",
        "已关闭",
        "已撤销",
    }
)
# One-letter transaction status codes mean something only in their own channel's files.
SOURCE_WORDS: dict[str, dict[str, LineState]] = {
    "paypal": {"P": LineState.PENDING, "D": LineState.FAILED, "V": LineState.FAILED},
}

# Our statuses (ours.OURS ``status``) that mean we hold the money as moved.
CONFIRMED = frozenset({"succeeded", "refunded"})


def line_state(source: str, status: str | None) -> LineState:
    word = (status or "").strip().upper()
    own = SOURCE_WORDS.get(source, {})
    if word in own:
        return own[word]
    if word in PENDING_WORDS:
        return LineState.PENDING
    if word in FAILED_WORDS:
        return LineState.FAILED
    return LineState.OK


def classify_pair(
    *,
    kind: str,
    state: LineState,
    confirmed: bool,
    money_agrees: bool,
    same_currency: bool,
    paid_by_other: bool,
) -> DifferenceType | None:
    """The difference a paired line and record make, or None when they agree.

    ``money_agrees``: equal amounts in one currency, or within one minor unit at the rate we
    recorded in two. ``paid_by_other``: our order was paid by another attempt of ours.
    A line that moved no money paired with a record that holds none agrees whatever the
    amounts: neither side has money to reconcile.
    """
    moved = state is LineState.OK
    if moved and not confirmed:
        if kind == "payment" and paid_by_other:
            return DifferenceType.DUPLICATE
        return DifferenceType.LONG
    if not moved and confirmed:
        return DifferenceType.SHORT if state is LineState.PENDING else DifferenceType.STATUS
    if not moved:
        return None
    if not money_agrees:
        return DifferenceType.AMOUNT if same_currency else DifferenceType.FX
    return None
