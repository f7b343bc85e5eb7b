"""The ledger's domain: sides, entries, postings, balance rows and how an entry changes them.

Pure: no database, no I/O. ``apply_entry`` is the one place that decides whether an entry may
change a set of balance rows (balance constraints, 64-bit range, account status) and computes the
rows after it; the store only reads and writes what this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from clearhouse.accounts.model import Status

MAX_MINOR = 2**63 - 1


class Side(StrEnum):
    DEBIT = "D"
    CREDIT = "C"

    @property
    def opposite(self) -> Side:
        return Side.CREDIT if self is Side.DEBIT else Side.DEBIT


class EntryKind(StrEnum):
    POSTED = "posted"  # changes posted balances
    PENDING = "pending"  # a hold: changes pending balances only
    POST_PENDING = (
        "post_pending"  # captures (part of) a hold: releases it whole, posts its own legs
    )
    VOID = "void"  # releases a hold; its postings repeat the hold's
    REVERSAL = "reversal"  # undoes a posted entry with the sides swapped


# Entry kinds whose postings count in posted balances, the general ledger and the trial balance.
POSTED_KINDS = frozenset({EntryKind.POSTED, EntryKind.POST_PENDING, EntryKind.REVERSAL})


class HoldStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


class Reason(StrEnum):
    """Why the ledger rejected a request. Stable codes: never renamed, never reused."""

    UNKNOWN_TRANSACTION_CODE = "UNKNOWN_TRANSACTION_CODE"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    MISSING_PARTY = "MISSING_PARTY"
    UNEXPECTED_PARTY = "UNEXPECTED_PARTY"
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    MISSING_AMOUNT = "MISSING_AMOUNT"
    UNEXPECTED_AMOUNT = "UNEXPECTED_AMOUNT"
    AMOUNT_NOT_POSITIVE = "AMOUNT_NOT_POSITIVE"
    AMOUNT_TOO_LARGE = "AMOUNT_TOO_LARGE"
    UNBALANCED = "UNBALANCED"
    TOO_FEW_POSTINGS = "TOO_FEW_POSTINGS"
    ACCOUNT_NOT_ACTIVE = "ACCOUNT_NOT_ACTIVE"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    BALANCE_OVERFLOW = "BALANCE_OVERFLOW"
    HOLD_NOT_FOUND = "HOLD_NOT_FOUND"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    HOLD_CLOSED = "HOLD_CLOSED"
    HOLD_AMOUNT_EXCEEDED = "HOLD_AMOUNT_EXCEEDED"
    INVALID_EXPIRY = "INVALID_EXPIRY"
    ENTRY_NOT_FOUND = "ENTRY_NOT_FOUND"
    NOT_REVERSIBLE = "NOT_REVERSIBLE"
    ALREADY_REVERSED = "ALREADY_REVERSED"
    # Never stored under the key: they are about the key itself.
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Posting:
    seq: int  # leg * 2 + (0 for the debit, 1 for the credit)
    fund_account_id: int
    shard: int
    side: Side
    amount: int
    currency: str

    @property
    def row(self) -> RowKey:
        return (self.fund_account_id, self.shard)


RowKey = tuple[int, int]  # (fund_account_id, shard)


@dataclass(frozen=True, slots=True)
class Counters:
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            self.debits_posted + other.debits_posted,
            self.credits_posted + other.credits_posted,
            self.debits_pending + other.debits_pending,
            self.credits_pending + other.credits_pending,
        )

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)

    def posted(self, normal_side: Side) -> int:
        """The posted balance in the account's normal direction."""
        return signed(normal_side, self.debits_posted, self.credits_posted)

    def pending_out(self, normal_side: Side) -> int:
        """Held amounts that will lower the balance when captured."""
        return self.credits_pending if normal_side is Side.DEBIT else self.debits_pending

    def pending_in(self, normal_side: Side) -> int:
        return self.debits_pending if normal_side is Side.DEBIT else self.credits_pending

    def available(self, normal_side: Side) -> int:
        """Posted minus what holds may still take out; incoming holds do not count yet."""
        return self.posted(normal_side) - self.pending_out(normal_side)


def signed(normal_side: Side, debits: int, credits: int) -> int:
    """A balance in its account's normal direction: an asset's is debits - credits."""
    return debits - credits if normal_side is Side.DEBIT else credits - debits


@dataclass(frozen=True, slots=True)
class BalanceRow:
    fund_account_id: int
    shard: int
    normal_side: Side
    non_negative: bool
    status: Status
    counters: Counters
    version: int
    last_at: datetime  # time of the last change; a row's history times never go backwards

    @property
    def posted(self) -> int:
        return self.counters.posted(self.normal_side)

    @property
    def available(self) -> int:
        return self.counters.available(self.normal_side)


