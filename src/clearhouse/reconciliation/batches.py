"""Reconciliation batches (R8): one run per channel and business date, recorded with what it read,
what it counted and what it found, then handled (``handling``).

A run reads the channel's current statements for the day (``StatementStore.current``) and our
records of the day's window (``ours.export_ours``), widened with the records of the shorts still
carried from earlier days: a payment confirmed just before one day's cut-off, missing from that
day's bill, is matched by the next day's bill when its line appears there, and the carried short
is resolved. The matcher runs over both; the batch stores counts and sums of both sides per
currency and the differences per type, and upserts each difference by a stable key (a digest of
the channel, the type and the references of the side(s) that identify it), so a difference found
again is the same row and keeps its age.

Idempotent: the inputs digest covers the statements' digests, our exported rows and the
configuration. A run over the same inputs answers with the batch that exists and changes nothing;
a run over other inputs (a re-issued bill, records that changed) is a new batch superseding the
day's previous one, and a difference that batch found and this one does not is resolved
("rerun"). Ids are digests of what they name, and every list is ordered, so the same inputs give
the same rows in the same order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection, Row

from clearhouse.clock import Clock
from clearhouse.db.schema import recon_batches, recon_differences
from clearhouse.db.transaction import run_in_transaction
from clearhouse.ledger.service import Ledger
from clearhouse.reconciliation import formats, handling
from clearhouse.reconciliation.classify import CONFIRMED, DifferenceType
from clearhouse.reconciliation.errors import ReconCode, ReconError
from clearhouse.reconciliation.handling import (
    SYSTEM,
    Found,
    PaymentsPort,
    RefundPort,
    ReviewPolicy,
    Status,
    difference_amount,
    dumps,
)
from clearhouse.reconciliation.matching import MatchConfig, match
from clearhouse.reconciliation.ours import BUSINESS_ZONES, OURS, day_window, export_ours
from clearhouse.reconciliation.store import StatementStore

DONE = "done"
_CHUNK = 500  # keys per IN (...) list


@dataclass(frozen=True, slots=True)
class BatchConfig:
    match: MatchConfig = field(default_factory=MatchConfig)
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    zone: str | None = None  # the channel's business time zone, when not its default

    def digest(self) -> str:
        # Ages follow the batch's date, so the configured ``as_of`` is not an input.
        text = repr((replace(self.match, as_of=None), self.review, self.zone))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    channel: str
    business_date: date
    inputs_digest: str
    status: str
    totals: dict[str, Any]
    counts: dict[str, Any]
    run_by: str
    started_at: datetime
    finished_at: datetime | None
    superseded_by: str | None
    already: bool = False  # this run found the same inputs already reconciled: nothing changed

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "business_date": self.business_date.isoformat(),
            "inputs_digest": self.inputs_digest,
            "status": self.status,
            "totals": self.totals,
            "counts": self.counts,
            "run_by": self.run_by,
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "superseded_by": self.superseded_by,
            "already": self.already,
        }


def batch_from_row(row: Row[Any], *, already: bool = False) -> Batch:
    return Batch(
        id=row.id,
        channel=row.channel,
        business_date=row.business_date,
        inputs_digest=row.inputs_digest,
        status=row.status,
        totals=json.loads(row.totals),
        counts=json.loads(row.counts),
        run_by=row.run_by,
        started_at=row.started_at,
        finished_at=row.finished_at,
        superseded_by=row.superseded_by,
        already=already,
    )


class Reconciler:
    """Runs batches. ``payments``: the gateway's ``Payments`` (marks long payments paid);
    ``refunds``: the gateway's ``TransactionRefunds`` (refunds duplicates and longs on closed
    orders to the payer, after the batch commits); without them these wait in the review queue."""

    def __init__(
        self,
        engine: Engine,
        store: StatementStore,
        ledger: Ledger,
        clock: Clock,
        *,
        payments: PaymentsPort | None = None,
        config: BatchConfig | None = None,
        refunds: RefundPort | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.ledger = ledger
        self.clock = clock
        self.payments = payments
        self.config = config or BatchConfig()
        self.refunds = refunds

    def run(
        self, channel: str, business_date: date, *, by: str, allow_missing: bool = False
    ) -> Batch:
        """Reconcile ``channel``'s ``business_date``, then send the channel's pending refunds
        to payers (no HTTP call inside the batch's transaction). ``allow_missing``: run with no
        statement (every confirmed record is then short); refused by default (STATEMENT_MISSING)."""
        batch = self._run(channel, business_date, by=by, allow_missing=allow_missing)
        self.send_refunds(channel)
        return batch

    def send_refunds(self, channel: str | None = None) -> list[handling.RefundSent]:
        """Send (again) every refund to a payer still ``refunding``; nothing without a port."""
        if self.refunds is None:
            return []
        return handling.send_refunds(
            self.engine, self.ledger, self.refunds, self.clock, channel=channel
        )

    def _run(self, channel: str, business_date: date, *, by: str, allow_missing: bool) -> Batch:
        if not by.strip():
            raise ReconError(ReconCode.ACTOR_REQUIRED, "a batch is run by someone")
        started = self.clock.now()
        paths = [
            path
            for fmt in formats.matched_formats(channel)
            for path in self.store.current(channel, business_date, fmt)
        ]
        if not paths and not allow_missing:
            raise ReconError(
                ReconCode.STATEMENT_MISSING,
                f"no statement of {channel} for {business_date}",
                channel=channel,
                business_date=business_date.isoformat(),
            )
        lines = self.store.read(paths)
        with self.engine.connect() as conn:
            carried = _carried(conn, channel, business_date)
            ours = self._ours(conn, channel, business_date, carried)
        # Carried shorts whose records are in: this run matches them or finds them short again.
        refs = set(ours.column("merchant_ref").to_pylist())
        rechecked = [row.id for row in carried if _ref(row) in refs]
        digest = _inputs_digest(channel, business_date, paths, ours, self.config)
        batch_id = "rcb_" + _sha(f"{channel}|{business_date}|{digest}")[:36]
        existing = self._existing(batch_id)
        if existing is not None:
            return existing
        result = match(lines, ours, replace(self.config.match, as_of=business_date))
        found = _found(channel, result.differences, lines, ours)
        totals = _totals(lines, ours)
        counts = {
            "differences": {t.value: sum(1 for f in found if f.type is t) for t in DifferenceType},
            "matching": dict(sorted(result.counts.items())),
        }
        run = _Run(
            self,
            batch_id=batch_id,
            channel=channel,
            business_date=business_date,
            digest=digest,
            totals=totals,
            counts=counts,
            by=by,
            started=started,
            found=found,
            carried_ids=rechecked,
        )
        return run_in_transaction(self.engine, run.persist, retry_integrity=True)

    def _existing(self, batch_id: str) -> Batch | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(recon_batches).where(recon_batches.c.id == batch_id)).first()
        return None if row is None else batch_from_row(row, already=True)

    def _ours(
        self, conn: Connection, channel: str, day: date, carried: Sequence[Row[Any]]
    ) -> pa.Table:
        """The day's records and the records of the shorts carried from earlier days."""
        zone = self.config.zone
        if zone is None and channel not in BUSINESS_ZONES:
            return OURS.empty_table()  # a source without records of ours (a bank statement)
        tables = [export_ours(conn, channel, *day_window(channel, day, zone), zone=zone)]
        by_day: dict[date, set[str]] = {}
        for row in carried:
            ours = json.loads(row.evidence).get("ours") or {}
            if ours.get("merchant_ref"):
                found_day = date.fromisoformat(ours["business_date"])
                by_day.setdefault(found_day, set()).add(ours["merchant_ref"])
        for found_day in sorted(by_day):
            if found_day == day:
                continue  # already in the day's own records
            table = export_ours(conn, channel, *day_window(channel, found_day, zone), zone=zone)
            refs = pa.array(sorted(by_day[found_day]), pa.string())
            tables.append(table.filter(pc.is_in(table["merchant_ref"], value_set=refs)))
        return pa.concat_tables(tables)


def run_batch(
    engine: Engine,
    store: StatementStore,
    ledger: Ledger,
    channel: str,
    business_date: date,
    *,
    by: str,
    clock: Clock,
    payments: PaymentsPort | None = None,
    config: BatchConfig | None = None,
    allow_missing: bool = False,
    refunds: RefundPort | None = None,
) -> Batch:
    reconciler = Reconciler(
        engine, store, ledger, clock, payments=payments, config=config, refunds=refunds
    )
    return reconciler.run(channel, business_date, by=by, allow_missing=allow_missing)


# --- inputs -------------------------------------------------------------------------------------


def _carried(conn: Connection, channel: str, day: date) -> list[Row[Any]]:
    """The shorts of earlier days still waiting for their line."""
    d = recon_differences
    query = select(d).where(
        d.c.channel == channel, d.c.status == Status.CARRIED, d.c.business_date < day
    )
    return list(conn.execute(query.order_by(d.c.business_date, d.c.key)).all())


def _ref(row: Row[Any]) -> str | None:
    """Our reference of a carried short, as its evidence recorded our record."""
    ours = json.loads(row.evidence).get("ours") or {}
    ref: str | None = ours.get("merchant_ref")
    return ref


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _table_digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return _sha(sink.getvalue().to_pybytes())


def _inputs_digest(
    channel: str, day: date, paths: Sequence[Path], ours: pa.Table, config: BatchConfig
) -> str:
    statements = sorted(p.stem for p in paths)
    parts = [channel, day.isoformat(), ",".join(statements), _table_digest(ours), config.digest()]
    return _sha("|".join(parts))


def _totals(lines: pa.Table, ours: pa.Table) -> dict[str, Any]:
    """Counts and sums of both sides per currency: every line (amount and fee as the channel
    states them), and our records (all of them, and the money of those we confirmed)."""
    side: dict[str, Any] = {}
    for row in _by_currency(lines, [("amount", "count"), ("amount", "sum"), ("fee", "sum")]):
        side[row["currency"]] = {
            "count": row["amount_count"],
            "amount": row["amount_sum"],
            "fee": row["fee_sum"],
        }
    confirmed = ours.filter(pc.is_in(ours["status"], value_set=pa.array(sorted(CONFIRMED))))
    mine: dict[str, Any] = {
        row["currency"]: {"count": row["amount_count"], "confirmed": 0, "amount": 0}
        for row in _by_currency(ours, [("amount", "count")])
    }
    for row in _by_currency(confirmed, [("amount", "count"), ("amount", "sum")]):
        mine[row["currency"]] |= {"confirmed": row["amount_count"], "amount": row["amount_sum"]}
    return {"lines": side, "ours": mine}


def _by_currency(table: pa.Table, aggregates: list[tuple[str, str]]) -> list[dict[str, Any]]:
    if table.num_rows == 0:
        return []
    out = table.group_by("currency").aggregate(aggregates).sort_by("currency")
    return [{k: (0 if v is None else v) for k, v in r.items()} for r in out.to_pylist()]


def _identity(channel: str, row: Mapping[str, Any], line: Mapping[str, Any] | None) -> str:
    """What names a difference across runs: the line when there is one (a re-issued bill
    keeps its ids), else our record."""
    if line is not None:
        ids = [
            line["kind"],
            line["channel_txn_id"],
            line["channel_refund_id"],
            line["merchant_ref"],
            row["payout_id"] or line["payout_id"],
        ]
        if not any(ids[1:]):
            ids += [line["line_no"], line["amount"], str(line["occurred_at"])]
    else:
        ids = [row["kind"], row["attempt_id"], row["refund_id"]]
    return "\x1f".join([channel, row["type"], *("" if v is None else str(v) for v in ids)])


def _found(channel: str, differences: pa.Table, lines: pa.Table, ours: pa.Table) -> list[Found]:
    found: list[Found] = []
    seen: dict[str, int] = {}
    for row in differences.to_pylist():
        line = None if row["lid"] is None else lines.slice(row["lid"], 1).to_pylist()[0]
        mine = None if row["oid"] is None else ours.slice(row["oid"], 1).to_pylist()[0]
        identity = _identity(channel, row, line)
        seen[identity] = seen.get(identity, 0) + 1
        if seen[identity] > 1:  # two differences of one identity: told apart by their order
            identity += f"\x1f#{seen[identity]}"
        currency, amount = difference_amount(row)
        found.append(
            Found(_sha(identity), DifferenceType(row["type"]), currency, amount, row, line, mine)
        )
    return found


# --- persisting and handling ----------------------------------------------------------------


@dataclass
class _Run:
    owner: Reconciler
    batch_id: str
    channel: str
    business_date: date
    digest: str
    totals: dict[str, Any]
    counts: dict[str, Any]
    by: str
    started: datetime
    found: list[Found]
    carried_ids: list[str]

    def persist(self, conn: Connection) -> Batch:
        """One transaction: the batch, its differences, their handling and entries."""
        row = conn.execute(select(recon_batches).where(recon_batches.c.id == self.batch_id)).first()
        if row is not None:  # the same run committed meanwhile
            return batch_from_row(row, already=True)
        now = self.owner.clock.now()
        b = recon_batches
        previous = list(
            conn.execute(
                select(b.c.id).where(
                    b.c.channel == self.channel,
                    b.c.business_date == self.business_date,
                    b.c.superseded_by.is_(None),
                )
            ).scalars()
        )
        conn.execute(
            insert(b).values(
                id=self.batch_id,
                channel=self.channel,
                business_date=self.business_date,
                inputs_digest=self.digest,
                status=DONE,
                totals=dumps(self.totals),
                counts=dumps(self.counts),
                run_by=self.by,
                started_at=self.started,
                finished_at=now,
            )
        )
        if previous:
            conn.execute(update(b).where(b.c.id.in_(previous)).values(superseded_by=self.batch_id))
        existing = self._existing(conn)
        touched: set[str] = set()
        for found in self.found:
            known = existing.get(found.key)
            if known is None:
                self._new(conn, found, now)
            else:
                touched.add(known.id)
                self._again(conn, known, found, now)
        self._settle_carried(conn, touched, now)
        self._settle_superseded(conn, previous, touched, now)
        self._break_overdue(conn, touched, now)
        row = conn.execute(select(b).where(b.c.id == self.batch_id)).one()
        return batch_from_row(row)

    def _existing(self, conn: Connection) -> dict[str, Row[Any]]:
        d = recon_differences
        keys = [f.key for f in self.found]
        out: dict[str, Row[Any]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            query = select(d).where(d.c.channel == self.channel, d.c.key.in_(chunk))
            out |= {row.key: row for row in conn.execute(query)}
        return out

    def _new(self, conn: Connection, found: Found, now: datetime) -> None:
        owner = self.owner
        decision = handling.decide(conn, owner.payments, found, owner.refunds)
        difference_id = "rcd_" + found.key[:36]
        evidence = found.evidence()
        if decision.status == Status.REFUNDING:
            evidence["refund_no"] = handling.refund_no(difference_id)
        row = found.row
        conn.execute(
            insert(recon_differences).values(
                id=difference_id,
                channel=self.channel,
                key=found.key,
                type=found.type.value,
                business_date=self.business_date,
                status=decision.status,
                resolution=decision.resolution,
                currency=found.currency,
                amount=found.amount,
                channel_txn_id=row["channel_txn_id"],
                merchant_ref=row["merchant_ref"],
                attempt_id=row["attempt_id"],
                refund_id=row["refund_id"],
                intent_id=row["intent_id"],
                payout_id=row["payout_id"],
                evidence=dumps(found.evidence()),
                alert=decision.status == Status.OPEN
                and owner.config.review.alert(found.currency, found.amount),
                first_batch_id=self.batch_id,
                last_batch_id=self.batch_id,
                first_seen_at=now,
                resolved_at=now if decision.status == Status.RESOLVED else None,
            )
        )
        entry_id = None
        if decision.status != Status.RESOLVED:
            entry_id = handling.park(
                owner.ledger,
                conn,
                difference_id,
                self.channel,
                found.type,
                found.currency,
                found.amount,
            )
            if entry_id is not None:
                conn.execute(
                    update(recon_differences)
                    .where(recon_differences.c.id == difference_id)
                    .values(suspense_entry_id=entry_id)
                )
        handling.record_action(
            conn,
            difference_id=difference_id,
            batch_id=self.batch_id,
            action=decision.action,
            actor=SYSTEM,
            reason=decision.reason,
            evidence=evidence,
            at=now,
            entry_id=entry_id,
        )

    def _again(self, conn: Connection, known: Row[Any], found: Found, now: datetime) -> None:
        """A difference found before: the latest view of it, and its age checked if carried."""
        values: dict[str, Any] = {"last_batch_id": self.batch_id}
        if known.status != Status.RESOLVED:
            values["evidence"] = dumps(found.evidence())
        conn.execute(
            update(recon_differences).where(recon_differences.c.id == known.id).values(values)
        )

    def _settle_carried(self, conn: Connection, touched: set[str], now: datetime) -> None:
        """Carried shorts whose records this run matched: their line has appeared."""
        for difference in self._rows(conn, self.carried_ids):
            if difference["id"] in touched or difference["status"] != Status.CARRIED:
                continue
            handling.resolve(
                self.owner.ledger,
                conn,
                difference,
                resolution="resolve_carried",
                actor=SYSTEM,
                reason=f"the channel's line appeared in the bill of {self.business_date}",
                evidence={"batch_id": self.batch_id},
                batch_id=self.batch_id,
                now=now,
            )
            touched.add(difference["id"])

    def _settle_superseded(
        self, conn: Connection, previous: list[str], touched: set[str], now: datetime
    ) -> None:
        """Differences the superseded batch found and this one does not."""
        if not previous:
            return
        d = recon_differences
        query = select(d).where(d.c.last_batch_id.in_(previous), d.c.status != Status.RESOLVED)
        for difference in _dicts(conn.execute(query.order_by(d.c.key)).mappings()):
            if difference["id"] in touched or difference["status"] == Status.REFUNDING:
                continue  # a refund with the channel is settled by the channel's answer
            handling.resolve(
                self.owner.ledger,
                conn,
                difference,
                resolution="rerun",
                actor=SYSTEM,
                reason="not found again by the batch that superseded the one that found it",
                evidence={"batch_id": self.batch_id, "superseded": previous},
                batch_id=self.batch_id,
                now=now,
            )

    def _break_overdue(self, conn: Connection, touched: set[str], now: datetime) -> None:
        """Carried shorts still missing ``carry_days`` after they were found go to review."""
        days = self.owner.config.review.carry_days
        d = recon_differences
        query = select(d).where(
            d.c.channel == self.channel,
            d.c.status == Status.CARRIED,
            d.c.business_date <= self.business_date - timedelta(days=days),
        )
        for difference in conn.execute(query.order_by(d.c.key)).mappings().all():
            self._break(conn, difference["id"], difference["currency"], difference["amount"], now)

    def _break(
        self, conn: Connection, difference_id: str, currency: str, amount: int, now: datetime
    ) -> None:
        alert = self.owner.config.review.alert(currency, amount)
        conn.execute(
            update(recon_differences)
            .where(recon_differences.c.id == difference_id)
            .values(status=Status.OPEN, alert=alert)
        )
        days = self.owner.config.review.carry_days
        handling.record_action(
            conn,
            difference_id=difference_id,
            batch_id=self.batch_id,
            action="break",
            actor=SYSTEM,
            reason=f"short still missing {days} days after it was found: to review",
            evidence={"batch_id": self.batch_id, "business_date": self.business_date},
            at=now,
        )

    def _rows(self, conn: Connection, ids: Iterable[str]) -> list[dict[str, Any]]:
        wanted = sorted(ids)
        if not wanted:
            return []
        d = recon_differences
        query = select(d).where(d.c.id.in_(wanted)).order_by(d.c.key)
        return _dicts(conn.execute(query).mappings())


def _dicts(rows: Iterable[Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in rows]
