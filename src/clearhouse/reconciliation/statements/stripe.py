"""Stripe's itemized balance-transaction reports (R1, R2), mapped by header name.

One parser serves the reports built from Stripe's one column catalogue: the itemized balance
change (``balance_change_from_activity.itemized.3``: the balance transactions created in the
interval, what the daily batch pulls as ``DAILY_REPORT``), the payout reconciliation report
(``payout_reconciliation.itemized.5``), itemized payouts (``payouts.itemized.3``,
with ``payout_id`` and ``effective_at_utc`` in place of ``automatic_payout_id`` and
``created_utc``) and their older versions. A report run chooses its columns and their order
(``parameters[columns]``), so nothing is positional; a column outside the catalogue means the
layout changed and refuses the file.

How Stripe writes it and how it maps:

- UTF-8 CSV, a header record, one record per balance transaction.
- ``gross``, ``fee``, ``net`` in major units as decimal text (``12.34``, ``-0.30``, JPY
  ``1000``), converted exactly with the currency's ISO exponent. Stripe signs them from the
  account's side, which is the model's convention, so they are copied: ``amount`` is ``gross``,
  and ``net = gross - fee`` is checked on every row.
- ``created_utc`` (``YYYY-MM-DD HH:MM:SS`` in UTC) is ``occurred_at``; the unsuffixed local-time
  columns repeat it in the run's time zone and are not needed.
- ``reporting_category`` gives the kind and is kept verbatim as ``status``.
- ``channel_txn_id`` is the PaymentIntent (what the gateway stores as the payment's channel id),
  else the charge, else the source object, else the balance transaction. For a refund (and a
  failed refund) the source is the refund, kept as ``channel_refund_id``.
- ``merchant_ref``: the gateway's adapter writes our attempt id to the PaymentIntent's metadata
  (``attempt_id``) and our refund number to the refund's (``refund_no``); the report returns them
  as ``payment_metadata[attempt_id]`` and ``refund_metadata[refund_no]`` when the run asks for them.
- ``payout_id`` is the automatic payout that paid the line out, so a payout's lines can be matched
  many-to-one with the bank credit; a payout line without one is its own payout. A report without
  payout columns (the balance change report by default), or a line not paid out yet, has none.

Stripe writes no footer or totals: truncation shows only when the last record is cut short, and
``Statement.totals`` is empty. The account and the report's day are not in the file either; the
caller knows them from the report run.
"""

from __future__ import annotations

import csv
from datetime import date
from typing import NoReturn

import pyarrow as pa
import pyarrow.compute as pc

from clearhouse.reconciliation.statements import _arrowcsv as ac
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import Kind, Statement

SOURCE = "stripe"
# The metadata keys the gateway's Stripe adapter sets (gateway/channels/stripe/adapter.py).
ATTEMPT_KEY = "attempt_id"
REFUND_KEY = "refund_no"
METADATA_PREFIXES = ("payment_metadata[", "refund_metadata[", "transfer_metadata[")

_ADDRESS = ("city", "country", "line1", "line2", "postal_code", "state")
# Every column Stripe documents for its itemized balance, payout and payout reconciliation
# report types (all versions), besides the metadata columns.
CATALOGUE = frozenset(
    {
        "automatic_payout_effective_at",
        "automatic_payout_effective_at_utc",
        "automatic_payout_id",
        "available_on",
        "available_on_utc",
        "balance_transaction_id",
        "card_brand",
        "card_country",
        "card_funding",
        "charge_created",
        "charge_created_utc",
        "charge_id",
        "connected_account_country",
        "connected_account_direct_charge_id",
        "connected_account_id",
        "connected_account_name",
        "created",
        "created_utc",
        "currency",
        "customer_description",
        "customer_email",
        "customer_facing_amount",
        "customer_facing_currency",
        "customer_id",
        "customer_name",
        "description",
        "destination_payment_id",
        "dispute_reason",
        "effective_at",
        "effective_at_utc",
        "fee",
        "gross",
        "invoice_id",
        "invoice_number",
        "is_link",
        "net",
        "order_id",
        "payment_intent_id",
        "payment_method_type",
        "payout_description",
        "payout_destination_id",
        "payout_expected_arrival_date",
        "payout_id",
        "payout_reversed_at",
        "payout_reversed_at_utc",
        "payout_status",
        "payout_type",
        "regulatory_tag",
        "reporting_category",
        "source_id",
        "statement_descriptor",
        "subscription_id",
        "trace_id",
        "trace_id_status",
        *(
            f"{prefix}_{part}"
            for prefix in (
                "card_address",
                "customer_address",
                "customer_shipping_address",
                "shipping_address",
            )
            for part in _ADDRESS
        ),
    }
)
REQUIRED = ("balance_transaction_id", "currency", "gross", "fee", "net", "reporting_category")
# The instant of the line: balance reports have created_utc, itemized payouts effective_at_utc.
TIME_COLUMNS = ("created_utc", "effective_at_utc")

