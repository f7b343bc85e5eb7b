"""The ``clearhouse`` command line (thin: parse, call a handler, render)."""

from __future__ import annotations

import typer

from clearhouse.cli import (
    accounts,
    cards,
    customers,
    db,
    demo,
    gateway,
    ledger,
    recon,
    sandbox,
    wallet,
)

app = typer.Typer(
    help="Clearhouse: payment, clearing, settlement and reconciliation core.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(accounts.app, name="accounts")
app.add_typer(customers.app, name="customers")
app.add_typer(cards.app, name="cards")
app.add_typer(ledger.app, name="ledger")
app.add_typer(gateway.merchants, name="merchants")
app.add_typer(gateway.api, name="api")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(wallet.withdrawals, name="withdrawals")
app.add_typer(recon.app, name="recon")
app.command("serve")(gateway.serve)
app.command("demo")(demo.demo)


def main() -> None:
    app()
