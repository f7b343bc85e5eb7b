"""What every command shares: building the app, printing for people or for scripts, errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from clearhouse.bootstrap import App, build_app
from clearhouse.config import load_settings
from clearhouse.errors import ClearhouseError
from clearhouse.money import Money

EXIT_REJECTED = 1  # a business outcome said no: a rejected posting, a break in the books
EXIT_BAD_INPUT = 2  # the command could not be carried out as given

console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print one JSON document for scripts.")


@contextmanager
def open_app() -> Iterator[App]:
    app = build_app(load_settings())
    try:
        yield app
    finally:
        app.close()


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str) + "\n")


def fail(error: ClearhouseError, as_json: bool) -> NoReturn:
    if as_json:
        emit_json({"error": error.to_dict()})
    else:
        err_console.print(f"[bold red]error[/] {error.code}: {error.message}")
    raise typer.Exit(EXIT_BAD_INPUT)


def guarded(as_json: bool, action: Callable[[], None]) -> None:
    """Run a command body; a typed error becomes a clear message and exit code 2."""
    try:
        action()
    except ClearhouseError as exc:
        fail(exc, as_json)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(
            col,
            justify="right"
            if col in {"debit", "credit", "posted", "available", "pending"}
            else "left",
        )
    for row in rows:
        t.add_row(*[str(c) for c in row])
    return t


def show_money(amount: int, currency: str) -> str:
    return Money(amount, currency).format()
