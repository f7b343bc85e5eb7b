"""What happens to a difference (R5, R6): the fixed rules, the review queue, and suspense.

A difference is worth the channel's figure minus ours (``difference_amount``), in minor units.
When a batch finds a new one:

- LONG, a payment whose attempt is still awaiting payment (created, pending, unknown): marked
  paid through the gateway's own path (``PaymentsPort.apply_in`` with a success built from the
  line, source "reconciliation"), so the payment's usual entries are posted. Resolved
  ``mark_paid``.
- LONG whose order is closed or failed, and DUPLICATE_PAYMENT: the payer's money goes back
  through the channel, refunding that one transaction (``RefundPort``, the gateway's
  ``TransactionRefunds``). The batch only decides: the difference is ``refunding``, parked in
  suspense, with a ``refund`` action naming the request's number (``refund_no``, one per
  difference: the channel deduplicates on it, so a retry never refunds twice). After the
  batch commits, ``send_refunds`` sends what is ``refunding`` (and sends it again on every
  later call until the channel settles it): settled, it is resolved ``refunded`` and its parking
  reversed (950x ``channel_more`` debited 1122 channel clearing and credited 1901 suspense; the
  reversal takes the money off channel clearing: it went back to the payer); refused, it is
  ``open`` for review with an alert (``requeue_refund`` sends it again); no answer or still
  processing, it stays ``refunding``. The refund's own line in a later bill is a LONG refund
  naming that number: resolved ``recon_refund`` at once. Without a port, or on a channel it
  does not cover, these wait in the review queue (reason "refund to payer required"), parked
  in suspense.
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
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import partial
from typing import Any, Protocol

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection

from clearhouse.accounts.handlers import find_fund_account
from clearhouse.accounts.model import PLATFORM_ACCOUNT_ID, Role
from clearhouse.clock import Clock
from clearhouse.currencies import CURRENCIES
from clearhouse.db.schema import payment_attempts, recon_actions, recon_differences
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.channels.port import (
    ChannelResult,
    ChannelStatus,
    RefundOrder,
    RefundResult,
)
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
    REFUNDING = "refunding"  # a refund to the payer decided, not settled by the channel yet
    RESOLVED = "resolved"


REFUND_PREFIX = "rcr_"  # our refund number of a difference's refund, at the channel


class PaymentsPort(Protocol):
    """The gateway's way of applying a channel's answer to an attempt (``Payments.apply_in``)."""

    def apply_in(
        self, conn: Connection, attempt_id: str, result: ChannelResult, source: str
    ) -> bool: ...


class RefundPort(Protocol):
    """Sends one channel transaction's money back to its payer
    (``gateway.transaction_refunds.TransactionRefunds``)."""

    def covers(self, channel: str) -> bool: ...

    def refund_transaction(self, channel: str, order: RefundOrder) -> RefundResult: ...


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
    refunds: RefundPort | None = None,
) -> Decision:
    """The first handling of a new difference (the rules above); may mark a payment paid."""
    kind = found.type
    if kind is DifferenceType.SHORT:
        return Decision(Status.CARRIED, "carry", "short: waiting for the next days' bills")
    if kind is DifferenceType.DUPLICATE:
        if _refundable(refunds, found):
            return Decision(Status.REFUNDING, "refund", "duplicate payment: refunding the payer")
        return Decision(Status.OPEN, "review", "duplicate payment: refund to payer required")
    refunded = _our_refund(conn, found)
    if refunded is not None:
        return Decision(
            Status.RESOLVED,
            "recon_refund",
            f"the channel's line of the refund sent for difference {refunded}",
            resolution="recon_refund",
        )
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
            if _refundable(refunds, found):
                return Decision(
                    Status.REFUNDING,
                    "refund",
                    f"long on a {ours[1].lower()} order: refunding the payer",
                )
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


# --- refunds to the payer -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundSent:
    """One send of a difference's refund: the channel's answer and where it left the difference."""

    difference_id: str
    refund_no: str
    answer: str  # ChannelStatus of the channel's answer
    status: str  # the difference's status afterwards
    error_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "difference_id": self.difference_id,
            "refund_no": self.refund_no,
            "answer": self.answer,
            "status": self.status,
            "error_code": self.error_code,
        }


def refund_no(difference_id: str) -> str:
    """The refund request's number at the channel: one per difference, the same on every send."""
    return REFUND_PREFIX + difference_id.removeprefix("rcd_")


def _refundable(refunds: RefundPort | None, found: Found) -> bool:
    """A payment line naming its transaction and our order, on a channel the port covers."""
    line = found.line or {}
    return (
        refunds is not None
        and line.get("kind") == "payment"
        and bool(line.get("channel_txn_id"))
        and bool(line.get("merchant_ref"))
        and found.amount > 0
        and refunds.covers(str(line.get("source")))
    )


def _our_refund(conn: Connection, found: Found) -> str | None:
    """The difference whose refund a LONG refund line is (its number is ``refund_no``'s)."""
    line = found.line or {}
    ref = line.get("merchant_ref") or ""
    if found.type is not DifferenceType.LONG or line.get("kind") != "refund":
        return None
    if not ref.startswith(REFUND_PREFIX):
        return None
    difference_id = "rcd_" + ref.removeprefix(REFUND_PREFIX)
    d = recon_differences
    status = conn.execute(select(d.c.status).where(d.c.id == difference_id)).scalar()
    return difference_id if status in (Status.REFUNDING, Status.RESOLVED) else None


