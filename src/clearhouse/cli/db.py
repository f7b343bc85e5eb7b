"""``clearhouse db``: schema migrations and reference data."""

from __future__ import annotations

import typer

from clearhouse.bootstrap import upgrade_database
from clearhouse.cli.common import JsonOption, console, emit_json, guarded, open_app
from clearhouse.money import currency as lookup_currency

app = typer.Typer(help="Database schema and reference data.", no_args_is_help=True)


@app.command()
def upgrade(
    currency: list[str] = typer.Option(
        ["CNY"], "--currency", help="Operating currencies of the platform."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Apply migrations, seed the chart of accounts and the platform's fund accounts."""

    def run() -> None:
        for code in currency:
            lookup_currency(code)
        with open_app() as ch:
            upgrade_database(ch, tuple(currency))
            if as_json:
                emit_json({"ok": True, "currencies": currency})
            else:
                console.print(
                    f"database is at the latest schema; platform accounts in {', '.join(currency)}"
                )

    guarded(as_json, run)
