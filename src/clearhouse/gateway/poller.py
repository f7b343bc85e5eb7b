"""Resolve what the channels have not told us (P4): query attempts and refunds that are not
final on a backoff schedule; close attempts whose payment deadline passed; send again refunds
whose sending went unanswered (same refund number, so the channel acts once)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, select, update

from clearhouse.db.schema import payment_attempts, refunds
from clearhouse.gateway import records
from clearhouse.gateway.model import (
    FINAL_ATTEMPT,
    AttemptStatus,
    RefundStatus,
    next_poll,
)
from clearhouse.gateway.payments import Payments
from clearhouse.gateway.refunds import Refunds

log = logging.getLogger(__name__)

# After its deadline an unpaid attempt is closed at the channel; one that the channel still does
# not account for this long after is given up as never sent.
GIVE_UP_AFTER_EXPIRY = timedelta(hours=1)
OPEN_ATTEMPTS = [s.value for s in AttemptStatus if s not in FINAL_ATTEMPT]
OPEN_REFUNDS = [RefundStatus.PENDING.value, RefundStatus.UNKNOWN.value]


@dataclass(frozen=True, slots=True)
class PollReport:
    attempts: int
    refunds: int
    changed: int


class Poller:
    def __init__(self, payments: Payments, refunds_: Refunds) -> None:
        self.payments = payments
        self.refunds = refunds_
        self.engine = payments.engine
        self.clock = payments.clock

    def run_once(self, limit: int = 200) -> PollReport:
        now = self.clock.now()
        with self.engine.connect() as conn:
            attempt_ids = list(
                conn.execute(
                    select(payment_attempts.c.id)
                    .where(
                        payment_attempts.c.next_poll_at <= now,
                        payment_attempts.c.status.in_(OPEN_ATTEMPTS),
                    )
                    .order_by(payment_attempts.c.next_poll_at)
                    .limit(limit)
                ).scalars()
            )
            refund_ids = list(
                conn.execute(
                    select(refunds.c.id)
                    .where(refunds.c.next_poll_at <= now, refunds.c.status.in_(OPEN_REFUNDS))
                    .order_by(refunds.c.next_poll_at)
                    .limit(limit)
                ).scalars()
            )
        changed = 0
        for attempt_id in attempt_ids:
            changed += self._isolated(self._poll_attempt, payment_attempts, attempt_id, now)
        for refund_id in refund_ids:
            changed += self._isolated(self._poll_refund, refunds, refund_id, now)
        return PollReport(len(attempt_ids), len(refund_ids), changed)

    def _isolated(
        self, poll: Callable[[str, datetime], bool], table: Table, row_id: str, now: datetime
    ) -> int:
        """One row's poll; its failure is logged and the row pushed back on its schedule, so a
        row that keeps failing never holds up the rows behind it."""
        try:
            return int(poll(row_id, now))
        except Exception:
            log.exception("polling %s %s failed; next try on its schedule", table.name, row_id)
            return 0
        finally:
            self._reschedule(table, row_id, now)

    def _poll_attempt(self, attempt_id: str, now: datetime) -> bool:
        with self.engine.connect() as conn:
            attempt = records.attempt(conn, attempt_id)
            assert attempt is not None
            intent = records.intent(conn, attempt.intent_id)
        port = self.payments.channels.get(attempt.channel).port
        changed = self.payments.apply(attempt_id, port.query(attempt_id), "query")
        if not changed and now > intent.expires_at:
            changed = self.payments.apply(attempt_id, port.close(attempt_id), "close")
            if not changed and now > intent.expires_at + GIVE_UP_AFTER_EXPIRY:
                changed = self.payments.give_up(attempt_id)
        return changed

    def _poll_refund(self, refund_id: str, now: datetime) -> bool:
        with self.engine.connect() as conn:
            refund = records.refund(conn, refund_id)
        if refund.status is RefundStatus.UNKNOWN:
            self.refunds.send(refund_id)
        else:
            self.refunds.query(refund_id)
        with self.engine.connect() as conn:
            return records.refund(conn, refund_id).status is not refund.status

    def _reschedule(self, table: Table, row_id: str, now: datetime) -> None:
        # Only rows still open: a final row keeps next_poll_at NULL.
        with self.engine.begin() as conn:
            polls = conn.execute(select(table.c.polls).where(table.c.id == row_id)).scalar_one()
            conn.execute(
                update(table)
                .where(table.c.id == row_id, table.c.next_poll_at.is_not(None))
                .values(polls=polls + 1, next_poll_at=next_poll(polls + 1, now))
            )
