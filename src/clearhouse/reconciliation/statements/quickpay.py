"""Bank-card quick pay's daily file (``QPRF_<merId>_<yyyyMMdd>.txt``) (R1, R2).

The layout (docs/channels/quickpay.md §7): UTF-8, ``\\n`` line ends, fields separated by ``|``
and never quoted; a header, one detail line per completed transaction, a trailer::

    H|QPRF|1|<merId>|<settleDate yyyyMMdd>|<generated yyyyMMddHHmmss>
    D|<seq>|<txnType>|<orderId>|<origOrderId>|<queryId>|<txnTime>|<completeTime>|<card>|<amount>|<fee>|<net>
    T|<details>|<consumes>|<consume sum>|<refunds>|<refund sum>|<fee sum>|<net sum>

Fields are by position: the header's layout version names the layout, so a version other than 1
or a detail line with another number of fields is a layout this does not know. Amounts are
integer fen already in the merchant's view (a consumption's amount and fee positive, a refund's
negative, ``net = amount - fee``); times are Beijing wall clock (UTC+8, no DST). Only completed
transactions are listed, on the Beijing day they completed, so a detail line has no status and
one completed on another day than the file's is refused. Every count and sum of the trailer is
checked against the detail lines.

``orderId`` is our reference as we sent it: the payment attempt of a consumption, the refund
number of a refund (whose ``origOrderId`` is the attempt). ``queryId`` is the channel's id of
that line's transaction; a refund line does not carry its consumption's ``queryId``, so a
refund's ``channel_txn_id`` is empty and its ``queryId`` is its ``channel_refund_id``. The file
names the merchant number, not the channel instance (two acquirers write the same layout): the
caller says which instance it is, as ``source``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc

from clearhouse.gateway.channels.quickpay.protocol import CONSUME, CURRENCY, REFUND
from clearhouse.reconciliation.statements import _arrowcsv as ac
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import (
    Kind,
    Statement,
    Totals,
    column_sum,
)

SOURCE = "quickpay"
MAGIC, LAYOUT_VERSION = "QPRF", "1"
HEAD = f"H|{MAGIC}|".encode()  # how every file of this layout starts
TIME_FORMAT = "%Y%m%d%H%M%S"
_BEIJING_OFFSET = pa.scalar(8 * 3600, pa.duration("s"))
_MAX_DIGITS = 17
_HEADER_FIELDS, _TRAILER_FIELDS = 6, 8
COLUMNS = (
    "record",
    "seq",
    "txnType",
    "orderId",
    "origOrderId",
    "queryId",
    "txnTime",
    "completeTime",
    "maskedCard",
    "amount",
    "fee",
    "net",
)
_KEEP = [c for c in COLUMNS if c != "txnTime"]  # when the merchant sent it: not a line's fact
_ORDER_ID = r"^[0-9A-Za-z_\-]{1,40}$"


@dataclass(frozen=True, slots=True)
class _Record:
    number: int
    fields: list[str]


def parse(
    data: bytes,
    file: str,
    *,
    source: str = SOURCE,
    business_date: date | None = None,
    account: str | None = None,
) -> Statement:
    """The file's lines as ``source``'s (the channel instance it was fetched from), or a
    StatementError naming ``file`` and the line to blame. A given ``business_date`` or
    ``account`` must be the file's own settle date and merchant number."""
    body = ac.utf8_body(data, file)
    if not body.strip():
        raise StatementError(StatementCode.TRUNCATED, file, "empty file", 1)
    if not body.startswith(HEAD):
        raise StatementError(StatementCode.UNSUPPORTED, file, "not a quick pay daily file", 1)
    table, odd = ac.read_strings(body, COLUMNS, _KEEP, skip=0, delimiter="|", quoted=False)
    header, trailer = _frame(odd, table.num_rows, file)
    mer_id, day, day_text = _header(header, file)
    if business_date is not None and business_date != day:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"file of {day}, expected {business_date}", 1
        )
    if account is not None and account != mer_id:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"file of merchant {mer_id}, expected {account}", 1
        )
    records = ac.arange(2, table.num_rows + 2)
    lines = _lines(table, records, source, mer_id, day, day_text, file)
    totals = _check(lines, trailer, file)
    return Statement(
        source=source,
        file=file,
        sha256=ac.sha256(data),
        account=mer_id,
        business_date=day,
        lines=lines,
        totals=[totals],
    )


