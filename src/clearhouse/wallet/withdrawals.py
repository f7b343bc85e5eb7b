"""Withdrawals (P9): from a buyer's balance to the holder's own bound, real-name bank card,
batched, on the rail the amount and the hour allow (P10).

A request is checked (the card is active and the balance's customer's; the identity's KYC
withdrawal limit), its amount held in the ledger (5002 as a hold: it cannot be spent meanwhile,
and is not yet gone), its rail and due time recorded: ``REQUESTED``. ``run_batches`` then:

1. asks the bank about withdrawals whose batch went unanswered (or whose runner died), by our
   withdrawal id: a lost answer is resolved by a status query, never by a resubmission under a
   new id (an item the bank never saw is sent again under the same id, which it de-duplicates);
2. per rail, if the rail is open, collects the due withdrawals into a batch (a row with count
   and total), marks them ``SUBMITTED`` and commits, before anything is sent;
3. sends the batch, outside any transaction, and applies the per-item answers, each in its own
   transaction with its ledger entry and outbox event: paid, the hold is committed; a final
   refusal voids the hold, gives back the KYC usage and tells the merchant
   (``withdrawal.failed``); a short refusal leaves it due for the next batch, and the third
   one suspends it for an operator (hold kept, ``withdrawal.suspended``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection, Row

from clearhouse.accounts.model import LimitKind
from clearhouse.clock import Clock
from clearhouse.db.schema import cards, withdrawal_batches, withdrawal_events, withdrawals
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway import customers as scope
from clearhouse.gateway.card_model import CardNotActive, CardNotFound, CardStatus
from clearhouse.gateway.cards import HOLDER, PAN
from clearhouse.gateway.merchants import active_merchant
from clearhouse.ids import new_id
from clearhouse.ledger import queries
from clearhouse.ledger.model import Reason
from clearhouse.ledger.requests import CommitHold, Post, VoidHold
from clearhouse.ledger.service import Ledger
from clearhouse.money import Money
from clearhouse.outbox.events import emit
from clearhouse.sealing import Sealer
from clearhouse.wallet import kyc
from clearhouse.wallet.bank import (
    BatchAnswer,
    ItemResult,
    ItemStatus,
    PayoutBatch,
    PayoutItem,
    PayoutPort,
)
from clearhouse.wallet.errors import (
    CardNotOwned,
    DuplicateWithdrawal,
    InsufficientBalance,
    InvalidMovement,
    InvalidWithdrawalState,
    PayoutUnavailable,
    WalletError,
    WithdrawalNotFound,
)
from clearhouse.wallet.model import (
    FINAL_WITHDRAWAL,
    MAX_BATCH_ITEMS,
    FailureClass,
    Rail,
    RailPolicy,
    WithdrawalStatus,
    after_short_error,
    can_move,
    choose_rail,
    classify,
    may_submit,
)
from clearhouse.wallet.transfers import check_amount

log = logging.getLogger(__name__)

WITHDRAWAL_CODE = "5002"
# A submitted batch without an applied answer after this long is asked about item by item (its
# runner died mid-call, or the answer is still on its way: the query is harmless either way).
QUERY_AFTER = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class WithdrawalRequest:
    withdrawal_ref: str  # the caller's id: idempotency
    account_id: str
    card_id: str
    amount: Money

    def digest(self) -> bytes:
        fields = [
            self.withdrawal_ref,
            self.account_id,
            self.card_id,
            str(self.amount.amount),
            self.amount.currency,
        ]
        return hashlib.sha256("\x1f".join(fields).encode()).digest()


@dataclass
class BatchRun:
    """What one ``run_batches`` did: batches sent and the outcomes applied."""

    batches: list[str] = field(default_factory=list)
    queried: int = 0
    paid: int = 0
    failed: int = 0
    retried: int = 0
    suspended: int = 0
    unanswered: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": list(self.batches),
            "queried": self.queried,
            "paid": self.paid,
            "failed": self.failed,
            "retried": self.retried,
            "suspended": self.suspended,
            "unanswered": self.unanswered,
        }


class Withdrawals:
    def __init__(
        self,
        engine: Engine,
        ledger: Ledger,
        clock: Clock,
        sealer: Sealer,
        policy: RailPolicy,
        bank: PayoutPort | None = None,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.clock = clock
        self.sealer = sealer
        self.policy = policy
        self.bank = bank

    # --- the request --------------------------------------------------------------------------

    def request(self, merchant_id: str, req: WithdrawalRequest) -> dict[str, Any]:
        check_amount(req.amount)
        if req.amount.currency != self.policy.currency:
            raise InvalidMovement(
                f"withdrawals are paid in {self.policy.currency}",
                code="CURRENCY_NOT_SUPPORTED",
                currency=req.amount.currency,
            )
        return run_in_transaction(
            self.engine, lambda c: self._request(c, merchant_id, req), retry_integrity=True
        )

    def _request(
        self, conn: Connection, merchant_id: str, req: WithdrawalRequest
    ) -> dict[str, Any]:
        now = self.clock.now()
        active_merchant(conn, merchant_id)
        found = conn.execute(
            select(withdrawals).where(
                withdrawals.c.merchant_id == merchant_id,
                withdrawals.c.withdrawal_ref == req.withdrawal_ref,
            )
        ).first()
        if found is not None:
            if bytes(found.request_hash) != req.digest():
                raise DuplicateWithdrawal(
                    f"withdrawal {req.withdrawal_ref!r} was requested with other details",
                    withdrawal_id=found.id,
                )
            return withdrawal_view(found)
        scope.require_account(conn, merchant_id, req.account_id)
        customer_id, fund = kyc.buyer_balance(conn, req.account_id, req.amount.currency)
        # Another marketplace's card is unknown here, not merely someone else's.
        scope.require_card(conn, merchant_id, req.card_id)
        card = _card(conn, req.card_id)
        if card.customer_id != customer_id:
            raise CardNotOwned("the card is not the balance holder's", card_id=req.card_id)
        if card.status != CardStatus.ACTIVE.value:
            raise CardNotActive("the card was unbound", card_id=req.card_id)
        day = kyc.limit_day(now, self.ledger.zone)
        kyc.reserve(conn, customer_id, LimitKind.WITHDRAWAL, req.amount, day)
        withdrawal_id = new_id("wdr")
        hold_id = self._hold(conn, withdrawal_id, req, fund)
        choice = choose_rail(self.policy, req.amount, now)
        conn.execute(
            withdrawals.insert().values(
                id=withdrawal_id,
                merchant_id=merchant_id,
                withdrawal_ref=req.withdrawal_ref,
                request_hash=req.digest(),
                account_id=req.account_id,
                customer_id=customer_id,
                card_id=req.card_id,
                amount=req.amount.amount,
                currency=req.amount.currency,
                rail=choice.rail.value,
                status=WithdrawalStatus.REQUESTED.value,
                due_at=choice.due_at,
                hold_entry_id=hold_id,
                kyc_day=day,
                short_errors=0,
                created_at=now,
                updated_at=now,
            )
        )
        _record(conn, withdrawal_id, None, "request", "REQUESTED", choice.rail.value, now)
        shown = withdrawal_view(_row(conn, withdrawal_id))
        emit(conn, merchant_id, "withdrawal.requested", shown, now)
        return shown

    def _hold(self, conn: Connection, withdrawal_id: str, req: WithdrawalRequest, fund: int) -> int:
        # No expiry: the money stays held until the bank pays or refuses it for good; a
        # suspended withdrawal keeps it while an operator looks.
        post = Post(
            f"wdr:{withdrawal_id}:hold",
            WITHDRAWAL_CODE,
            req.amount.currency,
            {"amount": req.amount.amount},
            {"buyer": req.account_id},
            memo=withdrawal_id,
            hold=True,
        )
        outcome = self.ledger.submit_in(conn, [post])[0]
        if outcome.reason is Reason.INSUFFICIENT_FUNDS:
            # The ledger has locked the balance rows: this read is the one it refused on.
            available = queries.balance(conn, fund).available
            if available < req.amount.amount:
                raise InsufficientBalance(
                    f"the balance cannot cover {req.amount}", available=available
                )
            raise PayoutUnavailable("the platform's bank reserve cannot cover it now; retry")
        if not outcome.ok or outcome.entry_id is None:
            raise WalletError(f"ledger refused {outcome.key}: {outcome.reason}")
        return outcome.entry_id

    def get(self, merchant_id: str, withdrawal_id: str) -> dict[str, Any]:
        def read(conn: Connection) -> dict[str, Any]:
            found = conn.execute(
                select(withdrawals).where(
                    withdrawals.c.id == withdrawal_id, withdrawals.c.merchant_id == merchant_id
                )
            ).first()
            if found is None:
                raise WithdrawalNotFound(f"no withdrawal {withdrawal_id!r}")
            return withdrawal_view(found)

        return run_in_transaction(self.engine, read, readonly=True)

    # --- batches ------------------------------------------------------------------------------

    def run_batches(self, now: datetime | None = None) -> BatchRun:
        """Run every due batch once (see the module's docstring). Safe to run concurrently
        and again: rows move forward under locks and the bank de-duplicates on our ids."""
        if self.bank is None:
            raise WalletError("no payout bank is configured", code="CONFIGURATION_ERROR")
        at = now or self.clock.now()
        run = BatchRun()
        self._resolve_unanswered(at, run)
        for rail in Rail:
            if not may_submit(self.policy, rail, at):
                continue
            while True:
                batch, unbound = run_in_transaction(
                    self.engine, partial(self._form_batch, rail=rail, at=at), retry_integrity=True
                )
                run.failed += unbound
                if batch is None:
                    break
                run.batches.append(batch.batch_id)
                self._apply_answer(batch, self.bank.submit(batch), run)
                if len(batch.items) < MAX_BATCH_ITEMS:
                    break
        return run

    def _resolve_unanswered(self, at: datetime, run: BatchRun) -> None:
        assert self.bank is not None
        with self.engine.connect() as conn:
            refs = conn.execute(
                select(withdrawals.c.id)
                .join(withdrawal_batches, withdrawal_batches.c.id == withdrawals.c.batch_id)
                .where(
                    withdrawals.c.status == WithdrawalStatus.SUBMITTED.value,
                    (withdrawal_batches.c.status != "SUBMITTED")
                    | (withdrawal_batches.c.created_at <= at - QUERY_AFTER),
                )
                .order_by(withdrawals.c.id)
            ).scalars()
            pending = list(refs)
        for ref in pending:
            result = self.bank.query(ref)
            run.queried += 1
            self._apply(ref, None, result, "query", run)

    def _form_batch(
        self, conn: Connection, rail: Rail, at: datetime
    ) -> tuple[PayoutBatch | None, int]:
        """The next batch of ``rail`` (None: nothing due), and how many due withdrawals failed
        instead because their card was unbound since the request."""
        stmt = (
            select(withdrawals)
            .where(
                withdrawals.c.status == WithdrawalStatus.REQUESTED.value,
                withdrawals.c.rail == rail.value,
                withdrawals.c.due_at <= at,
            )
            .order_by(withdrawals.c.due_at, withdrawals.c.id)
            .limit(MAX_BATCH_ITEMS)
        )
        if conn.dialect.name == "postgresql":
            # Another runner's batch is not ours to take.
            stmt = stmt.with_for_update(skip_locked=True)
        rows = conn.execute(stmt).all()
        items: list[PayoutItem] = []
        unbound = 0
        batch_id = new_id("wdb")
        for row in rows:
            card = _card(conn, row.card_id)
            if card.status != CardStatus.ACTIVE.value:
                # Unbound since the request: it can never be paid to that card.
                self._fail(conn, row, "CARD_UNBOUND", at, "the card was unbound")
                unbound += 1
                continue
            items.append(
                PayoutItem(
                    ref=row.id,
                    amount=Money(row.amount, row.currency),
                    card_number=self.sealer.unseal(bytes(card.pan_sealed), PAN).decode(),
                    holder_name=self.sealer.unseal(bytes(card.holder_sealed), HOLDER).decode(),
                )
            )
        if not items:
            return None, unbound
        batch = PayoutBatch(batch_id, rail, tuple(items))
        conn.execute(
            withdrawal_batches.insert().values(
                id=batch_id,
                rail=rail.value,
                currency=batch.total.currency,
                item_count=len(items),
                total=batch.total.amount,
                status="SUBMITTED",
                created_at=at,
            )
        )
        refs = [item.ref for item in items]
        conn.execute(
            update(withdrawals)
            .where(withdrawals.c.id.in_(refs))
            .values(status=WithdrawalStatus.SUBMITTED.value, batch_id=batch_id, updated_at=at)
        )
        for ref in refs:
            _record(conn, ref, batch_id, "submit", "SUBMITTED", rail.value, at)
        return batch, unbound

    def _apply_answer(self, batch: PayoutBatch, answer: BatchAnswer, run: BatchRun) -> None:
        def mark(conn: Connection) -> None:
            now = self.clock.now()
            status = "ANSWERED" if answer.answered else "UNANSWERED"
            conn.execute(
                update(withdrawal_batches)
                .where(withdrawal_batches.c.id == batch.batch_id)
                .values(status=status, answered_at=now if answer.answered else None)
            )
            if not answer.answered:
                detail = f"{answer.error_code}: {answer.raw}"[:2000]
                for item in batch.items:
                    _record(conn, item.ref, batch.batch_id, "answer", "UNANSWERED", detail, now)

        run_in_transaction(self.engine, mark)
        if not answer.answered:
            log.warning("payout batch %s unanswered (%s)", batch.batch_id, answer.error_code)
            run.unanswered += len(batch.items)
            return
        for result in answer.items:
            self._apply(result.ref, batch.batch_id, result, "answer", run)

    # --- applying the bank's word ---------------------------------------------------------------

    def _apply(
        self, ref: str, batch_id: str | None, result: ItemResult, source: str, run: BatchRun
    ) -> None:
        moved = run_in_transaction(
            self.engine,
            lambda c: self._apply_in(c, ref, batch_id, result, source),
            retry_integrity=True,
        )
        if moved is WithdrawalStatus.PAID:
            run.paid += 1
        elif moved is WithdrawalStatus.FAILED:
            run.failed += 1
        elif moved is WithdrawalStatus.SUSPENDED:
            run.suspended += 1
        elif moved is WithdrawalStatus.REQUESTED:
            run.retried += 1

    def _apply_in(
        self,
        conn: Connection,
        ref: str,
        batch_id: str | None,
        result: ItemResult,
        source: str,
    ) -> WithdrawalStatus | None:
        """Apply one answer about one withdrawal; the status it moved to, or None."""
        now = self.clock.now()
        row = _row(conn, ref, lock=True)
        _record(
            conn, ref, batch_id, source, result.status.value, result.raw or str(result.code), now
        )
        current = WithdrawalStatus(row.status)
        if current in FINAL_WITHDRAWAL:
            return None  # a duplicate or late answer: recorded, nothing else
        if result.status is ItemStatus.PAID:
            return self._paid(conn, row, result, now)
        if current is not WithdrawalStatus.SUBMITTED:
            return None
        if batch_id is not None and row.batch_id != batch_id:
            return None  # a stale batch's answer: the item went out again since
        if result.status is ItemStatus.NOT_FOUND:
            # The bank never saw it: due again, under the same id (never a new one).
            self._set(conn, row, WithdrawalStatus.REQUESTED, now, due_at=now)
            return WithdrawalStatus.REQUESTED
        if result.status is not ItemStatus.FAILED:
            return None  # no usable answer: asked again next run
        code = result.code or "UNSPECIFIED"
        if classify(code) is FailureClass.FINAL:
            self._fail(conn, row, code, now, f"refused by the bank: {code}")
            return WithdrawalStatus.FAILED
        return self._short(conn, row, code, now)

    def _paid(
        self, conn: Connection, row: Row[Any], result: ItemResult, now: datetime
    ) -> WithdrawalStatus | None:
        amount = Money(row.amount, row.currency)
        if result.amount is not None and result.amount != amount:
            # The bank paid another sum than we asked: never book a guess. Held for review.
            if row.status == WithdrawalStatus.SUSPENDED.value:
                return None
            self._suspend(conn, row, "AMOUNT_MISMATCH", row.short_errors, now)
            return WithdrawalStatus.SUSPENDED
        commit = CommitHold(f"wdr:{row.id}:paid", row.hold_entry_id, memo=row.id)
        outcome = self.ledger.submit_in(conn, [commit])[0]
        if not outcome.ok:
            raise WalletError(f"ledger refused {outcome.key}: {outcome.reason}")
        self._set(
            conn,
            row,
            WithdrawalStatus.PAID,
            now,
            bank_txn_id=result.bank_txn_id,
            paid_at=result.paid_at or now,
            error_code=None,
        )
        self._tell(conn, row.id, "withdrawal.paid", now)
        return WithdrawalStatus.PAID

    def _fail(self, conn: Connection, row: Row[Any], code: str, now: datetime, note: str) -> None:
        """A final refusal: the money goes back to the balance and the limit to the identity."""
        void = VoidHold(f"wdr:{row.id}:void", row.hold_entry_id, memo=row.id)
        outcome = self.ledger.submit_in(conn, [void])[0]
        if not outcome.ok:
            raise WalletError(f"ledger refused {outcome.key}: {outcome.reason}")
        amount = Money(row.amount, row.currency)
        kyc.release(conn, row.customer_id, LimitKind.WITHDRAWAL, amount, row.kyc_day)
        self._set(conn, row, WithdrawalStatus.FAILED, now, error_code=code)
        _record(conn, row.id, row.batch_id, "state", "FAILED", note, now)
        self._tell(conn, row.id, "withdrawal.failed", now)

    def _short(self, conn: Connection, row: Row[Any], code: str, now: datetime) -> WithdrawalStatus:
        status, count = after_short_error(row.short_errors)
        if status is WithdrawalStatus.SUSPENDED:
            self._suspend(conn, row, code, count, now)
            return status
        due = now
        if code == "OUTSIDE_BUSINESS_HOURS":
            due = self.policy.hours.next_opening(now)
        self._set(conn, row, status, now, short_errors=count, error_code=code, due_at=due)
        return status

    def _suspend(
        self, conn: Connection, row: Row[Any], code: str, short_errors: int, now: datetime
    ) -> None:
        self._set(
            conn,
            row,
            WithdrawalStatus.SUSPENDED,
            now,
            short_errors=short_errors,
            error_code=code,
        )
        _record(conn, row.id, row.batch_id, "state", "SUSPENDED", code, now)
        self._tell(conn, row.id, "withdrawal.suspended", now)

    def _set(
        self,
        conn: Connection,
        row: Row[Any],
        status: WithdrawalStatus,
        now: datetime,
        **values: Any,
    ) -> None:
        current = WithdrawalStatus(row.status)
        assert can_move(current, status), f"{row.id}: {current} -> {status}"
        conn.execute(
            update(withdrawals)
            .where(withdrawals.c.id == row.id)
            .values(status=status.value, updated_at=now, **values)
        )

    def _tell(self, conn: Connection, withdrawal_id: str, event: str, now: datetime) -> None:
        row = _row(conn, withdrawal_id)
        emit(conn, row.merchant_id, event, withdrawal_view(row), now)

    # --- an operator's hand on a suspended withdrawal -------------------------------------------

    def resume(self, withdrawal_id: str) -> dict[str, Any]:
        """Send a suspended withdrawal again (same id) in the next batch of its rail."""

        def work(conn: Connection) -> dict[str, Any]:
            now = self.clock.now()
            row = _row(conn, withdrawal_id, lock=True)
            if row.status != WithdrawalStatus.SUSPENDED.value:
                raise InvalidWithdrawalState(f"a {row.status} withdrawal cannot be resumed")
            self._set(conn, row, WithdrawalStatus.REQUESTED, now, short_errors=0, due_at=now)
            _record(conn, row.id, None, "operator", "REQUESTED", "resumed", now)
            return withdrawal_view(_row(conn, withdrawal_id))

        return run_in_transaction(self.engine, work)

    def cancel(self, withdrawal_id: str) -> dict[str, Any]:
        """Fail a suspended withdrawal and give the money back, once the bank confirms it paid
        nothing under this id (a payment it did make is applied instead)."""
        if self.bank is None:
            raise WalletError("no payout bank is configured", code="CONFIGURATION_ERROR")
        with self.engine.connect() as conn:
            if _row(conn, withdrawal_id).status != WithdrawalStatus.SUSPENDED.value:
                raise InvalidWithdrawalState("only a suspended withdrawal can be cancelled")
        result = self.bank.query(withdrawal_id)
        if result.status is ItemStatus.UNKNOWN:
            raise WalletError("the bank did not answer; try again", code="BANK_UNAVAILABLE")

        def work(conn: Connection) -> dict[str, Any]:
            now = self.clock.now()
            row = _row(conn, withdrawal_id, lock=True)
            if row.status == WithdrawalStatus.SUSPENDED.value:
                if result.status is ItemStatus.PAID:
                    raise InvalidWithdrawalState(
                        "the bank paid it: review the amount, do not cancel",
                        bank_txn_id=result.bank_txn_id,
                    )
                self._fail(conn, row, "CANCELLED", now, "cancelled by an operator")
            return withdrawal_view(_row(conn, withdrawal_id))

        return run_in_transaction(self.engine, work)


# --- rows ---------------------------------------------------------------------------------------


def _row(conn: Connection, withdrawal_id: str, *, lock: bool = False) -> Row[Any]:
    stmt = select(withdrawals).where(withdrawals.c.id == withdrawal_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    found = conn.execute(stmt).first()
    if found is None:
        raise WithdrawalNotFound(f"no withdrawal {withdrawal_id!r}")
    return found


def _card(conn: Connection, card_id: str) -> Row[Any]:
    """The card as the wallet needs it (owner, status, sealed number and holder): read here
    rather than through the card flows, which serve payments."""
    found = conn.execute(select(cards).where(cards.c.id == card_id)).first()
    if found is None:
        raise CardNotFound(f"no card {card_id!r}", card_id=card_id)
    return found


def _record(
    conn: Connection,
    withdrawal_id: str,
    batch_id: str | None,
    kind: str,
    status: str | None,
    detail: str,
    at: datetime,
) -> None:
    conn.execute(
        withdrawal_events.insert().values(
            withdrawal_id=withdrawal_id,
            batch_id=batch_id,
            kind=kind,
            status=status,
            detail=detail,
            at=at,
        )
    )


def withdrawal_view(row: Row[Any]) -> dict[str, Any]:
    """The merchant's view of a withdrawal: the API body and the webhook payload."""

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": row.id,
        "withdrawal_id": row.withdrawal_ref,
        "account_id": row.account_id,
        "card_id": row.card_id,
        "amount": row.amount,
        "currency": row.currency,
        "rail": row.rail,
        "status": row.status,
        "due_at": iso(row.due_at),
        "short_errors": row.short_errors,
        "error_code": row.error_code,
        "batch_id": row.batch_id,
        "bank_txn_id": row.bank_txn_id,
        "paid_at": iso(row.paid_at),
        "created_at": iso(row.created_at),
    }


def events_of(conn: Connection, withdrawal_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(withdrawal_events)
        .where(withdrawal_events.c.withdrawal_id == withdrawal_id)
        .order_by(withdrawal_events.c.id)
    )
    return [
        {"kind": r.kind, "status": r.status, "batch_id": r.batch_id, "detail": r.detail}
        for r in rows
    ]
