"""PayPal's Settlement Report (``STL-yyyymmdd.sequence.version.CSV``) (R1, R2).

UTF-8 CSV (a byte order mark may lead), one record per line, the first field its type; text fields
quoted, numbers not::

    RH  report header: generated at, reporting window, account id, report version
    FH  file header: sequence number
    SH  section header: section start, section end, account ids
    CH  column header: the names of the SB fields
    SB  section body: one balance-affecting transaction
    SF  section footer, one per currency: gross credits, gross debits, fee credits, fee debits,
        then balances (Direction, amount pairs)
    SC  section record count (SB records)
    RF  report footer, per currency, laid out as SF, over all sections
    RC  report record count, FF file footer (SB records)

Amounts are unsigned integers with two implied decimals for every currency ("100,00 yen and
$100.00 USD are both represented as 10000"): USD 10000 is 10000 cents, JPY 10000 is 100 yen. The
``Transaction Debit or Credit`` column signs the gross (CR money in, DR money out) and
``Fee Debit or Credit`` the fee (DR charged, CR given back), which is the model's merchant view.
Column names are matched with runs of spaces collapsed: older headers spell
"Transaction  Debit or Credit" with two.

Every count and sum the file declares is checked against its SB records: SC and SF per section,
RC, RF and FF for the file; a missing one is TRUNCATED, one that disagrees TOTALS_MISMATCH. A
report split over several files is not supported: only its last file carries RF and RC.

Kinds follow the T-code's event group (PayPal: "the event group portion of the T-code is
sufficient for reconciliation"), with the merchant refund T1107 and fee reversals picked out. The
gateway's PayPal adapter sends our attempt id as ``custom_id`` (and ``invoice_id``) of a payment
and our refund number as a refund's ``invoice_id``; the report returns them as ``Custom Field``
and ``Invoice ID``. A refund's ``PayPal Reference ID`` (type ``TXN``) is the captured payment.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import NoReturn

import pyarrow as pa
import pyarrow.compute as pc

from clearhouse.errors import UnknownCurrency
from clearhouse.money import currency as lookup_currency
from clearhouse.reconciliation.statements import _arrowcsv as ac
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import Kind, Statement, Totals

SOURCE = "paypal"
CREDIT, DEBIT = "CR", "DR"
IMPLIED_DECIMALS = 2
TIME_FORMAT = "%Y/%m/%d %H:%M:%S"  # then " +hhmm", the offset of the reporting window's zone

ID = "Transaction ID"
INVOICE = "Invoice ID"
REF = "PayPal Reference ID"
REF_TYPE = "PayPal Reference ID Type"
EVENT = "Transaction Event Code"
INITIATED = "Transaction Initiation Date"
COMPLETED = "Transaction Completion Date"
GROSS_DIRECTION = "Transaction Debit or Credit"
GROSS = "Gross Transaction Amount"
CURRENCY = "Gross Transaction Currency"
FEE_DIRECTION = "Fee Debit or Credit"
FEE = "Fee Amount"
FEE_CURRENCY = "Fee Currency"
CUSTOM = "Custom Field"
BANK_REF = "Bank Reference ID"
# Version 9 of the layout; Store ID came with 7, Bank Reference ID with 8, the credit fields with 9.
COLUMNS = (
    ID,
    INVOICE,
    REF,
    REF_TYPE,
    EVENT,
    INITIATED,
    COMPLETED,
    GROSS_DIRECTION,
    GROSS,
    CURRENCY,
    FEE_DIRECTION,
    FEE,
    FEE_CURRENCY,
    CUSTOM,
    "Consumer ID",
    "Payment Tracking ID",
    "Store ID",
    BANK_REF,
    "Credit Transactional Fee",
    "Credit Promotional Fee",
    "Credit Term",
)
REQUIRED = COLUMNS[:14]

# T-code event group -> kind; groups not listed (conversions, deposits, holds of other kinds,
# transfers between accounts...) are OTHER.
GROUP_KINDS: dict[str, Kind] = {
    "00": Kind.PAYMENT,  # PayPal account-to-account payments, T0006 checkout among them
    "01": Kind.FEE,  # fees not tied to one payment
    "04": Kind.PAYOUT,  # withdrawals to the bank account
    "11": Kind.ADJUSTMENT,  # reversals
    "12": Kind.ADJUSTMENT,  # adjustments, chargebacks
    "15": Kind.ADJUSTMENT,  # holds for disputes and investigations
    "19": Kind.ADJUSTMENT,  # account corrections
    "21": Kind.ADJUSTMENT,  # reserves and releases
}
CODE_KINDS: dict[str, Kind] = {
    "T1101": Kind.PAYOUT,  # an ACH withdrawal reversed: the payout came back
    "T1107": Kind.REFUND,  # payment refund, initiated by the merchant
    "T1108": Kind.FEE,  # fee reversal
    "T1109": Kind.FEE,  # fee refund
}
_RECORD = "record"
_MAX_DIGITS = 17
_TIME_PATTERN = r"^[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}$"
_CH = re.compile(rb'^"?CH"?,', re.MULTILINE)
_SUMS = ("gross_credit", "gross_debit", "fee_credit", "fee_debit")  # as _Sums orders them
_STRUCTURE = ("RH", "FH", "SH", "CH", "SF", "SC", "RF", "RC", "FF")


@dataclass(frozen=True, slots=True)
class _Record:
    number: int
    fields: list[str]

    @property
    def type(self) -> str:
        return self.fields[0]


@dataclass(frozen=True, slots=True)
class _Section:
    header: _Record
    rows: int  # the SB records right after its CH
    footers: list[_Record]  # SF
    count: _Record  # SC


@dataclass(frozen=True, slots=True)
class _Sums:
    """Raw report units (hundredths) of one currency, as SF and RF declare them."""

    gross_credit: int = 0
    gross_debit: int = 0
    fee_credit: int = 0
    fee_debit: int = 0


def parse(data: bytes, file: str) -> Statement:
    """The report's lines, or a StatementError naming ``file`` and the record to blame."""
    body = ac.utf8_body(data, file)
    names = _column_names(body, file)
    table, odd = ac.read_strings(body, [_RECORD, *names], [_RECORD, *names], skip=0)
    numbers = _numbers(table.num_rows, [o.record for o in odd])
    is_body = ac.flat(pc.equal(table.column(_RECORD), "SB"))
    records = _records(table.filter(pc.invert(is_body)), numbers.filter(pc.invert(is_body)), odd)
    total = table.num_rows + len(odd)
    head, sections, tail = _Walk(records, total, names, file).report()
    account = head[0].fields[3]
    if not account:
        raise StatementError(StatementCode.BAD_VALUE, file, "RH without an account id", 1)
    sb = table.filter(is_body)
    lines, sums, days = _lines(sb, numbers.filter(is_body), account, sections, names, file)
    totals = _check(sections, tail, sb, sums, file)
    return Statement(
        source=SOURCE,
        file=file,
        sha256=ac.sha256(data),
        account=account,
        business_date=days[0],
        lines=lines,
        totals=totals,
    )


