"""The ``clearhouse`` command line (thin: parse, call a handler, render)."""

from __future__ import annotations

import typer

from clearhouse.cli import accounts, db, demo, ledger

app = typer.Typer(
    help="Clearhouse: payment, clearing, settlement and reconciliation core.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(accounts.app, name="accounts")
app.add_typer(ledger.app, name="ledger")
app.command("demo")(demo.demo)


def main() -> None:
    app()
