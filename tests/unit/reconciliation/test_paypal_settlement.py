"""PayPal's Settlement Report: the sandbox's STL file read back entry for entry, a sample in the
published version 9 layout, and every refusal with its code and record."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearhouse.money import Money
from clearhouse.reconciliation.statements import paypal
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import LINES, Totals
from clearhouse.sandbox.paypal.settlement import (
    CHECKOUT_PAYMENT,
    MERCHANT_REFUND,
    Entry,
    file_name,
    settlement_report,
)

ZONE = ZoneInfo("America/Los_Angeles")
DAY = date(2024, 3, 10)  # clocks go forward at 02:00: a 23-hour report day
START = datetime(2024, 3, 10, 0, 30, tzinfo=ZONE)
FILE = file_name(DAY)


def refused(data: bytes, code: StatementCode, line: int | None) -> StatementError:
    with pytest.raises(StatementError) as caught:
        paypal.parse(data, FILE)
    assert caught.value.code is code, caught.value
    assert caught.value.file == FILE
    assert caught.value.line == line, caught.value
    return caught.value


def payment(n: int, gross: int, fee: int, currency: str = "USD") -> Entry:
    at = START + timedelta(hours=n)
    return Entry(
        transaction_id=f"CAPTURE{n:010d}",
        invoice_id=f"att_{n}",
        reference_id=f"ORDER{n:012d}",
        reference_type="ODR",
        event_code=CHECKOUT_PAYMENT,
        initiated_at=at - timedelta(minutes=2),
        completed_at=at,
        gross=Money(gross, currency),
        gross_direction="CR",
        fee=Money(fee, currency),
        fee_direction="DR",
        custom=f"att_{n}",
        consumer_id=f"payer{n}@payer.example",
    )


def refund(n: int, paid: int, amount: int, fee_back: int, currency: str = "USD") -> Entry:
    at = START + timedelta(hours=n, minutes=30)
    return Entry(
        transaction_id=f"REFUND{n:011d}",
        invoice_id=f"rf_{n}",
        reference_id=f"CAPTURE{paid:010d}",
        reference_type="TXN",
        event_code=MERCHANT_REFUND,
        initiated_at=at,
        completed_at=at,
        gross=Money(amount, currency),
        gross_direction="DR",
        fee=Money(fee_back, currency),
        fee_direction="CR",
        custom=f"att_{paid}",
    )


ENTRIES = [
    payment(1, 10000, 349),
    payment(2, 2599, 105),  # 03:30 local: after the clocks went forward
    refund(3, 1, 5000, 150),
    payment(4, 8800, 300, "EUR"),
    refund(5, 4, 8800, 300, "EUR"),
]


def report(entries: list[Entry]) -> bytes:
    generated = datetime(2024, 3, 11, 4, 0, tzinfo=ZONE)
    return settlement_report(entries, DAY, ZONE, "MERCHANT7QX3", generated)


GOOD = report(ENTRIES)


def test_sandbox_report_reads_back_entry_for_entry() -> None:
    s = paypal.parse(GOOD, FILE)
    assert s.lines.schema.equals(LINES)
    assert (s.source, s.file, s.account, s.business_date) == (
        "paypal",
        FILE,
        "MERCHANT7QX3",
        DAY,
    )
    assert s.sha256 == hashlib.sha256(GOOD).hexdigest()
    lines = s.lines.to_pylist()
    assert len(lines) == len(ENTRIES)
    for line, entry in zip(lines, ENTRIES, strict=True):
        money_in = entry.gross_direction == "CR"
        fee_charged = entry.fee_direction == "DR"
        assert line["business_date"] == DAY
        assert line["occurred_at"] == entry.completed_at.astimezone(UTC)
        assert line["currency"] == entry.gross.currency
        assert line["amount"] == (entry.gross.amount if money_in else -entry.gross.amount)
        assert line["fee"] == (entry.fee.amount if fee_charged else -entry.fee.amount)
        assert line["net"] == line["amount"] - line["fee"]
        assert line["status"] == entry.event_code
        assert line["memo"] == f"{entry.reference_type}:{entry.reference_id}"
        assert line["payout_id"] is None
        if entry.event_code == MERCHANT_REFUND:
            assert line["kind"] == "refund"
            assert line["channel_txn_id"] == entry.reference_id  # the captured payment
            assert line["channel_refund_id"] == entry.transaction_id
            assert (line["merchant_ref"], line["parent_ref"]) == (entry.invoice_id, entry.custom)
        else:
            assert line["kind"] == "payment"
            assert (line["channel_txn_id"], line["channel_refund_id"]) == (
                entry.transaction_id,
                None,
            )
            assert (line["merchant_ref"], line["parent_ref"]) == (entry.custom, None)
    assert [x["line_no"] for x in lines] == [5, 6, 7, 8, 9]


def test_signs_and_totals_per_currency() -> None:
    s = paypal.parse(GOOD, FILE)
    amounts = [(x["amount"], x["fee"], x["net"]) for x in s.lines.to_pylist()]
    assert amounts == [
        (10000, 349, 9651),
        (2599, 105, 2494),
        (-5000, -150, -4850),
        (8800, 300, 8500),
        (-8800, -300, -8500),
    ]
    assert s.totals == [
        Totals(count=2, amount=0, fee=0, currency="EUR"),
        Totals(count=3, amount=7599, fee=304, currency="USD"),
    ]


def test_day_without_transactions() -> None:
    s = paypal.parse(report([]), FILE)
    assert (s.lines.num_rows, s.totals, s.business_date) == (0, [], DAY)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10**12),
            st.integers(min_value=0, max_value=10**6),
            st.sampled_from(["USD", "EUR", "GBP", "CAD"]),
            st.booleans(),
        ),
        max_size=25,
    )
)
def test_any_entries_read_back_exactly(specs: list[tuple[int, int, str, bool]]) -> None:
    entries = [
        refund(n % 20, n, gross, fee, code) if back else payment(n % 20, gross, fee, code)
        for n, (gross, fee, code, back) in enumerate(specs)
    ]
    lines = paypal.parse(report(entries), FILE).lines.to_pylist()
    read = sorted(
        (x["channel_refund_id"] or x["channel_txn_id"], x["amount"], x["fee"]) for x in lines
    )
    written = sorted(
        (
            e.transaction_id,
            e.gross.amount if e.gross_direction == "CR" else -e.gross.amount,
            e.fee.amount if e.fee_direction == "DR" else -e.fee.amount,
        )
        for e in entries
    )
    assert read == written


# The published version 9 layout: byte order mark, CR LF, dates and numbers unquoted, the RH
# record's trailing comma, "Transaction  Debit or Credit" with two spaces, the v8 and v9 columns,
# empty fee fields on a withdrawal, and SF/RF with four totals then the balances. Amounts carry
# two implied decimals in every currency: JPY 150000 is 1,500 yen.
PUBLISHED = "\r\n".join(
    [
        '\ufeff"RH",2024/08/21 02:44:19 -0700,"A","MERCHANT7QX3",009,',
        '"FH",01',
        '"SH",2024/08/20 00:00:00 -0700,2024/08/20 23:59:59 -0700,"MERCHANT7QX3",""',
        '"CH","Transaction ID","Invoice ID","PayPal Reference ID","PayPal Reference ID Type",'
        '"Transaction Event Code","Transaction Initiation Date","Transaction Completion Date",'
        '"Transaction  Debit or Credit","Gross Transaction Amount","Gross Transaction Currency",'
        '"Fee Debit or Credit","Fee Amount","Fee Currency","Custom Field","Consumer ID",'
        '"Payment Tracking ID","Store ID","Bank Reference ID","Credit Transactional Fee",'
        '"Credit Promotional Fee","Credit Term"',
        '"SB","5TY05013RG002845M","att_1001","7KN40688LF012804R","ODR","T0006",'
        '2024/08/20 09:15:02 -0700,2024/08/20 09:15:04 -0700,"CR",2500,"USD","DR",117,"USD",'
        '"att_1001","buyer@example.com","","","",,,""',
        '"SB","8MC585209K746392H","rf_2001","5TY05013RG002845M","TXN","T1107",'
        '2024/08/20 13:01:11 -0700,2024/08/20 13:01:11 -0700,"DR",1000,"USD","CR",35,"USD",'
        '"att_1001","","","","",,,""',
        '"SB","1JY12345AB678901C","att_1002","2AB34567CD890123E","ODR","T0006",'
        '2024/08/20 15:30:00 -0700,2024/08/20 15:30:02 -0700,"CR",150000,"JPY","DR",5800,"JPY",'
        '"att_1002","jp@example.com","","","",,,""',
        '"SB","9XW98765ZY432109V","","","","T0400",'
        '2024/08/20 18:00:00 -0700,2024/08/20 18:00:00 -0700,"DR",100000,"USD","",,"",'
        '"","","","","BANKREF42",,,""',
        '"SB","3FE00000AA000000F","","","","T0100",'
        '2024/08/20 23:59:00 -0700,2024/08/20 23:59:00 -0700,"DR",500,"USD","",,"",'
        '"","","","","",,,""',
        '"SF","JPY",150000,0,0,5800,"CR",0,"CR",144200,"CR",0,"CR",144200,"CR",0,"CR",0',
        '"SF","USD",2500,101500,35,117,"CR",250000,"CR",150918,"CR",250000,"CR",150918,"CR",0,'
        '"CR",0',
        '"SC",5',
        '"RF","JPY",150000,0,0,5800,"CR",0,"CR",144200,"CR",0,"CR",144200,"CR",0,"CR",0',
        '"RF","USD",2500,101500,35,117,"CR",250000,"CR",150918,"CR",250000,"CR",150918,"CR",0,'
        '"CR",0',
        '"RC",5',
        '"FF",5',
        "",
    ]
).encode("utf-8")
PUBLISHED_FILE = "STL-20240820.01.009.CSV"


def test_published_layout() -> None:
    s = paypal.parse(PUBLISHED, PUBLISHED_FILE)
    assert (s.account, s.business_date) == ("MERCHANT7QX3", date(2024, 8, 20))
    pay, back, yen, withdrawal, monthly = s.lines.to_pylist()
    assert pay["occurred_at"] == datetime(2024, 8, 20, 16, 15, 4, tzinfo=UTC)
    assert (pay["kind"], pay["amount"], pay["fee"], pay["net"]) == ("payment", 2500, 117, 2383)
    assert (pay["merchant_ref"], pay["channel_txn_id"]) == ("att_1001", "5TY05013RG002845M")
    assert (back["kind"], back["amount"], back["fee"], back["net"]) == ("refund", -1000, -35, -965)
    assert (back["channel_txn_id"], back["channel_refund_id"]) == (
        "5TY05013RG002845M",
        "8MC585209K746392H",
    )
    assert (back["merchant_ref"], back["parent_ref"]) == ("rf_2001", "att_1001")
    assert (yen["currency"], yen["amount"], yen["fee"], yen["net"]) == ("JPY", 1500, 58, 1442)
    assert (withdrawal["kind"], withdrawal["amount"], withdrawal["fee"]) == ("payout", -100000, 0)
    assert (withdrawal["payout_id"], withdrawal["memo"]) == ("9XW98765ZY432109V", "BANKREF42")
    assert (monthly["kind"], monthly["amount"], monthly["merchant_ref"]) == ("fee", -500, None)
    assert [x["line_no"] for x in s.lines.to_pylist()] == [5, 6, 7, 8, 9]
    assert s.totals == [
        Totals(count=1, amount=1500, fee=58, currency="JPY"),
        Totals(count=4, amount=-99000, fee=82, currency="USD"),
    ]


def test_t_codes_to_kinds() -> None:
    codes = pa.array(["T0006", "T0000", "T0100", "T0400", "T1107", "T1106", "T1201", "T1108"])
    kinds = paypal._kinds(codes).to_pylist()
    assert kinds == [
        "payment",
        "payment",
        "fee",
        "payout",
        "refund",
        "adjustment",
        "adjustment",
        "fee",
    ]
    assert paypal._kinds(pa.array(["T0200", "T2201", "T9900"])).to_pylist() == ["other"] * 3


# --- refusals ---------------------------------------------------------------------------------


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def joined(lines: list[bytes]) -> bytes:
    return b"\r\n".join(lines)


@pytest.mark.parametrize(
    ("drop", "line"),
    [
        (b'"FF"', None),  # the file footer
        (b'"RC"', 15),  # report count: named where FF stands instead
        (b'"SC"', 12),
    ],
)
def test_missing_footer_is_truncated(drop: bytes, line: int | None) -> None:
    kept = [x for x in lines_of(PUBLISHED) if not x.startswith(drop)]
    error = refused(joined(kept), StatementCode.TRUNCATED, line)
    assert drop.strip(b'"').decode() in error.message


def test_cut_after_the_body_is_truncated() -> None:
    cut = PUBLISHED[: PUBLISHED.index(b'"SF"')]
    refused(cut, StatementCode.TRUNCATED, None)


def test_cut_inside_a_body_record_is_truncated() -> None:
    cut = PUBLISHED[: PUBLISHED.index(b"BANKREF42")]
    refused(cut, StatementCode.TRUNCATED, 8)


def test_cut_inside_the_file_footer_is_truncated() -> None:
    refused(PUBLISHED[: PUBLISHED.rindex(b'"FF"') + 3], StatementCode.TRUNCATED, 16)


def test_bad_encoding_names_the_line() -> None:
    data = PUBLISHED.replace(b"buyer@example.com", b"k\xf6ufer@example.com")
    refused(data, StatementCode.ENCODING, 5)


@pytest.mark.parametrize(
    ("record", "good", "bad", "line"),
    [
        (b'"SF","USD"', b"2500,101500", b"2500,101499", 11),
        (b'"SF","USD"', b",35,117,", b",35,118,", 11),
        (b'"SF","JPY"', b"150000,0,0,5800", b"150000,0,0,5900", 10),
        (b'"RF","USD"', b"2500,101500", b"2600,101500", 14),
        (b'"SC"', b'"SC",5', b'"SC",4', 12),
        (b'"RC"', b'"RC",5', b'"RC",6', 15),
        (b'"FF"', b'"FF",5', b'"FF",50', 16),
    ],
)
def test_declared_totals_that_do_not_add_up(
    record: bytes, good: bytes, bad: bytes, line: int
) -> None:
    lines = lines_of(PUBLISHED)
    at = next(i for i, x in enumerate(lines) if x.startswith(record))
    assert good in lines[at]
    lines[at] = lines[at].replace(good, bad, 1)
    refused(joined(lines), StatementCode.TOTALS_MISMATCH, line)


def test_currency_with_records_but_no_footer() -> None:
    kept = [x for x in lines_of(PUBLISHED) if not x.startswith(b'"SF","JPY"')]
    refused(joined(kept), StatementCode.TOTALS_MISMATCH, 11)


def test_unknown_column() -> None:
    data = PUBLISHED.replace(b'"Store ID"', b'"Store Number"')
    error = refused(data, StatementCode.UNKNOWN_COLUMN, 4)
    assert "Store Number" in error.message


@pytest.mark.parametrize("column", [b"Fee Amount", b"Custom Field", b"Transaction Event Code"])
def test_missing_column(column: bytes) -> None:
    lines = lines_of(PUBLISHED)
    header = lines[3].split(b",")
    at = header.index(b'"' + column + b'"')
    lines = [
        b",".join(x.split(b",")[:at] + x.split(b",")[at + 1 :]) if x.startswith(b'"SB"') else x
        for x in lines
    ]
    lines[3] = b",".join(header[:at] + header[at + 1 :])
    error = refused(joined(lines), StatementCode.MISSING_COLUMN, 4)
    assert column.decode() in error.message


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        (b'"CR",2500,"USD"', b'"CR",25.00,"USD"'),
        (b'"CR",2500,"USD"', b'"CR",-2500,"USD"'),
        (b'"CR",2500,"USD"', b'"CR",,"USD"'),
        (b'"CR",2500,"USD"', b'"C",2500,"USD"'),
        (b'"CR",2500,"USD"', b'"CR",2500,"US"'),
        (b'"DR",117,"USD"', b'"DR",117,"EUR"'),
        (b'"DR",117,"USD"', b'"",117,"USD"'),
        (b'"DR",117,"USD"', b'"DR",1.17,"USD"'),
        (b'"T0006"', b'"TX006"'),
        (b"09:15:04 -0700", b"09:15:04 PDT"),
        (b"2024/08/20 09:15:04", b"2024/02/30 09:15:04"),
        (b"2024/08/20 09:15:04", b"2024-08-20 09:15:04"),
        (b"09:15:04 -0700", b"09:15:04 -0790"),
        (b'"5TY05013RG002845M","att_1001"', b'"","att_1001"'),
    ],
)
def test_bad_values_name_their_record(good: bytes, bad: bytes) -> None:
    first = PUBLISHED.index(b'"SB"')
    body = PUBLISHED[first:]
    assert good in body
    refused(PUBLISHED[:first] + body.replace(good, bad, 1), StatementCode.BAD_VALUE, 5)


def test_yen_amount_that_is_not_whole_yen() -> None:
    data = PUBLISHED.replace(b'"CR",150000,"JPY","DR",5800', b'"CR",150050,"JPY","DR",5800')
    refused(data, StatementCode.BAD_VALUE, 7)


def test_body_record_with_extra_fields() -> None:
    lines = lines_of(PUBLISHED)
    lines[5] += b',""'
    refused(joined(lines), StatementCode.BAD_VALUE, 6)


def test_body_record_outside_a_section() -> None:
    lines = lines_of(PUBLISHED)
    lines.insert(16, lines[4])  # after FF
    refused(joined(lines), StatementCode.BAD_VALUE, 17)


def test_unknown_record_type() -> None:
    lines = lines_of(PUBLISHED)
    lines.insert(12, b'"XX",1')
    refused(joined(lines), StatementCode.BAD_VALUE, 13)


def test_not_a_settlement_report() -> None:
    refused(b"Date,Time,Name,Gross\r\n", StatementCode.UNSUPPORTED, 1)


def test_empty_file_is_truncated() -> None:
    refused(b"", StatementCode.TRUNCATED, 1)


def test_sandbox_footer_layout_is_checked_too() -> None:
    data = GOOD.replace(b'"SF","USD","CR",12599', b'"SF","USD","CR",12598')
    assert data != GOOD
    refused(data, StatementCode.TOTALS_MISMATCH, 11)


def two_sections(second_header: bytes | None = None) -> bytes:
    """PUBLISHED with its body split over two sections, each with its own footers."""
    lines = lines_of(PUBLISHED)
    head, body, report_footers = lines[:4], lines[4:9], lines[12:]
    return joined(
        [
            *head,
            *body[:2],
            b'"SF","USD",2500,1000,35,117,"CR",0,"CR",0,"CR",0,"CR",0,"CR",0,"CR",0',
            b'"SC",2',
            head[2],
            second_header or head[3],
            *body[2:],
            b'"SF","JPY",150000,0,0,5800,"CR",0,"CR",0,"CR",0,"CR",0,"CR",0,"CR",0',
            b'"SF","USD",0,100500,0,0,"CR",0,"CR",0,"CR",0,"CR",0,"CR",0,"CR",0',
            b'"SC",3',
            *report_footers,
        ]
    )


def test_sections_are_counted_and_summed_apart() -> None:
    s = paypal.parse(two_sections(), PUBLISHED_FILE)
    assert s.lines.column("line_no").to_pylist() == [5, 6, 11, 12, 13]
    assert s.lines.column("amount").to_pylist() == [2500, -1000, 1500, -100000, -500]
    assert [t.currency for t in s.totals] == ["JPY", "USD"]


def test_section_footer_checked_per_section() -> None:
    refused(two_sections().replace(b'"SC",2', b'"SC",3'), StatementCode.TOTALS_MISMATCH, 8)


def test_second_section_with_other_columns() -> None:
    other = lines_of(PUBLISHED)[3].replace(b'"Credit Term"', b'"Store ID"')
    refused(two_sections(other), StatementCode.UNKNOWN_COLUMN, 10)


def test_report_header_without_account() -> None:
    data = PUBLISHED.replace(b'"A","MERCHANT7QX3"', b'"A",""')
    refused(data, StatementCode.BAD_VALUE, 1)