def _column_names(body: bytes, file: str) -> list[str]:
    if re.search(rb"\S", body) is None:
        raise StatementError(StatementCode.TRUNCATED, file, "empty file", 1)
    if not re.match(rb'"?RH"?,', body):
        raise StatementError(StatementCode.UNSUPPORTED, file, "no RH report header", 1)
    found = _CH.search(body)
    if found is None:
        raise StatementError(StatementCode.TRUNCATED, file, "no CH column header")
    end = body.find(b"\n", found.start())
    text = body[found.start() : None if end < 0 else end].rstrip(b"\r").decode("utf-8")
    line = body.count(b"\n", 0, found.start()) + 1
    names = [" ".join(name.split()) for name in next(csv.reader([text]))[1:]]
    for name in names:
        if name not in COLUMNS:
            raise StatementError(StatementCode.UNKNOWN_COLUMN, file, f"column {name!r}", line)
        if names.count(name) > 1:
            raise StatementError(StatementCode.UNKNOWN_COLUMN, file, f"{name!r} twice", line)
    for name in REQUIRED:
        if name not in names:
            raise StatementError(StatementCode.MISSING_COLUMN, file, f"no column {name}", line)
    return names


def _numbers(rows: int, odd: list[int]) -> pa.Array:
    """The record numbers of the table's rows: every number the odd records do not take."""
    spans = []
    previous = 0
    for number in sorted(odd):
        spans.append(ac.arange(previous + 1, number))
        previous = number
    spans.append(ac.arange(previous + 1, rows + len(odd) + 1))
    return pa.concat_arrays(spans)


