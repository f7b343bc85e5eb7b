"""``clearhouse recon``: pull and import channel statements, run the day's reconciliation, see
what is open, resolve it. Every command takes ``--json`` for scripts."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import typer

from clearhouse.bootstrap import gateway_for
from clearhouse.cli.common import JsonOption, console, emit_json, guarded, open_app, table
from clearhouse.cli.sandbox import channels_document
from clearhouse.clock import SystemClock
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.transaction_refunds import TransactionRefunds
from clearhouse.reconciliation import actions, intake, suggest
from clearhouse.reconciliation.actions import DifferenceView
from clearhouse.reconciliation.daily import Recon, run_day
from clearhouse.reconciliation.errors import ReconCode, ReconError
from clearhouse.reconciliation.pull import Puller

app = typer.Typer(
    help="Reconciliation: channel and bank statements against our records and the ledger.",
    no_args_is_help=True,
)
ByOption = typer.Option(None, "--by", help="Who acts (recorded). Default: the login name.")
DateOption = typer.Option(None, "--date", help="Business date, YYYY-MM-DD.")
ChannelsOption = typer.Option(
    None,
    "--channels",
    help="Channels document (base URL + credentials per channel). Default: "
    "CLEARHOUSE_CHANNELS_FILE, else the sandboxes of `clearhouse sandbox` on their default ports.",
)


@contextmanager
def _recon(channels: Path | None = None) -> Iterator[Recon]:
    """The reconciliation over the configured database and store, with the gateway's payment
    records (a long on an unpaid order is marked paid through them) and its channels (a
    duplicate payment is refunded through them)."""
    with open_app() as ch:
        ports = ports_from_document(channels_document(ch.settings, channels), SystemClock())
        gateway = gateway_for(ch, ports, ch.settings.public_url or "http://127.0.0.1:8000")
        refunds = TransactionRefunds(gateway.payments.channels)
        try:
            yield Recon.of(ch, payments=gateway.payments, refunds=refunds)
        finally:
            gateway.close()


def _actor(by: str | None) -> str:
    return by if by is not None else getpass.getuser()


def _day(value: str | None, what: str = "--date") -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ReconError(
            ReconCode.INVALID_DATE, f"{what} must be YYYY-MM-DD, not {value!r}", option=what
        ) from None


@app.command("pull")
def pull(
    channel: list[str] = typer.Option(
        [], "--channel", help="Only these channels (repeatable). Default: every one configured."
    ),
    day: str | None = typer.Option(
        None, "--date", help="Business date. Default: every day due in the last three."
    ),
    channels: Path | None = ChannelsOption,
    as_json: bool = JsonOption,
) -> None:
    """Fetch the channels' bills and the bank statement through their APIs (retries with
    backoff; a bill missing after its expected time is an alert). Already held: no change."""

    def go() -> None:
        with _recon(channels) as recon:
            document = channels_document(recon.app.settings, channels)
            puller = Puller.from_document(recon.store, document, recon.app.clock)
            try:
                wanted = _day(day)
                names = channel or puller.channels()
                if wanted is None:
                    results = [r for r in puller.pull_due() if r.channel in names]
                else:
                    results = [puller.pull(name, wanted) for name in names]
            finally:
                puller.close()
        payload = [r.to_dict() for r in results]
        if as_json:
            emit_json({"pulls": payload})
        else:
            rows = [
                [r.channel, r.business_date, r.status.value, len(r.imported), "yes" * r.alert]
                for r in results
            ]
            console.print(table("Pulls", ["channel", "date", "status", "files", "alert"], rows))
        if any(r.alert for r in results):
            raise typer.Exit(1)

    guarded(as_json, go)


@app.command("import")
def import_(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The statement file."),
    channel: str | None = typer.Option(None, "--channel", help="Whose file (checked)."),
    fmt: str | None = typer.Option(None, "--format", help="Its format. Default: detected."),
    day: str | None = DateOption,
    account: str | None = typer.Option(None, "--account", help="For files that do not say."),
    by: str | None = ByOption,
    as_json: bool = JsonOption,
) -> None:
    """Import a statement file by hand. It is parsed whole (and its own totals checked) before
    anything is stored; the same file again changes nothing."""

    def go() -> None:
        with _recon() as recon:
            imported = intake.import_file(
                recon.store,
                file,
                by=_actor(by),
                channel=channel,
                fmt=fmt,
                business_date=_day(day),
                account=account,
            )
        rows = [
            {
                "sha256": i.sha256,
                "source": i.source,
                "format": i.format,
                "account": i.account,
                "business_date": i.business_date.isoformat(),
                "lines": i.lines,
                "already": i.already,
            }
            for i in imported
        ]
        if as_json:
            emit_json({"imported": rows})
        else:
            for r in rows:
                state = "already held, nothing changed" if r["already"] else "stored"
                console.print(
                    f"{r['source']} {r['format']} {r['business_date']}: {r['lines']} lines, {state}"
                )

    guarded(as_json, go)


@app.command("run")
def run(
    channel: list[str] = typer.Option(
        [], "--channel", help="Channels (repeatable). Default: every one with a statement."
    ),
    day: str = typer.Option(..., "--date", help="Business date, YYYY-MM-DD."),
    by: str | None = ByOption,
    channels: Path | None = ChannelsOption,
    as_json: bool = JsonOption,
) -> None:
    """Reconcile a business date: one batch per channel (the same inputs give the same batch),
    differences classified and handled, then our records against the ledger."""

    def go() -> None:
        wanted = _day(day)
        assert wanted is not None
        with _recon(channels) as recon:
            result = run_day(recon, wanted, by=_actor(by), channels=channel or None)
        if as_json:
            emit_json(result.to_dict())
            return
        for b in result.batches:
            found = ", ".join(f"{t} {n}" for t, n in sorted(b.counts["differences"].items()) if n)
            console.print(f"{b.channel} {b.business_date}: {found or 'no differences'} ({b.id})")
        _differences(result.differences, f"Differences of {wanted}")
        books = result.books
        if books is not None:
            console.print(
                "our records against the ledger: "
                + ("agree" if books.ok else f"{len(books.breaks)} breaks")
            )

    guarded(as_json, go)


@app.command("status")
def status(
    channel: str | None = typer.Option(None, "--channel"),
    day: str | None = typer.Option(None, "--date", help="Only the batches of this date."),
    as_of: str | None = typer.Option(None, "--as-of", help="Ages at this date. Default: today."),
    with_suggestions: bool = typer.Option(
        False, "--suggest", help="Likely causes and matches for each open difference."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Current batches and every difference still open or carried, oldest first, with ages."""

    def go() -> None:
        with _recon() as recon:
            engine = recon.app.engine
            report = actions.status(engine, channel, _day(day), as_of=_day(as_of, "--as-of"))
            ideas: list[dict[str, Any]] = []
            if with_suggestions:
                with engine.connect() as conn:
                    found = suggest.suggest_open(conn, now=recon.app.clock.now(), channel=channel)
                ideas = [s.to_dict() for s in found]
        payload = report.to_dict() | ({"suggestions": ideas} if with_suggestions else {})
        if as_json:
            emit_json(payload)
            return
        rows = [
            [b.channel, b.business_date, b.status, json.dumps(b.counts["differences"])]
            for b in report.batches
        ]
        console.print(table("Batches", ["channel", "date", "status", "differences"], rows))
        _differences(report.open, f"Open and carried at {report.as_of}")
        for idea in ideas:
            console.print(json.dumps(idea, ensure_ascii=False, default=str))

    guarded(as_json, go)


