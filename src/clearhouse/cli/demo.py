"""``clearhouse demo``: a simulated marketplace day on a fresh embedded database."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import typer

from clearhouse.bootstrap import App, build_app, upgrade_database
from clearhouse.cli.common import EXIT_REJECTED, JsonOption, console, emit_json, show_money, table
from clearhouse.cli.ledger import print_trial_balance
from clearhouse.clock import FixedClock
from clearhouse.config import Settings
from clearhouse.sandbox.runner import CHANNELS
from clearhouse.simulation.day import SHANGHAI, run_day
from clearhouse.simulation.gateway_day import GatewayDay, run_gateway_day, summary
from clearhouse.simulation.recon_days import ReconDays, reconcile_days

DEMO_DB = Path("clearhouse-demo.db")
DEMO_RECON = Path(".clearhouse-recon-demo")  # the demo's statement store, fresh each run


def demo(
    database_url: str | None = typer.Option(
        None, help="Run against this database instead of a fresh ./clearhouse-demo.db."
    ),
    payments: int = typer.Option(48, help="Orders placed during the day."),
    seed: int = typer.Option(7, help="Seed of the day's orders, payers and channel faults."),
    ledger_only: bool = typer.Option(
        False, help="The ledger's own day (posting rules, holds, limits) without the gateway."
    ),
    as_json: bool = JsonOption,
) -> None:
    """A marketplace day: orders paid through the merchant API at every channel's sandbox
    (QR codes, bound bank cards routed between two acquirers, combined carts, mixed payments,
    Stripe and PayPal abroad), with faults injected, then what happened and the books."""
    if database_url is None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DEMO_DB}{suffix}").unlink(missing_ok=True)
        database_url = f"sqlite:///{DEMO_DB}"
    clock = FixedClock(datetime(2026, 11, 2, 9, 0, tzinfo=SHANGHAI))
    app = build_app(Settings(database_url=database_url, ledger_timezone="Asia/Shanghai"), clock)
    try:
        upgrade_database(app)
        if ledger_only:
            _ledger_day(app, clock)
        else:
            _gateway_day(app, clock, payments, seed, as_json)
        _books(app, clock, quiet=as_json)
    finally:
        app.close()


def _gateway_day(app: App, clock: FixedClock, payments: int, seed: int, as_json: bool) -> None:
    shutil.rmtree(DEMO_RECON, ignore_errors=True)
    opening = clock.now().astimezone(SHANGHAI).date()
    after: list[ReconDays] = []
    day = run_gateway_day(
        app,
        clock,
        payments=payments,
        seed=seed,
        after=lambda stack: after.append(reconcile_days(app, clock, stack, opening, DEMO_RECON)),
    )
    facts = summary(day)
    recon = after[0]
    if as_json:
        facts["reconciliation"] = recon.to_dict()
        facts["books_balance"] = not app.ledger.check()
        emit_json(facts)
        return
    console.print(
        f"[bold]Clearhouse demo[/]: {payments} orders on {day.business_date} (Asia/Shanghai), "
        "through the merchant API to the sandboxes of WeChat Pay, Alipay, Stripe, PayPal and "
        "two bank-card acquirers\n"
    )
    _payments_table(day)
    planted = day.planted
    console.print(
        table(
            f"Channel faults planted (sandboxes, seed {seed})",
            ["fault", "payments hit", "what took care of it"],
            [[f, planted.get(f, 0), _REMEDY[f]] for f in _REMEDY],
        )
    )
    rows = [
        [ch, c.get("acked", 0), c.get("refused", 0), c.get("error", 0)]
        for ch, c in day.notifications.items()
    ]
    console.print(table("Notifications delivered", ["channel", "acked", "refused", "error"], rows))
    refunds = facts["refunds"]
    console.print(
        table("Refunds", ["status", "count"], [[k, v] for k, v in sorted(refunds.items())])
    )
    if day.refusals:
        console.print(
            table(
                "Requests refused (with their codes)",
                ["code", "count"],
                [[k, v] for k, v in sorted(day.refusals.items())],
            )
        )
    console.print(
        f"payments paid: {facts['paid_payments']}; ledger entries booking a payment: "
        f"{day.paid_entries} (one each, whatever the channel's duplicates)"
    )
    console.print(
        f"merchant webhooks: {day.webhooks_received} received, {day.webhooks_verified} with a "
        "valid signature\n"
    )
    _reconciliation(recon)


def _reconciliation(recon: ReconDays) -> None:
    """The T+1 runs: what each channel's bill showed against our records, by type."""
    for run in recon.runs:
        rows = []
        for b in run.batches:
            found = b.counts["differences"]
            listed = ", ".join(f"{t} {n}" for t, n in sorted(found.items()) if n) or "none"
            lines = sum(c["count"] for c in b.totals["lines"].values())
            ours = sum(c["count"] for c in b.totals["ours"].values())
            rows.append([b.channel, b.business_date, lines, ours, listed])
        console.print(
            table(
                f"Reconciliation run of {run.business_date} (bills pulled through the channels' "
                "APIs)",
                ["channel", "bill date", "lines", "ours", "differences found"],
                rows,
            )
        )
        states: dict[tuple[str, str, str], int] = {}
        for d in run.differences:
            key = (d.type, d.status, d.resolution or "")
            states[key] = states.get(key, 0) + 1
        if states:
            console.print(
                table(
                    "How they stand",
                    ["type", "status", "resolution", "count"],
                    [[*k, n] for k, n in sorted(states.items())],
                )
            )
        books = run.books
        if books is not None:
            verdict = "agree" if books.ok else f"{len(books.breaks)} breaks"
            console.print(f"payment records against ledger entries, {run.business_date}: {verdict}")