def _records(others: pa.Table, numbers: pa.Array, odd: list[ac.Odd]) -> list[_Record]:
    """Every record but the well-formed SB ones, in file order: few, so Python objects."""
    found = [
        _Record(int(n), [str(v) for v in row.values()])
        for n, row in zip(numbers.to_pylist(), others.to_pylist(), strict=True)
    ]
    found += [_Record(o.record, next(csv.reader([o.text]), []) or [""]) for o in odd]
    return sorted(found, key=lambda r: r.number)


class _Walk:
    """Checks the record order and where the SB records sit, knowing only the other records'
    numbers: every number between two of them is an SB record."""

    def __init__(self, records: list[_Record], total: int, names: list[str], file: str) -> None:
        self._records = records
        self._total = total
        self._names = names
        self._file = file
        self._next = 0
        self._previous = 0  # number of the last record taken

    def report(self) -> tuple[list[_Record], list[_Section], list[_Record]]:
        head = [self._take("RH", 5), self._take("FH", 2)]
        sections = []
        while True:
            header = self._take("SH", 2)
            columns = self._take("CH", 2)
            if [" ".join(name.split()) for name in columns.fields[1:]] != self._names:
                raise StatementError(
                    StatementCode.UNKNOWN_COLUMN,
                    self._file,
                    "CH differs from the first section's",
                    columns.number,
                )
            rows = self._body_rows()
            footers = self._many("SF", 6)
            sections.append(_Section(header, rows, footers, self._take("SC", 2)))
            if self._peek_type() != "SH":
                break
        tail = [*self._many("RF", 6), self._take("RC", 2), self._take("FF", 2)]
        self._no_body_rows()
        if self._next < len(self._records):
            extra = self._records[self._next]
            self._bad(extra, f"{extra.type!r} record after the file footer")
        return head, sections, tail

    def _peek_type(self) -> str | None:
        if self._next < len(self._records):
            return self._records[self._next].type
        return None

    def _take(self, kind: str, width: int) -> _Record:
        self._no_body_rows()
        if self._next >= len(self._records):
            raise StatementError(StatementCode.TRUNCATED, self._file, f"no {kind} record")
        record = self._records[self._next]
        if record.type != kind:
            if record.type in _STRUCTURE:
                raise StatementError(
                    StatementCode.TRUNCATED,
                    self._file,
                    f"no {kind} record before {record.type}",
                    record.number,
                )
            if record.type == "SB":
                self._bad(
                    record,
                    f"SB record with {len(record.fields)} fields, CH has {len(self._names) + 1}",
                )
            self._bad(record, f"{record.type!r} record where {kind} belongs")
        if len(record.fields) < width:
            self._bad(record, f"{kind} record with {len(record.fields)} fields")
        self._next += 1
        self._previous = record.number
        return record

    def _many(self, kind: str, width: int) -> list[_Record]:
        taken = []
        while self._peek_type() == kind:
            taken.append(self._take(kind, width))
        return taken

    def _following(self) -> int:
        if self._next < len(self._records):
            return self._records[self._next].number
        return self._total + 1

    def _body_rows(self) -> int:
        rows = self._following() - self._previous - 1
        self._previous += rows
        return rows

    def _no_body_rows(self) -> None:
        if self._following() - self._previous - 1 > 0:
            raise StatementError(
                StatementCode.BAD_VALUE,
                self._file,
                "SB record outside a section body",
                self._previous + 1,
            )

    def _bad(self, record: _Record, message: str) -> NoReturn:
        # A record cut short at the very end is a file cut off mid-write.
        code = StatementCode.TRUNCATED if record.number == self._total else StatementCode.BAD_VALUE
        raise StatementError(code, self._file, message, record.number)


