"""What happens to a difference (R5, R6): the fixed rules, the review queue, and suspense.

A difference is worth the channel's figure minus ours (``difference_amount``), in minor units.
When a batch finds a new one:

- LONG, a payment whose attempt is still awaiting payment (created, pending, unknown): marked
  paid through the gateway's own path (``PaymentsPort.apply_in`` with a success built from the
  line, source "reconciliation"), so the payment's usual entries are posted. Resolved
  ``mark_paid``.
- LONG whose order is closed or failed, and DUPLICATE_PAYMENT: the payer's money must go back
  through the channel. The gateway refunds an intent's paid attempt only, so these wait in the
  review queue (reason "refund to payer required"), parked in suspense.
- SHORT: ``carried`` (the carry-over pool), re-checked by the next days' batches; resolved
  ``resolve_carried`` when its line appears; still missing ``carry_days`` after it was found, it
  is ``open`` for review (a ``break``).
- Everything else (and whatever a rule could not settle): ``open`` in the review queue, with an
  ``alert`` when its size is above the currency's threshold (default 500.00).

Suspense (entries by posting rule, idempotent keys ``recon:park:<difference>`` and
``recon:unpark:<difference>``): an open or carried difference is parked by its channel's 950x
rule, ``channel_more`` (debit channel clearing, credit suspense) when the channel holds more than
we booked, ``channel_less`` (debit suspense, credit channel clearing) when it holds less. Channel
clearing then shows the channel's figure and suspense what is still unexplained. Resolving it by
a rule, by a re-run or by ``confirm`` reverses the parking entry; ``write_off`` and ``adjust``
move the suspense to channel fees by the 951x rule instead. FX differences are not parked: they
are in the channel's currency, which our books of that payment do not hold.

Every step is a ``recon_actions`` row (actor "system" for the rules) with its reason and evidence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from clearhouse.accounts.handlers import find_fund_account
from clearhouse.accounts.model import PLATFORM_ACCOUNT_ID, Role
from clearhouse.currencies import CURRENCIES
from clearhouse.db.schema import payment_attempts, recon_actions, recon_differences
from clearhouse.gateway.channels.port import ChannelResult, ChannelStatus
from clearhouse.ids import new_id
from clearhouse.ledger.requests import Post, Reverse
from clearhouse.ledger.service import Ledger
from clearhouse.money import Money
from clearhouse.reconciliation.classify import DifferenceType
from clearhouse.reconciliation.errors import ReconCode, ReconError

SYSTEM = "system"
SOURCE = "reconciliation"  # the flow record's source of a payment marked paid here

# Posting-rule codes per booking channel (posting_rules.toml, the 95xx block).
PARK_CODES = {"quickpay": "9501", "wechatpay": "9502", "alipay": "9503", "stripe": "9504"}
PARK_CODES |= {"paypal": "9505"}
WRITE_OFF_CODES = {"quickpay": "9511", "wechatpay": "9512", "alipay": "9513", "stripe": "9514"}
WRITE_OFF_CODES |= {"paypal": "9515"}

AWAITING = frozenset({"CREATED", "PENDING", "UNKNOWN"})
ENDED = frozenset({"CLOSED", "FAILED"})
DEFAULT_ALERT_MAJOR = 500  # a single difference above 500.00 in its currency alerts a reviewer


class Status:
    OPEN = "open"
    CARRIED = "carried"
    RESOLVED = "resolved"


class PaymentsPort(Protocol):
    """The gateway's way of applying a channel's answer to an attempt (``Payments.apply_in``)."""

    def apply_in(
        self, conn: Connection, attempt_id: str, result: ChannelResult, source: str
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class ReviewPolicy:
    """``carry_days``: how long a short waits for its line; ``thresholds``: minor units per
    currency above which a difference alerts (500.00 in the currency when not given)."""

    carry_days: int = 3
    thresholds: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.carry_days < 0 or any(v < 0 for v in self.thresholds.values()):
            raise ReconError(ReconCode.INVALID_CONFIG, "carry days and thresholds are >= 0")

    def threshold(self, currency: str) -> int:
        if currency in self.thresholds:
            return int(self.thresholds[currency])
        exponent = CURRENCIES[currency][1] if currency in CURRENCIES else 2
        return int(DEFAULT_ALERT_MAJOR * 10**exponent)

    def alert(self, currency: str, amount: int) -> bool:
        return abs(amount) > self.threshold(currency)


@dataclass(frozen=True, slots=True)
class Found:
    """A difference as one batch saw it: the matcher's row, and both whole records."""

    key: str
    type: DifferenceType
    currency: str
    amount: int
    row: dict[str, Any]  # matching.DIFFERENCES
    line: dict[str, Any] | None  # statements.model.LINES
    ours: dict[str, Any] | None  # ours.OURS

    def evidence(self) -> dict[str, Any]:
        return {"difference": self.row, "line": self.line, "ours": self.ours}