_REMEDY = {
    "timeout": "attempt UNKNOWN, never FAILED; the poller asks the channel",
    "lost_notification": "the poller queries the channel",
    "duplicate_notification": "applied once; the ledger's key refuses a second entry",
    "reordered_notification": "stale answers change nothing",
    "late_result": "booked after the cut-off: short, carried, found in the next day's bill",
    "wrong_fee": "fee differs from the schedule: reconciliation, review",
    "duplicate_payment": "second charge in the bill: reconciliation refunds it",
    "bill_amount": "the bill's amount differs: reconciliation, review",
    "bill_status": "paid to us, revoked in the bill: reconciliation, review",
    "fx_rate_drift": "settled at another rate than confirmed: reconciliation, review",
}


def _payments_table(day: GatewayDay) -> None:
    statuses = ["SUCCEEDED", "COMPLETED", "CLOSED", "FAILED", "PROCESSING"]
    rows = []
    for channel in CHANNELS:
        views = [v for v in day.payments if v["attempt"]["channel"] == channel]
        if not views:
            continue
        currency = views[0]["currency"]
        paid = sum(v["amount"] for v in views if v["status"] in ("SUCCEEDED", "COMPLETED"))
        counts = [sum(v["status"] == s for v in views) for s in statuses]
        rows.append([channel, len(views), *counts, show_money(paid, currency)])
    # Short headers: the table fits an 80-column terminal.
    heads = ["succeeded", "completed", "closed", "failed", "open"]
    console.print(
        table("Payments by channel and state", ["channel", "orders", *heads, "taken"], rows)
    )
    kinds = [[k, v] for k, v in sorted(day.kinds.items())]
    kinds += [[f"card routed to {ch}", n] for ch, n in sorted(day.routed.items())]
    kinds += [[what, n] for what, n in sorted(day.movements.items())]
    console.print(table("Beyond one order, one method", ["what", "count"], kinds))


def _ledger_day(app: App, clock: FixedClock) -> None:
    report = run_day(app, clock)
    console.print(
        f"[bold]Clearhouse demo[/]: marketplace day {report.business_date} (Asia/Shanghai)\n"
    )
    rows = [[e.at.astimezone(SHANGHAI).strftime("%H:%M"), e.what, e.result] for e in report.events]
    console.print(table("What happened", ["time", "event", "ledger"], rows))
    for note in report.notes:
        console.print(note)
    named = []
    for label, fid in report.named_funds.items():
        bal = app.ledger.balance(fid)
        named.append(
            [label, show_money(bal.posted, bal.currency), show_money(bal.available, bal.currency)]
        )
    console.print(table("Balances", ["fund account", "posted", "available"], named))


def _books(app: App, clock: FixedClock, *, quiet: bool) -> None:
    """The trial balance and the ledger's own check, after the day."""
    if not quiet:
        names = {code: acc.name for code, acc in app.chart.accounts.items()}
        print_trial_balance(app.ledger.trial_balance(), names)
    breaks = app.ledger.check()
    if breaks:
        for b in breaks:
            console.print(
                f"[bold red]break[/] {b.check} {b.subject}: expected {b.expected}, found {b.actual}"
            )
        raise typer.Exit(EXIT_REJECTED)
    if not quiet:
        console.print(
            "[green]books agree[/]: every entry balances; balances = journal = history = "
            "general ledger"
        )
