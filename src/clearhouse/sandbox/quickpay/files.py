"""The daily reconciliation file of one merchant and one Beijing business day. Pure.

UTF-8 text, one record a line (``\\n``), fields separated by ``|`` (no field can contain it):

    H|QPRF|1|<merId>|<settleDate yyyyMMdd>|<generated yyyyMMddHHmmss>
    D|<seq>|<txnType>|<orderId>|<origOrderId>|<queryId>|<txnTime>|<completeTime>|<card>|<amount>|<fee>|<net>
    T|<details>|<consumes>|<consume sum>|<refunds>|<refund sum>|<fee sum>|<net sum>

Amounts are integer fen, signed from the merchant's side: a consumption's amount and fee are
positive (the fee is charged), a refund's are negative (the money and the fee share go back);
``net = amount - fee``. The trailer's consume and refund sums are magnitudes; its fee and net
sums are the signed totals of the detail lines. Only completed transactions are listed, on the
day they completed (a late result lands in the next day's file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from clearhouse.gateway.channels.quickpay.protocol import (
    CONSUME,
    CURRENCY,
    REFUND,
    format_time,
    parse_time,
)
from clearhouse.money import Money

MAGIC, LAYOUT_VERSION = "QPRF", "1"
_DETAIL_FIELDS, _TRAILER_FIELDS, _HEADER_FIELDS = 12, 8, 6


@dataclass(frozen=True, slots=True)
class FileLine:
    txn_type: str  # "01" consumption, "04" refund
    order_id: str
    orig_order_id: str  # the refunded consumption's orderId; "" for a consumption
    query_id: str
    txn_time: datetime  # when the merchant sent it
    completed_at: datetime
    masked_card: str
    amount: Money  # signed: see the module docstring
    fee: Money

    @property
    def net(self) -> Money:
        return self.amount - self.fee


@dataclass(frozen=True, slots=True)
class Trailer:
    details: int
    consumes: int
    consume_sum: Money
    refunds: int
    refund_sum: Money
    fee_sum: Money
    net_sum: Money


@dataclass(frozen=True, slots=True)
class DailyFile:
    mer_id: str
    day: date
    generated_at: datetime
    lines: tuple[FileLine, ...]
    trailer: Trailer


def file_name(mer_id: str, day: date) -> str:
    return f"QPRF_{mer_id}_{day:%Y%m%d}.txt"


def trailer_of(lines: Sequence[FileLine]) -> Trailer:
    zero = Money.zero(CURRENCY)
    consumes = [line for line in lines if line.txn_type == CONSUME[0]]
    refunds = [line for line in lines if line.txn_type == REFUND[0]]
    return Trailer(
        details=len(lines),
        consumes=len(consumes),
        consume_sum=sum((line.amount for line in consumes), zero),
        refunds=len(refunds),
        refund_sum=-sum((line.amount for line in refunds), zero),
        fee_sum=sum((line.fee for line in lines), zero),
        net_sum=sum((line.net for line in lines), zero),
    )


def daily_file(mer_id: str, day: date, lines: Sequence[FileLine], generated_at: datetime) -> str:
    """The file's text; detail lines in completion order, numbered from 1."""
    ordered = sorted(lines, key=lambda line: (line.completed_at, line.query_id))
    out = [
        "|".join(("H", MAGIC, LAYOUT_VERSION, mer_id, f"{day:%Y%m%d}", format_time(generated_at)))
    ]
    for seq, line in enumerate(ordered, 1):
        out.append(
            "|".join(
                (
                    "D",
                    str(seq),
                    line.txn_type,
                    line.order_id,
                    line.orig_order_id,
                    line.query_id,
                    format_time(line.txn_time),
                    format_time(line.completed_at),
                    line.masked_card,
                    str(line.amount.amount),
                    str(line.fee.amount),
                    str(line.net.amount),
                )
            )
        )
    t = trailer_of(ordered)
    totals = (t.details, t.consumes, t.consume_sum.amount, t.refunds, t.refund_sum.amount)
    out.append("|".join(("T", *map(str, totals), str(t.fee_sum.amount), str(t.net_sum.amount))))
    return "\n".join(out) + "\n"


def _fen(text: str) -> Money:
    return Money(int(text), CURRENCY)


def parse_daily_file(text: str) -> DailyFile:
    """Read a file back; raises ``ValueError`` for anything off the layout (it does not check
    that the trailer adds up: that is the reader's finding to make)."""
    rows = [row.split("|") for row in text.rstrip("\n").split("\n")]
    if len(rows) < 2 or rows[0][0] != "H" or rows[-1][0] != "T":
        raise ValueError("a file is a header, detail lines and a trailer")
    header, details, trailer = rows[0], rows[1:-1], rows[-1]
    if len(header) != _HEADER_FIELDS or header[1:3] != [MAGIC, LAYOUT_VERSION]:
        raise ValueError("not a version 1 quick pay file header")
    lines = []
    for row in details:
        if row[0] != "D" or len(row) != _DETAIL_FIELDS:
            raise ValueError(f"bad detail line {'|'.join(row)!r}")
        line = FileLine(
            row[2],
            row[3],
            row[4],
            row[5],
            parse_time(row[6]),
            parse_time(row[7]),
            row[8],
            _fen(row[9]),
            _fen(row[10]),
        )
        if line.net != _fen(row[11]):
            raise ValueError(f"line {row[1]}: net is not amount minus fee")
        lines.append(line)
    if len(trailer) != _TRAILER_FIELDS:
        raise ValueError("bad trailer")
    counts = [int(trailer[i]) for i in (1, 2, 4)]
    return DailyFile(
        mer_id=header[3],
        day=datetime.strptime(header[4], "%Y%m%d").date(),
        generated_at=parse_time(header[5]),
        lines=tuple(lines),
        trailer=Trailer(
            counts[0],
            counts[1],
            _fen(trailer[3]),
            counts[2],
            _fen(trailer[5]),
            _fen(trailer[6]),
            _fen(trailer[7]),
        ),
    )