def _lines(
    sb: pa.Table,
    records: pa.Array,
    account: str,
    sections: list[_Section],
    names: list[str],
    file: str,
) -> tuple[pa.Table, pa.Table, list[date]]:
    """The normalised lines, the raw amounts the footers are checked against, and each
    section's day."""
    rows = sb.num_rows

    def column(name: str) -> pa.Array:
        if name in names:
            return ac.flat(sb.column(name))
        return pa.repeat(pa.scalar("", pa.string()), rows)

    txn_id = column(ID)
    ac.require(pc.not_equal(txn_id, ""), txn_id, records, file, "empty Transaction ID")
    code = column(EVENT)
    ac.require(pc.match_substring_regex(code, r"^T[0-9]{4}$"), code, records, file, "bad T-code")
    gross_direction = column(GROSS_DIRECTION)
    ac.require(
        pc.is_in(gross_direction, value_set=pa.array([CREDIT, DEBIT])),
        gross_direction,
        records,
        file,
        "bad Transaction Debit or Credit",
    )
    currency = column(CURRENCY)
    exps = ac.exponents(currency, records, file)
    fee_currency = column(FEE_CURRENCY)
    ac.require(
        pc.or_(pc.equal(fee_currency, ""), pc.equal(fee_currency, currency)),
        fee_currency,
        records,
        file,
        "fee in another currency than the gross",
    )
    gross_raw = _raw(column(GROSS), records, file, "bad Gross Transaction Amount")
    fee_text = column(FEE)
    fee_raw = _raw(
        pc.if_else(pc.equal(fee_text, ""), "0", fee_text), records, file, "bad Fee Amount"
    )
    fee_direction = column(FEE_DIRECTION)
    ac.require(
        pc.or_(
            pc.is_in(fee_direction, value_set=pa.array([CREDIT, DEBIT])),
            pc.and_(pc.equal(fee_direction, ""), pc.equal(fee_raw, 0)),
        ),
        fee_direction,
        records,
        file,
        "bad Fee Debit or Credit",
    )
    gross = _minor(gross_raw, exps, records, file, "gross")
    fee = _minor(fee_raw, exps, records, file, "fee")
    amount = pc.if_else(pc.equal(gross_direction, CREDIT), gross, pc.negate(gross))
    fee = pc.if_else(pc.equal(fee_direction, DEBIT), fee, pc.negate(fee))
    completed = column(COMPLETED)
    occurred = _instants(completed, records, file)

    kinds = _kinds(code)
    is_refund = pc.equal(kinds, Kind.REFUND.value)
    reference = ac.blank_to_null(column(REF))
    refers_to_txn = pc.and_(pc.equal(column(REF_TYPE), "TXN"), pc.is_valid(reference))
    invoice = ac.blank_to_null(column(INVOICE))
    custom = ac.blank_to_null(column(CUSTOM))
    no_text = pa.scalar(None, pa.string())
    linked = pc.if_else(
        pc.is_valid(reference),
        pc.binary_join_element_wise(column(REF_TYPE), column(REF), ":"),
        no_text,
    )
    days = [_section_day(s.header, file) for s in sections]
    day_of_row = pa.concat_arrays(
        [pa.repeat(pa.scalar(d, pa.date32()), s.rows) for d, s in zip(days, sections, strict=True)]
    )
    lines = ac.lines_table(
        {
            "source": ac.constant(SOURCE, rows),
            "account": ac.constant(account, rows),
            "business_date": day_of_row,
            "occurred_at": occurred,
            "kind": kinds,
            "channel_txn_id": pc.if_else(pc.and_(is_refund, refers_to_txn), reference, txn_id),
            "channel_refund_id": pc.if_else(is_refund, txn_id, no_text),
            "merchant_ref": pc.if_else(is_refund, invoice, pc.coalesce(custom, invoice)),
            "parent_ref": pc.if_else(is_refund, custom, no_text),
            "status": code,
            "currency": currency,
            "amount": amount,
            "fee": fee,
            "net": pc.subtract_checked(amount, fee),
            "payout_id": pc.if_else(pc.equal(kinds, Kind.PAYOUT.value), txn_id, no_text),
            "memo": pc.coalesce(ac.blank_to_null(column(BANK_REF)), linked),
            "line_no": records,
        }
    )
    wide = pa.decimal128(38, 0)
    zero = pa.scalar(0, pa.int64())
    is_credit = pc.equal(gross_direction, CREDIT)
    fee_is_credit = pc.equal(fee_direction, CREDIT)
    raw = pa.Table.from_arrays(
        [
            currency,
            pc.if_else(is_credit, gross_raw, zero).cast(wide),
            pc.if_else(is_credit, zero, gross_raw).cast(wide),
            pc.if_else(fee_is_credit, fee_raw, zero).cast(wide),
            pc.if_else(fee_is_credit, zero, fee_raw).cast(wide),
        ],
        names=["currency", *_SUMS],
    )
    return lines, raw, days


