"""``clearhouse withdrawals``: the due withdrawal batches, and an operator's hand on the
suspended ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from clearhouse.bootstrap import gateway_for
from clearhouse.cli.common import JsonOption, console, emit_json, guarded, open_app
from clearhouse.cli.sandbox import channels_document
from clearhouse.clock import SystemClock
from clearhouse.errors import ConfigurationError
from clearhouse.wallet.bankwire.adapter import bank_from_document
from clearhouse.wallet.withdrawals import Withdrawals

withdrawals = typer.Typer(
    help="Withdrawals to bank cards: run the due batches; resume or cancel suspended ones.",
    no_args_is_help=True,
)
ChannelsOption = typer.Option(
    None,
    help="Channels document with the payout bank (its `bank` entry). Default: "
    "CLEARHOUSE_CHANNELS_FILE, else the sandboxes of `clearhouse sandbox` on their default ports.",
)


@contextmanager
def _withdrawals(channels: Path | None) -> Iterator[Withdrawals]:
    with open_app() as ch:
        document = channels_document(ch.settings, channels)
        bank = bank_from_document(document, SystemClock())
        if bank is None:
            raise ConfigurationError("the channels document has no payout bank (`bank`)")
        gateway = gateway_for(ch, {}, ch.settings.public_url or "http://127.0.0.1:8000", bank)
        try:
            yield gateway.wallet.withdrawals
        finally:
            gateway.close()


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        for label, value in result.items():
            console.print(f"{label}: {value}")


@withdrawals.command("run")
def run(channels: Path | None = ChannelsOption, as_json: bool = JsonOption) -> None:
    """Run the due batches once: ask about unanswered ones, then send each open rail's due
    withdrawals to the bank and apply its answers. `clearhouse serve` does this itself."""

    def body() -> None:
        with _withdrawals(channels) as handler:
            _show(handler.run_batches().to_dict(), as_json)

    guarded(as_json, body)


@withdrawals.command("resume")
def resume(
    withdrawal_id: str, channels: Path | None = ChannelsOption, as_json: bool = JsonOption
) -> None:
    """Send a suspended withdrawal again (same id) with its rail's next batch."""

    def body() -> None:
        with _withdrawals(channels) as handler:
            _show(handler.resume(withdrawal_id), as_json)

    guarded(as_json, body)


@withdrawals.command("cancel")
def cancel(
    withdrawal_id: str, channels: Path | None = ChannelsOption, as_json: bool = JsonOption
) -> None:
    """Fail a suspended withdrawal and give the money back, once the bank confirms it paid
    nothing under its id."""

    def body() -> None:
        with _withdrawals(channels) as handler:
            _show(handler.cancel(withdrawal_id), as_json)

    guarded(as_json, body)
