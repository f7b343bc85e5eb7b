"""End to end, on SQLite and PostgreSQL: the simulated marketplace day with the sandboxes planting
reconciliation faults, then the T+1 run over two days through the channels' bill APIs.

Every planted difference is found with its type, no attempt without a planted fault has one,
the cut-off shorts of day one are resolved by day two's bills, duplicate payments are refunded
to the payer, and the books stay balanced.
The truth is the fault plan itself: it decides per attempt id, so the test reads it back.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from clearhouse.bootstrap import App
from clearhouse.clock import FixedClock
from clearhouse.db.schema import payment_attempts, recon_batches, recon_differences
from clearhouse.reconciliation.classify import DifferenceType as T
from clearhouse.sandbox.faults import Fault, FaultPlan, planted_at
from clearhouse.simulation.gateway_day import DEMO_FAULTS, run_gateway_day
from clearhouse.simulation.recon_days import ReconDays, reconcile_days

SEED = 11
# Far denser than the demo, so one short day plants every kind.
FAULTS = DEMO_FAULTS | {
    Fault.WRONG_FEE: 120_000,
    Fault.DUPLICATE_PAYMENT: 200_000,
    Fault.LATE_RESULT: 120_000,
    Fault.BILL_AMOUNT: 100_000,
    Fault.BILL_STATUS: 150_000,
    Fault.FX_RATE_DRIFT: 400_000,
}
RECONCILED = {"wechatpay", "alipay", "stripe", "paypal", "quickpay", "quickpay_b"}
# What a fault on a paid attempt must show as, strongest first: a pair gets one type.
PAIR = [
    (Fault.BILL_STATUS, T.STATUS),
    (Fault.BILL_AMOUNT, T.AMOUNT),
    (Fault.FX_RATE_DRIFT, T.FX),
    (Fault.WRONG_FEE, T.FEE),
]
# The channels whose late bookings leave our confirmation on the day before (a cut-off short).
# Quick pay's late result is late at the channel too: its notification and query give the
# moment it completed (the next Beijing day), the day its file lists it: no short.
CUT_OFF = {"wechatpay", "alipay"}
# Stripe settles the shop's USD in HKD: a line in another currency than ours that does not
# agree at the recorded rate is an FX difference, whatever moved it; its fee is in the
# settlement currency, which the schedule (in ours) does not check.
CONVERTED = {"stripe"}


def test_the_day_reconciled_finds_every_planted_difference_and_nothing_else(
    app: App, clock: FixedClock, tmp_path: Path
) -> None:
    first = clock.now().astimezone(app.ledger.zone).date()
    runs: list[ReconDays] = []
    run_gateway_day(
        app,
        clock,
        payments=40,
        seed=SEED,
        faults=FAULTS,
        after=lambda stack: runs.append(reconcile_days(app, clock, stack, first, tmp_path)),
    )
    plan = FaultPlan(SEED, dict(FAULTS))
    with app.engine.connect() as conn:
        attempts = conn.execute(
            select(payment_attempts.c.id, payment_attempts.c.channel, payment_attempts.c.status)
        ).all()
        found_rows = conn.execute(select(recon_differences)).mappings().all()
        batches = conn.execute(select(recon_batches.c.channel, recon_batches.c.status)).all()
    # Every channel's bills were pulled and run, quick pay's two acquirers each on its own.
    assert {b.channel for b in batches if b.status == "done"} >= RECONCILED

    expected: dict[str, set[T]] = defaultdict(set)
    planted_any: dict[str, set[Fault]] = defaultdict(set)
    late: set[str] = set()
    for attempt in attempts:
        if attempt.channel not in RECONCILED:
            continue
        hits = {f for f in Fault if planted_at(f, attempt.channel) and plan.hits(f, attempt.id)}
        planted_any[attempt.id] = hits
        if attempt.status != "SUCCEEDED":
            continue  # never paid at the channel: the bill faults had nothing to act on
        for fault, kind in PAIR:
            if fault in hits:
                shown = kind if attempt.channel not in CONVERTED else {T.FEE: None}.get(kind, T.FX)
                if shown is not None:
                    expected[attempt.id].add(shown)
                break
        if Fault.DUPLICATE_PAYMENT in hits:
            expected[attempt.id].add(T.DUPLICATE)
        if Fault.LATE_RESULT in hits and attempt.channel in CUT_OFF:
            expected[attempt.id].add(T.SHORT)
            late.add(attempt.id)

    found: dict[str, set[T]] = defaultdict(set)
    for row in found_rows:
        if row["attempt_id"] is not None:
            found[row["attempt_id"]].add(T(row["type"]))

    kinds = {k for ks in expected.values() for k in ks}
    assert {T.AMOUNT, T.STATUS, T.FEE, T.SHORT, T.DUPLICATE} <= kinds, "the plan plants each"
    for attempt_id, kinds_expected in expected.items():
        assert kinds_expected <= found[attempt_id], (attempt_id, planted_any[attempt_id])
    # Nothing on an attempt the plan left alone: no false difference, no false match.
    for attempt_id, kinds_found in found.items():
        assert planted_any.get(attempt_id), (attempt_id, kinds_found)

    shorts = [r for r in found_rows if r["type"] == T.SHORT and r["attempt_id"] in late]
    assert shorts
    assert all(r["status"] == "resolved" for r in shorts)
    assert {r["resolution"] for r in shorts} == {"resolve_carried"}

    # Duplicates at the channels that refund a transaction by its id went back to the payer.
    duplicates = [
        r
        for r in found_rows
        if r["type"] == T.DUPLICATE and r["channel"] in {"wechatpay", "alipay"}
    ]
    assert duplicates
    assert {(r["status"], r["resolution"]) for r in duplicates} == {("resolved", "refunded")}

    (days,) = runs
    assert [run.business_date for run in days.runs] == [first, first + timedelta(days=1)]
    assert all(run.books is not None and run.books.ok for run in days.runs)
    assert not app.ledger.check()
    trial = app.ledger.trial_balance()
    by_currency: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in trial:
        by_currency[line.currency][0] += line.debit
        by_currency[line.currency][1] += line.credit
    assert all(debit == credit for debit, credit in by_currency.values())