def check_postings(postings: Sequence[Posting]) -> Rejection | None:
    """The journal's own invariants on one entry: at least two postings, all positive and in
    range, debits equal credits in every currency."""
    if len(postings) < 2:
        return Rejection(Reason.TOO_FEW_POSTINGS, "an entry needs at least two postings")
    totals: dict[str, int] = {}
    for p in postings:
        if p.amount <= 0:
            return Rejection(Reason.AMOUNT_NOT_POSITIVE, f"posting {p.seq} amount {p.amount}")
        if p.amount > MAX_MINOR:
            return Rejection(Reason.AMOUNT_TOO_LARGE, f"posting {p.seq} exceeds a 64-bit amount")
        delta = p.amount if p.side is Side.DEBIT else -p.amount
        totals[p.currency] = totals.get(p.currency, 0) + delta
    unbalanced = {cur: net for cur, net in totals.items() if net != 0}
    if unbalanced:
        return Rejection(Reason.UNBALANCED, f"debits minus credits per currency: {unbalanced}")
    return None


def entry_effects(
    kind: EntryKind, postings: Iterable[Posting], released: Iterable[Posting] = ()
) -> dict[RowKey, Counters]:
    """How an entry changes each balance row it touches.

    ``released`` are the postings of the hold that a post_pending or void entry closes: the whole
    hold is released whatever part of it is captured.
    """
    effects: dict[RowKey, Counters] = {}

    def add(row: RowKey, delta: Counters) -> None:
        effects[row] = effects.get(row, Counters()) + delta

    pending = kind is EntryKind.PENDING
    if kind is not EntryKind.VOID:
        for p in postings:
            if pending:
                delta = (
                    Counters(debits_pending=p.amount)
                    if p.side is Side.DEBIT
                    else Counters(credits_pending=p.amount)
                )
            else:
                delta = (
                    Counters(debits_posted=p.amount)
                    if p.side is Side.DEBIT
                    else Counters(credits_posted=p.amount)
                )
            add(p.row, delta)
    for p in released:
        delta = (
            Counters(debits_pending=-p.amount)
            if p.side is Side.DEBIT
            else Counters(credits_pending=-p.amount)
        )
        add(p.row, delta)
    return effects


@dataclass(frozen=True, slots=True)
class RowChange:
    before: BalanceRow
    after: BalanceRow
    at: datetime


def apply_entry(
    rows: Mapping[RowKey, BalanceRow], effects: Mapping[RowKey, Counters], now: datetime
) -> list[RowChange] | Rejection:
    """Apply an entry's effects to its rows, or say why it may not be applied.

    A constrained (non-negative) row may not end with less available than zero when the entry
    lowers its available amount; a row that was already short may still be topped up. Rows are
    visited in key order so the reported reason is deterministic.
    """
    changes: list[RowChange] = []
    for key in sorted(effects):
        row = rows[key]
        counters = row.counters + effects[key]
        if any(v < 0 or v > MAX_MINOR for v in counters.as_tuple()):
            if any(v > MAX_MINOR for v in counters.as_tuple()):
                return Rejection(Reason.BALANCE_OVERFLOW, f"fund account {key[0]} would overflow")
            raise AssertionError(f"pending counters of {key} would go below zero: {counters}")
        after = BalanceRow(
            row.fund_account_id,
            row.shard,
            row.normal_side,
            row.non_negative,
            row.status,
            counters,
            row.version + 1,
            max(row.last_at, now),
        )
        lowers_available = after.available < row.available
        effect = effects[key]
        # Releasing a hold only gives back what was set aside, so no status refuses it (a hold on
        # an account closed meanwhile must still expire). Otherwise a frozen account may still
        # receive money and a closed one takes nothing at all.
        release_only = (
            effect.debits_posted == effect.credits_posted == 0
            and max(effect.debits_pending, effect.credits_pending) <= 0
        )
        closed = row.status is Status.CLOSED
        if not release_only and (closed or (lowers_available and row.status is Status.FROZEN)):
            return Rejection(Reason.ACCOUNT_NOT_ACTIVE, f"fund account {key[0]} is {row.status}")
        if lowers_available and row.non_negative and after.available < 0:
            return Rejection(
                Reason.INSUFFICIENT_FUNDS,
                f"fund account {key[0]} has {row.available} available, entry needs "
                f"{row.available - after.available}",
            )
        changes.append(RowChange(before=row, after=after, at=after.last_at))
    return changes
