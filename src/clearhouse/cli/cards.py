"""``clearhouse cards``: the card data housekeeping that ``clearhouse serve`` also runs."""

from __future__ import annotations

import typer

from clearhouse.cli.common import JsonOption, console, emit_json, guarded, open_app
from clearhouse.gateway.card_model import BINDING_TTL
from clearhouse.gateway.cards import expire_bindings

app = typer.Typer(help="Bank cards bound for quick pay.", no_args_is_help=True)


@app.command("expire-bindings")
def expire(as_json: bool = JsonOption) -> None:
    """Expire the card bindings never confirmed (started 15 minutes ago or more), erasing
    the sealed card data they hold. `clearhouse serve` does this every minute."""

    def run() -> None:
        with open_app() as ch:
            expired = expire_bindings(ch.engine, ch.clock.now())
        if as_json:
            emit_json({"expired": expired, "after_minutes": BINDING_TTL.seconds // 60})
        else:
            console.print(f"{expired} card binding(s) expired")

    guarded(as_json, run)