def _frame(odd: list[ac.Odd], details: int, file: str) -> tuple[_Record, _Record]:
    """The header (the first line) and the trailer (the last): every other line must be a
    detail line of the layout's width."""
    last = details + len(odd)
    by_number = {o.record: _Record(o.record, o.text.split("|")) for o in odd}
    header = by_number.pop(1, None)
    if header is None:
        raise StatementError(StatementCode.BAD_VALUE, file, "the first line is not a header", 1)
    trailer = by_number.pop(last, None) if last > 1 else None
    for record in sorted(by_number.values(), key=lambda r: r.number):
        _misfit(record, file)
    if trailer is None or trailer.fields[0] != "T":
        where = trailer.number if trailer is not None else last
        if trailer is not None and trailer.fields[0] == "D":
            _misfit(trailer, file, cut=True)
        raise StatementError(StatementCode.TRUNCATED, file, "no trailer line", where)
    if len(trailer.fields) != _TRAILER_FIELDS:
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"a trailer of {len(trailer.fields)} fields, the layout has {_TRAILER_FIELDS}",
            trailer.number,
        )
    return header, trailer


def _misfit(record: _Record, file: str, *, cut: bool = False) -> None:
    """A line that is neither a detail line of the layout's width nor where a header or a
    trailer belongs."""
    width = len(record.fields)
    if record.fields[0] != "D":
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"{record.fields[0]!r} line among the details",
            record.number,
        )
    code = StatementCode.UNKNOWN_COLUMN if width > len(COLUMNS) else StatementCode.BAD_VALUE
    if cut and width < len(COLUMNS):
        code = StatementCode.TRUNCATED
    raise StatementError(
        code,
        file,
        f"a detail line of {width} fields, the layout has {len(COLUMNS)}",
        record.number,
    )


def _header(record: _Record, file: str) -> tuple[str, date, str]:
    fields = record.fields
    if len(fields) != _HEADER_FIELDS:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"a header of {len(fields)} fields", record.number
        )
    if fields[2] != LAYOUT_VERSION:
        raise StatementError(
            StatementCode.UNKNOWN_COLUMN, file, f"layout version {fields[2]!r}", record.number
        )
    mer_id, day_text = fields[3], fields[4]
    if not (mer_id.isascii() and mer_id.isdigit()):
        raise StatementError(StatementCode.BAD_VALUE, file, f"merchant {mer_id!r}", 1)
    try:
        day = datetime.strptime(day_text, "%Y%m%d").date()
        datetime.strptime(fields[5], TIME_FORMAT)
    except ValueError:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"bad date in the header {fields[4:6]}", 1
        ) from None
    return mer_id, day, day_text


