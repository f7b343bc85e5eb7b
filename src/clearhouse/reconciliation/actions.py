"""Manual actions on differences (R6) and the status of reconciliation, for people and scripts.

Every action names who takes it and why (both required), stores the evidence given, and is
refused with a stable code on an unknown difference (DIFFERENCE_NOT_FOUND) or one already
resolved (DIFFERENCE_RESOLVED); a refused action changes nothing.

- ``confirm``: the difference is explained and settled outside suspense (the channel corrected
  its file, the money was booked by its own path): its suspense entries are reversed and it is
  resolved.
- ``write_off``: the difference is accepted as it is: what it still holds in suspense goes to
  the channel's fees (a loss, or a gain), and it is resolved.
- ``adjust``: part of it is accepted: ``amount`` (signed like the difference, at most what is
  left) goes from suspense to the channel's fees; fully adjusted, it is resolved.
- ``rerun``: the batch of a channel's day is run again (after a re-issued bill, a fix of our
  records); it answers with the batch, and resolves what that batch no longer finds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from clearhouse.clock import Clock
from clearhouse.db.schema import recon_actions, recon_batches, recon_differences
from clearhouse.db.transaction import run_in_transaction
from clearhouse.ids import new_id
from clearhouse.ledger.service import Ledger
from clearhouse.reconciliation import handling
from clearhouse.reconciliation.batches import Batch, Reconciler, batch_from_row
from clearhouse.reconciliation.errors import ReconCode, ReconError
from clearhouse.reconciliation.handling import Status

MAX_ACTOR = 64  # recon_actions.actor
ACTIONS = ("confirm", "write_off", "adjust", "rerun")


@dataclass(frozen=True, slots=True)
class ActionResult:
    action_id: str
    difference_id: str | None
    action: str
    status: str  # the difference's status afterwards
    entry_id: int | None  # the ledger entry the action posted, if any
    batch: Batch | None = None  # a re-run's batch

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "difference_id": self.difference_id,
            "action": self.action,
            "status": self.status,
            "entry_id": self.entry_id,
            "batch": None if self.batch is None else self.batch.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class DifferenceView:
    id: str
    channel: str
    type: str
    status: str
    resolution: str | None
    business_date: date
    age_days: int
    currency: str
    amount: int  # the channel's figure minus ours, minor units
    line_amount: int | None
    our_amount: int | None
    channel_txn_id: str | None
    merchant_ref: str | None
    attempt_id: str | None
    refund_id: str | None
    intent_id: str | None
    payout_id: str | None
    alert: bool
    suspense_entry_id: int | None
    first_batch_id: str
    last_batch_id: str
    evidence: dict[str, Any]

    def to_dict(self, *, evidence: bool = False) -> dict[str, Any]:
        out = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name != "evidence"
        }
        out["business_date"] = self.business_date.isoformat()
        if evidence:
            out["evidence"] = self.evidence
        return out


@dataclass(frozen=True, slots=True)
class StatusReport:
    as_of: date
    batches: list[Batch]  # the current batch of each channel's day, newest day first
    open: list[DifferenceView]  # open, carried and refunding differences, oldest first

    def to_dict(self) -> dict[str, Any]:
        by_type: dict[str, int] = {}
        for d in self.open:
            by_type[d.type] = by_type.get(d.type, 0) + 1
        return {
            "as_of": self.as_of.isoformat(),
            "batches": [b.to_dict() for b in self.batches],
            "open": [d.to_dict() for d in self.open],
            "open_by_type": dict(sorted(by_type.items())),
            "alerts": sum(1 for d in self.open if d.alert),
        }


class Review:
    """Manual actions over one database and ledger."""

    def __init__(self, engine: Engine, ledger: Ledger, clock: Clock) -> None:
        self.engine = engine
        self.ledger = ledger
        self.clock = clock

    def act(
        self,
        difference_id: str,
        action: str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
        amount: int | None = None,
    ) -> ActionResult:
        """One entry point for the CLI's ``resolve``: confirm, write_off or adjust."""
        if action == "confirm":
            return self.confirm(difference_id, actor=actor, reason=reason, evidence=evidence)
        if action == "write_off":
            return self.write_off(difference_id, actor=actor, reason=reason, evidence=evidence)
        if action == "adjust":
            if amount is None:
                raise ReconError(ReconCode.INVALID_ADJUSTMENT, "an adjustment needs an amount")
            return self.adjust(difference_id, amount, actor=actor, reason=reason, evidence=evidence)
        raise ReconError(
            ReconCode.INVALID_ACTION, f"unknown action {action!r}", actions=list(ACTIONS)
        )

    def confirm(
        self,
        difference_id: str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> ActionResult:
        given = _checked(actor, reason, evidence)

        def work(conn: Connection) -> ActionResult:
            difference = _open(conn, difference_id)
            action_id = handling.resolve(
                self.ledger,
                conn,
                difference,
                resolution="confirm",
                actor=actor,
                reason=reason,
                evidence=given,
                batch_id=None,
                now=self.clock.now(),
            )
            return _result(conn, action_id, difference_id, "confirm")

        return run_in_transaction(self.engine, work, retry_integrity=True)

    def write_off(
        self,
        difference_id: str,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> ActionResult:
        given = _checked(actor, reason, evidence)

        def work(conn: Connection) -> ActionResult:
            difference = _open(conn, difference_id)
            left = _left(conn, difference)
            entry_id = None
            if difference["suspense_entry_id"] is not None and left != 0:
                key = f"recon:write-off:{difference_id}"
                entry_id = handling.write_off_entry(self.ledger, conn, key, difference, left)
            action_id = handling.resolve(
                self.ledger,
                conn,
                difference,
                resolution="write_off",
                actor=actor,
                reason=reason,
                evidence={**given, "written_off": left},
                batch_id=None,
                now=self.clock.now(),
                entry_id=entry_id,
                release=False,
            )
            return _result(conn, action_id, difference_id, "write_off")

        return run_in_transaction(self.engine, work, retry_integrity=True)

    def adjust(
        self,
        difference_id: str,
        amount: int,
        *,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
    ) -> ActionResult:
        given = _checked(actor, reason, evidence)
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise ReconError(ReconCode.INVALID_ADJUSTMENT, "an adjustment is a non-zero integer")

        def work(conn: Connection) -> ActionResult:
            difference = _open(conn, difference_id)
            left = _left(conn, difference)
            if difference["suspense_entry_id"] is None:
                raise ReconError(
                    ReconCode.INVALID_ADJUSTMENT,
                    "the difference holds nothing in suspense to adjust",
                    difference_id=difference_id,
                )
            if (amount > 0) != (left > 0) or abs(amount) > abs(left):
                raise ReconError(
                    ReconCode.INVALID_ADJUSTMENT,
                    f"an adjustment of {amount} does not fit the {left} left",
                    difference_id=difference_id,
                    left=left,
                )
            now = self.clock.now()
            action_id = new_id("rca")
            key = f"recon:adjust:{action_id}"
            entry_id = handling.write_off_entry(self.ledger, conn, key, difference, amount)
            handling.record_action(
                conn,
                difference_id=difference_id,
                batch_id=None,
                action="adjust",
                actor=actor,
                reason=reason,
                evidence={**given, "adjusted": amount},
                at=now,
                entry_id=entry_id,
                action_id=action_id,
            )
            if amount == left:
                conn.execute(
                    recon_differences.update()
                    .where(recon_differences.c.id == difference_id)
                    .values(
                        status=Status.RESOLVED, resolution="adjust", resolved_at=now, alert=False
                    )
                )
            return _result(conn, action_id, difference_id, "adjust")

        return run_in_transaction(self.engine, work, retry_integrity=True)


def rerun(
    reconciler: Reconciler,
    *,
    actor: str,
    reason: str,
    channel: str | None = None,
    business_date: date | None = None,
    difference_id: str | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> ActionResult:
    """Run the batch of a channel's day again (or of the day a difference was found on)."""
    given = _checked(actor, reason, evidence)
    if difference_id is not None:
        with reconciler.engine.connect() as conn:
            found = _difference(conn, difference_id)
        channel, business_date = found["channel"], found["business_date"]
    if channel is None or business_date is None:
        raise ReconError(ReconCode.BATCH_NOT_FOUND, "name a channel and a day, or a difference")
    batch = reconciler.run(channel, business_date, by=actor)

    def work(conn: Connection) -> ActionResult:
        action_id = handling.record_action(
            conn,
            difference_id=difference_id,
            batch_id=batch.id,
            action="rerun",
            actor=actor,
            reason=reason,
            evidence={**given, "already": batch.already},
            at=reconciler.clock.now(),
        )
        status = "" if difference_id is None else _difference(conn, difference_id)["status"]
        return ActionResult(action_id, difference_id, "rerun", status, None, batch)

    return run_in_transaction(reconciler.engine, work)


# --- reading ----------------------------------------------------------------------------------


def status(
    engine: Engine,
    channel: str | None = None,
    business_date: date | None = None,
    *,
    as_of: date | None = None,
) -> StatusReport:
    """Current batches (counts and totals) and the differences still open or carried, with
    their age in days at ``as_of`` (today, UTC, when not given)."""
    as_of = as_of or datetime.now(UTC).date()
    b = recon_batches
    query = select(b).where(b.c.superseded_by.is_(None))
    if channel is not None:
        query = query.where(b.c.channel == channel)
    if business_date is not None:
        query = query.where(b.c.business_date == business_date)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(b.c.business_date.desc(), b.c.channel)).all()
    batches = [batch_from_row(row) for row in rows]
    open_ = differences(
        engine,
        channel=channel,
        business_date=business_date,
        statuses=(Status.OPEN, Status.CARRIED, Status.REFUNDING),
        as_of=as_of,
    )
    return StatusReport(as_of, batches, open_)


def differences(
    engine: Engine,
    *,
    batch_id: str | None = None,
    channel: str | None = None,
    business_date: date | None = None,
    statuses: tuple[str, ...] | None = None,
    as_of: date | None = None,
) -> list[DifferenceView]:
    """Differences, oldest first: those a batch found or settled (``batch_id``: first or
    last seen there, or acted on by it), of a channel, of the day they were found, in some
    statuses."""
    d = recon_differences
    query = select(d)
    if batch_id is not None:
        acted = select(recon_actions.c.difference_id).where(recon_actions.c.batch_id == batch_id)
        query = query.where(
            (d.c.first_batch_id == batch_id)
            | (d.c.last_batch_id == batch_id)
            | d.c.id.in_(acted)  # e.g. a carried short this batch resolved
        )
    if channel is not None:
        query = query.where(d.c.channel == channel)
    if business_date is not None:
        query = query.where(d.c.business_date == business_date)
    if statuses is not None:
        query = query.where(d.c.status.in_(statuses))
    query = query.order_by(d.c.business_date, d.c.channel, d.c.type, d.c.key)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    as_of = as_of or datetime.now(UTC).date()
    return [_view(row, as_of) for row in rows]


def batch(engine: Engine, batch_id: str) -> Batch:
    with engine.connect() as conn:
        row = conn.execute(select(recon_batches).where(recon_batches.c.id == batch_id)).first()
    if row is None:
        raise ReconError(ReconCode.BATCH_NOT_FOUND, f"no batch {batch_id}", batch_id=batch_id)
    return batch_from_row(row)


def actions_of(engine: Engine, difference_id: str) -> list[dict[str, Any]]:
    """Everything done to a difference, oldest first: who, why, evidence, the entry."""
    a = recon_actions
    with engine.connect() as conn:
        _difference(conn, difference_id)
        rows = conn.execute(
            select(a).where(a.c.difference_id == difference_id).order_by(a.c.at, a.c.id)
        ).mappings()
        return [
            {
                "id": r["id"],
                "action": r["action"],
                "actor": r["actor"],
                "reason": r["reason"],
                "evidence": json.loads(r["evidence"]),
                "entry_id": r["entry_id"],
                "batch_id": r["batch_id"],
                "at": r["at"].isoformat(),
            }
            for r in rows
        ]


# --- helpers ----------------------------------------------------------------------------------


def _checked(actor: str, reason: str, evidence: Mapping[str, Any] | None) -> dict[str, Any]:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR:
        raise ReconError(
            ReconCode.ACTOR_REQUIRED, f"an action names who takes it (1-{MAX_ACTOR} characters)"
        )
    if not isinstance(reason, str) or not reason.strip():
        raise ReconError(ReconCode.REASON_REQUIRED, "an action says why it is taken")
    given = dict(evidence or {})
    try:
        json.dumps(given)
    except (TypeError, ValueError) as exc:
        raise ReconError(ReconCode.INVALID_EVIDENCE, f"evidence is not JSON: {exc}") from None
    return given


def _difference(conn: Connection, difference_id: str, *, lock: bool = False) -> Mapping[str, Any]:
    query = select(recon_differences).where(recon_differences.c.id == difference_id)
    found = conn.execute(query.with_for_update() if lock else query).mappings().first()
    row = None if found is None else dict(found)
    if row is None:
        raise ReconError(
            ReconCode.DIFFERENCE_NOT_FOUND,
            f"no difference {difference_id}",
            difference_id=difference_id,
        )
    return row


def _open(conn: Connection, difference_id: str) -> Mapping[str, Any]:
    row = _difference(conn, difference_id, lock=True)
    if row["status"] == Status.RESOLVED:
        raise ReconError(
            ReconCode.DIFFERENCE_RESOLVED,
            f"difference {difference_id} is already resolved ({row['resolution']})",
            difference_id=difference_id,
            resolution=row["resolution"],
        )
    if row["status"] == Status.REFUNDING:
        # Its refund may be at the channel already: booking it another way could count the
        # money twice. The refund's answer settles it (or sends it back to review).
        raise ReconError(
            ReconCode.DIFFERENCE_REFUNDING,
            f"difference {difference_id} is being refunded to the payer; wait for the answer",
            difference_id=difference_id,
        )
    return row


def _left(conn: Connection, difference: Mapping[str, Any]) -> int:
    """What a difference still holds: its amount less what was adjusted."""
    done = sum(amount for _id, amount, _entry in handling.adjustments(conn, difference["id"]))
    return int(difference["amount"]) - done


def _result(conn: Connection, action_id: str, difference_id: str, action: str) -> ActionResult:
    row = _difference(conn, difference_id)
    entry = conn.execute(
        select(recon_actions.c.entry_id).where(recon_actions.c.id == action_id)
    ).scalar()
    return ActionResult(action_id, difference_id, action, row["status"], entry)


def _view(row: Mapping[str, Any], as_of: date) -> DifferenceView:
    evidence = json.loads(row["evidence"])
    seen = evidence.get("difference") or {}
    return DifferenceView(
        id=row["id"],
        channel=row["channel"],
        type=row["type"],
        status=row["status"],
        resolution=row["resolution"],
        business_date=row["business_date"],
        age_days=(as_of - row["business_date"]).days,
        currency=row["currency"],
        amount=int(row["amount"]),
        line_amount=seen.get("line_amount"),
        our_amount=seen.get("our_amount"),
        channel_txn_id=row["channel_txn_id"],
        merchant_ref=row["merchant_ref"],
        attempt_id=row["attempt_id"],
        refund_id=row["refund_id"],
        intent_id=row["intent_id"],
        payout_id=row["payout_id"],
        alert=bool(row["alert"]),
        suspense_entry_id=row["suspense_entry_id"],
        first_batch_id=row["first_batch_id"],
        last_batch_id=row["last_batch_id"],
        evidence=evidence,
    )
