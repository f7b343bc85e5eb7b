"""MT940: a published layout (SWIFT envelope, structured :86:, CR LF), exact amounts, and every
refusal with its code and line."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from clearhouse.reconciliation.statements import mt940
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import LINES

STRUCTURED = (Path(__file__).parent / "data" / "mt940_structured.sta").read_bytes()

PLAIN = b"""\
:20:STMT20260112
:25:31050161393600001234
:28C:00012/001
:60F:C260111CNY1000000,00
:61:2601120112D21288,23NTRFNONREF//DB202601120003
PAYOUT BATCH 2 ITEMS
:86:PAYOUT BATCH wdb_01kf0000000000000000000009 2 ITEMS
:61:2601120112C56000,NTRFNONREF//CR202601120001
:86:ALIPAY WITHDRAWAL 20260112200040011100960012345678
:61:2601120112D0,10NCHGNONREF//FE202601120004
:86:SERVICE CHARGE
:62F:C260112CNY1034711,67
-
"""


def line_of(data: bytes, needle: bytes, nth: int = 1) -> int:
    at = -1
    for _ in range(nth):
        at = data.index(needle, at + 1)
    return data.count(b"\n", 0, at) + 1


def refused(data: bytes, code: StatementCode, line: int | None = None) -> StatementError:
    with pytest.raises(StatementError) as caught:
        mt940.parse(data, "day.sta")
    assert caught.value.code is code, caught.value
    assert caught.value.file == "day.sta"
    if line is not None:
        assert caught.value.line == line, caught.value
    return caught.value


def test_published_layout_with_envelope_and_structured_details():
    s = mt940.parse(STRUCTURED, "ing.sta")
    assert s.lines.schema.equals(LINES)
    assert (s.source, s.account, s.business_date) == (
        "bank",
        "NL91EXMP0417164300EUR",
        date(2026, 1, 12),
    )
    assert s.sha256 == hashlib.sha256(STRUCTURED).hexdigest()
    rows = s.lines.to_pylist()
    assert [r["amount"] for r in rows] == [-125000, 842055, -750, 30000]
    assert [r["line_no"] for r in rows] == [line_of(STRUCTURED, b":61:", n) for n in (1, 2, 3, 4)]
    assert [r["channel_txn_id"] for r in rows] == [f"00000000000{n}" for n in (101, 102, 103, 104)]
    assert [r["merchant_ref"] for r in rows] == ["PREF", None, None, None]
    assert [r["kind"] for r in rows] == ["transfer", "transfer", "fee", "transfer"]
    assert [r["status"] for r in rows] == ["D", "C", "D", "C"]
    # Wrapped 65-character lines are joined back: the payout id survives the wrap.
    assert rows[1]["memo"].endswith("//REMI/USTD//STRIPE PAYOUT po_1QZx7LkZt8cYw2PmAbCdEfGh/")
    assert "RETURNED PAYMENT" in rows[3]["memo"]
    # The :86: after the closing balance is about the statement, no line's memo.
    assert all("/NAME/" not in r["memo"] for r in rows)
    assert rows[0]["occurred_at"] == datetime(2026, 1, 12, tzinfo=UTC)
    (totals,) = s.totals
    assert (totals.count, totals.amount, totals.currency) == (4, 746305, "EUR")


def test_plain_layout_amounts_are_exact_minor_units():
    rows = mt940.parse(PLAIN, "p.sta").lines.to_pylist()
    assert [r["amount"] for r in rows] == [-2128823, 5600000, -10]
    assert rows[0]["memo"] == "PAYOUT BATCH wdb_01kf0000000000000000000009 2 ITEMS"
    assert [r["line_no"] for r in rows] == [5, 8, 10]


def test_currency_without_minor_units():
    data = (
        b":20:JP1\n:25:JP-ACCOUNT-1\n:28C:1/1\n:60F:C260112JPY1000,\n"
        b":61:2601120112C1500,NTRFNONREF//R1\n:62F:C260112JPY2500,\n-\n"
    )
    assert mt940.parse(data, "jp.sta").lines.column("amount").to_pylist() == [1500]
    refused(data.replace(b"C1500,NTRF", b"C1500,5NTRF"), StatementCode.BAD_VALUE, 5)


def test_reversal_marks_are_signed():
    data = PLAIN.replace(b"2601120112D0,10NCHG", b"2601120112RC0,10NCHG")
    # RC (a credit reversed) takes money out like a debit: the balances still hold.
    assert mt940.parse(data, "r.sta").lines.column("amount").to_pylist()[2] == -10


def test_sums_of_debits_and_credits_are_checked():
    with_sums = PLAIN.replace(b":62F:", b":90D:2CNY21288,33\n:90C:1CNY56000,00\n:62F:")
    assert mt940.parse(with_sums, "s.sta").lines.num_rows == 3
    wrong = with_sums.replace(b":90D:2CNY21288,33", b":90D:2CNY21288,34")
    refused(wrong, StatementCode.TOTALS_MISMATCH, line_of(wrong, b":90D:"))


def test_balances_that_do_not_add_up():
    data = PLAIN.replace(b"1034711,67", b"1034711,68")
    refused(data, StatementCode.TOTALS_MISMATCH, line_of(PLAIN, b":62F:"))


def test_truncated_without_a_closing_balance():
    cut = PLAIN[: PLAIN.index(b":62F:")]
    refused(cut, StatementCode.TRUNCATED)
    refused(STRUCTURED[: STRUCTURED.index(b":61:", 600)], StatementCode.TRUNCATED)


@pytest.mark.parametrize("tag", [b":25:", b":60F:", b":28C:", b":20:"])
def test_missing_required_fields(tag):
    start = PLAIN.index(tag)
    end = PLAIN.index(b"\n", start) + 1
    refused(PLAIN[:start] + PLAIN[end:], StatementCode.MISSING_COLUMN)


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        (b"D21288,23NTRF", b"D21288,2,3NTRF", b":61:2601120112D"),
        (b":61:2601120112C56000", b":61:2613120112C56000", b":61:2601120112C56000"),
        (b":60F:C260111CNY", b":60F:C260111CNZ", b":60F:"),
        (b":60F:C260111CNY1000000,00", b":60F:X260111CNY1000000,00", b":60F:"),
        (b"1034711,67", b"1034711,6A", b":62F:"),
    ],
)
def test_bad_values_name_their_line(old, new, needle):
    assert old in PLAIN
    refused(PLAIN.replace(old, new), StatementCode.BAD_VALUE, line_of(PLAIN, needle))


def test_a_statement_line_without_its_type_code():
    # Without a type code the package folds the next :61: into this one: refused instead.
    data = PLAIN.replace(b"D0,10NCHGNONREF//FE202601120004", b"D0,10")
    data = data.replace(b"C56000,NTRFNONREF//CR202601120001", b"C56000,")
    refused(data, StatementCode.BAD_VALUE, line_of(PLAIN, b":61:", 2))


def test_bytes_that_do_not_decode():
    data = PLAIN.replace(b"SERVICE CHARGE", "SERVICE CHARGE É".encode("latin-1"))
    refused(data, StatementCode.ENCODING, line_of(PLAIN, b"SERVICE CHARGE"))
    # Told the file's encoding, the same bytes read.
    assert mt940.parse(data, "l.sta", encoding="latin-1").lines.to_pylist()[2]["memo"] == (
        "SERVICE CHARGE É"
    )


@pytest.mark.parametrize("data", [b"", b"hello", b'<?xml version="1.0"?><Document/>'])
def test_not_mt940(data):
    refused(data, StatementCode.UNSUPPORTED)


def test_two_statements_in_one_file():
    refused(PLAIN + PLAIN, StatementCode.UNSUPPORTED, PLAIN.count(b"\n") + 1)


def test_line_in_another_currency_than_the_statement():
    data = PLAIN.replace(b":62F:C260112CNY", b":62F:C260112USD")
    refused(data, StatementCode.BAD_VALUE, line_of(PLAIN, b":62F:"))
