"""``clearhouse demo``: a simulated marketplace day on a fresh embedded database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from clearhouse.bootstrap import build_app, upgrade_database
from clearhouse.cli.common import EXIT_REJECTED, console, show_money, table
from clearhouse.cli.ledger import print_trial_balance
from clearhouse.clock import FixedClock
from clearhouse.config import Settings
from clearhouse.simulation.day import SHANGHAI, run_day

DEMO_DB = Path("clearhouse-demo.db")


def demo(
    database_url: str | None = typer.Option(
        None, help="Run against this database instead of a fresh ./clearhouse-demo.db."
    ),
) -> None:
    """Post a small marketplace day through the posting rules and show the books."""
    if database_url is None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DEMO_DB}{suffix}").unlink(missing_ok=True)
        database_url = f"sqlite:///{DEMO_DB}"
    clock = FixedClock(datetime(2026, 11, 2, 9, 0, tzinfo=SHANGHAI))
    app = build_app(Settings(database_url=database_url, ledger_timezone="Asia/Shanghai"), clock)
    try:
        upgrade_database(app)
        report = run_day(app, clock)
        console.print(
            f"[bold]Clearhouse demo[/]: marketplace day {report.business_date} (Asia/Shanghai)\n"
        )
        rows = [
            [e.at.astimezone(SHANGHAI).strftime("%H:%M"), e.what, e.result] for e in report.events
        ]
        console.print(table("What happened", ["time", "event", "ledger"], rows))
        for note in report.notes:
            console.print(note)
        named = []
        for label, fid in report.named_funds.items():
            bal = app.ledger.balance(fid)
            named.append(
                [
                    label,
                    show_money(bal.posted, bal.currency),
                    show_money(bal.available, bal.currency),
                ]
            )
        console.print(table("Balances", ["fund account", "posted", "available"], named))
        names = {code: acc.name for code, acc in app.chart.accounts.items()}
        print_trial_balance(app.ledger.trial_balance(), names)
        breaks = app.ledger.check()
        if breaks:
            for b in breaks:
                console.print(
                    f"[bold red]break[/] {b.check} {b.subject}: "
                    f"expected {b.expected}, found {b.actual}"
                )
            raise typer.Exit(EXIT_REJECTED)
        console.print(
            f"[green]day {report.business_date} closed; books agree[/]: every entry balances, "
            "balances = journal = history = general ledger"
        )
    finally:
        app.close()
