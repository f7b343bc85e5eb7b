"""``clearhouse accounts``: open customers, login accounts and fund accounts."""

from __future__ import annotations

import typer
from sqlalchemy.engine import Connection

from clearhouse.accounts import handlers
from clearhouse.accounts.model import CustomerKind, KycLevel, Role
from clearhouse.cli.common import JsonOption, console, emit_json, guarded, open_app
from clearhouse.db.transaction import run_in_transaction
from clearhouse.errors import ClearhouseError

app = typer.Typer(help="Customers, accounts and fund accounts.", no_args_is_help=True)


class BadArgument(ClearhouseError):
    code = "BAD_ARGUMENT"


@app.command("open")
def open_(
    name: str = typer.Option(...),
    login: str = typer.Option(..., help="Login name of the account; unique."),
    kind: str = typer.Option("person", help="person | company"),
    kyc: int = typer.Option(0, help="Real-name class: 0 (none) to 3."),
    id_number: str | None = typer.Option(
        None, help="Real-name ID number (stored as a keyed digest)."
    ),
    role: list[str] = typer.Option([], help="Fund account role to open; repeatable."),
    currency: str = typer.Option("CNY"),
    as_json: bool = JsonOption,
) -> None:
    """Open a customer with one account and the fund accounts asked for."""

    def run() -> None:
        try:
            customer_kind = CustomerKind(kind)
            level = KycLevel(kyc)
            roles = [Role(r) for r in role]
        except ValueError as exc:
            raise BadArgument(str(exc)) from None
        if customer_kind is CustomerKind.PLATFORM:
            raise BadArgument("the platform customer is created by `clearhouse db upgrade`")
        with open_app() as ch:
            now = ch.clock.now()

            def work(conn: Connection) -> handlers.Holder:
                return handlers.open_holder(
                    conn,
                    ch.chart,
                    name=name,
                    login=login,
                    kind=customer_kind,
                    kyc_level=level,
                    roles=roles,
                    currency=currency,
                    id_number=id_number,
                    pii_key=ch.settings.pii_key,
                    now=now,
                )

            holder = run_in_transaction(ch.engine, work)
        cid, aid = holder.customer_id, holder.account_id
        funds = {role.value: fid for role, fid in holder.fund_accounts.items()}
        if as_json:
            emit_json({"customer_id": cid, "account_id": aid, "fund_accounts": funds})
        else:
            console.print(f"customer {cid}, account {aid}, fund accounts {funds}")

    guarded(as_json, run)