def difference_amount(row: Mapping[str, Any]) -> tuple[str, int]:
    """The currency and signed worth (channel minus ours) of a ``matching.DIFFERENCES`` row."""
    kind = DifferenceType(row["type"])
    currency = row["line_currency"] or row["our_currency"]
    if kind in (DifferenceType.LONG, DifferenceType.DUPLICATE):
        return currency, int(row["line_amount"])
    if kind in (DifferenceType.SHORT, DifferenceType.STATUS):
        return row["our_currency"], -int(row["our_amount"])
    if kind is DifferenceType.FEE:
        # A fee above the schedule's leaves the channel holding that much less of ours.
        return currency, -int(row["delta"])
    return currency, int(row["delta"] or 0)  # AMOUNT, FX (line currency), PAYOUT


def books_channel(channel: str) -> str | None:
    """The posting-rule channel a channel books under (quickpay_b books as quickpay), or None
    when it has no clearing account (a bank statement's source)."""
    from clearhouse.gateway.channels.registry import TERMS  # every adapter: only when asked

    terms = TERMS.get(channel)
    name = channel if terms is None else (terms.books or channel)
    return name if name in PARK_CODES else None


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_plain, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)  # Decimal rates


# --- the record of what was done ----------------------------------------------------------


def record_action(
    conn: Connection,
    *,
    difference_id: str | None,
    batch_id: str | None,
    action: str,
    actor: str,
    reason: str,
    evidence: Mapping[str, Any],
    at: datetime,
    entry_id: int | None = None,
    action_id: str | None = None,
) -> str:
    action_id = action_id or new_id("rca")
    conn.execute(
        insert(recon_actions).values(
            id=action_id,
            difference_id=difference_id,
            batch_id=batch_id,
            action=action,
            actor=actor,
            reason=reason,
            evidence=dumps(evidence),
            entry_id=entry_id,
            at=at,
        )
    )
    return action_id


# --- suspense -------------------------------------------------------------------------------


def _submit(ledger: Ledger, conn: Connection, request: Post | Reverse) -> int:
    outcome = ledger.submit_in(conn, [request])[0]
    if not outcome.ok or outcome.entry_id is None:
        raise ReconError(
            ReconCode.LEDGER_REFUSED,
            f"ledger refused {request.key}: {outcome.reason}",
            key=request.key,
            reason=str(outcome.reason),
        )
    return outcome.entry_id


def park(
    ledger: Ledger,
    conn: Connection,
    difference_id: str,
    channel: str,
    kind: DifferenceType,
    currency: str,
    amount: int,
) -> int | None:
    """Park a difference's money in suspense; None when there is nothing the books can hold
    (no amount, an FX difference, a channel or currency without a clearing account)."""
    books = books_channel(channel)
    if books is None or amount == 0 or kind is DifferenceType.FX:
        return None
    if not _has_clearing(conn, books, currency):
        return None
    amounts = {"channel_more": max(amount, 0), "channel_less": max(-amount, 0)}
    post = Post(
        f"recon:park:{difference_id}", PARK_CODES[books], currency, amounts, memo=difference_id
    )
    return _submit(ledger, conn, post)


def unpark(
    ledger: Ledger, conn: Connection, difference_id: str, entry_id: int | None
) -> int | None:
    """Reverse a parking entry (the difference no longer needs its suspense)."""
    if entry_id is None:
        return None
    return _submit(ledger, conn, Reverse(f"recon:unpark:{difference_id}", entry_id, difference_id))


def adjustments(conn: Connection, difference_id: str) -> list[tuple[str, int, int | None]]:
    """The manual adjustments of a difference: action id, amount, entry id; oldest first."""
    rows = conn.execute(
        select(recon_actions.c.id, recon_actions.c.evidence, recon_actions.c.entry_id)
        .where(recon_actions.c.difference_id == difference_id, recon_actions.c.action == "adjust")
        .order_by(recon_actions.c.at, recon_actions.c.id)
    ).all()
    return [(r.id, int(json.loads(r.evidence)["adjusted"]), r.entry_id) for r in rows]


def release_suspense(ledger: Ledger, conn: Connection, difference: Mapping[str, Any]) -> int | None:
    """Undo every suspense entry of a difference (its adjustments, then its parking): it is
    settled by the money's own path, not by suspense. Returns the parking's reversal."""
    for action_id, _amount, entry_id in adjustments(conn, difference["id"]):
        if entry_id is not None:
            _submit(ledger, conn, Reverse(f"recon:unadjust:{action_id}", entry_id, action_id))
    return unpark(ledger, conn, difference["id"], difference["suspense_entry_id"])