_PAYMENT_ATTEMPT = f"payment_metadata[{ATTEMPT_KEY}]"
_REFUND_ATTEMPT = f"refund_metadata[{ATTEMPT_KEY}]"
_REFUND_NO = f"refund_metadata[{REFUND_KEY}]"
# The daily batch's report, and the columns its run asks for: the balance change report's
# defaults carry neither the PaymentIntent nor our references, which link a line to our records.
DAILY_REPORT = "balance_change_from_activity.itemized.3"
DAILY_COLUMNS = (
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "automatic_payout_id",
    "payment_intent_id",
    "charge_id",
    _PAYMENT_ATTEMPT,
    _REFUND_ATTEMPT,
    _REFUND_NO,
)
_OPTIONAL = (
    "automatic_payout_id",
    "payout_id",
    "payment_intent_id",
    "charge_id",
    "source_id",
    "description",
    _PAYMENT_ATTEMPT,
    _REFUND_ATTEMPT,
    _REFUND_NO,
)

# reporting_category -> kind. Stripe adds categories over time: an unknown one is OTHER, kept
# with its name in status, never a refusal.
KINDS: dict[str, Kind] = {
    "charge": Kind.PAYMENT,
    "refund": Kind.REFUND,
    "fee": Kind.FEE,
    "network_cost": Kind.FEE,
    "tax": Kind.FEE,
    "payout": Kind.PAYOUT,
    "payout_reversal": Kind.PAYOUT,
    "dispute": Kind.ADJUSTMENT,
    "dispute_reversal": Kind.ADJUSTMENT,
    "partial_capture_reversal": Kind.ADJUSTMENT,
    "refund_failure": Kind.ADJUSTMENT,
    "charge_failure": Kind.ADJUSTMENT,
    "other_adjustment": Kind.ADJUSTMENT,
    "risk_reserved_funds": Kind.ADJUSTMENT,
    "connect_reserved_funds": Kind.ADJUSTMENT,
    "payment_network_reserved_funds": Kind.ADJUSTMENT,
}
# Categories whose source object is a refund: our refund number identifies them.
REFUND_SOURCED = ("refund", "refund_failure")
# Whole-unit digits plus the exponent stay within 18 digits, so minor units fit int64.
_MAX_DIGITS = 18
_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"
_AMOUNT_PATTERN = r"^(?P<sign>-?)(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?$"


def parse(data: bytes, file: str, *, account: str, business_date: date) -> Statement:
    """The report's lines, or a StatementError naming ``file`` and the record to blame.

    ``account`` is the Stripe account the report was run for and ``business_date`` the report's
    own day (its interval, in the run's time zone): the file states neither.
    """
    body = ac.utf8_body(data, file)
    names = _header(body, file)
    time_column = next((c for c in TIME_COLUMNS if c in names), None)
    if time_column is None:
        raise StatementError(StatementCode.MISSING_COLUMN, file, "no column created_utc", 1)
    keep = [*REQUIRED, time_column, *(c for c in _OPTIONAL if c in names)]
    table, odd = ac.read_strings(body, names, keep, skip=1)
    if odd:
        _refuse_odd(odd, table.num_rows, len(names), file)
    rows = table.num_rows
    records = ac.arange(2, rows + 2)

    def column(name: str) -> pa.Array:
        if name in names:
            return ac.flat(table.column(name))
        return pa.nulls(rows, pa.string())

    codes = pc.utf8_upper(column("currency"))
    exps = ac.exponents(codes, records, file)
    gross = _minor(column("gross"), exps, records, file, "gross")
    fee = _minor(column("fee"), exps, records, file, "fee")
    net = _minor(column("net"), exps, records, file, "net")
    ac.require(
        pc.equal(pc.subtract_checked(gross, fee), net),
        column("net"),
        records,
        file,
        "net is not gross - fee",
        StatementCode.TOTALS_MISMATCH,
    )
    when = column(time_column)
    what = f"bad {time_column}"
    ac.require(pc.match_substring_regex(when, _TIME_PATTERN), when, records, file, what)
    stamps, ok = ac.wall_clock(when, "-")
    ac.require(ok, when, records, file, what)

    category = column("reporting_category")
    ac.require(pc.not_equal(category, ""), category, records, file, "empty reporting_category")
    kinds = pc.fill_null(
        pc.take(
            pa.array([k.value for k in KINDS.values()], pa.string()),
            pc.index_in(category, value_set=pa.array(list(KINDS), pa.string())),
        ),
        Kind.OTHER.value,
    )
    refund_sourced = pc.is_in(category, value_set=pa.array(REFUND_SOURCED, pa.string()))
    source_id = ac.blank_to_null(column("source_id"))
    txn_id = ac.blank_to_null(column("balance_transaction_id"))
    ac.require(
        pc.is_valid(txn_id),
        column("balance_transaction_id"),
        records,
        file,
        "empty balance_transaction_id",
    )
    attempt = pc.coalesce(
        ac.blank_to_null(column(_PAYMENT_ATTEMPT)), ac.blank_to_null(column(_REFUND_ATTEMPT))
    )
    no_text = pa.scalar(None, pa.string())
    own_payout = pc.if_else(pc.equal(kinds, Kind.PAYOUT.value), source_id, no_text)

    lines = ac.lines_table(
        {
            "source": ac.constant(SOURCE, rows),
            "account": ac.constant(account, rows),
            "business_date": pa.repeat(pa.scalar(business_date, pa.date32()), rows),
            "occurred_at": stamps,
            "kind": kinds,
            "channel_txn_id": pc.coalesce(
                ac.blank_to_null(column("payment_intent_id")),
                ac.blank_to_null(column("charge_id")),
                source_id,
                txn_id,
            ),
            "channel_refund_id": pc.if_else(refund_sourced, source_id, no_text),
            "merchant_ref": pc.if_else(
                refund_sourced, ac.blank_to_null(column(_REFUND_NO)), attempt
            ),
            "parent_ref": pc.if_else(refund_sourced, attempt, no_text),
            "status": category,
            "currency": codes,
            "amount": gross,
            "fee": fee,
            "net": net,
            "payout_id": pc.coalesce(
                ac.blank_to_null(column("automatic_payout_id")),
                ac.blank_to_null(column("payout_id")),
                own_payout,
            ),
            "memo": ac.blank_to_null(column("description")),
            "line_no": records,
        }
    )
    return Statement(
        source=SOURCE,
        file=file,
        sha256=ac.sha256(data),
        account=account,
        business_date=business_date,
        lines=lines,
    )


