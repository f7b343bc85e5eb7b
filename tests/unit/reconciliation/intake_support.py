"""One small, valid file of every statement format intake knows, with what its parser needs."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from clearhouse.money import Money
from clearhouse.reconciliation import formats
from clearhouse.reconciliation.statements import samples
from clearhouse.sandbox.paypal.settlement import CHECKOUT_PAYMENT, Entry, settlement_report
from clearhouse.sandbox.stripe.reports import ReportRow, payout_reconciliation

DATA = Path(__file__).parent / "data"
DAY = date(2024, 3, 1)
MCHID = "1900000001"  # the samples' WeChat merchant
STRIPE_ACCOUNT = "acct_1Nv0FGQ9RKHgCVdK"


@dataclass(frozen=True)
class Sample:
    fmt: str
    data: bytes
    file: str
    lines: int
    args: dict[str, object] = field(default_factory=dict)


def stripe_report(rows: int = 3, day: date = DAY) -> bytes:
    at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=10)
    return payout_reconciliation(
        [
            ReportRow(
                automatic_payout_id="po_1",
                automatic_payout_effective_at=at + timedelta(days=2),
                balance_transaction_id=f"txn_{n}",
                created=at + timedelta(minutes=n),
                available_on=at + timedelta(days=2),
                currency="usd",
                gross=1_000 + n,
                fee=59,
                net=941 + n,
                reporting_category="charge",
                source_id=f"ch_{n}",
                payment_intent_id=f"pi_{n}",
                charge_id=f"ch_{n}",
                payment_metadata={"attempt_id": f"att_{n}"},
            )
            for n in range(rows)
        ]
    )


def paypal_report(rows: int = 2, day: date = DAY) -> bytes:
    zone = ZoneInfo("America/Los_Angeles")
    start = datetime.combine(day, datetime.min.time(), zone) + timedelta(hours=9)
    entries = [
        Entry(
            transaction_id=f"CAPTURE{n:010d}",
            invoice_id=f"att_{n}",
            reference_id=f"ORDER{n:012d}",
            reference_type="ODR",
            event_code=CHECKOUT_PAYMENT,
            initiated_at=start + timedelta(minutes=n),
            completed_at=start + timedelta(minutes=n + 1),
            gross=Money(2_000, "USD"),
            gross_direction="CR",
            fee=Money(107, "USD"),
            fee_direction="DR",
            custom=f"att_{n}",
        )
        for n in range(rows)
    ]
    return settlement_report(entries, day, zone, "MERCHANT01", start + timedelta(days=1))


def every_format() -> list[Sample]:
    trade = samples.wechat_trade_bill(20, day=DAY)
    return [
        Sample(formats.WECHATPAY_TRADE, trade, "trade.csv", 20, {"business_date": DAY}),
        Sample(
            formats.WECHATPAY_TRADE,
            gzip.compress(trade),
            "trade.csv.gz",
            20,
            {"business_date": DAY},
        ),
        Sample(
            formats.WECHATPAY_FUNDFLOW,
            samples.wechat_fundflow_bill(5, day=DAY),
            "fundflow.csv",
            10,
            {"business_date": DAY, "account": MCHID},
        ),
        Sample(formats.ALIPAY, samples.alipay_bill_zip(7, day=DAY), "bill.csv.zip", 7),
        Sample(
            formats.STRIPE,
            stripe_report(),
            "payouts.csv",
            3,
            {"business_date": DAY, "account": STRIPE_ACCOUNT},
        ),
        Sample(formats.PAYPAL_STL, paypal_report(), "STL-20240301.01.009.CSV", 2),
        Sample(formats.CAMT053, (DATA / "camt053_v08.xml").read_bytes(), "camt053.xml", 6),
        Sample(formats.MT940, (DATA / "mt940_structured.sta").read_bytes(), "mt940.sta", 4),
    ]
