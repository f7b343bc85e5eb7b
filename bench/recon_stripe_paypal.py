"""Parse speed of the Stripe and PayPal statement parsers. Prints one JSON line of figures.

    python bench/recon_stripe_paypal.py [--rows 200000] [--repeat 5]

The files come from the sandboxes' own writers: a Stripe payout reconciliation report (every
tenth row a refund, metadata columns included) and a PayPal settlement report of the same mix.
Generating them takes longer than parsing them; only ``parse`` is timed, best of ``--repeat``.

stripe_rows_per_s / paypal_rows_per_s   rows / best parse time
*_mb                                    size of the generated file
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from clearhouse.money import Money
from clearhouse.reconciliation.statements import paypal, stripe
from clearhouse.sandbox.paypal.settlement import (
    CHECKOUT_PAYMENT,
    MERCHANT_REFUND,
    Entry,
    settlement_report,
)
from clearhouse.sandbox.stripe.reports import ReportRow, payout_reconciliation

DAY = date(2024, 3, 1)
START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def stripe_file(rows: int) -> bytes:
    made = []
    for i in range(rows):
        at = START + timedelta(seconds=i % 50_000)
        refund = i % 10 == 9
        made.append(
            ReportRow(
                automatic_payout_id="po_1OaBcDEfGhIjKlMn",
                automatic_payout_effective_at=START + timedelta(days=2),
                balance_transaction_id=f"txn_{i:020d}",
                created=at,
                available_on=at + timedelta(days=2),
                currency="usd",
                gross=-500 if refund else 1234 + i,
                fee=0 if refund else 66,
                net=-500 if refund else 1168 + i,
                reporting_category="refund" if refund else "charge",
                source_id=f"re_{i:020d}" if refund else f"ch_{i:020d}",
                description="" if refund else f"Order {i}",
                customer_facing_amount=-500 if refund else 1234 + i,
                customer_facing_currency="usd",
                payment_intent_id=f"pi_{i:020d}",
                charge_id=f"ch_{i:020d}",
                payment_metadata={"attempt_id": f"att_{i:020d}"},
                refund_metadata={"refund_no": f"rf_{i:020d}", "attempt_id": f"att_{i:020d}"}
                if refund
                else {},
            )
        )
    return payout_reconciliation(made, "America/New_York")


def paypal_file(rows: int) -> bytes:
    entries = []
    for i in range(rows):
        at = START + timedelta(seconds=i % 50_000)
        refund = i % 10 == 9
        entries.append(
            Entry(
                transaction_id=f"REF{i:014d}" if refund else f"CAP{i:014d}",
                invoice_id=f"rf_{i}" if refund else f"att_{i}",
                reference_id=f"CAP{i:014d}" if refund else f"ORD{i:014d}",
                reference_type="TXN" if refund else "ODR",
                event_code=MERCHANT_REFUND if refund else CHECKOUT_PAYMENT,
                initiated_at=at,
                completed_at=at,
                gross=Money(500 if refund else 1234 + i, "USD"),
                gross_direction="DR" if refund else "CR",
                fee=Money(15 if refund else 66, "USD"),
                fee_direction="CR" if refund else "DR",
                custom=f"att_{i}",
                consumer_id="" if refund else "payer@payer.example",
            )
        )
    zone = ZoneInfo("America/Los_Angeles")
    return settlement_report(entries, DAY, zone, "MERCHANT7QX3", START)


def best(parse: Callable[[], int], repeat: int) -> tuple[float, int]:
    fastest, rows = float("inf"), 0
    for _ in range(repeat):
        began = time.perf_counter()
        rows = parse()
        fastest = min(fastest, time.perf_counter() - began)
    return fastest, rows


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--rows", type=int, default=200_000)
    args.add_argument("--repeat", type=int, default=5)
    opts = args.parse_args()
    s_data, p_data = stripe_file(opts.rows), paypal_file(opts.rows)
    s_time, s_rows = best(
        lambda: (
            stripe.parse(s_data, "payouts.csv", account="acct_1", business_date=DAY).lines.num_rows
        ),
        opts.repeat,
    )
    p_time, p_rows = best(
        lambda: paypal.parse(p_data, "STL-20240301.01.009.CSV").lines.num_rows, opts.repeat
    )
    print(
        json.dumps(
            {
                "rows": opts.rows,
                "stripe_mb": round(len(s_data) / 1e6, 1),
                "stripe_rows_per_s": round(s_rows / s_time),
                "paypal_mb": round(len(p_data) / 1e6, 1),
                "paypal_rows_per_s": round(p_rows / p_time),
            }
        )
    )


if __name__ == "__main__":
    main()
