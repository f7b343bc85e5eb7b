"""PayPal's daily Settlement Report (STL): every transaction that moved the account's balance on
one day of the reporting window's zone, in PayPal's record layout. Pure.

One CSV record per line, its first field the record type:

- ``RH`` report header: generation time, reporting window, account id, report version;
- ``FH`` file header: the file's sequence number (one file here: ``01``);
- ``SH`` section header: the day's start and end, the account id, the partner account (blank);
- ``CH`` column header: the names of the ``SB`` fields;
- ``SB`` section body: one transaction; amounts unsigned in minor units with a ``CR``/``DR``
  column for their direction (PayPal's convention: 100.00 USD and 10000 JPY are both ``10000``);
- ``SF`` section footer, one per currency: the gross and fee totals, credits and debits apart;
- ``SC`` section record count: the ``SB`` records of the section;
- ``RF`` report footer, one per currency: the report's totals (one section, so the same);
- ``RC`` report record count, ``FF`` file footer: the ``SB`` records in the report, the file.

Text fields are quoted, numbers are not, as PayPal writes them. Times are
``yyyy/mm/dd hh:mm:ss +hhmm`` in the window's zone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from clearhouse.money import Money

REPORT_VERSION = "009"
CREDIT, DEBIT = "CR", "DR"
# Transaction event codes (T-codes) the sandbox produces.
CHECKOUT_PAYMENT = "T0006"  # a PayPal checkout (Express Checkout / Orders API) payment
MERCHANT_REFUND = "T1107"  # a refund the merchant initiated
COLUMNS = (
    "Transaction ID",
    "Invoice ID",
    "PayPal Reference ID",
    "PayPal Reference ID Type",
    "Transaction Event Code",
    "Transaction Initiation Date",
    "Transaction Completion Date",
    "Transaction  Debit or Credit",  # two spaces: PayPal's header spells it so
    "Gross Transaction Amount",
    "Gross Transaction Currency",
    "Fee Debit or Credit",
    "Fee Amount",
    "Fee Currency",
    "Custom Field",
    "Consumer ID",
    "Payment Tracking ID",
    "Store ID",
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One balance-affecting transaction, as the account's journal keeps it."""

    transaction_id: str  # the capture id, or the refund id
    invoice_id: str
    reference_id: str  # what the transaction relates to: the order (payment), capture (refund)
    reference_type: str  # ODR (order) or TXN (transaction)
    event_code: str
    initiated_at: datetime
    completed_at: datetime  # decides the report day
    gross: Money
    gross_direction: str  # CR money in, DR money out
    fee: Money
    fee_direction: str  # DR charged, CR returned
    custom: str = ""
    consumer_id: str = ""  # the payer's email address


def file_name(day: date, sequence: int = 1) -> str:
    """``STL-yyyymmdd.sequence.version.CSV`` as PayPal names the file on its SFTP server."""
    return f"STL-{day:%Y%m%d}.{sequence:02d}.{REPORT_VERSION}.CSV"


def _time(instant: datetime, zone: tzinfo) -> str:
    return instant.astimezone(zone).strftime("%Y/%m/%d %H:%M:%S %z")


def day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The first and the last second of ``day`` in ``zone`` (DST days are 23 or 25 hours)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone) - timedelta(seconds=1)
    return start, end


def report_day(entry: Entry, zone: tzinfo) -> date:
    return entry.completed_at.astimezone(zone).date()


def settlement_report(
    entries: Iterable[Entry],
    day: date,
    zone: tzinfo,
    account_id: str,
    generated_at: datetime,
    window: str = "X",
) -> bytes:
    """The STL file of ``day``: the entries completed on that day in ``zone``, oldest first."""
    rows = sorted((e for e in entries if report_day(e, zone) == day), key=lambda e: e.completed_at)
    start, end = day_bounds(day, zone)
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    writer.writerow(["RH", _time(generated_at, zone), window, account_id, REPORT_VERSION])
    writer.writerow(["FH", "01"])
    writer.writerow(["SH", _time(start, zone), _time(end, zone), account_id, ""])
    writer.writerow(["CH", *COLUMNS])
    for entry in rows:
        writer.writerow(["SB", *_body(entry, zone)])
    totals = _totals(rows)
    for currency, sums in totals:
        writer.writerow(["SF", currency, *sums])
    writer.writerow(["SC", len(rows)])
    for currency, sums in totals:
        writer.writerow(["RF", currency, *sums])
    writer.writerow(["RC", len(rows)])
    writer.writerow(["FF", len(rows)])
    return out.getvalue().encode("utf-8")


def _body(entry: Entry, zone: tzinfo) -> list[str | int]:
    return [
        entry.transaction_id,
        entry.invoice_id,
        entry.reference_id,
        entry.reference_type,
        entry.event_code,
        _time(entry.initiated_at, zone),
        _time(entry.completed_at, zone),
        entry.gross_direction,
        entry.gross.amount,
        entry.gross.currency,
        entry.fee_direction,
        entry.fee.amount,
        entry.fee.currency,
        entry.custom,
        entry.consumer_id,
        "",
        "",
    ]


def _totals(rows: Sequence[Entry]) -> list[tuple[str, list[str | int]]]:
    """Per currency, in code order: CR gross, DR gross, CR fee, DR fee, each with its marker."""
    sums: dict[str, list[int]] = {}
    for entry in rows:
        gross_cr, gross_dr, fee_cr, fee_dr = sums.setdefault(entry.gross.currency, [0, 0, 0, 0])
        if entry.gross_direction == CREDIT:
            gross_cr += entry.gross.amount
        else:
            gross_dr += entry.gross.amount
        if entry.fee_direction == CREDIT:
            fee_cr += entry.fee.amount
        else:
            fee_dr += entry.fee.amount
        sums[entry.gross.currency] = [gross_cr, gross_dr, fee_cr, fee_dr]
    return [
        (code, [CREDIT, s[0], DEBIT, s[1], CREDIT, s[2], DEBIT, s[3]])
        for code, s in sorted(sums.items())
    ]
