"""``clearhouse serve``, ``clearhouse merchants``, ``clearhouse api``: the payment gateway."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import typer
import uvicorn

from clearhouse.api.app import create_api
from clearhouse.api.guard import prune_nonces
from clearhouse.api.openapi import render
from clearhouse.bootstrap import gateway_for
from clearhouse.cli.common import JsonOption, console, emit_json, guarded, open_app
from clearhouse.cli.sandbox import base_urls
from clearhouse.clock import SystemClock
from clearhouse.config import load_settings
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.channels.config import load_document, ports_from_document
from clearhouse.gateway.merchants import create_merchant, set_status
from clearhouse.gateway.service import Gateway
from clearhouse.sandbox.runner import SandboxCredentials
from clearhouse.sealing import Sealer
from clearhouse.wallet.bankwire.adapter import bank_from_document

log = logging.getLogger(__name__)
# Worker rounds (about a second each) between two runs of the due withdrawal batches.
BATCH_ROUNDS = 30

merchants = typer.Typer(help="Merchants and their API keys.", no_args_is_help=True)
api = typer.Typer(help="The merchant API's contract.", no_args_is_help=True)


def serve(
    port: int = typer.Option(8000, "--port"),
    host: str = typer.Option("127.0.0.1", "--host"),
    channels: Path | None = typer.Option(
        None,
        help="Channels document (base URL + credentials per channel). Default: the sandboxes "
        "of `clearhouse sandbox` on their default ports.",
    ),
    workers: int = typer.Option(1, min=1, help="API processes (one Python process uses one core)."),
) -> None:
    """Serve the merchant API and the channels' notify endpoints, with the workers: the poller
    (unanswered payments and refunds), webhook delivery, the expiry of card bindings never
    confirmed and, when the channels document has a payout bank, the due withdrawal batches."""
    settings = load_settings()
    if channels is None:
        channels = Path(settings.sandbox_dir) / "channels.json"
        creds = SandboxCredentials.load_or_create(Path(settings.sandbox_dir))
        document = creds.merchant_document(base_urls("127.0.0.1", 8300))
        fd = os.open(channels, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private keys
        with os.fdopen(fd, "w") as out:
            json.dump(document, out)
    document = load_document(channels)
    public_url = settings.public_url or f"http://{host}:{port}"
    with open_app() as ch:
        bank = bank_from_document(document, SystemClock())
        gateway = gateway_for(
            ch, ports_from_document(document, SystemClock()), public_url, bank=bank
        )
        stop = threading.Event()
        worker = threading.Thread(target=run_workers, args=(gateway, stop), daemon=True)
        worker.start()
        console.print(
            f"merchant API on http://{host}:{port} ({workers} process(es)); "
            f"channels: {', '.join(document)}"
        )
        try:
            if workers == 1:
                uvicorn.run(create_api(gateway), host=host, port=port, log_level="warning")
            else:
                # Each worker process builds its own app from the environment (api/asgi.py).
                os.environ["CLEARHOUSE_CHANNELS_FILE"] = str(channels.resolve())
                os.environ["CLEARHOUSE_PUBLIC_URL"] = public_url
                uvicorn.run(
                    "clearhouse.api.asgi:create",
                    factory=True,
                    workers=workers,
                    host=host,
                    port=port,
                    log_level="warning",
                )
        finally:
            stop.set()
            worker.join()
            gateway.close()


def run_workers(gateway: Gateway, stop: threading.Event, interval: float = 1.0) -> None:
    """The background work of a serving process. A failing round is logged and the next one
    runs: the work is all idempotent, so nothing is lost by trying again."""
    rounds = 0
    while not stop.wait(interval):
        rounds += 1
        try:
            gateway.poller.run_once()
            gateway.webhooks.deliver_due()
            if rounds % 60 == 0:
                prune_nonces(gateway.engine, gateway.clock.now())
                # Card data of bindings never confirmed is not kept past their time.
                gateway.cards.expire_bindings()
            withdrawals = gateway.wallet.withdrawals
            if rounds % BATCH_ROUNDS == 0 and withdrawals.bank is not None:
                withdrawals.run_batches()
        except Exception:
            log.exception("worker round failed; retrying next round")


@merchants.command("create")
def create(
    name: str = typer.Option(...),
    currency: str = typer.Option("CNY"),
    commission_bps: int = typer.Option(500, help="Platform commission in basis points."),
    webhook_url: str | None = typer.Option(None, help="Where events are POSTed."),
    parent: str | None = typer.Option(
        None, help="The marketplace merchant this one sells on (combined payments)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Open a merchant with its ledger accounts and a first API key. The key's secret and the
    webhook secret are printed now and never again."""

    def run() -> None:
        with open_app() as ch:
            sealer = Sealer(ch.settings.secret_key)
            merchant, key, webhook_secret = run_in_transaction(
                ch.engine,
                lambda c: create_merchant(
                    c,
                    ch.chart,
                    sealer,
                    name=name,
                    currency=currency,
                    commission_bps=commission_bps,
                    webhook_url=webhook_url,
                    pii_key=ch.settings.pii_key,
                    now=ch.clock.now(),
                    parent_id=parent,
                ),
            )
        out = {
            "merchant_id": merchant.id,
            "api_key_id": key.key_id,
            "api_secret": key.secret,
            "webhook_secret": webhook_secret,
        }
        if as_json:
            emit_json(out)
        else:
            for label, value in out.items():
                console.print(f"{label}: {value}")

    guarded(as_json, run)


@merchants.command("suspend")
def suspend(merchant_id: str, as_json: bool = JsonOption) -> None:
    """Suspend a merchant: its requests are refused with MERCHANT_NOT_ACTIVE."""

    def run() -> None:
        with open_app() as ch:
            run_in_transaction(ch.engine, lambda c: set_status(c, merchant_id, "suspended"))
        if as_json:
            emit_json({"merchant_id": merchant_id, "status": "suspended"})
        else:
            console.print(f"{merchant_id} suspended")

    guarded(as_json, run)


@api.command("openapi")
def openapi() -> None:
    """Print the OpenAPI document (committed as docs/openapi.json)."""
    typer.echo(render(), nl=False)