@app.command("resolve")
def resolve(
    difference: str = typer.Argument(..., help="The difference's id."),
    action: str = typer.Option(
        ..., "--action", help="confirm | write_off | adjust | rerun (re-run its batch)."
    ),
    reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
    by: str | None = ByOption,
    amount: int | None = typer.Option(None, "--amount", help="adjust: minor units, signed."),
    evidence: str | None = typer.Option(None, "--evidence", help="JSON object (recorded)."),
    as_json: bool = JsonOption,
) -> None:
    """Act on a difference; who, why and the evidence are recorded with the action."""

    def go() -> None:
        given = _evidence(evidence)
        with _recon() as recon:
            if action == "rerun":
                result = actions.rerun(
                    recon.reconciler,
                    actor=_actor(by),
                    reason=reason,
                    difference_id=difference,
                    evidence=given,
                )
            else:
                result = recon.review.act(
                    difference,
                    action.replace("-", "_"),
                    actor=_actor(by),
                    reason=reason,
                    evidence=given,
                    amount=amount,
                )
        if as_json:
            emit_json(result.to_dict())
        else:
            console.print(f"{result.action} on {difference}: now {result.status or 'unchanged'}")

    guarded(as_json, go)


def _evidence(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReconError(ReconCode.INVALID_EVIDENCE, f"--evidence is not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ReconError(ReconCode.INVALID_EVIDENCE, "--evidence must be a JSON object")
    return value


def _differences(found: list[DifferenceView], title: str) -> None:
    rows = [
        [
            d.id,
            d.channel,
            d.type,
            d.status,
            d.channel_txn_id or "",
            d.attempt_id or d.refund_id or "",
            "" if d.line_amount is None else d.line_amount,
            "" if d.our_amount is None else d.our_amount,
            f"{d.amount} {d.currency}",
            d.age_days,
        ]
        for d in found
    ]
    heads = ["id", "channel", "type", "status", "channel txn", "ours", "line", "our", "diff", "age"]
    console.print(table(title, heads, rows))
