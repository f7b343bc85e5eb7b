"""Read models of the ledger: balances, point-in-time balances, history and entries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from clearhouse.db.schema import balance_history, balances, fund_accounts, journal_entries, postings
from clearhouse.errors import ClearhouseError
from clearhouse.ledger.model import Counters, Side


class FundAccountNotFound(ClearhouseError):
    code = "UNKNOWN_ACCOUNT"


class EntryNotFound(ClearhouseError):
    code = "ENTRY_NOT_FOUND"


@dataclass(frozen=True, slots=True)
class Balance:
    fund_account_id: int
    account_id: str
    role: str
    sub: str
    currency: str
    normal_side: Side
    counters: Counters
    version: int  # sum of the shards' versions: it moves on every change of the account

    @property
    def posted(self) -> int:
        return self.counters.posted(self.normal_side)

    @property
    def pending_out(self) -> int:
        return self.counters.pending_out(self.normal_side)

    @property
    def pending_in(self) -> int:
        return self.counters.pending_in(self.normal_side)

    @property
    def available(self) -> int:
        return self.counters.available(self.normal_side)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fund_account_id": self.fund_account_id,
            "account_id": self.account_id,
            "role": self.role,
            "sub": self.sub,
            "currency": self.currency,
            "posted": self.posted,
            "pending_in": self.pending_in,
            "pending_out": self.pending_out,
            "available": self.available,
            "version": self.version,
        }


def _fund(conn: Connection, fund_account_id: int) -> Any:
    row = conn.execute(select(fund_accounts).where(fund_accounts.c.id == fund_account_id)).first()
    if row is None:
        raise FundAccountNotFound(f"no fund account {fund_account_id}")
    return row


def _sum_counters(rows: Sequence[Any]) -> Counters:
    total = Counters()
    for r in rows:
        total = total + Counters(
            int(r.debits_posted),
            int(r.credits_posted),
            int(r.debits_pending),
            int(r.credits_pending),
        )
    return total


def balance(conn: Connection, fund_account_id: int) -> Balance:
    fund = _fund(conn, fund_account_id)
    rows = conn.execute(select(balances).where(balances.c.fund_account_id == fund_account_id)).all()
    return Balance(
        fund_account_id=fund_account_id,
        account_id=fund.account_id,
        role=fund.role,
        sub=fund.sub,
        currency=fund.currency,
        normal_side=Side(fund.normal_side),
        counters=_sum_counters(rows),
        version=sum(int(r.version) for r in rows),
    )


def all_balances(conn: Connection) -> list[Balance]:
    funds = conn.execute(select(fund_accounts).order_by(fund_accounts.c.id)).all()
    by_fund: dict[int, list[Any]] = {}
    for r in conn.execute(select(balances)):
        by_fund.setdefault(int(r.fund_account_id), []).append(r)
    return [
        Balance(
            fund_account_id=int(f.id),
            account_id=f.account_id,
            role=f.role,
            sub=f.sub,
            currency=f.currency,
            normal_side=Side(f.normal_side),
            counters=_sum_counters(by_fund.get(int(f.id), [])),
            version=sum(int(r.version) for r in by_fund.get(int(f.id), [])),
        )
        for f in funds
    ]


def balance_at(conn: Connection, fund_account_id: int, at: datetime) -> Balance:
    """The balance as of ``at``: per shard, the last history row at or before it (one index
    seek on (fund_account_id, shard, at) each)."""
    fund = _fund(conn, fund_account_id)
    h = balance_history.c
    rows = []
    for shard in range(int(fund.shards)):
        row = conn.execute(
            select(balance_history)
            .where(h.fund_account_id == fund_account_id, h.shard == shard, h.at <= at)
            .order_by(h.at.desc(), h.version.desc())
            .limit(1)
        ).first()
        if row is not None:
            rows.append(row)
    return Balance(
        fund_account_id=fund_account_id,
        account_id=fund.account_id,
        role=fund.role,
        sub=fund.sub,
        currency=fund.currency,
        normal_side=Side(fund.normal_side),
        counters=_sum_counters(rows),
        version=sum(int(r.version) for r in rows),
    )


def history(conn: Connection, fund_account_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The latest changes of an account, newest first, with the running balance after each."""
    fund = _fund(conn, fund_account_id)
    side = Side(fund.normal_side)
    h, e = balance_history.c, journal_entries.c
    rows = conn.execute(
        select(balance_history, e.code, e.kind)
        .join(journal_entries, e.id == h.entry_id)
        .where(h.fund_account_id == fund_account_id)
        .order_by(h.at.desc(), h.shard, h.version.desc())
        .limit(limit)
    ).all()
    out = []
    for r in rows:
        c = Counters(
            int(r.debits_posted),
            int(r.credits_posted),
            int(r.debits_pending),
            int(r.credits_pending),
        )
        out.append(
            {
                "at": r.at.isoformat(),
                "entry_id": int(r.entry_id),
                "code": r.code,
                "kind": r.kind,
                "shard": int(r.shard),
                "version": int(r.version),
                "shard_posted": c.posted(side),
                "shard_available": c.available(side),
            }
        )
    return out


def entry(conn: Connection, entry_id: int) -> dict[str, Any]:
    e, p = journal_entries.c, postings.c
    head = conn.execute(select(journal_entries).where(e.id == entry_id)).first()
    if head is None:
        raise EntryNotFound(f"no entry {entry_id}")
    legs = conn.execute(select(postings).where(p.entry_id == entry_id).order_by(p.seq)).all()
    return {
        "id": int(head.id),
        "code": head.code,
        "kind": head.kind,
        "ref_entry_id": head.ref_entry_id,
        "posted_at": head.posted_at.isoformat(),
        "memo": head.memo,
        "postings": [
            {
                "seq": int(r.seq),
                "fund_account_id": int(r.fund_account_id),
                "shard": int(r.shard),
                "side": r.side,
                "amount": int(r.amount),
                "currency": r.currency,
            }
            for r in legs
        ],
    }


def entry_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(journal_entries)).scalar_one())