def refund_order(difference: Mapping[str, Any]) -> RefundOrder:
    """The refund of the transaction a difference's line names, all of its amount."""
    line = json.loads(difference["evidence"])["line"]
    money = Money(int(line["amount"]), line["currency"])
    why = "duplicate payment" if difference["type"] == DifferenceType.DUPLICATE else "order closed"
    return RefundOrder(
        refund_no=refund_no(difference["id"]),
        attempt_id=line["merchant_ref"],
        refund=money,
        total=money,
        reason=why,
        notify_url="",  # the outcome is read from the answer to each send, not a notification
        channel_txn_id=line["channel_txn_id"],
    )


def send_refunds(
    engine: Engine,
    ledger: Ledger,
    refunds: RefundPort,
    clock: Clock,
    *,
    channel: str | None = None,
) -> list[RefundSent]:
    """Send the refund of every ``refunding`` difference (of ``channel``), each outside any
    database transaction, then record its answer. Safe to run again at any time: the same
    number each time, and a difference settled meanwhile is left alone."""
    d = recon_differences
    query = select(d).where(d.c.status == Status.REFUNDING)
    if channel is not None:
        query = query.where(d.c.channel == channel)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(d.c.business_date, d.c.key)).mappings().all()
        pending = [dict(row) for row in rows]
    sent: list[RefundSent] = []
    for difference in pending:
        order = refund_order(difference)
        result = refunds.refund_transaction(difference["channel"], order)
        sent.append(
            run_in_transaction(
                engine,
                partial(
                    _apply_refund,
                    ledger,
                    difference_id=difference["id"],
                    order=order,
                    result=result,
                    clock=clock,
                ),
            )
        )
    return sent


def _apply_refund(
    ledger: Ledger,
    conn: Connection,
    *,
    difference_id: str,
    order: RefundOrder,
    result: RefundResult,
    clock: Clock,
) -> RefundSent:
    now = clock.now()
    d = recon_differences
    row = conn.execute(select(d).where(d.c.id == difference_id).with_for_update()).mappings().one()
    difference = dict(row)
    outcome = RefundSent(
        difference_id, order.refund_no, result.status.value, difference["status"], result.error_code
    )
    if difference["status"] != Status.REFUNDING:
        return outcome  # settled by another run (or by hand) meanwhile
    evidence = {
        "refund_no": order.refund_no,
        "channel_txn_id": order.channel_txn_id,
        "answer": result.raw,
        "channel_refund_id": result.channel_refund_id,
        "error_code": result.error_code,
    }
    if result.status is ChannelStatus.SUCCEEDED:
        resolve(
            ledger,
            conn,
            difference,
            resolution="refunded",
            actor=SYSTEM,
            reason="the channel refunded the payer",
            evidence=evidence,
            batch_id=None,
            now=now,
        )
        return replace(outcome, status=Status.RESOLVED)
    if result.status is ChannelStatus.FAILED:
        conn.execute(
            update(d).where(d.c.id == difference_id).values(status=Status.OPEN, alert=True)
        )
        reason = f"the channel refused the refund ({result.error_code}): to review"
        record_action(
            conn,
            difference_id=difference_id,
            batch_id=None,
            action="refund_refused",
            actor=SYSTEM,
            reason=reason,
            evidence=evidence,
            at=now,
        )
        return replace(outcome, status=Status.OPEN)
    record_action(
        conn,
        difference_id=difference_id,
        batch_id=None,
        action="refund_pending",
        actor=SYSTEM,
        reason=f"refund not settled yet ({result.error_code or result.status.value}): sent again",
        evidence=evidence,
        at=now,
    )
    return outcome


def requeue_refund(
    engine: Engine, clock: Clock, difference_id: str, *, actor: str, reason: str
) -> None:
    """Send again a refund the channel refused (a reviewer's call): back to ``refunding``."""
    if not actor.strip():
        raise ReconError(ReconCode.ACTOR_REQUIRED, "an action names who takes it")
    if not reason.strip():
        raise ReconError(ReconCode.REASON_REQUIRED, "an action says why it is taken")

    def work(conn: Connection) -> None:
        d, a = recon_differences, recon_actions
        row = conn.execute(select(d).where(d.c.id == difference_id).with_for_update()).first()
        if row is None:
            raise ReconError(ReconCode.DIFFERENCE_NOT_FOUND, f"no difference {difference_id}")
        refused = conn.execute(
            select(a.c.id).where(a.c.difference_id == difference_id, a.c.action == "refund_refused")
        ).first()
        if row.status != Status.OPEN or refused is None:
            raise ReconError(
                ReconCode.INVALID_ACTION,
                f"difference {difference_id} has no refused refund to send again",
                difference_id=difference_id,
                status=row.status,
            )
        conn.execute(
            update(d).where(d.c.id == difference_id).values(status=Status.REFUNDING, alert=False)
        )
        record_action(
            conn,
            difference_id=difference_id,
            batch_id=None,
            action="refund",
            actor=actor,
            reason=reason,
            evidence={"refund_no": refund_no(difference_id)},
            at=clock.now(),
        )

    run_in_transaction(engine, work)
