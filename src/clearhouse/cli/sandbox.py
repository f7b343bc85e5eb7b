"""``clearhouse sandbox``: the channels' test mode, served over HTTP."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

from clearhouse.cli.common import JsonOption, console, emit_json, guarded
from clearhouse.clock import SystemClock
from clearhouse.config import Settings, load_settings
from clearhouse.gateway.channels.config import load_document
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.runner import CHANNELS, SandboxCredentials, Sandboxes
from clearhouse.sandbox.serving import ServedApp

app = typer.Typer(
    help="Channel sandboxes: WeChat Pay on --port, then Alipay, Stripe, PayPal and the two quick "
    "pay acquirers (quickpay, quickpay_b) on the next ports, and the payout bank (withdrawals) "
    "on the port after them (--port + 6).",
    invoke_without_command=True,
)

FAULT_NAMES = ", ".join(f.value for f in Fault)
PortOption = typer.Option(
    8300, "--port", help="WeChat Pay's port; the other sandboxes serve on the next six."
)
HostOption = typer.Option("127.0.0.1", "--host")


def _credentials() -> SandboxCredentials:
    return SandboxCredentials.load_or_create(Path(load_settings().sandbox_dir))


def base_urls(host: str, port: int) -> dict[str, str]:
    urls = {name: f"http://{host}:{port + i}" for i, name in enumerate(CHANNELS)}
    # The payout bank is not a channel: it serves after them.
    return urls | {"bank": f"http://{host}:{port + len(CHANNELS)}"}


def channels_document(settings: Settings, path: Path | None) -> dict[str, Any]:
    """The channels document a command works with: ``path``, else CLEARHOUSE_CHANNELS_FILE,
    else the sandboxes of `clearhouse sandbox` on their default ports."""
    path = path or (Path(settings.channels_file) if settings.channels_file else None)
    if path is None:
        creds = SandboxCredentials.load_or_create(Path(settings.sandbox_dir))
        return creds.merchant_document(base_urls("127.0.0.1", 8300))
    return load_document(path)


@app.callback()
def serve(
    ctx: typer.Context,
    port: int = PortOption,
    host: str = HostOption,
    auto_pay: bool = typer.Option(False, help="Pay every order as soon as it is created."),
    seed: int = typer.Option(0, help="Seed of the fault plan."),
    notify_url: str = typer.Option(
        "http://127.0.0.1:8000",
        help="Clearhouse's URL: Stripe and PayPal webhooks go to <url>/notify/<channel>.",
    ),
    fault: list[str] = typer.Option(
        [],
        help=f"FAULT=PPM, e.g. timeout=20000 (2%); repeatable. Faults: {FAULT_NAMES}",
    ),
) -> None:
    """Serve every sandbox until interrupted (notifications delivered on their channels'
    retry schedules)."""
    if ctx.invoked_subcommand is not None:
        return
    rates: dict[Fault, int] = {}
    for item in fault:
        name, _, ppm = item.partition("=")
        if name not in {f.value for f in Fault} or not ppm.isdigit():
            raise typer.BadParameter(
                f"{item!r}: expected FAULT=PPM with FAULT one of {FAULT_NAMES}"
            )
        rates[Fault(name)] = int(ppm)
    sandboxes = Sandboxes(_credentials(), SystemClock(), FaultPlan(seed, rates), auto_pay=auto_pay)
    sandboxes.notify_to(notify_url)
    apps = sandboxes.apps()
    urls = base_urls(host, port)
    with ExitStack() as served:
        for name, url in urls.items():
            served.enter_context(ServedApp(apps[name], host, int(url.rsplit(":", 1)[1])))
        sandboxes.start()
        console.print(", ".join(f"{name} on {url}" for name, url in urls.items()))
        console.print("credentials: clearhouse sandbox credentials --json; Ctrl-C stops")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            sandboxes.stop()


@app.command()
def credentials(port: int = PortOption, host: str = HostOption, as_json: bool = JsonOption) -> None:
    """What a merchant needs per channel: base URL, ids, its private key and certificate
    serial, the APIv3 key, and the channel's public key and its id. Also the channels file
    ``clearhouse serve --channels`` reads."""

    def run() -> None:
        document = _credentials().merchant_document(base_urls(host, port))
        if as_json:
            emit_json(document)
            return
        for name, entry in document.items():
            creds = entry["credentials"]
            ids = {k: v for k, v in creds.items() if "key" not in k or k.endswith("_id")}
            console.print(f"[bold]{name}[/] {entry['base_url']} {ids}")
        console.print("keys: use --json")

    guarded(as_json, run)