def _header(body: bytes, file: str) -> list[str]:
    end = body.find(b"\n")
    first = body[: None if end < 0 else end].rstrip(b"\r")
    if not first.strip():
        raise StatementError(StatementCode.TRUNCATED, file, "no header record", 1)
    names = next(csv.reader([first.decode("utf-8")]))
    if not CATALOGUE.intersection(names):
        raise StatementError(StatementCode.UNSUPPORTED, file, "not a Stripe report header", 1)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise StatementError(StatementCode.UNKNOWN_COLUMN, file, f"{name!r} twice", 1)
        seen.add(name)
        known = name in CATALOGUE or (name.startswith(METADATA_PREFIXES) and name.endswith("]"))
        if not known:
            raise StatementError(StatementCode.UNKNOWN_COLUMN, file, f"column {name!r}", 1)
    for name in REQUIRED:
        if name not in seen:
            raise StatementError(StatementCode.MISSING_COLUMN, file, f"no column {name}", 1)
    return names


def _refuse_odd(odd: list[ac.Odd], rows: int, width: int, file: str) -> NoReturn:
    first = min(odd, key=lambda o: o.record)
    last_record = rows + len(odd) + 1
    message = f"{first.fields} fields where the header has {width}"
    # A short last record is a file cut off mid-write; elsewhere it is a malformed record.
    if first.record == last_record and first.fields < width:
        raise StatementError(StatementCode.TRUNCATED, file, message, first.record)
    raise StatementError(StatementCode.BAD_VALUE, file, message, first.record)


def _minor(text: pa.Array, exps: pa.Array, records: pa.Array, file: str, what: str) -> pa.Array:
    """Major-unit decimal text to int64 minor units, exactly: ``-0.30`` USD is -30, ``1000`` JPY
    is 1000. Trailing zeros past the exponent are accepted (``12.340`` USD), other extra
    decimals are BAD_VALUE, as is anything but ``-?digits[.digits]``."""
    parts = pc.extract_regex(text, _AMOUNT_PATTERN)
    whole = pc.fill_null(parts.field("whole"), "0")
    frac = pc.utf8_rtrim(pc.fill_null(parts.field("frac"), ""), characters="0")
    frac_len = pc.utf8_length(frac)
    ok = pc.and_(
        pc.is_valid(parts),
        pc.and_(
            pc.less_equal(frac_len, exps),
            pc.less_equal(pc.add(pc.utf8_length(whole), exps), _MAX_DIGITS),
        ),
    )
    ac.require(ok, text, records, file, f"bad {what}")
    frac_digits = pc.if_else(pc.equal(frac, ""), "0", frac)
    magnitude = pc.add_checked(
        pc.multiply_checked(whole.cast(pa.int64()), pc.power(10, exps)),
        pc.multiply_checked(
            frac_digits.cast(pa.int64()), pc.power(10, pc.subtract(exps, frac_len))
        ),
    )
    return pc.if_else(pc.equal(parts.field("sign"), "-"), pc.negate(magnitude), magnitude)