def _lines(
    table: pa.Table,
    records: pa.Array,
    source: str,
    mer_id: str,
    day: date,
    day_text: str,
    file: str,
) -> pa.Table:
    rows = table.num_rows

    def column(name: str) -> pa.Array:
        return ac.flat(table.column(name))

    record = column("record")
    ac.require(pc.equal(record, "D"), record, records, file, "not a detail line")
    seq = column("seq")
    ac.require(
        pc.equal(seq, ac.arange(1, rows + 1).cast(pa.string())),
        seq,
        records,
        file,
        "detail lines out of sequence",
    )
    txn_type = column("txnType")
    is_refund = pc.equal(txn_type, REFUND[0])
    ac.require(
        pc.or_(is_refund, pc.equal(txn_type, CONSUME[0])), txn_type, records, file, "txnType"
    )
    order_id = column("orderId")
    ac.require(pc.match_substring_regex(order_id, _ORDER_ID), order_id, records, file, "orderId")
    orig = column("origOrderId")
    ac.require(
        pc.if_else(is_refund, pc.match_substring_regex(orig, _ORDER_ID), pc.equal(orig, "")),
        orig,
        records,
        file,
        "origOrderId (a refund's consumption, empty on a consumption)",
    )
    query_id = column("queryId")
    ac.require(pc.not_equal(query_id, ""), query_id, records, file, "empty queryId")
    completed = column("completeTime")
    occurred = _instants(completed, records, file)
    ac.require(
        pc.equal(pc.utf8_slice_codeunits(completed, 0, 8), day_text),
        completed,
        records,
        file,
        f"completed on another day than the file's {day_text}",
    )
    amount = _fen(column("amount"), records, file, "amount")
    fee = _fen(column("fee"), records, file, "fee")
    net = _fen(column("net"), records, file, "net")
    ac.require(
        pc.if_else(is_refund, pc.less(amount, 0), pc.greater(amount, 0)),
        column("amount"),
        records,
        file,
        "amount signed against its txnType (consumptions positive, refunds negative)",
    )
    ac.require(
        pc.if_else(is_refund, pc.less_equal(fee, 0), pc.greater_equal(fee, 0)),
        column("fee"),
        records,
        file,
        "fee signed against its txnType (charged positive, given back negative)",
    )
    ac.require(
        pc.equal(net, pc.subtract_checked(amount, fee)),
        column("net"),
        records,
        file,
        "net is not amount minus fee",
        StatementCode.TOTALS_MISMATCH,
    )
    no_text = pa.scalar(None, pa.string())
    return ac.lines_table(
        {
            "source": ac.constant(source, rows),
            "account": ac.constant(mer_id, rows),
            "business_date": pa.repeat(pa.scalar(day, pa.date32()), rows),
            "occurred_at": occurred,
            "kind": pc.if_else(is_refund, Kind.REFUND.value, Kind.PAYMENT.value),
            "channel_txn_id": pc.if_else(is_refund, no_text, query_id),
            "channel_refund_id": pc.if_else(is_refund, query_id, no_text),
            "merchant_ref": order_id,
            "parent_ref": pc.if_else(is_refund, orig, no_text),
            "status": pa.nulls(rows, pa.string()),
            "currency": ac.constant(CURRENCY, rows),
            "amount": amount,
            "fee": fee,
            "net": net,
            "payout_id": pa.nulls(rows, pa.string()),
            "memo": ac.blank_to_null(column("maskedCard")),
            "line_no": records,
        }
    )


def _fen(text: pa.Array, records: pa.Array, file: str, what: str) -> pa.Array:
    ok = pc.match_substring_regex(text, f"^-?[0-9]{{1,{_MAX_DIGITS}}}$")
    ac.require(ok, text, records, file, f"bad {what}")
    return text.cast(pa.int64())


def _instants(text: pa.Array, records: pa.Array, file: str) -> pa.Array:
    """``yyyyMMddHHmmss`` Beijing wall clock to UTC; BAD_VALUE at the first that is not a real
    time (Arrow rolls 30 February over to 1 March: the text must read back the same)."""
    parsed = pc.strptime(text, format=TIME_FORMAT, unit="s", error_is_null=True)
    same = pc.equal(pc.strftime(parsed, format=TIME_FORMAT), text)
    ac.require(same, text, records, file, "bad completeTime")
    return pc.subtract(parsed, _BEIJING_OFFSET)


def _check(lines: pa.Table, trailer: _Record, file: str) -> Totals:
    """The trailer's counts and sums against the detail lines; the file's totals."""
    values = trailer.fields[1:]
    if not all(v.removeprefix("-").isascii() and v.removeprefix("-").isdigit() for v in values):
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"trailer values {values}", trailer.number
        )
    declared = [int(v) for v in values]
    is_refund = pc.equal(lines.column("kind"), Kind.REFUND.value)
    refunds = lines.filter(is_refund)
    consumes = lines.filter(pc.invert(is_refund))
    actual = [
        lines.num_rows,
        consumes.num_rows,
        column_sum(consumes.column("amount")),
        refunds.num_rows,
        -column_sum(refunds.column("amount")),
        column_sum(lines.column("fee")),
        column_sum(lines.column("net")),
    ]
    names = ("details", "consumes", "consume sum", "refunds", "refund sum", "fee sum", "net sum")
    for name, stated, found in zip(names, declared, actual, strict=True):
        if stated != found:
            raise StatementError(
                StatementCode.TOTALS_MISMATCH,
                file,
                f"the trailer's {name} is {stated}, the detail lines add up to {found}",
                trailer.number,
            )
    return Totals(
        count=lines.num_rows,
        amount=actual[2] - actual[4],
        fee=actual[5],
        currency=CURRENCY,
    )
