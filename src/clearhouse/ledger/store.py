"""The ledger's reads and writes. SQL only: every decision is made in ``model`` / ``processor``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.engine import Connection

from clearhouse.accounts.model import Role, Status
from clearhouse.db.schema import (
    balance_history,
    balances,
    fund_accounts,
    holds,
    journal_entries,
    ledger_requests,
    postings,
)
from clearhouse.ledger.model import (
    BalanceRow,
    Counters,
    EntryKind,
    HoldStatus,
    Posting,
    Reason,
    RowChange,
    RowKey,
    Side,
)

# Bound parameters per statement stay well under SQLite's limit (32,766).
_CHUNK = 2_000


@dataclass(frozen=True, slots=True)
class StoredRequest:
    payload_hash: bytes
    ok: bool
    reason: Reason | None
    detail: str | None
    entry_id: int | None


@dataclass(frozen=True, slots=True)
class FundMeta:
    id: int
    currency: str
    shards: int


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: int
    code: str
    kind: EntryKind
    postings: tuple[Posting, ...]
    hold_status: HoldStatus | None
    hold_expires_at: datetime | None
    closed_by: int | None  # the entry that reversed it, or closed it if it is a hold


SlotKey = tuple[str, Role, str]  # (account_id, role, sub)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def load_requests(conn: Connection, keys: Sequence[str]) -> dict[str, StoredRequest]:
    found: dict[str, StoredRequest] = {}
    r = ledger_requests.c
    for part in _chunks(keys):
        for row in conn.execute(
            select(r.key, r.payload_hash, r.status, r.reason, r.detail, r.entry_id).where(
                r.key.in_(part)
            )
        ):
            found[row.key] = StoredRequest(
                payload_hash=bytes(row.payload_hash),
                ok=row.status == "ok",
                reason=Reason(row.reason) if row.reason else None,
                detail=row.detail,
                entry_id=row.entry_id,
            )
    return found


def load_fund_accounts(
    conn: Connection, slots: Iterable[SlotKey]
) -> dict[tuple[str, Role, str, str], FundMeta]:
    """Fund accounts for the slots, in every currency they exist in (to tell a currency mismatch
    from an unknown account). Keyed by (account_id, role, sub, currency)."""
    wanted = sorted({(a, role.value, sub) for a, role, sub in slots})
    f = fund_accounts.c
    found: dict[tuple[str, Role, str, str], FundMeta] = {}
    for part in _chunks(wanted):
        stmt = select(f.id, f.account_id, f.role, f.sub, f.currency, f.shards).where(
            tuple_(f.account_id, f.role, f.sub).in_(part)
        )
        for row in conn.execute(stmt):
            found[(row.account_id, Role(row.role), row.sub, row.currency)] = FundMeta(
                id=int(row.id), currency=row.currency, shards=int(row.shards)
            )
    return found


def load_entries(conn: Connection, ids: Sequence[int]) -> dict[int, StoredEntry]:
    if not ids:
        return {}
    e, p, h = journal_entries.c, postings.c, holds.c
    heads = {row.id: row for row in conn.execute(select(e.id, e.code, e.kind).where(e.id.in_(ids)))}
    legs: dict[int, list[Posting]] = {i: [] for i in heads}
    for row in conn.execute(
        select(postings).where(p.entry_id.in_(list(heads))).order_by(p.entry_id, p.seq)
    ):
        legs[row.entry_id].append(
            Posting(
                row.seq,
                int(row.fund_account_id),
                int(row.shard),
                Side(row.side),
                int(row.amount),
                row.currency,
            )
        )
    hold_rows = {
        row.entry_id: row for row in conn.execute(select(holds).where(h.entry_id.in_(list(heads))))
    }
    closers = {
        row.ref_entry_id: int(row.id)
        for row in conn.execute(select(e.id, e.ref_entry_id).where(e.ref_entry_id.in_(list(heads))))
    }
    out: dict[int, StoredEntry] = {}
    for entry_id, head in heads.items():
        hold = hold_rows.get(entry_id)
        out[entry_id] = StoredEntry(
            id=int(entry_id),
            code=head.code,
            kind=EntryKind(head.kind),
            postings=tuple(legs[entry_id]),
            hold_status=HoldStatus(hold.status) if hold is not None else None,
            hold_expires_at=hold.expires_at if hold is not None else None,
            closed_by=closers.get(entry_id),
        )
    return out


def lock_rows(conn: Connection, keys: Iterable[RowKey]) -> dict[RowKey, BalanceRow]:
    """Read the balance rows, locking them on PostgreSQL in one fixed (sorted) order so that two
    writers can never wait on each other in a cycle. SQLite's BEGIN IMMEDIATE already excludes
    every other writer."""
    ordered = sorted(set(keys))
    b, f = balances.c, fund_accounts.c
    rows: dict[RowKey, BalanceRow] = {}
    for part in _chunks(ordered):
        stmt = (
            select(balances, f.normal_side, f.non_negative, f.status)
            .join(fund_accounts, f.id == b.fund_account_id)
            .where(tuple_(b.fund_account_id, b.shard).in_(part))
            .order_by(b.fund_account_id, b.shard)
        )
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=balances)
        for row in conn.execute(stmt):
            key = (int(row.fund_account_id), int(row.shard))
            rows[key] = BalanceRow(
                fund_account_id=key[0],
                shard=key[1],
                normal_side=Side(row.normal_side),
                non_negative=bool(row.non_negative),
                status=Status(row.status),
                counters=Counters(
                    int(row.debits_posted),
                    int(row.credits_posted),
                    int(row.debits_pending),
                    int(row.credits_pending),
                ),
                version=int(row.version),
                last_at=row.last_at,
            )
    missing = set(ordered) - set(rows)
    if missing:
        raise AssertionError(f"balance rows missing for {sorted(missing)[:5]}")
    return rows


@dataclass(frozen=True, slots=True)
class NewEntry:
    code: str
    kind: EntryKind
    ref_entry_id: int | None
    memo: str | None
    postings: Sequence[Posting]
    changes: Sequence[RowChange]
    hold_expires_at: datetime | None  # set for a new hold
    closes_hold: HoldStatus | None  # set when it closes the hold ref_entry_id


@dataclass(frozen=True, slots=True)
class RequestRecord:
    key: str
    operation: str
    payload_hash: bytes
    entry_index: int | None  # index into the written entries, for an accepted request
    reason: Reason | None
    detail: str | None


def write(
    conn: Connection, entries: Sequence[NewEntry], requests: Sequence[RequestRecord], now: datetime
) -> list[int]:
    """Append the entries, their postings and history, move the balance rows, store the request
    outcomes; return the new entry ids in order. A few multi-row statements, whatever the count."""
    ids: list[int] = []
    if entries:
        result = conn.execute(
            insert(journal_entries).returning(journal_entries.c.id, sort_by_parameter_order=True),
            [
                {
                    "code": e.code,
                    "kind": e.kind.value,
                    "ref_entry_id": e.ref_entry_id,
                    "posted_at": now,
                    "memo": e.memo,
                }
                for e in entries
            ],
        )
        ids = [int(i) for i in result.scalars()]
        _write_lines(conn, entries, ids)
    if requests:
        conn.execute(
            insert(ledger_requests),
            [
                {
                    "key": r.key,
                    "operation": r.operation,
                    "payload_hash": r.payload_hash,
                    "status": "ok" if r.reason is None else "rejected",
                    "reason": None if r.reason is None else r.reason.value,
                    "detail": r.detail,
                    "entry_id": None if r.entry_index is None else ids[r.entry_index],
                    "created_at": now,
                }
                for r in requests
            ],
        )
    return ids


def _write_lines(conn: Connection, entries: Sequence[NewEntry], ids: Sequence[int]) -> None:
    posting_rows: list[dict[str, Any]] = []
    history_rows: list[dict[str, Any]] = []
    final: dict[RowKey, RowChange] = {}
    new_holds: list[dict[str, Any]] = []
    for entry_id, entry in zip(ids, entries, strict=True):
        for p in entry.postings:
            posting_rows.append(
                {
                    "entry_id": entry_id,
                    "seq": p.seq,
                    "fund_account_id": p.fund_account_id,
                    "shard": p.shard,
                    "side": p.side.value,
                    "amount": p.amount,
                    "currency": p.currency,
                }
            )
        for ch in entry.changes:
            a = ch.after
            c = a.counters
            history_rows.append(
                {
                    "fund_account_id": a.fund_account_id,
                    "shard": a.shard,
                    "version": a.version,
                    "entry_id": entry_id,
                    "at": ch.at,
                    "debits_posted": c.debits_posted,
                    "credits_posted": c.credits_posted,
                    "debits_pending": c.debits_pending,
                    "credits_pending": c.credits_pending,
                }
            )
            final[(a.fund_account_id, a.shard)] = ch
        if entry.kind is EntryKind.PENDING:
            new_holds.append(
                {
                    "entry_id": entry_id,
                    "status": HoldStatus.PENDING.value,
                    "expires_at": entry.hold_expires_at,
                }
            )
        if entry.closes_hold is not None:
            conn.execute(
                update(holds)
                .where(
                    holds.c.entry_id == entry.ref_entry_id,
                    holds.c.status == HoldStatus.PENDING.value,
                )
                .values(status=entry.closes_hold.value, closed_by_entry_id=entry_id)
            )
    conn.execute(insert(postings), posting_rows)
    conn.execute(insert(balance_history), history_rows)
    if new_holds:
        conn.execute(insert(holds), new_holds)
    b = balances.c
    conn.execute(
        update(balances)
        .where(b.fund_account_id == bindparam("k_fund"), b.shard == bindparam("k_shard"))
        .values(
            debits_posted=bindparam("v_dp"),
            credits_posted=bindparam("v_cp"),
            debits_pending=bindparam("v_dpe"),
            credits_pending=bindparam("v_cpe"),
            version=bindparam("v_version"),
            last_at=bindparam("v_at"),
        ),
        [
            {
                "k_fund": key[0],
                "k_shard": key[1],
                "v_dp": ch.after.counters.debits_posted,
                "v_cp": ch.after.counters.credits_posted,
                "v_dpe": ch.after.counters.debits_pending,
                "v_cpe": ch.after.counters.credits_pending,
                "v_version": ch.after.version,
                "v_at": ch.after.last_at,
            }
            for key, ch in sorted(final.items())
        ],
    )
