"""``clearhouse ledger``: post by transaction code, read balances, close and check the books."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import typer

from clearhouse.cli.common import (
    EXIT_REJECTED,
    JsonOption,
    console,
    emit_json,
    guarded,
    open_app,
    show_money,
    table,
)
from clearhouse.errors import ClearhouseError, InvalidAmount
from clearhouse.ledger import eod
from clearhouse.ledger.requests import CommitHold, Outcome, Post, Request, Reverse, VoidHold
from clearhouse.money import Money

app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)


class BadArgument(ClearhouseError):
    code = "BAD_ARGUMENT"


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise BadArgument(f"{what} {item!r} is not NAME=VALUE")
        if name in out:
            raise BadArgument(f"{what} {name!r} given twice")
        out[name] = value
    return out


def _amounts(values: list[str], currency: str) -> dict[str, int]:
    """Amounts are typed in major units ("12.34") and parsed exactly for the currency."""
    parsed: dict[str, int] = {}
    for name, text in _pairs(values, "amount").items():
        try:
            parsed[name] = Money.parse(text, currency).amount
        except InvalidAmount as exc:
            raise InvalidAmount(f"amount {name}: {exc.message}") from exc
    return parsed


def _submit_one(req: Request, as_json: bool) -> None:
    with open_app() as ch:
        outcome = ch.ledger.submit([req])[0]
    _report(outcome, as_json)


def _report(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        emit_json(outcome.to_dict())
    elif outcome.ok:
        again = " (replayed: this key was already processed)" if outcome.replayed else ""
        console.print(f"[green]ok[/] entry {outcome.entry_id}{again}")
    else:
        assert outcome.rejection is not None
        console.print(
            f"[bold red]rejected[/] {outcome.rejection.reason}: {outcome.rejection.detail}"
        )
    if not outcome.ok:
        raise typer.Exit(EXIT_REJECTED)


@app.command()
def post(
    key: str = typer.Option(
        ..., help="Idempotency key: a retry with the same key never posts twice."
    ),
    code: str = typer.Option(..., help="Transaction code of a posting rule, e.g. 1002."),
    currency: str = typer.Option(..., help="ISO 4217 currency code."),
    amount: list[str] = typer.Option(..., help="NAME=MAJOR_UNITS, e.g. amount=12.34; repeatable."),
    party: list[str] = typer.Option([], help="NAME=ACCOUNT_ID binding a party of the rule."),
    memo: str | None = typer.Option(None),
    hold: bool = typer.Option(False, "--hold", help="Create a pending hold instead of posting."),
    expires_in: int | None = typer.Option(None, help="Seconds until the hold expires."),
    as_json: bool = JsonOption,
) -> None:
    """Post an entry through a posting rule (or hold it, with --hold)."""

    def run() -> None:
        expires_at = None
        if expires_in is not None:
            if not hold:
                raise BadArgument("--expires-in only applies with --hold")
            expires_at = datetime.now().astimezone() + timedelta(seconds=expires_in)
        req = Post(
            key=key,
            code=code,
            currency=currency,
            amounts=_amounts(amount, currency),
            parties=_pairs(party, "party"),
            memo=memo,
            hold=hold,
            expires_at=expires_at,
        )
        _submit_one(req, as_json)

    guarded(as_json, run)


@app.command("commit-hold")
def commit_hold(
    key: str = typer.Option(...),
    hold_id: int = typer.Option(..., "--hold"),
    currency: str | None = typer.Option(None, help="Needed with --amount for a partial capture."),
    amount: list[str] = typer.Option([], help="NAME=MAJOR_UNITS for a partial capture."),
    as_json: bool = JsonOption,
) -> None:
    """Capture a hold, whole or in part."""

    def run() -> None:
        amounts = None
        if amount:
            if currency is None:
                raise BadArgument("--currency is needed to read --amount")
            amounts = _amounts(amount, currency)
        _submit_one(CommitHold(key, hold_id, amounts), as_json)

    guarded(as_json, run)


@app.command("void-hold")
def void_hold(
    key: str = typer.Option(...),
    hold_id: int = typer.Option(..., "--hold"),
    as_json: bool = JsonOption,
) -> None:
    """Release a hold without posting it."""
    guarded(as_json, lambda: _submit_one(VoidHold(key, hold_id), as_json))


@app.command()
def reverse(
    key: str = typer.Option(...),
    entry_id: int = typer.Option(..., "--entry"),
    memo: str | None = typer.Option(None),
    as_json: bool = JsonOption,
) -> None:
    """Reverse a posted entry with a new, linked entry (entries are never edited)."""
    guarded(as_json, lambda: _submit_one(Reverse(key, entry_id, memo), as_json))


@app.command()
def balance(
    fund_account_id: int | None = typer.Argument(
        None, help="A fund account id; all accounts if omitted."
    ),
    at: datetime | None = typer.Option(None, help="Point in time (ISO 8601, with offset)."),
    as_json: bool = JsonOption,
) -> None:
    """Posted, pending and available balances."""

    def run() -> None:
        from clearhouse.db.transaction import run_in_transaction
        from clearhouse.ledger import queries

        if at is not None and at.tzinfo is None:
            raise BadArgument("--at needs a UTC offset, e.g. 2026-11-02T10:00:00+08:00")
        with open_app() as ch:
            if fund_account_id is None:
                if at is not None:
                    raise BadArgument("--at needs a fund account id")
                found = run_in_transaction(ch.engine, queries.all_balances, readonly=True)
            elif at is None:
                found = [ch.ledger.balance(fund_account_id)]
            else:
                found = [ch.ledger.balance_at(fund_account_id, at)]
        if as_json:
            emit_json({"balances": [b.to_dict() for b in found]})
            return
        rows = [
            [
                b.fund_account_id,
                b.account_id,
                b.role + (f".{b.sub}" if b.sub else ""),
                show_money(b.posted, b.currency),
                show_money(b.pending_out, b.currency),
                show_money(b.available, b.currency),
                b.version,
            ]
            for b in found
        ]
        console.print(
            table(
                "Balances",
                ["id", "account", "role", "posted", "pending", "available", "version"],
                rows,
            )
        )

    guarded(as_json, run)


@app.command()
def history(
    fund_account_id: int, limit: int = typer.Option(50), as_json: bool = JsonOption
) -> None:
    """The latest changes of a fund account, with the running balance of its shard."""

    def run() -> None:
        with open_app() as ch:
            rows = ch.ledger.history(fund_account_id, limit)
        if as_json:
            emit_json({"fund_account_id": fund_account_id, "history": rows})
            return
        cols = [
            "at",
            "entry_id",
            "code",
            "kind",
            "shard",
            "version",
            "shard_posted",
            "shard_available",
        ]
        console.print(
            table(
                f"History of fund account {fund_account_id}",
                cols,
                [[r[c] for c in cols] for r in rows],
            )
        )

    guarded(as_json, run)


@app.command()
def entry(entry_id: int, as_json: bool = JsonOption) -> None:
    """One journal entry with its postings."""

    def run() -> None:
        with open_app() as ch:
            found = ch.ledger.entry(entry_id)
        if as_json:
            emit_json(found)
            return
        console.print(
            f"entry {found['id']} code {found['code']} {found['kind']} at {found['posted_at']}"
        )
        legs = found["postings"]
        assert isinstance(legs, list)
        cols = ["seq", "fund_account_id", "shard", "side", "amount", "currency"]
        console.print(table("Postings", cols, [[p[c] for c in cols] for p in legs]))

    guarded(as_json, run)


@app.command("trial-balance")
def trial_balance(as_json: bool = JsonOption) -> None:
    """Posted balances per chart account; debits must equal credits in every currency."""

    def run() -> None:
        with open_app() as ch:
            lines = ch.ledger.trial_balance()
            names = {code: acc.name for code, acc in ch.chart.accounts.items()}
        totals = eod.trial_balance_totals(lines)
        balanced = all(d == c for d, c in totals.values())
        if as_json:
            emit_json(
                {
                    "lines": [
                        {
                            "chart_code": ln.chart_code,
                            "currency": ln.currency,
                            "debit": ln.debit,
                            "credit": ln.credit,
                        }
                        for ln in lines
                    ],
                    "totals": {cur: {"debit": d, "credit": c} for cur, (d, c) in totals.items()},
                    "balanced": balanced,
                }
            )
        else:
            print_trial_balance(lines, names)
        if not balanced:
            raise typer.Exit(EXIT_REJECTED)

    guarded(as_json, run)


def print_trial_balance(lines: list[eod.TrialBalanceLine], names: dict[str, str]) -> None:
    rows = [
        [
            ln.chart_code,
            names.get(ln.chart_code, ""),
            show_money(ln.debit, ln.currency),
            show_money(ln.credit, ln.currency),
        ]
        for ln in lines
        if ln.debit or ln.credit
    ]
    for cur, (d, c) in sorted(eod.trial_balance_totals(lines).items()):
        rows.append(["", f"total {cur}", show_money(d, cur), show_money(c, cur)])
    console.print(table("Trial balance", ["code", "account", "debit", "credit"], rows))


@app.command()
def check(as_json: bool = JsonOption) -> None:
    """Recompute the books from the journal; exit 1 if anything disagrees."""

    def run() -> None:
        with open_app() as ch:
            breaks = ch.ledger.check()
        if as_json:
            emit_json({"ok": not breaks, "breaks": [b.to_dict() for b in breaks]})
        elif not breaks:
            console.print(
                "[green]books agree[/]: entries balance, "
                "balances = journal = history = general ledger"
            )
        else:
            cols = ["check", "subject", "expected", "actual"]
            console.print(table("Breaks", cols, [[getattr(b, c) for c in cols] for b in breaks]))
        if breaks:
            raise typer.Exit(EXIT_REJECTED)

    guarded(as_json, run)


@app.command("close-day")
def close_day(
    day: str = typer.Argument(..., help="Business date YYYY-MM-DD."), as_json: bool = JsonOption
) -> None:
    """Roll up a business day into the general ledger (once the day is over)."""

    def run() -> None:
        try:
            business_date = date.fromisoformat(day)
        except ValueError:
            raise BadArgument(f"{day!r} is not a date (YYYY-MM-DD)") from None
        with open_app() as ch:
            closed = ch.ledger.close_day(business_date)
        if as_json:
            emit_json({"business_date": day, "closed_now": closed})
        else:
            console.print(f"{day} " + ("closed" if closed else "was already closed"))

    guarded(as_json, run)


@app.command("expire-holds")
def expire_holds(as_json: bool = JsonOption) -> None:
    """Release holds whose expiry has passed."""

    def run() -> None:
        with open_app() as ch:
            outcomes = ch.ledger.expire_holds()
        if as_json:
            emit_json({"expired": [o.to_dict() for o in outcomes]})
        else:
            console.print(f"{sum(o.ok for o in outcomes)} holds released")

    guarded(as_json, run)
