"""Payment flows: take a payment, apply what the channel says, close, complete (P2-P4, P6).

Each step is one database transaction holding the state change, its flow record, its ledger
entries and its outbox event. Channel calls happen between transactions, never inside one: the
attempt is stored (CREATED) before the call, so a crash during the call leaves a row the poller
resolves, and nothing the channel did is ever unknown to us.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection

from clearhouse.clock import Clock
from clearhouse.db.schema import payment_attempts, payment_events, payment_intents
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway import customers as scope
from clearhouse.gateway import legs, records
from clearhouse.gateway.channels.port import ChannelResult, ChannelStatus, PayMethod, PayOrder
from clearhouse.gateway.channels.registry import Channels
from clearhouse.gateway.errors import (
    AmountTooLarge,
    ChannelNotSupported,
    CurrencyNotSupported,
    DuplicateOrder,
    InvalidPayment,
    InvalidTransition,
    LedgerRefused,
    MethodNotSupported,
    OrderExpired,
    RiskDeclined,
)
from clearhouse.gateway.merchants import Merchant, active_merchant, load_merchant
from clearhouse.gateway.model import (
    FINAL_ATTEMPT,
    FINAL_REFUND,
    AttemptStatus,
    IntentStatus,
    PlannedPost,
    Settlement,
    advance_attempt,
    commission,
    completion_post,
    intent_status_after,
    payment_posts,
    prorated,
)
from clearhouse.gateway.router import Router
from clearhouse.ids import new_id
from clearhouse.ledger.requests import Post
from clearhouse.ledger.service import Ledger
from clearhouse.money import Money, allocate
from clearhouse.outbox.events import emit
from clearhouse.risk.checkpoint import Decision, RiskCheck, RiskSubject, Verdict

Compensate = Callable[[Connection, records.Intent, records.Attempt, Money, Money], None]

# A single payment above this is refused before anything is sent (1,000,000.00 in a
# two-decimal currency); channels' own per-payment caps are lower still.
MAX_PAYMENT_MINOR = 100_000_000
MAX_EXPIRY = timedelta(days=7)
DEFAULT_EXPIRY = timedelta(minutes=30)
LEG_HOLD_GRACE = timedelta(days=1)
# An attempt stored but never answered (a crash during the channel call) is first queried after.
FIRST_POLL = timedelta(seconds=30)
# What a payment is for: an order of the merchant, or a top-up of the payer's buyer balance
# (the wallet books it, ``TopupBook``).
ORDER, TOPUP = "order", "topup"


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    merchant_order_id: str
    amount: Money
    description: str
    channel: str
    method: str
    settlement: Settlement
    expires_at: datetime | None = None
    payer_id: str | None = None
    payer_ref: str | None = None  # the merchant's id for the payer (cashier ordering)
    # A mixed payment's other parts (P12): the channel carries what they leave.
    legs: tuple[legs.LegRequest, ...] = ()
    # The payer's SMS code for a card payment above the channel's exemption. Not part of the
    # digest (a retry with a corrected code is the same order); passed to the channel only,
    # never stored, logged or shown.
    verification: str | None = field(default=None, repr=False)
    # Or the payer's payment password: the same rules; checked by the card port, never sent on.
    payment_password: str | None = field(default=None, repr=False)
    purpose: str = ORDER
    payer_account_id: str | None = None  # a top-up's buyer account

    def digest(self) -> bytes:
        """What identifies the request: a retry with the same order id must match it."""
        fields = [
            self.merchant_order_id,
            str(self.amount.amount),
            self.amount.currency,
            self.description,
            self.channel,
            self.method,
            self.settlement.value,
            "" if self.expires_at is None else self.expires_at.isoformat(),
            self.payer_id or "",
            self.payer_ref or "",
            *(
                f"{leg.method.value}:{leg.amount.amount}:{leg.account_id or ''}"
                for leg in self.legs
            ),
            # Orders keep the digest they always had.
            *((self.purpose, self.payer_account_id or "") if self.purpose != ORDER else ()),
        ]
        return hashlib.sha256("\x1f".join(fields).encode()).digest()


class TopupBook(Protocol):
    """The wallet's side of a top-up (``wallet/topups.py``), each step inside the payment's
    own transaction: check and count it when stored, book it when paid, give back its KYC
    usage when it fails or closes."""

    def accept(self, conn: Connection, req: PaymentRequest, now: datetime) -> None: ...

    def book(
        self, conn: Connection, intent: records.Intent, attempt: records.Attempt, fee: Money
    ) -> None: ...

    def release(self, conn: Connection, intent: records.Intent) -> None: ...


class Payments:
    def __init__(
        self,
        engine: Engine,
        ledger: Ledger,
        clock: Clock,
        channels: Channels,
        risk: RiskCheck,
        notify_base_url: str,
        router: Router,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.clock = clock
        self.channels = channels
        self.risk = risk
        self.router = router
        self.notify_base_url = notify_base_url.rstrip("/")
        # Refunds a mixed payment's channel part whose other part failed (set by the gateway's
        # wiring: refunds are built on payments).
        self.compensate: Compensate | None = None
        # Books top-ups into buyer balances (set by the gateway's wiring: the wallet).
        self.topups: TopupBook | None = None

    # --- taking a payment ---------------------------------------------------------------------

    def create(self, merchant_id: str, req: PaymentRequest) -> records.Intent:
        """Validate, pass the risk check point, store, send. A retry with the same merchant
        order id and the same request gets the stored payment back, without a second send.
        ``req.channel`` names a channel or a family of them ("card"): routing picks one."""
        method = self.pay_method(req.channel, req.method)
        stored, attempt, fresh = run_in_transaction(
            self.engine, lambda c: self._store(c, merchant_id, req), retry_integrity=True
        )
        if fresh or self.never_answered(attempt):
            # A retry of a request whose first run died before the channel answered sends the
            # same attempt again: the channel de-duplicates on our reference.
            self.send(stored, attempt, method, req.payer_id, req.verification, req.payment_password)
        return self.get(merchant_id, stored.id)

    def pay_method(self, channel: str, method: str) -> PayMethod:
        """The method, checked against the channel when one is named (a family is checked by
        routing, channel by channel)."""
        if channel in self.channels:
            return self.channels.check_method(channel, method)
        return _pay_method(method)

    def never_answered(self, attempt_id: str) -> bool:
        with self.engine.connect() as conn:
            found = records.attempt(conn, attempt_id)
        return found is not None and found.status is AttemptStatus.CREATED

    def _store(
        self, conn: Connection, merchant_id: str, req: PaymentRequest
    ) -> tuple[records.Intent, str, bool]:
        now = self.clock.now()
        merchant = active_merchant(conn, merchant_id)
        found = self.existing(conn, merchant_id, req)
        if found is not None:
            return found, records.attempts_of(conn, found.id)[-1].id, False
        expires_at = self.validate(merchant, req, now)
        # Accounts the merchant pays from must be its customers' before anything about them is
        # read (a part that should name none is refused as malformed further on).
        named = [req.payer_account_id]
        named += [leg.account_id for leg in req.legs if leg.method is legs.LegMethod.BALANCE]
        for account_id in dict.fromkeys(a for a in named if a is not None):
            scope.require_account(conn, merchant_id, account_id)
        if req.purpose != ORDER or req.payer_account_id is not None:
            assert self.topups is not None, "top-ups need the wallet wired"
            self.topups.accept(conn, req, now)
        decision = self.risk_check(merchant_id, req.amount, req.channel, req.payer_id)
        intent_id = self.insert_intent(conn, merchant, req, expires_at, decision, now)
        channel_part = req.amount
        if req.legs:
            channel_part = mixed_channel_part(req)
            # Held until well after the payment's deadline: a channel answer that arrives in
            # time always finds its other parts still reserved.
            legs.hold(self, conn, intent_id, list(req.legs), expires_at + LEG_HOLD_GRACE)
        attempt_id = self.open_attempt(conn, intent_id, req, channel_part, None, now)
        return records.intent(conn, intent_id), attempt_id, True

    def existing(
        self, conn: Connection, merchant_id: str, req: PaymentRequest
    ) -> records.Intent | None:
        """The payment already made for this order, if the request is the same; a different
        request for a taken order id is refused."""
        existing = conn.execute(
            select(payment_intents.c.id).where(
                payment_intents.c.merchant_id == merchant_id,
                payment_intents.c.merchant_order_id == req.merchant_order_id,
            )
        ).scalar()
        if existing is None:
            return None
        found = records.intent(conn, existing)
        if found.request_hash != req.digest():
            raise DuplicateOrder(
                f"order {req.merchant_order_id!r} already has a different payment",
                payment_id=found.id,
            )
        return found

    def risk_check(
        self, merchant_id: str, amount: Money, channel: str, payer_id: str | None
    ) -> Decision:
        decision = self.risk.decide(RiskSubject(merchant_id, amount, channel, payer_id))
        if decision.verdict in (Verdict.BLOCK, Verdict.CHALLENGE):
            raise RiskDeclined(
                f"risk check: {decision.verdict.value}",
                verdict=decision.verdict.value,
                reasons=list(decision.reasons),
            )
        return decision

    def insert_intent(
        self,
        conn: Connection,
        merchant: Merchant,
        req: PaymentRequest,
        expires_at: datetime,
        decision: Decision,
        now: datetime,
        group_id: str | None = None,
    ) -> str:
        intent_id = new_id("pay")
        conn.execute(
            payment_intents.insert().values(
                id=intent_id,
                merchant_id=merchant.id,
                merchant_order_id=req.merchant_order_id,
                amount=req.amount.amount,
                currency=req.amount.currency,
                description=req.description,
                settlement=req.settlement.value,
                commission=0
                if req.purpose == TOPUP
                else commission(req.amount, merchant.commission_bps).amount,
                status=IntentStatus.PROCESSING.value,
                request_hash=req.digest(),
                expires_at=expires_at,
                refunded=0,
                refund_count=0,
                payer_ref=req.payer_ref,
                group_id=group_id,
                purpose=req.purpose,
                payer_account_id=req.payer_account_id,
                created_at=now,
                updated_at=now,
            )
        )
        records.record(
            conn,
            now,
            intent_id,
            "risk",
            json.dumps({"verdict": decision.verdict.value, "reasons": list(decision.reasons)}),
            status=decision.verdict.value,
        )
        return intent_id

    def open_attempt(
        self,
        conn: Connection,
        intent_id: str,
        req: PaymentRequest,
        amount: Money,
        group_id: str | None,
        now: datetime,
    ) -> str:
        """Route ``amount`` (the intent's, or a group's total) and store the attempt that will
        carry it, before anything is sent."""
        attempt_id = new_id("att")
        card = _card(req.method, req.payer_id)
        channel = self.router.choose(conn, intent_id, req.channel, req.method, amount, card)
        conn.execute(
            payment_attempts.insert().values(
                id=attempt_id,
                intent_id=intent_id,
                group_id=group_id,
                amount=amount.amount,
                channel=channel,
                method=req.method,
                payer_id=req.payer_id,
                status=AttemptStatus.CREATED.value,
                created_at=now,
                updated_at=now,
                next_poll_at=now + FIRST_POLL,
                polls=0,
            )
        )
        return attempt_id

    def validate(self, merchant: Merchant, req: PaymentRequest, now: datetime) -> datetime:
        names = self.channels.routable(req.channel)
        if not names:
            raise ChannelNotSupported(
                f"channel {req.channel!r} is not enabled", channel=req.channel
            )
        currencies = {c for n in names for c in self.channels.get(n).terms.currencies}
        if req.amount.currency != merchant.currency or req.amount.currency not in currencies:
            raise CurrencyNotSupported(
                f"{req.channel} for this merchant takes {merchant.currency}, not "
                f"{req.amount.currency}",
                currency=req.amount.currency,
            )
        if req.amount.amount <= 0:
            raise InvalidPayment("amount must be positive", code="INVALID_AMOUNT")
        if req.amount.amount > MAX_PAYMENT_MINOR:
            raise AmountTooLarge(
                f"amount above the single-payment limit {MAX_PAYMENT_MINOR}",
                limit=MAX_PAYMENT_MINOR,
            )
        if not req.merchant_order_id or not req.description:
            raise InvalidPayment("merchant_order_id and description are required")
        expires_at = req.expires_at or now + DEFAULT_EXPIRY
        if expires_at <= now:
            raise OrderExpired("the order's payment deadline has passed")
        if expires_at > now + MAX_EXPIRY:
            raise InvalidPayment(f"expires_at is more than {MAX_EXPIRY.days} days ahead")
        if req.method == PayMethod.JSAPI.value and not req.payer_id:
            raise InvalidPayment("method jsapi needs payer_id (the payer's id at the channel)")
        return expires_at

    def send(
        self,
        intent: records.Intent,
        attempt_id: str,
        method: PayMethod,
        payer_id: str | None,
        verification: str | None = None,
        payment_password: str | None = None,
    ) -> None:
        attempt = self._attempt(attempt_id)
        channel = self.channels.get(attempt.channel)
        order = PayOrder(
            attempt_id=attempt_id,
            amount=records.attempt_amount(attempt, intent),
            description=intent.description,
            method=method,
            notify_url=f"{self.notify_base_url}/notify/{channel.port.name}",
            expires_at=intent.expires_at,
            payer_id=payer_id,
            verification=verification,
            payment_password=payment_password,
        )
        result = channel.port.pay(order)
        self.router.record_call(channel.port.name, result.status is not ChannelStatus.UNKNOWN)
        self.apply(attempt_id, result, "response")

    def _attempt(self, attempt_id: str) -> records.Attempt:
        with self.engine.connect() as conn:
            found = records.attempt(conn, attempt_id)
        assert found is not None, attempt_id
        return found

    # --- results ------------------------------------------------------------------------------

    def apply(self, attempt_id: str, result: ChannelResult, source: str) -> bool:
        """Apply a channel's answer (response, notification or query) to an attempt; True if it
        changed anything. Duplicate, stale and out-of-order answers are recorded and ignored."""
        return run_in_transaction(
            self.engine,
            lambda c: self.apply_in(c, attempt_id, result, source),
            retry_integrity=True,
        )

    def apply_in(
        self, conn: Connection, attempt_id: str, result: ChannelResult, source: str
    ) -> bool:
        now = self.clock.now()
        attempt = records.attempt(conn, attempt_id, lock=True)
        if attempt is None:
            return False
        intent = records.intent(conn, attempt.intent_id, lock=True)
        records.record(
            conn,
            now,
            intent.id,
            source,
            result.raw,
            attempt_id=attempt_id,
            status=result.status.value,
        )
        target = advance_attempt(attempt.status, result.status)
        if result.status is ChannelStatus.FAILED and (
            source == "close"
            or (
                source == "query"
                and attempt.status in (AttemptStatus.CREATED, AttemptStatus.UNKNOWN)
            )
        ):
            # A refused close leaves the order as it was at the channel; a query that finds no
            # order may be racing a lost create. Neither is the payment failing: only the
            # channel's word on the order, or the deadline (give_up), ends it.
            target = attempt.status
        if result.status is ChannelStatus.SUCCEEDED and attempt.status in (
            AttemptStatus.FAILED,
            AttemptStatus.CLOSED,
        ):
            self._paid_after_close(conn, intent, attempt, result, now)
        asked = records.attempt_amount(attempt, intent)
        if target is AttemptStatus.SUCCEEDED and result.amount != asked:
            # The channel took a different sum than we asked: never book a guess. The attempt
            # stays open and the flow record holds the evidence for review.
            records.record(
                conn,
                now,
                intent.id,
                "anomaly",
                "amount differs from the order",
                attempt_id=attempt_id,
            )
            target = attempt.status
        if (
            result.fx_rate is not None
            and result.amount == asked
            and AttemptStatus.SUCCEEDED in (target, attempt.status)
        ):
            # The rate the channel converted at, from the first answer that carries one
            # (a notification may confirm the payment before the answer that has the rate).
            conn.execute(
                update(payment_attempts)
                .where(payment_attempts.c.id == attempt_id, payment_attempts.c.fx_rate.is_(None))
                .values(fx_rate=result.fx_rate)
            )
        if target is attempt.status:
            return False
        values: dict[str, Any] = {
            "status": target.value,
            "updated_at": now,
            "next_poll_at": None if target in FINAL_ATTEMPT else attempt.next_poll_at,
        }
        for column in ("channel_txn_id", "credential", "error_code"):
            value = getattr(result, column)
            if value is not None:
                values[column] = value
        conn.execute(
            update(payment_attempts).where(payment_attempts.c.id == attempt_id).values(values)
        )
        self._follow(conn, intent, attempt, target, result, now)
        if target in FINAL_ATTEMPT:
            if target is not AttemptStatus.SUCCEEDED:
                card = _card(attempt.method, attempt.payer_id)
                self.router.release(conn, attempt.channel, asked, card, attempt.created_at)
            # Last, so the channel's health row is locked only until the commit.
            self.router.record_outcome(conn, attempt.channel, target is AttemptStatus.SUCCEEDED)
        return True

    def _paid_after_close(
        self,
        conn: Connection,
        intent: records.Intent,
        attempt: records.Attempt,
        result: ChannelResult,
        now: datetime,
    ) -> None:
        """Paid after we closed it: never lost silently. The merchant is told (once), and the
        money (at the channel, not in our books) is refunded through reconciliation."""
        told = conn.execute(
            select(payment_events.c.id).where(
                payment_events.c.attempt_id == attempt.id, payment_events.c.kind == "anomaly"
            )
        ).first()
        if told is not None:
            return
        note = f"paid after the attempt was {attempt.status.value}"
        records.record(conn, now, intent.id, "anomaly", note, attempt_id=attempt.id)
        payload = {"payment_id": intent.id, "attempt_id": attempt.id, "raw": result.raw}
        emit(conn, intent.merchant_id, "payment.paid_after_close", payload, now)

    def _follow(
        self,
        conn: Connection,
        intent: records.Intent,
        attempt: records.Attempt,
        target: AttemptStatus,
        result: ChannelResult,
        now: datetime,
    ) -> None:
        """Move the intents an attempt pays for (one, or a combined payment's orders): book the
        money on success, tell the merchants. A combined payment's one channel fee is shared
        among its orders by amount (largest remainder), so the shares add up to it."""
        new_status = intent_status_after(target)
        paid = records.attempt_amount(attempt, intent)
        intents = [intent]
        if attempt.group_id is not None:
            intents = records.group_intents(conn, attempt.group_id, lock=True)
        fees = [0] * len(intents)
        if new_status is IntentStatus.SUCCEEDED:
            fee = self.channels.get(attempt.channel).terms.fees.fee(paid)
            fees = allocate(fee.amount, [one.amount.amount for one in intents])
        for one, fee_share in zip(intents, fees, strict=True):
            self._move(conn, one, attempt, new_status, Money(fee_share, paid.currency), result, now)

    def _move(
        self,
        conn: Connection,
        intent: records.Intent,
        attempt: records.Attempt,
        new_status: IntentStatus,
        fee: Money,
        result: ChannelResult,
        now: datetime,
    ) -> None:
        if new_status is intent.status:
            return
        values: dict[str, Any] = {"status": new_status.value, "updated_at": now}
        topups = self.topups if intent.purpose == TOPUP else None
        assert topups is not None or intent.purpose == ORDER, "top-ups need the wallet wired"
        if topups is not None:
            # A top-up credits the payer's balance (no commission); one that fails or closes
            # gives back the KYC usage it counted.
            if new_status is IntentStatus.SUCCEEDED:
                values |= {"fee": fee.amount, "paid_at": result.paid_at or now}
                values |= {"succeeded_attempt_id": attempt.id}
                topups.book(conn, intent, attempt, fee)
            elif new_status in (IntentStatus.FAILED, IntentStatus.CLOSED):
                topups.release(conn, intent)
        elif new_status is IntentStatus.SUCCEEDED:
            legs_total = legs.total(conn, intent)
            paid_at = result.paid_at or now
            values |= {"fee": fee.amount, "paid_at": paid_at, "succeeded_attempt_id": attempt.id}
            posts = payment_posts(
                self.channels.books(attempt.channel),
                intent.settlement,
                intent.amount - legs_total,
                intent.commission,
                fee,
            )
            # One attempt pays each order of a group: the key names the order too.
            key = f"pay:{attempt.id}" if attempt.group_id is None else f"pay:{intent.id}"
            self.post_entries(conn, intent, key, posts)
            if not legs.capture(self, conn, intent):
                # A mixed payment's other part could not be taken (its hold ran out): the
                # channel's money goes back to the payer and the payment fails, so no money
                # moves in the end (P12).
                new_status = IntentStatus.FAILED
                values = {"status": new_status.value, "updated_at": now, "fee": fee.amount}
                values |= {"succeeded_attempt_id": attempt.id}
                assert self.compensate is not None, "a mixed payment needs refunds wired"
                self.compensate(conn, intent, attempt, intent.amount - legs_total, fee)
        elif new_status in (IntentStatus.FAILED, IntentStatus.CLOSED):
            legs.release(self, conn, intent)
        conn.execute(
            update(payment_intents).where(payment_intents.c.id == intent.id).values(values)
        )
        records.record(conn, now, intent.id, "state", new_status.value, status=new_status.value)
        event = f"payment.{new_status.value.lower()}"
        emit(conn, intent.merchant_id, event, self._event_payload(conn, intent.id), now)

    def ledger_post(
        self,
        conn: Connection,
        intent: records.Intent,
        key: str,
        code: str,
        amounts: dict[str, int],
    ) -> Post:
        """A ledger post for this intent, binding only the parties its rule names (the ledger
        refuses any other)."""
        rule = self.ledger.rules.get(code)
        assert rule is not None, f"no posting rule {code}"
        parties = {}
        if "merchant" in rule.parties:
            parties["merchant"] = load_merchant(conn, intent.merchant_id).account_id
        return Post(key, code, intent.amount.currency, amounts, parties, memo=intent.id)

    def post_entries(
        self, conn: Connection, intent: records.Intent, key: str, posts: list[PlannedPost]
    ) -> None:
        requests = [
            self.ledger_post(conn, intent, f"{key}:{p.suffix}", p.code, p.amounts) for p in posts
        ]
        for outcome in self.ledger.submit_in(conn, requests):
            if not outcome.ok:
                raise LedgerRefused(
                    f"ledger refused {outcome.key}: {outcome.reason}",
                    key=outcome.key,
                    reason=str(outcome.reason),
                )

    def give_up(self, attempt_id: str) -> bool:
        """Close locally an attempt the channel never acknowledged (CREATED or UNKNOWN), long
        after its deadline: the send never arrived. An attempt the channel knows (PENDING) or
        one held for review (a wrong amount) is never given up. Money that turns up later is
        reported (``payment.paid_after_close``) and refunded through reconciliation."""

        def work(conn: Connection) -> bool:
            attempt = records.attempt(conn, attempt_id, lock=True)
            if attempt is None or attempt.status not in (
                AttemptStatus.CREATED,
                AttemptStatus.UNKNOWN,
            ):
                return False
            held = conn.execute(
                select(payment_events.c.id).where(
                    payment_events.c.attempt_id == attempt_id, payment_events.c.kind == "anomaly"
                )
            ).first()
            if held is not None:
                return False
            result = ChannelResult(ChannelStatus.CLOSED, "given up: no answer past the deadline")
            return self.apply_in(conn, attempt_id, result, "give_up")

        return run_in_transaction(self.engine, work, retry_integrity=True)

    def _event_payload(self, conn: Connection, intent_id: str) -> dict[str, Any]:
        return view(records.intent(conn, intent_id), records.attempts_of(conn, intent_id))

    # --- merchant actions ---------------------------------------------------------------------

    def get(self, merchant_id: str, intent_id: str) -> records.Intent:
        return run_in_transaction(
            self.engine,
            lambda c: records.merchant_intent(c, merchant_id, intent_id),
            readonly=True,
        )

    def attempts(self, intent_id: str) -> list[records.Attempt]:
        return run_in_transaction(
            self.engine, lambda c: records.attempts_of(c, intent_id), readonly=True
        )

    def close(self, merchant_id: str, intent_id: str) -> records.Intent:
        """Close an unpaid payment at the channel, then believe the channel's query: a payer
        who paid a moment before the close wins, and the payment succeeds instead."""
        intent = self.get(merchant_id, intent_id)
        if intent.status is not IntentStatus.PROCESSING:
            if intent.status in (IntentStatus.CLOSED, IntentStatus.FAILED):
                return intent
            raise InvalidTransition(f"a {intent.status.value} payment cannot be closed")
        attempt = self.attempts(intent_id)[-1]
        port = self.channels.get(attempt.channel).port
        closed = port.close(attempt.id)
        self.apply(attempt.id, closed, "close")
        self.apply(attempt.id, port.query(attempt.id), "query")
        return self.get(merchant_id, intent_id)

    def complete(self, merchant_id: str, intent_id: str) -> records.Intent:
        """Release an escrow payment to the merchant (the order is complete, P6)."""

        def work(conn: Connection) -> records.Intent:
            now = self.clock.now()
            intent = records.merchant_intent(conn, merchant_id, intent_id)
            intent = records.intent(conn, intent.id, lock=True)
            if intent.status is IntentStatus.COMPLETED:
                return intent
            if intent.settlement is not Settlement.ESCROW or intent.status is not (
                IntentStatus.SUCCEEDED
            ):
                raise InvalidTransition(
                    f"only a succeeded escrow payment can complete; this one is "
                    f"{intent.settlement.value} and {intent.status.value}"
                )
            if any(r.status not in FINAL_REFUND for r in records.refunds_of(conn, intent.id)):
                # The refund's entry depends on whether the order is settled when it lands.
                raise InvalidTransition("a refund of this payment is still in progress")
            remaining = intent.amount - intent.refunded
            if remaining.amount > 0:
                kept = intent.commission - prorated(
                    intent.commission,
                    intent.amount,
                    Money.zero(remaining.currency),
                    intent.refunded,
                )
                self.post_entries(
                    conn, intent, f"pay:{intent.id}", [completion_post(remaining, kept)]
                )
            conn.execute(
                update(payment_intents)
                .where(payment_intents.c.id == intent.id)
                .values(status=IntentStatus.COMPLETED.value, updated_at=now)
            )
            records.record(conn, now, intent.id, "state", "COMPLETED", status="COMPLETED")
            emit(conn, merchant_id, "payment.completed", self._event_payload(conn, intent.id), now)
            return records.intent(conn, intent.id)

        return run_in_transaction(self.engine, work, retry_integrity=True)


def view(intent: records.Intent, attempts: list[records.Attempt]) -> dict[str, Any]:
    """The merchant's view of a payment: the API body and the webhook payload."""
    latest = attempts[-1] if attempts else None
    return {
        "id": intent.id,
        "merchant_order_id": intent.merchant_order_id,
        "amount": intent.amount.amount,
        "currency": intent.amount.currency,
        "description": intent.description,
        "settlement": intent.settlement.value,
        "status": intent.status.value,
        "commission": intent.commission.amount,
        "fee": None if intent.fee is None else intent.fee.amount,
        "refunded": intent.refunded.amount,
        "expires_at": intent.expires_at.isoformat(),
        "paid_at": None if intent.paid_at is None else intent.paid_at.isoformat(),
        "created_at": intent.created_at.isoformat(),
        "attempt": None
        if latest is None
        else {
            "id": latest.id,
            "channel": latest.channel,
            "method": latest.method,
            "status": latest.status.value,
            "channel_txn_id": latest.channel_txn_id,
            "credential": latest.credential,
            "error_code": latest.error_code,
        },
    }


def _pay_method(method: str) -> PayMethod:
    try:
        return PayMethod(method)
    except ValueError:
        raise MethodNotSupported(
            f"unknown method {method!r}", supported=sorted(m.value for m in PayMethod)
        ) from None


def _card(method: str, payer_id: str | None) -> str | None:
    """The card a payment draws on (its per-card limits), for card payments."""
    return payer_id if method == PayMethod.CARD.value else None


def mixed_channel_part(req: PaymentRequest) -> Money:
    """What the channel carries of a mixed payment: the amount less its other parts, which
    must leave something for the channel, be positive, in the payment's currency, one of each
    kind, and be escrowed (the parts meet in the order's escrow)."""
    kinds = [leg.method for leg in req.legs]
    if len(set(kinds)) != len(kinds):
        raise InvalidPayment("one part per method", code="INVALID_PAYMENT_LEG")
    for leg in req.legs:
        if leg.amount.currency != req.amount.currency or leg.amount.amount <= 0:
            raise InvalidPayment(
                f"the {leg.method.value} part must be positive, in {req.amount.currency}",
                code="INVALID_PAYMENT_LEG",
            )
        if (leg.method is legs.LegMethod.BALANCE) != (leg.account_id is not None):
            raise InvalidPayment(
                "a balance part names the payer's account; no other part does",
                code="INVALID_PAYMENT_LEG",
            )
    if req.settlement is not Settlement.ESCROW:
        raise InvalidPayment("a mixed payment is escrowed", code="INVALID_PAYMENT_LEG")
    rest = req.amount - sum((leg.amount for leg in req.legs), Money.zero(req.amount.currency))
    if rest.amount <= 0:
        raise InvalidPayment("the parts leave nothing for the channel", code="LEGS_DO_NOT_ADD_UP")
    return rest


def mixed_parts(
    amount: Money, parts: list[tuple[str, Money, str | None]]
) -> tuple[legs.LegRequest, ...]:
    """A mixed payment's parts as the payer chose them, one of them ``channel``: they must
    add up to the amount exactly. The channel's part is what the others leave."""
    if sum((money for _m, money, _a in parts), Money.zero(amount.currency)) != amount:
        raise InvalidPayment("the parts do not add up to the amount", code="LEGS_DO_NOT_ADD_UP")
    if [m for m, _money, _a in parts].count("channel") != 1:
        raise InvalidPayment("a mixed payment has one channel part", code="INVALID_PAYMENT_LEG")
    return tuple(
        legs.LegRequest(legs.LegMethod(method), money, account)
        for method, money, account in parts
        if method != "channel"
    )
