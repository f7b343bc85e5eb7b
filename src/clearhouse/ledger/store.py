"""The ledger's reads and writes. SQL only: every decision is made in ``model`` / ``processor``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from clearhouse.accounts.model import Role, Status
from clearhouse.clock import from_micros, to_micros
from clearhouse.db.raw import Raw
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


_FUND_COLUMNS = "id, account_id, role, sub, currency, shards"


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


FundKey = tuple[str, Role, str, str]  # (account_id, role, sub, currency)


@dataclass(frozen=True, slots=True)
class Locked:
    """What a batch reads before it decides: stored outcomes of its keys, its balance rows
    (locked), ids reserved for its new entries, and the fund accounts it asked to look up."""

    requests: dict[str, StoredRequest]
    rows: dict[RowKey, BalanceRow]
    ids: list[int]
    funds: dict[FundKey, FundMeta]


def read_for_update(
    raw: Raw,
    request_keys: Sequence[str],
    keys: Iterable[RowKey],
    slots: Iterable[SlotKey],
    entries: int,
) -> Locked:
    """The stored outcomes of these request keys; the balance rows ``keys`` and every balance
    row of the fund accounts found for ``slots`` (in every currency and shard: the caller does
    not yet know which one its plan needs), all locked; ids reserved for up to ``entries`` new
    entries; and the fund accounts found for ``slots``.

    Looking the fund accounts up in the same statement spares a batch that names an account
    this process has not seen (the usual case for buyers) a round trip of its own.

    PostgreSQL locks the rows in one fixed (sorted) order, so two writers can never wait on each
    other in a cycle; SQLite's BEGIN IMMEDIATE already excludes every other writer. Ids are
    reserved before the entries exist so postings and history can name them in the same batch
    (an id reserved for a request that is then rejected leaves a gap, as a rolled-back insert
    does).
    """
    ordered = sorted(set(keys))
    wanted = sorted({(a, role.value, sub) for a, role, sub in slots})
    if raw.postgres:
        requests, balance_rows, ids, fund_rows = _read_postgres(
            raw, request_keys, ordered, wanted, entries
        )
    else:
        requests, balance_rows, ids, fund_rows = _read_sqlite(
            raw, request_keys, ordered, wanted, entries
        )
    stored = {
        key: StoredRequest(
            payload_hash=bytes(digest),
            ok=status == "ok",
            reason=Reason(reason) if reason else None,
            detail=detail,
            entry_id=entry_id,
        )
        for key, digest, status, reason, detail, entry_id in requests
    }
    rows = {}
    for r in balance_rows:
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
    missing = set(ordered) - set(rows)
    if missing:
        raise AssertionError(f"balance rows missing for {sorted(missing)[:5]}")
    funds = {
        (account, Role(role), sub, cur): FundMeta(id=int(fid), currency=cur, shards=int(shards))
        for fid, account, role, sub, cur, shards in fund_rows
    }
    return Locked(stored, rows, ids, funds)


def _ids_in(param: str, field: str) -> str:
    """An array of one field of a JSON parameter. ``column = ANY(<this>)`` makes the planner seek
    the index: it cannot see how few rows a JSON document holds and would otherwise join by
    scanning the whole table."""
    return f"ARRAY(SELECT (x->>'{field}')::bigint FROM json_array_elements(:{param}::json) x)"


_REQUEST_COLUMNS = "key, payload_hash, status, reason, detail, entry_id"
_BALANCE_COLUMNS = (
    "b.fund_account_id, b.shard, b.debits_posted, b.credits_posted, b.debits_pending,"
    " b.credits_pending, b.version, b.last_at, f.normal_side, f.non_negative, f.status"
)
_BALANCE_FROM = " FROM balances b JOIN fund_accounts f ON f.id = b.fund_account_id"

# Every fund account whose rows are locked; both sides of the join seek by it.
_LOCK_IDS = (
    "ARRAY(SELECT (x->>'f')::bigint FROM json_array_elements(:rows::json) x"
    " UNION ALL SELECT id FROM funds)"
)
# One statement, one round trip, one prepared plan (its text never changes): the stored
# requests, the fund accounts looked up, the locked rows and the reserved ids come back as tagged
# JSON rows. The sort under FOR UPDATE makes every writer lock in the same order; the
# "= ANY(ARRAY(...))" conditions make the planner seek the indexes (see _ids_in).
_POSTGRES_READ = (
    "WITH req AS (SELECT " + _REQUEST_COLUMNS + ", encode(payload_hash, 'hex') AS hash"
    " FROM ledger_requests WHERE key = ANY(ARRAY(SELECT json_array_elements_text(:keys::json)))),"
    " funds AS (SELECT " + _FUND_COLUMNS + " FROM fund_accounts"
    " JOIN json_to_recordset(:slots::json) AS w(a text, r text, u text)"
    " ON account_id = w.a AND role = w.r AND sub = w.u"
    " WHERE account_id = ANY(ARRAY(SELECT x->>'a' FROM json_array_elements(:slots::json) x))),"
    " locked AS (SELECT " + _BALANCE_COLUMNS + _BALANCE_FROM + ""
    " WHERE b.fund_account_id = ANY(" + _LOCK_IDS + ") AND f.id = ANY(" + _LOCK_IDS + ")"
    " AND ((b.fund_account_id, b.shard) IN"
    " (SELECT k.f, k.s FROM json_to_recordset(:rows::json) AS k(f bigint, s smallint))"
    " OR b.fund_account_id IN (SELECT id FROM funds))"
    " ORDER BY b.fund_account_id, b.shard FOR UPDATE OF b),"
    " ids AS (SELECT nextval('journal_entries_id_seq') AS id"
    " FROM generate_series(1, :n))"
    " SELECT 'r', json_build_array(key, hash, status, reason, detail, entry_id) FROM req"
    " UNION ALL SELECT 'f', json_build_array(" + _FUND_COLUMNS + ") FROM funds"
    " UNION ALL SELECT 'b', json_build_array(fund_account_id, shard, debits_posted, credits_posted,"
    " debits_pending, credits_pending, version, last_at, normal_side, non_negative, status)"
    " FROM locked"
    " UNION ALL SELECT 'i', json_build_array(id) FROM ids"
)

_ReadResult = tuple[list[Any], list[Any], list[int], list[Any]]


def _read_postgres(
    raw: Raw,
    request_keys: Sequence[str],
    ordered: Sequence[RowKey],
    wanted: Sequence[tuple[str, str, str]],
    entries: int,
) -> _ReadResult:
    params = {
        "keys": json.dumps(list(request_keys)),
        "slots": json.dumps([{"a": a, "r": r, "u": u} for a, r, u in wanted]),
        "rows": json.dumps([{"f": f, "s": shard} for f, shard in ordered]),
        "n": entries,
    }
    requests, funds, rows, ids = [], [], [], []
    for tag, values in raw.all(_POSTGRES_READ, params):
        if tag == "r":
            requests.append((values[0], bytes.fromhex(values[1]), *values[2:]))
        elif tag == "f":
            funds.append(values)
        elif tag == "b":
            rows.append(values)
        else:
            ids.append(int(values[0]))
    return requests, rows, ids, funds


# SQLite takes each list as one JSON parameter too: the statement text stays constant (compiled
# once per connection, not once per batch size) and binding one string is far cheaper than
# binding thousands of named parameters. Each query walks the JSON list and seeks an index.
_SQLITE_REQUESTS = (
    "SELECT r.key, r.payload_hash, r.status, r.reason, r.detail, r.entry_id"
    " FROM json_each(:keys) j JOIN ledger_requests r ON r.key = j.value"
)
_SQLITE_FUNDS = (
    "SELECT f.id, f.account_id, f.role, f.sub, f.currency, f.shards FROM json_each(:slots) j"
    " JOIN fund_accounts f ON f.account_id = json_extract(j.value, '$[0]')"
    " AND f.role = json_extract(j.value, '$[1]') AND f.sub = json_extract(j.value, '$[2]')"
)
_SQLITE_ROWS = (
    "SELECT " + _BALANCE_COLUMNS + " FROM json_each(:rows) j"
    " JOIN balances b ON b.fund_account_id = json_extract(j.value, '$[0]')"
    " AND b.shard = json_extract(j.value, '$[1]')"
    " JOIN fund_accounts f ON f.id = b.fund_account_id"
)
_SQLITE_FUND_ROWS = (
    "SELECT " + _BALANCE_COLUMNS + " FROM json_each(:ids) j"
    " JOIN balances b ON b.fund_account_id = j.value JOIN fund_accounts f ON f.id = j.value"
)


def _read_sqlite(
    raw: Raw,
    request_keys: Sequence[str],
    ordered: Sequence[RowKey],
    wanted: Sequence[tuple[str, str, str]],
    entries: int,
) -> _ReadResult:
    requests = raw.all(_SQLITE_REQUESTS, {"keys": json.dumps(list(request_keys))})
    funds = raw.all(_SQLITE_FUNDS, {"slots": json.dumps(wanted)}) if wanted else []
    rows = raw.all(_SQLITE_ROWS, {"rows": json.dumps(ordered)}) if ordered else []
    if funds:
        # Every row of the looked-up fund accounts (a row also named by ``ordered`` comes twice).
        rows += raw.all(_SQLITE_FUND_ROWS, {"ids": json.dumps(sorted({int(f[0]) for f in funds}))})
    # This transaction holds SQLite's only write lock, so max(id) + n is ours.
    top = int(raw.all("SELECT coalesce(max(id), 0) FROM journal_entries")[0][0])
    return requests, rows, list(range(top + 1, top + 1 + entries)), funds


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


# Column order of every row this module writes; SQLite binds the rows as they are, PostgreSQL
# binds one array per column (unnest) so a whole batch is one statement with a constant text.
_INSERTS: dict[str, tuple[tuple[str, str], ...]] = {
    "journal_entries": (
        ("id", "bigint"),
        ("code", "text"),
        ("kind", "text"),
        ("ref_entry_id", "bigint"),
        ("posted_at", "bigint"),
        ("memo", "text"),
    ),
    "postings": (
        ("entry_id", "bigint"),
        ("seq", "smallint"),
        ("fund_account_id", "bigint"),
        ("shard", "smallint"),
        ("side", "text"),
        ("amount", "bigint"),
        ("currency", "text"),
    ),
    "balance_history": (
        ("fund_account_id", "bigint"),
        ("shard", "smallint"),
        ("version", "bigint"),
        ("entry_id", "bigint"),
        ("at", "bigint"),
        ("debits_posted", "bigint"),
        ("credits_posted", "bigint"),
        ("debits_pending", "bigint"),
        ("credits_pending", "bigint"),
    ),
    "holds": (("entry_id", "bigint"), ("status", "text"), ("expires_at", "bigint")),
    "ledger_requests": (
        ("key", "text"),
        ("operation", "text"),
        ("payload_hash", "bytea"),
        ("status", "text"),
        ("reason", "text"),
        ("detail", "text"),
        ("entry_id", "bigint"),
        ("created_at", "bigint"),
    ),
}
_BALANCE_SET = (
    "debits_posted",
    "credits_posted",
    "debits_pending",
    "credits_pending",
    "version",
    "last_at",
)
_PENDING = HoldStatus.PENDING.value


@dataclass
class _Rows:
    inserts: dict[str, list[tuple[Any, ...]]]
    balances: list[tuple[Any, ...]]  # (fund_account_id, shard, *_BALANCE_SET)
    hold_closes: list[tuple[Any, ...]]  # (hold entry id, status, closed by)


def write(
    raw: Raw,
    entries: Sequence[NewEntry],
    ids: Sequence[int],
    requests: Sequence[RequestRecord],
    now: datetime,
) -> None:
    """Append the entries (under the reserved ``ids``), their postings and history, move the
    balance rows, open and close holds, and store the request outcomes."""
    rows = _rows(entries, ids, requests, to_micros(now))
    if raw.postgres:
        _write_postgres(raw, rows)
    else:
        _write_sqlite(raw, rows)


def _rows(
    entries: Sequence[NewEntry], ids: Sequence[int], requests: Sequence[RequestRecord], at: int
) -> _Rows:
    out = _Rows({table: [] for table in _INSERTS}, [], [])
    final: dict[RowKey, BalanceRow] = {}
    for entry_id, e in zip(ids, entries, strict=True):
        out.inserts["journal_entries"].append(
            (entry_id, e.code, e.kind.value, e.ref_entry_id, at, e.memo)
        )
        for p in e.postings:
            out.inserts["postings"].append(
                (entry_id, p.seq, p.fund_account_id, p.shard, p.side.value, p.amount, p.currency)
            )
        for ch in e.changes:
            a, c = ch.after, ch.after.counters
            out.inserts["balance_history"].append(
                (a.fund_account_id, a.shard, a.version, entry_id, to_micros(ch.at), *c.as_tuple())
            )
            final[(a.fund_account_id, a.shard)] = a
        if e.kind is EntryKind.PENDING:
            expires = None if e.hold_expires_at is None else to_micros(e.hold_expires_at)
            out.inserts["holds"].append((entry_id, _PENDING, expires))
        if e.closes_hold is not None:
            out.hold_closes.append((e.ref_entry_id, e.closes_hold.value, entry_id))
    for key, row in sorted(final.items()):
        out.balances.append((*key, *row.counters.as_tuple(), row.version, to_micros(row.last_at)))
    for r in requests:
        out.inserts["ledger_requests"].append(
            (
                r.key,
                r.operation,
                r.payload_hash,
                "ok" if r.reason is None else "rejected",
                None if r.reason is None else r.reason.value,
                r.detail,
                None if r.entry_index is None else ids[r.entry_index],
                at,
            )
        )
    return out


def _write_sqlite(raw: Raw, rows: _Rows) -> None:
    for table, columns in _INSERTS.items():
        names = ", ".join(name for name, _ in columns)
        marks = ", ".join("?" for _ in columns)
        raw.many(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows.inserts[table])
    assignments = ", ".join(f"{name} = ?" for name in _BALANCE_SET)
    raw.many(
        f"UPDATE balances SET {assignments} WHERE fund_account_id = ? AND shard = ?",
        [(*r[2:], r[0], r[1]) for r in rows.balances],
    )
    raw.many(
        "UPDATE holds SET status = ?, closed_by_entry_id = ?"
        f" WHERE entry_id = ? AND status = '{_PENDING}'",
        [(status, by, hold) for hold, status, by in rows.hold_closes],
    )


def _postgres_write_sql() -> str:
    # Rows travel as one JSON document per table, read back with the table's own row type: the
    # driver dumps one string instead of an array per column (which costs more Python than the
    # database spends on the whole statement).
    parts = [
        f"ins_{table} AS (INSERT INTO {table} ({', '.join(n for n, _ in columns)})"
        f" SELECT {', '.join(n for n, _ in columns)}"
        f" FROM json_populate_recordset(null::{table}, :{table}::json))"
        for table, columns in _INSERTS.items()
    ]
    sets = ", ".join(f"{name} = v.{name}" for name in _BALANCE_SET)
    parts.append(
        f"upd_balances AS (UPDATE balances AS b SET {sets}"
        " FROM json_populate_recordset(null::balances, :balances::json) AS v"
        " WHERE b.fund_account_id = v.fund_account_id AND b.shard = v.shard"
        f" AND b.fund_account_id = ANY({_ids_in('balances', 'fund_account_id')}))"
    )
    parts.append(
        "upd_holds AS (UPDATE holds AS h SET status = v.status, closed_by_entry_id = v.closed_by"
        " FROM json_to_recordset(:hold_closes::json)"
        " AS v(entry_id bigint, status text, closed_by bigint)"
        f" WHERE h.entry_id = v.entry_id AND h.status = '{_PENDING}'"
        f" AND h.entry_id = ANY({_ids_in('hold_closes', 'entry_id')}))"
    )
    # Sibling data-modifying CTEs run as one statement.
    return "WITH " + ",\n".join(parts) + " SELECT 1"


_POSTGRES_WRITE = _postgres_write_sql()


def _write_postgres(raw: Raw, rows: _Rows) -> None:
    """Every write of a batch in one statement: one parse (prepared after a few uses, since the
    text never changes), one plan, one round trip."""
    params: dict[str, str] = {}
    for table, columns in _INSERTS.items():
        names = [name for name, _ in columns]
        table_rows = rows.inserts[table]
        if table == "ledger_requests":  # bytea travels in its text input form
            table_rows = [(*r[:2], "\\x" + r[2].hex(), *r[3:]) for r in table_rows]
        params[table] = json.dumps([dict(zip(names, row, strict=True)) for row in table_rows])
    names = ["fund_account_id", "shard", *_BALANCE_SET]
    params["balances"] = json.dumps([dict(zip(names, row, strict=True)) for row in rows.balances])
    params["hold_closes"] = json.dumps(
        [{"entry_id": e, "status": st, "closed_by": by} for e, st, by in rows.hold_closes]
    )
    raw.run(_POSTGRES_WRITE, params)
