"""The day's reconciliation (T+1): pull what the channels published for a business date, run
one batch per source that has a statement, and check our own books (R7). What the CLI's
``recon pull`` / ``recon run`` do one piece at a time, and the demo does in one go.

``Recon`` wires the parts over one app (database, ledger, clock, the store's folder); the
gateway's ``Payments`` and the channels' refunds are optional (without them a long on an unpaid
order, or a duplicate payment, waits in review instead of being marked paid or refunded).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select

from clearhouse.bootstrap import App
from clearhouse.db.schema import statement_files
from clearhouse.reconciliation import actions, internal
from clearhouse.reconciliation.actions import DifferenceView, Review
from clearhouse.reconciliation.batches import Batch, BatchConfig, Reconciler
from clearhouse.reconciliation.handling import PaymentsPort, RefundPort
from clearhouse.reconciliation.pull import Puller, PullResult
from clearhouse.reconciliation.store import StatementStore


@dataclass
class Recon:
    app: App
    store: StatementStore
    reconciler: Reconciler
    review: Review

    @classmethod
    def of(
        cls,
        app: App,
        *,
        payments: PaymentsPort | None = None,
        refunds: RefundPort | None = None,
        root: Path | None = None,
        config: BatchConfig | None = None,
    ) -> Recon:
        store = StatementStore(app.engine, root or Path(app.settings.recon_dir), app.clock)
        reconciler = Reconciler(
            app.engine,
            store,
            app.ledger,
            app.clock,
            payments=payments,
            refunds=refunds,
            config=config,
        )
        return cls(app, store, reconciler, Review(app.engine, app.ledger, app.clock))

    def sources(self, business_date: date) -> list[str]:
        """The sources with a current statement for the day."""
        f = statement_files
        query = (
            select(f.c.source)
            .where(f.c.business_date == business_date, f.c.superseded_by.is_(None))
            .distinct()
            .order_by(f.c.source)
        )
        with self.app.engine.connect() as conn:
            return list(conn.execute(query).scalars())


@dataclass
class DayRun:
    business_date: date
    pulls: list[PullResult] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    differences: list[DifferenceView] = field(default_factory=list)
    books: internal.InternalReport | None = None

    def by_type(self) -> dict[str, dict[str, int]]:
        """Differences this day's batches found or still hold, per channel and type."""
        counts: dict[str, Counter[str]] = {}
        for d in self.differences:
            counts.setdefault(d.channel, Counter())[d.type] += 1
        return {ch: dict(sorted(c.items())) for ch, c in sorted(counts.items())}

    def to_dict(self) -> dict[str, Any]:
        return {
            "business_date": self.business_date.isoformat(),
            "pulls": [p.to_dict() for p in self.pulls],
            "batches": [b.to_dict() for b in self.batches],
            "by_type": self.by_type(),
            "differences": [d.to_dict() for d in self.differences],
            "books": None if self.books is None else self.books.to_dict(),
        }


def run_day(
    recon: Recon,
    business_date: date,
    *,
    by: str,
    puller: Puller | None = None,
    channels: Sequence[str] | None = None,
    dates: Callable[[str], Sequence[date]] | None = None,
) -> DayRun:
    """Pull (when a puller is given), reconcile every source holding a statement of the day
    (or ``channels``), then check the books of the day. ``dates``: a channel's own business
    dates for the day, when its files are cut in another zone than the books (the day itself
    by default). Re-running it changes nothing that is settled."""
    run = DayRun(business_date)
    dates_of = dates or (lambda _channel: [business_date])
    if channels is None:
        channels = puller.channels() if puller is not None else recon.sources(business_date)
    for channel in channels:
        for day in dates_of(channel):
            if puller is not None:
                run.pulls.append(puller.pull(channel, day))
            batch = recon.reconciler.run(channel, day, by=by, allow_missing=True)
            run.batches.append(batch)
            run.differences.extend(actions.differences(recon.app.engine, batch_id=batch.id))
    with recon.app.engine.connect() as conn:
        run.books = internal.reconcile_day(conn, business_date, recon.app.ledger.zone)
    return run
