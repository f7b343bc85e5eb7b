"""Refunds (P8): through the original channel, partial, limited in number and in time; sent
again with the same refund number until the channel answers; a refusal the channel cannot get
past (the payer's account is closed) falls back to a payout.

When a refund is accepted, its money is reserved twice over: its amount on the intent (two
racing refunds cannot both take the last of it) and its entry as a ledger hold on the accounts
it comes out of (escrow, or the merchant's settlement account once settled), so the ledger can
never refuse a refund the channel has already paid. The channel's answer commits the hold, or
voids it; a refund owed by payout keeps it. Commission and fee shares are fixed at acceptance,
prorated on what was already reserved, so every refund of a payment uses one basis.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from clearhouse.db.schema import payment_intents, refunds
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway import legs, records
from clearhouse.gateway.channels.port import ChannelStatus, RefundOrder, RefundResult
from clearhouse.gateway.errors import InvalidPayment, LedgerRefused, RefundRefused
from clearhouse.gateway.model import (
    FINAL_REFUND,
    IntentStatus,
    RefundStatus,
    Settlement,
    advance_refund,
    check_refund,
    prorated,
    refund_posts,
)
from clearhouse.gateway.payments import FIRST_POLL, Payments
from clearhouse.ids import new_id
from clearhouse.ledger.model import Reason
from clearhouse.ledger.requests import CommitHold, Post, VoidHold
from clearhouse.money import Money, allocate
from clearhouse.outbox.events import emit

MAX_REASON = 80


class Refunds:
    def __init__(self, payments: Payments) -> None:
        self.payments = payments
        self.engine = payments.engine
        self.clock = payments.clock
        self.channels = payments.channels

    def create(
        self,
        merchant_id: str,
        intent_id: str,
        amount: Money,
        reason: str,
        request_key: str | None = None,
    ) -> records.Refund:
        """Accept a refund and send it. ``request_key`` (the merchant's Idempotency-Key) makes
        a retry find the refund it already made, and send that one again if still open."""
        if amount.amount <= 0:
            raise InvalidPayment("refund amount must be positive", code="INVALID_AMOUNT")
        if len(reason) > MAX_REASON:
            raise InvalidPayment(f"reason is longer than {MAX_REASON} characters")
        refund = run_in_transaction(
            self.engine,
            lambda c: self._reserve(c, merchant_id, intent_id, amount, reason, request_key),
            retry_integrity=True,
        )
        if refund.status not in FINAL_REFUND:
            self.send(refund.id)
        return self.get(merchant_id, refund.id)

    def _reserve(
        self,
        conn: Connection,
        merchant_id: str,
        intent_id: str,
        amount: Money,
        reason: str,
        request_key: str | None,
    ) -> records.Refund:
        now = self.clock.now()
        records.merchant_intent(conn, merchant_id, intent_id)
        intent = records.intent(conn, intent_id, lock=True)
        if intent.purpose == "topup":
            # The money is the payer's balance now: it leaves by a withdrawal, not a refund.
            raise RefundRefused("a top-up is not refundable", code="TOPUP_NOT_REFUNDABLE")
        if request_key is not None:
            found = conn.execute(
                select(refunds.c.id).where(
                    refunds.c.intent_id == intent.id, refunds.c.request_key == request_key
                )
            ).scalar()
            if found is not None:
                existing = records.refund(conn, found)
                if (existing.amount, existing.reason) != (amount, reason):
                    raise RefundRefused(
                        "this Idempotency-Key made a different refund",
                        code="IDEMPOTENCY_KEY_REUSED",
                    )
                return existing
        if amount.currency != intent.amount.currency:
            raise InvalidPayment(
                f"refund currency {amount.currency} differs from the payment's",
                code="CURRENCY_NOT_SUPPORTED",
            )
        attempt_id = intent.succeeded_attempt_id
        attempt = None if attempt_id is None else records.attempt(conn, attempt_id)
        if attempt is None:
            raise RefundRefused("the payment has not succeeded", code="PAYMENT_NOT_REFUNDABLE")
        terms = self.channels.get(attempt.channel).terms
        at_channel = _at_channel(conn, intent, attempt)
        parts = legs.of(conn, intent.id, amount.currency)
        # The platform's subsidy is a marketing cost, not the payer's money: not refunded.
        subsidy = sum(
            (p.amount for p in parts if p.method is legs.LegMethod.SUBSIDY),
            Money.zero(amount.currency),
        )
        refusal = check_refund(
            terms.refund_policy,
            intent.status,
            intent.amount - subsidy,
            intent.refunded,
            at_channel.count,
            intent.paid_at,
            amount,
            now,
        )
        if refusal is not None:
            raise RefundRefused(
                f"refund refused: {refusal.value}",
                code=refusal.value,
                refundable=(intent.amount - subsidy - intent.refunded).amount,
            )
        settled = intent.settlement is Settlement.INSTANT or intent.status is (
            IntentStatus.COMPLETED
        )
        # A mixed payment refunds its balance part first: it costs no channel fee (P12).
        balance = next((p for p in parts if p.method is legs.LegMethod.BALANCE), None)
        to_balance = Money.zero(amount.currency)
        if balance is not None:
            to_balance = Money(min(amount.amount, balance.refundable.amount), amount.currency)
        to_channel = amount - to_balance
        fee_share = terms.fees.refunded_fee(
            at_channel.paid, at_channel.fee, at_channel.refunded, to_channel
        )
        commission_share = prorated(intent.commission, intent.amount, intent.refunded, amount)
        commission_balance, commission_channel = (
            Money(share, amount.currency)
            for share in allocate(commission_share.amount, [to_balance.amount, to_channel.amount])
        )
        refund_id = new_id("ref")
        hold_id = balance_hold_id = None
        if to_channel.amount > 0:
            books = self.payments.channels.books(attempt.channel)
            entry = refund_posts(books, settled, to_channel, commission_channel, fee_share)[0]
            hold_id = self._hold(conn, intent, refund_id, entry.code, entry.amounts)
        if balance is not None and to_balance.amount > 0:
            balance_hold_id = self._hold_balance(
                conn, intent, refund_id, balance, settled, to_balance, commission_balance
            )
            legs.add_refunded(conn, balance, to_balance)
        conn.execute(
            refunds.insert().values(
                id=refund_id,
                intent_id=intent.id,
                attempt_id=attempt.id,
                amount=amount.amount,
                currency=amount.currency,
                fee_returned=fee_share.amount,
                commission_returned=commission_share.amount,
                settled=settled,
                hold_entry_id=hold_id,
                balance_part=to_balance.amount,
                balance_hold_entry_id=balance_hold_id,
                request_key=request_key,
                reason=reason,
                status=RefundStatus.PENDING.value,
                created_at=now,
                updated_at=now,
                # Not before the send could have timed out: a query racing our own send would
                # find nothing at the channel yet.
                next_poll_at=now + FIRST_POLL,
                polls=0,
            )
        )
        conn.execute(
            update(payment_intents)
            .where(payment_intents.c.id == intent.id)
            .values(
                refunded=payment_intents.c.refunded + amount.amount,
                refund_count=payment_intents.c.refund_count + 1,
                updated_at=now,
            )
        )
        records.record(
            conn, now, intent.id, "refund_request", reason, refund_id=refund_id, status="PENDING"
        )
        if to_channel.amount == 0:
            # All of it goes back to the balance: nothing to ask of the channel.
            self.apply_in(
                conn, refund_id, RefundResult(ChannelStatus.SUCCEEDED, "to balance"), "balance"
            )
        return records.refund(conn, refund_id)

    def _hold_balance(
        self,
        conn: Connection,
        intent: records.Intent,
        refund_id: str,
        balance: legs.Leg,
        settled: bool,
        amount: Money,
        commission_share: Money,
    ) -> int:
        """Reserve the part going back to the payer's balance: out of escrow, or once settled
        from the merchant with the commission's share."""
        amounts = (
            {
                "merchant_amount": (amount - commission_share).amount,
                "commission": commission_share.amount,
            }
            if settled
            else {"amount": amount.amount}
        )
        code = "3109" if settled else "3009"
        post = self.payments.ledger_post(conn, intent, f"refund:{refund_id}:balance", code, amounts)
        assert balance.account_id is not None
        parties = dict(post.parties) | {"buyer": balance.account_id}
        return self._submit_hold(
            Post(post.key, code, post.currency, post.amounts, parties, post.memo, hold=True), conn
        )

    def compensate(
        self,
        conn: Connection,
        intent: records.Intent,
        attempt: records.Attempt,
        amount: Money,
        fee: Money,
    ) -> None:
        """Give back a mixed payment's channel part whose other part failed: a refund of all
        of it, out of escrow, sent by the poller at once (P12)."""
        now = self.clock.now()
        refund_id = new_id("ref")
        terms = self.channels.get(attempt.channel).terms
        fee_share = terms.fees.refunded_fee(amount, fee, Money.zero(amount.currency), amount)
        books = self.payments.channels.books(attempt.channel)
        entry = refund_posts(books, False, amount, Money.zero(amount.currency), fee_share)[0]
        hold_id = self._hold(conn, intent, refund_id, entry.code, entry.amounts)
        conn.execute(
            refunds.insert().values(
                id=refund_id,
                intent_id=intent.id,
                attempt_id=attempt.id,
                amount=amount.amount,
                currency=amount.currency,
                fee_returned=fee_share.amount,
                commission_returned=0,
                settled=False,
                hold_entry_id=hold_id,
                reason="mixed payment: another part failed",
                status=RefundStatus.UNKNOWN.value,  # not sent yet: the poller sends it
                created_at=now,
                updated_at=now,
                next_poll_at=now,
                polls=0,
            )
        )
        conn.execute(
            update(payment_intents)
            .where(payment_intents.c.id == intent.id)
            .values(refunded=amount.amount, refund_count=1, updated_at=now)
        )
        records.record(conn, now, intent.id, "refund_request", "compensation", refund_id=refund_id)

    def _hold(
        self,
        conn: Connection,
        intent: records.Intent,
        refund_id: str,
        code: str,
        amounts: dict[str, int],
    ) -> int:
        """Reserve the refund's entry in the ledger; a merchant whose settlement account
        cannot cover it is refused before anything is sent."""
        post = self.payments.ledger_post(conn, intent, f"refund:{refund_id}:hold", code, amounts)
        hold = Post(
            post.key, post.code, post.currency, post.amounts, post.parties, post.memo, hold=True
        )
        return self._submit_hold(hold, conn)

    def _submit_hold(self, hold: Post, conn: Connection) -> int:
        outcome = self.payments.ledger.submit_in(conn, [hold])[0]
        if outcome.reason is Reason.INSUFFICIENT_FUNDS:
            raise RefundRefused(
                "the merchant's settlement balance cannot cover this refund",
                code="REFUND_EXCEEDS_BALANCE",
            )
        if not outcome.ok or outcome.entry_id is None:
            raise LedgerRefused(f"ledger refused the refund hold: {outcome.reason}")
        return outcome.entry_id

    def send(self, refund_id: str) -> None:
        """Send (or send again: same refund number, so the channel acts once) and apply."""
        with self.engine.connect() as conn:
            refund = records.refund(conn, refund_id)
            intent = records.intent(conn, refund.intent_id)
            attempt = records.attempt(conn, refund.attempt_id)
        assert attempt is not None
        port = self.channels.get(attempt.channel).port
        order = RefundOrder(
            refund_no=refund.id,
            attempt_id=attempt.id,
            refund=refund.channel_part,
            total=records.attempt_amount(attempt, intent),
            reason=refund.reason,
            notify_url=f"{self.payments.notify_base_url}/notify/{port.name}",
        )
        self.apply(refund.id, port.refund(order), "refund_response")

    def query(self, refund_id: str) -> None:
        with self.engine.connect() as conn:
            refund = records.refund(conn, refund_id)
            attempt = records.attempt(conn, refund.attempt_id)
        assert attempt is not None
        port = self.channels.get(attempt.channel).port
        self.apply(refund.id, port.query_refund(refund.id, attempt.id), "refund_query")

    def apply(self, refund_id: str, result: RefundResult, source: str) -> bool:
        return run_in_transaction(
            self.engine,
            lambda c: self.apply_in(c, refund_id, result, source),
            retry_integrity=True,
        )

    def apply_in(self, conn: Connection, refund_id: str, result: RefundResult, source: str) -> bool:
        now = self.clock.now()
        refund = records.refund(conn, refund_id, lock=True)
        intent = records.intent(conn, refund.intent_id, lock=True)
        records.record(
            conn,
            now,
            intent.id,
            source,
            result.raw,
            refund_id=refund.id,
            status=result.status.value,
        )
        target = self._target(conn, refund, result, source, now)
        if target is refund.status:
            return False
        values: dict[str, Any] = {"status": target.value, "updated_at": now}
        if target in FINAL_REFUND:
            values["next_poll_at"] = None
        for column in ("channel_refund_id", "error_code"):
            value = getattr(result, column)
            if value is not None:
                values[column] = value
        if target is RefundStatus.SUCCEEDED:
            self._book(conn, intent, refund)
        elif target is RefundStatus.FAILED:
            # The money never left: release the holds, the reservations and the count.
            self._close_holds(conn, intent, refund, void=True)
            conn.execute(
                update(payment_intents)
                .where(payment_intents.c.id == intent.id)
                .values(
                    refunded=payment_intents.c.refunded - refund.amount.amount,
                    refund_count=payment_intents.c.refund_count - 1,
                )
            )
        # PAYOUT_REQUIRED keeps the hold: the money stays reserved for the payer's payout.
        conn.execute(update(refunds).where(refunds.c.id == refund.id).values(values))
        emit(
            conn,
            intent.merchant_id,
            f"refund.{target.value.lower()}",
            refund_view(records.refund(conn, refund.id)),
            now,
        )
        return True

    def _target(
        self,
        conn: Connection,
        refund: records.Refund,
        result: RefundResult,
        source: str,
        now: datetime,
    ) -> RefundStatus:
        target = advance_refund(refund.status, result.status)
        if target is RefundStatus.FAILED and source == "refund_query":
            # "No such refund" (or a failure read from a query) is not a refusal of a send: the
            # refund is sent again with its number, and the channel's answer to that decides.
            return RefundStatus.UNKNOWN
        attempt = records.attempt(conn, refund.attempt_id)
        assert attempt is not None
        terms = self.channels.get(attempt.channel).terms
        if target is RefundStatus.FAILED and result.error_code in terms.refund_dead_ends:
            return RefundStatus.PAYOUT_REQUIRED
        if result.status is ChannelStatus.UNKNOWN and refund.status is RefundStatus.PENDING:
            return RefundStatus.UNKNOWN if source == "refund_response" else refund.status
        if (
            target is RefundStatus.SUCCEEDED
            and result.amount is not None
            and result.amount != refund.channel_part
            and source != "balance"
        ):
            records.record(
                conn,
                now,
                refund.intent_id,
                "anomaly",
                f"channel refunded {result.amount}, we asked {refund.channel_part}",
                refund_id=refund.id,
            )
            return refund.status
        return target

    def _book(self, conn: Connection, intent: records.Intent, refund: records.Refund) -> None:
        """Commit the refund's hold and post the fee share the channel gives back."""
        self._close_holds(conn, intent, refund, void=False)
        attempt = records.attempt(conn, refund.attempt_id)
        assert attempt is not None
        fee_posts = refund_posts(
            self.payments.channels.books(attempt.channel),
            refund.settled,
            refund.channel_part,
            refund.commission_returned,
            refund.fee_returned,
        )[1:]
        self.payments.post_entries(conn, intent, f"refund:{refund.id}", fee_posts)

    def _close_holds(
        self, conn: Connection, intent: records.Intent, refund: records.Refund, *, void: bool
    ) -> None:
        """Capture (or void) the refund's holds: the channel's part and the balance's."""
        verb = "void" if void else "capture"
        for suffix, hold_id in (
            ("", refund.hold_entry_id),
            (":balance", refund.balance_hold_entry_id),
        ):
            if hold_id is None:
                continue
            key = f"refund:{refund.id}{suffix}:{verb}"
            request = VoidHold(key, hold_id) if void else CommitHold(key, hold_id)
            outcome = self.payments.ledger.submit_in(conn, [request])[0]
            if not outcome.ok:
                raise LedgerRefused(f"ledger refused {key}: {outcome.reason}", key=key)
        if void and refund.balance_part is not None and refund.balance_part.amount > 0:
            parts = legs.of(conn, intent.id, refund.amount.currency)
            balance = next(p for p in parts if p.method is legs.LegMethod.BALANCE)
            legs.add_refunded(
                conn, balance, Money(-refund.balance_part.amount, refund.amount.currency)
            )

    def get(self, merchant_id: str, refund_id: str) -> records.Refund:
        def work(conn: Connection) -> records.Refund:
            refund = records.refund(conn, refund_id)
            records.merchant_intent(conn, merchant_id, refund.intent_id)
            return refund

        return run_in_transaction(self.engine, work, readonly=True)


def refund_view(refund: records.Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "payment_id": refund.intent_id,
        "amount": refund.amount.amount,
        "currency": refund.amount.currency,
        "fee_returned": refund.fee_returned.amount,
        "reason": refund.reason,
        "status": refund.status.value,
        "channel_refund_id": refund.channel_refund_id,
        "error_code": refund.error_code,
        "created_at": refund.created_at.isoformat(),
    }


@dataclass(frozen=True, slots=True)
class _AtChannel:
    """The channel's view of the payment a refund goes against: what it took, its fee, what
    it already refunded and how many times (a combined payment's orders share one channel
    payment; a mixed payment's channel took only its part)."""

    paid: Money
    fee: Money
    refunded: Money
    count: int


def _at_channel(conn: Connection, intent: records.Intent, attempt: records.Attempt) -> _AtChannel:
    paid = records.attempt_amount(attempt, intent)
    zero = Money.zero(paid.currency)
    if attempt.group_id is not None:
        orders = records.group_intents(conn, attempt.group_id)
        return _AtChannel(
            paid,
            sum((o.fee or zero for o in orders), zero),
            sum((o.refunded for o in orders), zero),
            sum(o.refund_count for o in orders),
        )
    to_balances = sum((p.refunded for p in legs.of(conn, intent.id, paid.currency)), zero)
    return _AtChannel(paid, intent.fee or zero, intent.refunded - to_balances, intent.refund_count)
