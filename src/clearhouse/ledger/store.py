"""The ledger's reads and writes. SQL only: every decision is made in ``model`` / ``processor``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from clearhouse.accounts.model import Role, Status
from clearhouse.clock import from_micros, to_micros
from clearhouse.db.raw import Raw, placeholders
from clearhouse.db.schema import holds, journal_entries, postings
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


def load_requests(raw: Raw, keys: Sequence[str]) -> dict[str, StoredRequest]:
    found: dict[str, StoredRequest] = {}
    for part in _chunks(keys):
        marks, params = placeholders("k", part)
        for key, digest, status, reason, detail, entry_id in raw.all(
            "SELECT key, payload_hash, status, reason, detail, entry_id FROM ledger_requests "
            f"WHERE key IN ({marks})",
            params,
        ):
            found[key] = StoredRequest(
                payload_hash=bytes(digest),
                ok=status == "ok",
                reason=Reason(reason) if reason else None,
                detail=detail,
                entry_id=entry_id,
            )
    return found


def load_fund_accounts(
    raw: Raw, slots: Iterable[SlotKey]
) -> dict[tuple[str, Role, str, str], FundMeta]:
    """Fund accounts for the slots, in every currency they exist in (to tell a currency mismatch
    from an unknown account). Keyed by (account_id, role, sub, currency)."""
    wanted = sorted({(a, role.value, sub) for a, role, sub in slots})
    found: dict[tuple[str, Role, str, str], FundMeta] = {}
    for part in _chunks(wanted):
        params: dict[str, Any] = {}
        triples = []
        for i, (account, role, sub) in enumerate(part):
            params[f"a{i}"], params[f"r{i}"], params[f"s{i}"] = account, role, sub
            triples.append(f"(:a{i}, :r{i}, :s{i})")
        for fid, account, role, sub, cur, shards in raw.all(
            "SELECT id, account_id, role, sub, currency, shards FROM fund_accounts"
            f" WHERE account_id IN ({', '.join(f':a{i}' for i in range(len(part)))})"
            f" AND (account_id, role, sub) IN ({', '.join(triples)})",
            params,
        ):
            found[(account, Role(role), sub, cur)] = FundMeta(
                id=int(fid), currency=cur, shards=int(shards)
            )
    return found


def load_entries(conn: Connection, ids: Sequence[int]) -> dict[int, StoredEntry]:
    """The entries a batch closes (holds) or reverses, with their postings and whether something
    already closed them.

    On PostgreSQL the entries are locked first (in id order, before any balance row), so two
    transactions that close one hold or reverse one entry queue here, and the second reads the
    first one's committed close in the statements that follow (READ COMMITTED takes a fresh
    snapshot per statement). Without the lock the second would act on a stale "still open".
    """
    if not ids:
        return {}
    e, p, h = journal_entries.c, postings.c, holds.c
    head_query = select(e.id, e.code, e.kind).where(e.id.in_(ids)).order_by(e.id)
    if conn.dialect.name == "postgresql":
        head_query = head_query.with_for_update()
    heads = {row.id: row for row in conn.execute(head_query)}
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


def lock_rows(
    raw: Raw, keys: Iterable[RowKey], entries: int
) -> tuple[dict[RowKey, BalanceRow], list[int]]:
    """Read and lock the balance rows, and reserve ids for up to ``entries`` new entries, in one
    round trip.

    PostgreSQL locks the rows in one fixed (sorted) order, so two writers can never wait on each
    other in a cycle; SQLite's BEGIN IMMEDIATE already excludes every other writer. Ids are
    reserved before the entries exist so postings and history can name them in the same batch
    (a rejected entry leaves a gap in the sequence, as any rolled-back insert does).
    """
    ordered = sorted(set(keys))
    lock = " FOR UPDATE OF b" if raw.postgres else ""
    with raw.pipeline():
        cursors = []
        for part in _chunks(ordered):
            params: dict[str, Any] = {}
            pairs = []
            for i, (fund, shard) in enumerate(part):
                params[f"f{i}"], params[f"s{i}"] = fund, shard
                pairs.append(f"(:f{i}, :s{i})")
            funds = ", ".join(f":f{i}" for i in range(len(part)))
            cursors.append(
                raw.start(
                    "SELECT b.fund_account_id, b.shard, b.debits_posted, b.credits_posted,"
                    " b.debits_pending, b.credits_pending, b.version, b.last_at,"
                    " f.normal_side, f.non_negative, f.status"
                    " FROM balances b JOIN fund_accounts f ON f.id = b.fund_account_id"
                    # The plain IN on the leading key column lets SQLite seek the primary key;
                    # a row-value IN list alone makes it scan every balance row.
                    f" WHERE b.fund_account_id IN ({funds}) AND (b.fund_account_id, b.shard)"
                    f" IN ({', '.join(pairs)}) ORDER BY b.fund_account_id, b.shard{lock}",
                    params,
                )
            )
        id_cursor = _start_id_reservation(raw, entries)
        rows: dict[RowKey, BalanceRow] = {}
        for cursor in cursors:
            for r in cursor.fetchall():
                key = (int(r[0]), int(r[1]))
                rows[key] = BalanceRow(
                    fund_account_id=key[0],
                    shard=key[1],
                    normal_side=Side(r[8]),
                    non_negative=bool(r[9]),
                    status=Status(r[10]),
                    counters=Counters(int(r[2]), int(r[3]), int(r[4]), int(r[5])),
                    version=int(r[6]),
                    last_at=from_micros(int(r[7])),
                )
        ids = _reserved_ids(raw, id_cursor, entries)
    missing = set(ordered) - set(rows)
    if missing:
        raise AssertionError(f"balance rows missing for {sorted(missing)[:5]}")
    return rows, ids


def _start_id_reservation(raw: Raw, count: int) -> Any:
    if count == 0:
        return None
    if raw.postgres:
        return raw.start(
            "SELECT nextval(pg_get_serial_sequence('journal_entries', 'id'))"
            " FROM generate_series(1, :n)",
            {"n": count},
        )
    # SQLite: this transaction holds the database's only write lock, so max(id) + n is ours.
    return raw.start("SELECT coalesce(max(id), 0) FROM journal_entries")


def _reserved_ids(raw: Raw, cursor: Any, count: int) -> list[int]:
    if cursor is None:
        return []
    if raw.postgres:
        return [int(r[0]) for r in cursor.fetchall()]
    top = int(cursor.fetchall()[0][0])
    return list(range(top + 1, top + 1 + count))


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
    raw: Raw,
    entries: Sequence[NewEntry],
    ids: Sequence[int],
    requests: Sequence[RequestRecord],
    now: datetime,
) -> None:
    """Append the entries (under the reserved ``ids``), their postings and history, move the
    balance rows and store the request outcomes: a few multi-row statements, one round trip."""
    at = to_micros(now)
    with raw.pipeline():
        raw.many(
            "INSERT INTO journal_entries (id, code, kind, ref_entry_id, posted_at, memo)"
            " VALUES (:id, :code, :kind, :ref, :at, :memo)",
            [
                {
                    "id": i,
                    "code": e.code,
                    "kind": e.kind.value,
                    "ref": e.ref_entry_id,
                    "at": at,
                    "memo": e.memo,
                }
                for i, e in zip(ids, entries, strict=True)
            ],
        )
        if entries:
            _write_lines(raw, entries, ids)
        raw.many(
            "INSERT INTO ledger_requests"
            " (key, operation, payload_hash, status, reason, detail, entry_id, created_at)"
            " VALUES (:key, :op, :hash, :status, :reason, :detail, :entry, :at)",
            [
                {
                    "key": r.key,
                    "op": r.operation,
                    "hash": r.payload_hash,
                    "status": "ok" if r.reason is None else "rejected",
                    "reason": None if r.reason is None else r.reason.value,
                    "detail": r.detail,
                    "entry": None if r.entry_index is None else ids[r.entry_index],
                    "at": at,
                }
                for r in requests
            ],
        )


def _write_lines(raw: Raw, entries: Sequence[NewEntry], ids: Sequence[int]) -> None:
    posting_rows: list[dict[str, Any]] = []
    history_rows: list[dict[str, Any]] = []
    final: dict[RowKey, BalanceRow] = {}
    new_holds: list[dict[str, Any]] = []
    closed_holds: list[dict[str, Any]] = []
    for entry_id, entry in zip(ids, entries, strict=True):
        for p in entry.postings:
            posting_rows.append(
                {
                    "e": entry_id,
                    "seq": p.seq,
                    "f": p.fund_account_id,
                    "s": p.shard,
                    "side": p.side.value,
                    "amount": p.amount,
                    "cur": p.currency,
                }
            )
        for ch in entry.changes:
            a = ch.after
            history_rows.append({"e": entry_id, "at": to_micros(ch.at), **_row_params(a)})
            final[(a.fund_account_id, a.shard)] = a
        if entry.kind is EntryKind.PENDING:
            expires = entry.hold_expires_at
            new_holds.append(
                {"e": entry_id, "exp": None if expires is None else to_micros(expires)}
            )
        if entry.closes_hold is not None:
            closed_holds.append(
                {"hold": entry.ref_entry_id, "status": entry.closes_hold.value, "by": entry_id}
            )
    raw.many(
        "INSERT INTO postings (entry_id, seq, fund_account_id, shard, side, amount, currency)"
        " VALUES (:e, :seq, :f, :s, :side, :amount, :cur)",
        posting_rows,
    )
    raw.many(
        "INSERT INTO balance_history (fund_account_id, shard, version, entry_id, at, debits_posted,"
        " credits_posted, debits_pending, credits_pending)"
        " VALUES (:f, :s, :v, :e, :at, :dp, :cp, :dpe, :cpe)",
        history_rows,
    )
    raw.many(
        "UPDATE balances SET debits_posted = :dp, credits_posted = :cp, debits_pending = :dpe,"
        " credits_pending = :cpe, version = :v, last_at = :at"
        " WHERE fund_account_id = :f AND shard = :s",
        [{**_row_params(row), "at": to_micros(row.last_at)} for _, row in sorted(final.items())],
    )
    raw.many(
        "INSERT INTO holds (entry_id, status, expires_at)"
        f" VALUES (:e, '{HoldStatus.PENDING.value}', :exp)",
        new_holds,
    )
    raw.many(
        "UPDATE holds SET status = :status, closed_by_entry_id = :by"
        f" WHERE entry_id = :hold AND status = '{HoldStatus.PENDING.value}'",
        closed_holds,
    )


def _row_params(row: BalanceRow) -> dict[str, Any]:
    c = row.counters
    return {
        "f": row.fund_account_id,
        "s": row.shard,
        "v": row.version,
        "dp": c.debits_posted,
        "cp": c.credits_posted,
        "dpe": c.debits_pending,
        "cpe": c.credits_pending,
    }
