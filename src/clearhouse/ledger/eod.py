"""End of day (L4, L5): trial balance, the general ledger's daily rollup, and the check that
journal = sub-ledger balances = balance history = general ledger.

A break is reported as a value, never repaired: the books are only ever changed by entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Label,
    and_,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.engine import Connection

from clearhouse.db.schema import (
    balance_history,
    balances,
    fund_accounts,
    gl_daily,
    holds,
    journal_entries,
    ledger_days,
    ledger_requests,
    postings,
)
from clearhouse.errors import ClearhouseError
from clearhouse.ledger.model import POSTED_KINDS, Counters, EntryKind, HoldStatus, Side, signed

# A day is closed only this long after its end, so no transaction that began inside it is still
# open: such a late commit would otherwise be missing from the day's rollup.
CLOSE_GRACE = timedelta(minutes=5)


_LOW_BITS = 2**32 - 1


def exact_sum(expr: ColumnElement[int], name: str) -> list[Label[int]]:
    """SUM that cannot overflow: totals of 64-bit amounts may exceed 64 bits (SQLite raises,
    PostgreSQL's bigint columns cannot hold them). The high and low 32-bit halves are summed
    separately and joined by ``joined``."""
    return [
        # Literal operands: PostgreSQL has bigint >> integer, not bigint >> bigint.
        func.coalesce(func.sum(expr.op(">>")(literal_column("32"))), 0).label(f"{name}_hi"),
        func.coalesce(func.sum(expr.op("&")(literal_column(str(_LOW_BITS)))), 0).label(
            f"{name}_lo"
        ),
    ]


def joined(row: Any, name: str) -> int:
    return int(getattr(row, f"{name}_hi")) * 2**32 + int(getattr(row, f"{name}_lo"))


class DayNotOver(ClearhouseError):
    code = "DAY_NOT_OVER"


@dataclass(frozen=True, slots=True)
class Break:
    check: str  # which invariant: entry_balanced, balance_vs_journal, balance_vs_history, ...
    subject: str  # what it is about: an entry, an account shard, a day
    expected: Any
    actual: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass(frozen=True, slots=True)
class TrialBalanceLine:
    chart_code: str
    currency: str
    debit: int  # the balance when it falls on the debit side, else 0
    credit: int


def trial_balance(conn: Connection) -> list[TrialBalanceLine]:
    """Posted balances per chart leaf and currency, each on its own side."""
    b, f = balances.c, fund_accounts.c
    rows = conn.execute(
        select(
            f.chart_code,
            f.currency,
            *exact_sum(b.debits_posted, "debits"),
            *exact_sum(b.credits_posted, "credits"),
        )
        .join(fund_accounts, f.id == b.fund_account_id)
        .group_by(f.chart_code, f.currency)
        .order_by(f.chart_code, f.currency)
    ).all()
    lines = []
    for r in rows:
        net = joined(r, "debits") - joined(r, "credits")
        lines.append(TrialBalanceLine(r.chart_code, r.currency, max(net, 0), max(-net, 0)))
    return lines


def trial_balance_totals(lines: list[TrialBalanceLine]) -> dict[str, tuple[int, int]]:
    totals: dict[str, tuple[int, int]] = {}
    for line in lines:
        d, c = totals.get(line.currency, (0, 0))
        totals[line.currency] = (d + line.debit, c + line.credit)
    return totals


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def _rollup(
    conn: Connection, start: datetime, end: datetime
) -> dict[tuple[str, str], tuple[int, int, int]]:
    e, p, f = journal_entries.c, postings.c, fund_accounts.c
    rows = conn.execute(
        select(
            f.chart_code,
            p.currency,
            *exact_sum(case((p.side == Side.DEBIT.value, p.amount), else_=0), "debits"),
            *exact_sum(case((p.side == Side.CREDIT.value, p.amount), else_=0), "credits"),
            func.count(func.distinct(e.id)).label("entries"),
        )
        .select_from(
            postings.join(journal_entries, e.id == p.entry_id).join(
                fund_accounts, f.id == p.fund_account_id
            )
        )
        .where(e.kind.in_([k.value for k in POSTED_KINDS]), e.posted_at >= start, e.posted_at < end)
        .group_by(f.chart_code, p.currency)
    ).all()
    return {
        (r.chart_code, r.currency): (joined(r, "debits"), joined(r, "credits"), int(r.entries))
        for r in rows
    }


def close_day(conn: Connection, day: date, zone: ZoneInfo, now: datetime) -> bool:
    """Write the general ledger's rollup of ``day``; False if it was already closed."""
    start, end = day_bounds(day, zone)
    if now < end + CLOSE_GRACE:
        raise DayNotOver(f"{day} ({zone.key}) can be closed from {(end + CLOSE_GRACE).isoformat()}")
    if conn.execute(
        select(ledger_days.c.business_date).where(ledger_days.c.business_date == day)
    ).first():
        return False
    totals = _rollup(conn, start, end)
    if totals:
        conn.execute(
            insert(gl_daily),
            [
                {
                    "business_date": day,
                    "chart_code": chart,
                    "currency": cur,
                    "debit_total": d,
                    "credit_total": c,
                    "entry_count": n,
                }
                for (chart, cur), (d, c, n) in sorted(totals.items())
            ],
        )
    count = conn.execute(
        select(func.count())
        .select_from(journal_entries)
        .where(journal_entries.c.posted_at >= start, journal_entries.c.posted_at < end)
    ).scalar_one()
    conn.execute(
        insert(ledger_days).values(
            business_date=day, timezone=zone.key, closed_at=now, entry_count=int(count)
        )
    )
    return True


def check(conn: Connection) -> list[Break]:
    """Every invariant of the books, recomputed from the journal. Empty means the books agree."""
    breaks: list[Break] = []
    breaks += _entries_balance(conn)
    journal = _journal_counters(conn)
    stored = _stored_counters(conn)
    breaks += _balances_vs_journal(journal, stored)
    breaks += _balances_vs_history(conn, stored)
    breaks += _requests_vs_entries(conn)
    breaks += _orphan_lines(conn)
    breaks += _general_ledger(conn)
    breaks += _trial_balance(conn)
    return breaks


def _entries_balance(conn: Connection) -> list[Break]:
    p, e = postings.c, journal_entries.c
    parts = [
        *exact_sum(case((p.side == Side.DEBIT.value, p.amount), else_=0), "d"),
        *exact_sum(case((p.side == Side.CREDIT.value, p.amount), else_=0), "c"),
    ]
    # Equal halves mean equal totals; unequal halves are confirmed exactly in Python.
    candidates = conn.execute(
        select(p.entry_id, p.currency, *parts)
        .group_by(p.entry_id, p.currency)
        .having(or_(parts[0] != parts[2], parts[1] != parts[3]))
    ).all()
    out = []
    for r in candidates:
        net = joined(r, "d") - joined(r, "c")
        if net:
            out.append(Break("entry_balanced", f"entry {r.entry_id} {r.currency}", 0, net))
    counts = select(p.entry_id, func.count().label("n")).group_by(p.entry_id).subquery()
    short = conn.execute(
        select(e.id, func.coalesce(counts.c.n, 0).label("n"))
        .select_from(journal_entries.outerjoin(counts, counts.c.entry_id == e.id))
        .where(func.coalesce(counts.c.n, 0) < 2)
    ).all()
    out += [Break("entry_postings", f"entry {r.id}", ">= 2 postings", int(r.n)) for r in short]
    return out


RowKey = tuple[int, int]


def _journal_counters(conn: Connection) -> dict[RowKey, Counters]:
    """Each balance row's counters as the journal says they must be: posted kinds count in the
    posted counters; a hold's postings count as pending while the hold is still pending."""
    p, e, h = postings.c, journal_entries.c, holds.c
    is_debit = p.side == Side.DEBIT.value
    posted = e.kind.in_([k.value for k in POSTED_KINDS])
    open_hold = and_(e.kind == EntryKind.PENDING.value, h.status == HoldStatus.PENDING.value)
    rows = conn.execute(
        select(
            p.fund_account_id,
            p.shard,
            *exact_sum(case((and_(posted, is_debit), p.amount), else_=0), "dp"),
            *exact_sum(case((and_(posted, ~is_debit), p.amount), else_=0), "cp"),
            *exact_sum(case((and_(open_hold, is_debit), p.amount), else_=0), "dpe"),
            *exact_sum(case((and_(open_hold, ~is_debit), p.amount), else_=0), "cpe"),
        )
        .select_from(
            postings.join(journal_entries, e.id == p.entry_id).outerjoin(holds, h.entry_id == e.id)
        )
        .group_by(p.fund_account_id, p.shard)
    ).all()
    return {
        (int(r.fund_account_id), int(r.shard)): Counters(
            joined(r, "dp"), joined(r, "cp"), joined(r, "dpe"), joined(r, "cpe")
        )
        for r in rows
    }


def _stored_counters(conn: Connection) -> dict[RowKey, tuple[Counters, int]]:
    return {
        (int(r.fund_account_id), int(r.shard)): (
            Counters(
                int(r.debits_posted),
                int(r.credits_posted),
                int(r.debits_pending),
                int(r.credits_pending),
            ),
            int(r.version),
        )
        for r in conn.execute(select(balances))
    }


def _balances_vs_journal(
    journal: dict[RowKey, Counters], stored: dict[RowKey, tuple[Counters, int]]
) -> list[Break]:
    out = []
    for key in sorted(set(journal) | set(stored)):
        expected = journal.get(key, Counters())
        actual = stored[key][0] if key in stored else None
        if actual != expected:
            out.append(
                Break(
                    "balance_vs_journal",
                    f"fund account {key[0]} shard {key[1]}",
                    expected.as_tuple(),
                    None if actual is None else actual.as_tuple(),
                )
            )
    return out


def _balances_vs_history(
    conn: Connection, stored: dict[RowKey, tuple[Counters, int]]
) -> list[Break]:
    h = balance_history.c
    latest = select(
        h.fund_account_id, h.shard, func.max(h.version).label("v"), func.count().label("n")
    ).group_by(h.fund_account_id, h.shard)
    summary = {
        (int(r.fund_account_id), int(r.shard)): (int(r.v), int(r.n)) for r in conn.execute(latest)
    }
    last_rows = {
        (int(r.fund_account_id), int(r.shard)): Counters(
            int(r.debits_posted),
            int(r.credits_posted),
            int(r.debits_pending),
            int(r.credits_pending),
        )
        for r in conn.execute(
            select(balance_history).join(
                latest.subquery("latest"),
                and_(
                    h.fund_account_id == latest.subquery("latest").c.fund_account_id,
                    h.shard == latest.subquery("latest").c.shard,
                    h.version == latest.subquery("latest").c.v,
                ),
            )
        )
    }
    out = []
    for key, (counters, version) in sorted(stored.items()):
        top, count = summary.get(key, (0, 0))
        subject = f"fund account {key[0]} shard {key[1]}"
        if top != version or count != version:
            out.append(Break("history_versions", subject, version, {"last": top, "rows": count}))
        elif version and last_rows.get(key) != counters:
            last = last_rows.get(key)
            out.append(
                Break("balance_vs_history", subject, counters.as_tuple(), last and last.as_tuple())
            )
    return out


def _requests_vs_entries(conn: Connection) -> list[Break]:
    """Every entry answers exactly one accepted request; every accepted request has its entry."""
    r, e = ledger_requests.c, journal_entries.c
    orphans = conn.execute(
        select(e.id)
        .select_from(journal_entries.outerjoin(ledger_requests, r.entry_id == e.id))
        .where(r.key.is_(None))
    ).all()
    out = [Break("entry_without_request", f"entry {row.id}", "a request", None) for row in orphans]
    dangling = conn.execute(
        select(r.key)
        .select_from(ledger_requests.outerjoin(journal_entries, r.entry_id == e.id))
        .where(r.status == "ok", e.id.is_(None))
    ).all()
    out += [
        Break("request_without_entry", f"request {row.key}", "an entry", None) for row in dangling
    ]
    return out


def _orphan_lines(conn: Connection) -> list[Break]:
    """Postings and history rows must name an existing entry (the schema leaves these references
    to this check; a posting to a missing account shows up in balance_vs_journal)."""
    e = journal_entries.c
    out = []
    for table, label in (
        (postings, "posting_without_entry"),
        (balance_history, "history_without_entry"),
    ):
        orphans = conn.execute(
            select(table.c.entry_id)
            .distinct()
            .select_from(table.outerjoin(journal_entries, e.id == table.c.entry_id))
            .where(e.id.is_(None))
        ).all()
        out += [Break(label, f"entry {row.entry_id}", "an entry", None) for row in orphans]
    return out


def _general_ledger(conn: Connection) -> list[Break]:
    out = []
    for day_row in conn.execute(select(ledger_days)).all():
        zone = ZoneInfo(day_row.timezone)
        start, end = day_bounds(day_row.business_date, zone)
        journal = _rollup(conn, start, end)
        stored = {
            (g.chart_code, g.currency): (
                int(g.debit_total),
                int(g.credit_total),
                int(g.entry_count),
            )
            for g in conn.execute(
                select(gl_daily).where(gl_daily.c.business_date == day_row.business_date)
            )
        }
        for key in sorted(set(journal) | set(stored)):
            if journal.get(key) != stored.get(key):
                out.append(
                    Break(
                        "general_ledger",
                        f"{day_row.business_date} {key[0]} {key[1]}",
                        journal.get(key),
                        stored.get(key),
                    )
                )
    return out


def _trial_balance(conn: Connection) -> list[Break]:
    totals = trial_balance_totals(trial_balance(conn))
    return [
        Break("trial_balance", f"currency {cur}", debit, credit)
        for cur, (debit, credit) in sorted(totals.items())
        if debit != credit
    ]


def normal_balance(side: str, debit: int, credit: int) -> int:
    return signed(Side(side), debit, credit)