def write_off_entry(
    ledger: Ledger,
    conn: Connection,
    key: str,
    difference: Mapping[str, Any],
    amount: int,
) -> int:
    """Move ``amount`` (signed as the difference) of a parked difference from suspense to the
    channel's fees: a gain when the channel held more, a loss when it held less."""
    books = books_channel(difference["channel"])
    assert books is not None, "only parked differences are written off"
    amounts = {"gain": max(amount, 0), "loss": max(-amount, 0)}
    post = Post(key, WRITE_OFF_CODES[books], difference["currency"], amounts, memo=difference["id"])
    return _submit(ledger, conn, post)


def _has_clearing(conn: Connection, books: str, currency: str) -> bool:
    return (
        find_fund_account(conn, PLATFORM_ACCOUNT_ID, Role.CHANNEL_CLEARING, currency, books)
        is not None
        and find_fund_account(conn, PLATFORM_ACCOUNT_ID, Role.SUSPENSE, currency, "") is not None
    )


# --- the rules --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    status: str
    action: str
    reason: str
    resolution: str | None = None


def attempt_status(conn: Connection, found: Found) -> tuple[str, str] | None:
    """Our attempt a channel payment names (paired, or by the reference the line carries),
    and its status."""
    candidates = [found.row.get("attempt_id"), found.row.get("merchant_ref")]
    for attempt_id in candidates:
        if not attempt_id:
            continue
        row = conn.execute(
            select(payment_attempts.c.id, payment_attempts.c.status).where(
                payment_attempts.c.id == attempt_id
            )
        ).first()
        if row is not None:
            return row.id, row.status
    return None


def mark_paid(
    payments: PaymentsPort | None, conn: Connection, found: Found, attempt_id: str
) -> bool:
    """Apply the line as the channel's success answer, through the gateway's own path."""
    if payments is None or found.line is None:
        return False
    line = found.line
    result = ChannelResult(
        ChannelStatus.SUCCEEDED,
        raw=dumps({"statement_line": line}),
        channel_txn_id=line.get("channel_txn_id"),
        amount=Money(int(line["amount"]), line["currency"]),
        paid_at=line.get("occurred_at"),
    )
    return payments.apply_in(conn, attempt_id, result, SOURCE)


def decide(
    conn: Connection,
    payments: PaymentsPort | None,
    found: Found,
) -> Decision:
    """The first handling of a new difference (the rules above); may mark a payment paid."""
    kind = found.type
    if kind is DifferenceType.SHORT:
        return Decision(Status.CARRIED, "carry", "short: waiting for the next days' bills")
    if kind is DifferenceType.DUPLICATE:
        return Decision(Status.OPEN, "review", "duplicate payment: refund to payer required")
    if kind is DifferenceType.LONG and (found.line or {}).get("kind") == "payment":
        ours = attempt_status(conn, found)
        if ours is not None and ours[1] in AWAITING:
            if mark_paid(payments, conn, found, ours[0]):
                return Decision(
                    Status.RESOLVED,
                    "mark_paid",
                    "long: the order was awaiting payment, paid as the channel shows",
                    resolution="mark_paid",
                )
            return Decision(Status.OPEN, "review", "long: the payment could not be marked paid")
        if ours is not None and ours[1] in ENDED:
            return Decision(
                Status.OPEN,
                "review",
                f"long on a {ours[1].lower()} order: refund to payer required",
            )
    label = kind.value.lower().replace("_", " ")
    return Decision(Status.OPEN, "review", f"{label}: to review")


def resolve(
    ledger: Ledger,
    conn: Connection,
    difference: Mapping[str, Any],
    *,
    resolution: str,
    actor: str,
    reason: str,
    evidence: Mapping[str, Any],
    batch_id: str | None,
    now: datetime,
    entry_id: int | None = None,
    release: bool = True,
) -> str:
    """Close a difference: its parking reversed (``release``) or ``entry_id`` posted instead,
    the action recorded. Returns the action's id."""
    if release:
        entry_id = release_suspense(ledger, conn, difference)
    conn.execute(
        update(recon_differences)
        .where(recon_differences.c.id == difference["id"])
        .values(status=Status.RESOLVED, resolution=resolution, resolved_at=now, alert=False)
    )
    return record_action(
        conn,
        difference_id=difference["id"],
        batch_id=batch_id,
        action=resolution,
        actor=actor,
        reason=reason,
        evidence=evidence,
        at=now,
        entry_id=entry_id,
    )