def _raw(text: pa.Array, records: pa.Array, file: str, what: str) -> pa.Array:
    ok = pc.match_substring_regex(text, f"^[0-9]{{1,{_MAX_DIGITS}}}$")
    ac.require(ok, text, records, file, what)
    return text.cast(pa.int64())


def _minor(raw: pa.Array, exps: pa.Array, records: pa.Array, file: str, what: str) -> pa.Array:
    """Hundredths to minor units of each row's currency: exact or BAD_VALUE (JPY 150 is 1.5
    yen, which no yen amount is)."""
    up = pc.power(10, pc.max_element_wise(pc.subtract(exps, IMPLIED_DECIMALS), 0))
    down = pc.power(10, pc.max_element_wise(pc.subtract(IMPLIED_DECIMALS, exps), 0))
    exact = pc.equal(pc.modulo(raw, down), 0)
    ac.require(exact, raw, records, file, f"{what} is not a whole minor unit")
    return pc.multiply_checked(pc.divide(raw, down), up)


def _instants(text: pa.Array, records: pa.Array, file: str) -> pa.Array:
    """``yyyy/mm/dd hh:mm:ss +hhmm`` to UTC; BAD_VALUE at the first value that is not one."""
    what = f"bad {COMPLETED}"
    ac.require(pc.match_substring_regex(text, _TIME_PATTERN), text, records, file, what)
    local, ok = ac.wall_clock(pc.utf8_slice_codeunits(text, 0, 19), "/")
    hours, minutes = ac.digits(text, 21, 23), ac.digits(text, 23, 25)
    ok = pc.and_(ok, pc.and_(pc.less_equal(hours, 14), pc.less(minutes, 60)))
    ac.require(ok, text, records, file, what)
    offset = pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60))
    west = pc.equal(pc.utf8_slice_codeunits(text, 20, 21), "-")
    offset = pc.if_else(west, pc.negate(offset), offset)
    return pc.subtract(local, offset.cast(pa.duration("s")))


def _kinds(code: pa.Array) -> pa.Array:
    by_group = pc.take(
        pa.array([k.value for k in GROUP_KINDS.values()], pa.string()),
        pc.index_in(
            pc.utf8_slice_codeunits(code, 1, 3),
            value_set=pa.array(list(GROUP_KINDS), pa.string()),
        ),
    )
    by_code = pc.take(
        pa.array([k.value for k in CODE_KINDS.values()], pa.string()),
        pc.index_in(code, value_set=pa.array(list(CODE_KINDS), pa.string())),
    )
    return pc.coalesce(by_code, by_group, pa.scalar(Kind.OTHER.value, pa.string()))


def _section_day(header: _Record, file: str) -> date:
    """The section's day as the report writes it, in its reporting window's zone."""
    try:
        return datetime.strptime(header.fields[1], f"{TIME_FORMAT} %z").date()
    except ValueError:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"bad section start {header.fields[1]!r}", header.number
        ) from None


def _sums_by_currency(raw: pa.Table) -> dict[str, _Sums]:
    grouped = raw.group_by("currency").aggregate([(c, "sum") for c in _SUMS])
    return {
        row["currency"]: _Sums(*(int(row[f"{c}_sum"]) for c in _SUMS))
        for row in grouped.to_pylist()
    }


