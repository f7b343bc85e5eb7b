"""``clearhouse customers``: an operator's hand on which merchants may act for a customer."""

from __future__ import annotations

from typing import Any

import typer
from sqlalchemy.engine import Connection

from clearhouse.cli.common import JsonOption, console, emit_json, guarded, open_app
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.customers import enrol as enrol_customer
from clearhouse.gateway.customers import enrolments

app = typer.Typer(help="Customers and the merchants they are enrolled with.", no_args_is_help=True)


@app.command("enrol")
def enrol(
    customer_id: str,
    merchant: str = typer.Option(..., help="The merchant that may act for the customer."),
    as_json: bool = JsonOption,
) -> None:
    """Enrol an existing customer with another merchant (and so with its sellers), once the
    customer has agreed: a merchant cannot take over another's customer through the API.
    Enrolling again changes nothing."""

    def run() -> None:
        with open_app() as ch:

            def work(conn: Connection) -> dict[str, Any]:
                added = enrol_customer(conn, merchant, customer_id, ch.clock.now())
                return {
                    "customer_id": customer_id,
                    "merchant_id": merchant,
                    "enrolled": added,
                    "enrolments": enrolments(conn, customer_id),
                }

            result = run_in_transaction(ch.engine, work, retry_integrity=True)
        if as_json:
            emit_json(result)
        else:
            what = "enrolled with" if result["enrolled"] else "was already enrolled with"
            console.print(f"customer {customer_id} {what} {merchant}")
            for one in result["enrolments"]:
                console.print(f"  {one['merchant_id']} since {one['enrolled_at']}")

    guarded(as_json, run)