def _declared(footers: list[_Record], file: str) -> dict[str, tuple[_Sums, _Record]]:
    """Per currency, the four totals an SF or RF record declares.

    The published layout gives four unsigned totals after the currency, then balance pairs; a
    layout with a ``CR``/``DR`` marker before each total (what our sandbox writes) is read too.
    """
    found: dict[str, tuple[_Sums, _Record]] = {}
    for record in footers:
        fields = record.fields
        if fields[2] in (CREDIT, DEBIT):
            markers, values = fields[2:10:2], fields[3:10:2]
            if markers != [CREDIT, DEBIT, CREDIT, DEBIT]:
                _refuse(record, file, f"{record.type} markers {markers}")
        else:
            values = fields[2:6]
        if len(values) != 4 or not all(v.isascii() and v.isdigit() for v in values):
            _refuse(record, file, f"{record.type} totals {values}")
        if fields[1] in found:
            _refuse(record, file, f"second {record.type} for {fields[1]}")
        found[fields[1]] = (_Sums(*(int(v) for v in values)), record)
    return found


def _refuse(record: _Record, file: str, message: str) -> NoReturn:
    raise StatementError(StatementCode.BAD_VALUE, file, message, record.number)


def _count(record: _Record, file: str) -> int:
    text = record.fields[1]
    if not (text.isascii() and text.isdigit()):
        _refuse(record, file, f"{record.type} count {text!r}")
    return int(text)


def _compare(
    declared: dict[str, tuple[_Sums, _Record]],
    actual: dict[str, _Sums],
    where: _Record,
    file: str,
) -> None:
    for code in sorted(declared.keys() | actual.keys()):
        sums = actual.get(code, _Sums())
        if code not in declared:
            raise StatementError(
                StatementCode.TOTALS_MISMATCH,
                file,
                f"no footer totals for the {code} records",
                where.number,
            )
        stated, record = declared[code]
        if stated != sums:
            raise StatementError(
                StatementCode.TOTALS_MISMATCH,
                file,
                f"{record.type} {code} declares {stated}, the records add up to {sums}",
                record.number,
            )


def _check(
    sections: list[_Section], tail: list[_Record], sb: pa.Table, raw: pa.Table, file: str
) -> list[Totals]:
    """Every count and total the file declares against its SB records; the report footer's
    totals in minor units."""
    start = 0
    for section in sections:
        part = raw.slice(start, section.rows)
        start += section.rows
        declared = _count(section.count, file)
        if declared != section.rows:
            raise StatementError(
                StatementCode.TOTALS_MISMATCH,
                file,
                f"SC declares {declared} records, the section has {section.rows}",
                section.count.number,
            )
        _compare(_declared(section.footers, file), _sums_by_currency(part), section.count, file)
    *report_footers, report_count, file_footer = tail
    for record in (report_count, file_footer):
        declared = _count(record, file)
        if declared != sb.num_rows:
            raise StatementError(
                StatementCode.TOTALS_MISMATCH,
                file,
                f"{record.type} declares {declared} records, the file has {sb.num_rows}",
                record.number,
            )
    report = _declared(report_footers, file)
    _compare(report, _sums_by_currency(raw), report_count, file)
    counts = dict(_pairs(pc.value_counts(raw.column("currency"))))
    return [
        Totals(
            count=counts.get(code, 0),
            amount=_minor_int(sums.gross_credit - sums.gross_debit, code, record, file),
            fee=_minor_int(sums.fee_debit - sums.fee_credit, code, record, file),
            currency=code,
        )
        for code, (sums, record) in sorted(report.items())
    ]


def _pairs(counts: pa.Array) -> Iterator[tuple[str, int]]:
    for item in counts.to_pylist():
        yield str(item["values"]), int(item["counts"])


def _minor_int(raw: int, code: str, record: _Record, file: str) -> int:
    try:
        exponent = lookup_currency(code).exponent
    except UnknownCurrency:
        _refuse(record, file, f"{record.type} currency {code!r}")
    scaled = Decimal(raw).scaleb(exponent - IMPLIED_DECIMALS)
    if scaled != scaled.to_integral_value():
        _refuse(record, file, f"{record.type} {code} total {raw} is not whole minor units")
    return int(scaled)
