"""camt.053: the published layouts (.001.02 and .001.08), batch entries, and every refusal with
its code and line."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from clearhouse.reconciliation.statements import camt053
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import LINES

DATA = Path(__file__).parent / "data"
V02 = (DATA / "camt053_v02.xml").read_bytes()
V08 = (DATA / "camt053_v08.xml").read_bytes()


def line_of(data: bytes, needle: str, nth: int = 1) -> int:
    """The 1-based line of the nth occurrence of ``needle``."""
    text = data.decode()
    at = -1
    for _ in range(nth):
        at = text.index(needle, at + 1)
    return text.count("\n", 0, at) + 1


def refused(data: bytes, code: StatementCode, line: int | None = None) -> StatementError:
    with pytest.raises(StatementError) as caught:
        camt053.parse(data, "statement.xml")
    assert caught.value.code is code, caught.value
    assert caught.value.file == "statement.xml"
    if line is not None:
        assert caught.value.line == line, caught.value
    return caught.value


# --- the published layouts --------------------------------------------------------------


def test_v02_layout_with_a_batch_booked_entry():
    s = camt053.parse(V02, "v02.xml")
    assert s.lines.schema.equals(LINES)
    assert (s.source, s.account, s.business_date) == (
        "bank",
        "NL91EXMP0417164300",
        date(2026, 1, 12),
    )
    assert s.sha256 == hashlib.sha256(V02).hexdigest()
    rows = s.lines.to_pylist()
    assert [r["amount"] for r in rows] == [-50000, -44999, -30001, 842055, -750, 30000]
    assert [r["net"] for r in rows] == [r["amount"] for r in rows]
    assert {r["fee"] for r in rows} == {0}
    assert {r["currency"] for r in rows} == {"EUR"}
    # The batch: one line per transaction detail, grouped by the entry's bank reference.
    batch = rows[:3]
    assert {r["payout_id"] for r in batch} == {"2026011200000101"}
    assert [r["merchant_ref"] for r in batch] == [
        "wdr_01kf00000000000000000000a1",
        "wdr_01kf00000000000000000000a2",
        "wdr_01kf00000000000000000000a3",
    ]
    assert [r["channel_txn_id"] for r in batch] == [f"2026011200000101/{n}" for n in (1, 2, 3)]
    assert batch[2]["memo"] == "WITHDRAWAL wdr_01kf00000000000000000000a3"  # two Ustrd joined
    assert [r["line_no"] for r in batch] == [line_of(V02, "<TxDtls>", n) for n in (1, 2, 3)]
    assert all(r["kind"] == "transfer" for r in batch)
    # A payout received: NOTPROVIDED is no reference of ours.
    stripe = rows[3]
    assert stripe["merchant_ref"] is None
    assert stripe["payout_id"] is None
    assert stripe["channel_txn_id"] == "2026011200000102"
    assert stripe["memo"] == "STRIPE PAYOUT po_1QZx7LkZt8cYw2PmAbCdEfGh"
    # A charge, and a returned payment (a reversal: back in, so positive).
    assert (rows[4]["kind"], rows[4]["memo"]) == ("fee", "SERVICE CHARGES DECEMBER")
    assert rows[5]["merchant_ref"] == "wdr_01kf00000000000000000000b7"
    assert rows[5]["memo"] == "RETURNED PAYMENT AC04 ACCOUNT CLOSED"
    assert rows[5]["line_no"] == line_of(V02, "<Ntry>", 4)
    assert {r["status"] for r in rows} == {"BOOK"}
    assert rows[0]["occurred_at"] == datetime(2026, 1, 12, tzinfo=UTC)
    (totals,) = s.totals
    assert (totals.count, totals.amount, totals.fee, totals.currency) == (6, 746305, 0, "EUR")
    assert totals.amount == sum(r["amount"] for r in rows)


def test_v08_layout_other_account_times_and_pending_entries():
    s = camt053.parse(V08, "v08.xml")
    assert s.account == "31050161393600001234"
    assert s.business_date == date(2026, 1, 12)
    rows = s.lines.to_pylist()
    # The pending entry moves no money and is left out; the interim balance is not a closing.
    assert "PD202601120005" not in {r["channel_txn_id"] for r in rows}
    assert [r["amount"] for r in rows] == [5600000, 2523345, -2100000, -28823, -2255, 1255]
    alipay = rows[0]
    assert alipay["memo"] == "支付宝 提现 20260112200040011100960012345678"
    # A date-time with an offset: the bank's day as written, the instant in UTC.
    assert alipay["occurred_at"] == datetime(2026, 1, 12, 1, 12, 44, tzinfo=UTC)
    assert alipay["business_date"] == date(2026, 1, 12)
    assert rows[1]["merchant_ref"] == "1900000109202601120001"
    batch = rows[2:4]
    assert {r["payout_id"] for r in batch} == {"DB202601120003"}
    assert [r["channel_txn_id"] for r in batch] == ["DB202601120003-1", "DB202601120003-2"]
    assert [r["merchant_ref"] for r in batch] == [
        "wdr_01kf00000000000000000000c1",
        "wdr_01kf00000000000000000000c2",
    ]
    assert rows[4]["kind"] == "fee"
    assert rows[5]["kind"] == "transfer"
    assert rows[5]["memo"] == "结息"
    assert s.totals[0].amount == 5993522 == sum(r["amount"] for r in rows)


def test_any_namespace_prefix_and_a_business_message_envelope():
    prefixed = re.sub(rb"<(/?)(?=[A-Za-z])", rb"<\1c:", V02.split(b"\n", 1)[1])
    prefixed = prefixed.replace(b'xmlns="urn', b'xmlns:c="urn')
    assert camt053.parse(prefixed, "p.xml").lines.num_rows == 6
    body = V08.split(b"\n", 1)[1]
    enveloped = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<BizMsgEnvlp>\n'
        b'<AppHdr xmlns="urn:iso:std:iso:20022:tech:xsd:head.001.001.02">'
        b"<MsgDefIdr>camt.053.001.08</MsgDefIdr></AppHdr>\n" + body + b"</BizMsgEnvlp>\n"
    )
    assert camt053.parse(enveloped, "e.xml").lines.num_rows == 6


def test_trailing_zeros_beyond_the_currency_are_exact():
    data = V02.replace(b">7.50<", b">7.50000<")
    assert camt053.parse(data, "z.xml").lines.column("amount").to_pylist()[4] == -750


def test_a_batch_without_details_is_one_line_under_our_batch_id():
    start = V02.index(b"<TxDtls>")
    end = V02.index(b"</NtryDtls>")
    data = V02[:start] + V02[end:]
    rows = camt053.parse(data, "b.xml").lines.to_pylist()
    assert rows[0]["amount"] == -125000
    assert rows[0]["merchant_ref"] == "wdb_01kf0000000000000000000001"
    assert rows[0]["payout_id"] == "2026011200000101"
    assert rows[0]["memo"] == "TOTAAL 3 POSTEN"


# --- totals -------------------------------------------------------------------------------


def test_details_that_do_not_make_the_entry_are_refused_at_the_entry():
    data = V02.replace(b'<Amt Ccy="EUR">449.99</Amt>', b'<Amt Ccy="EUR">449.98</Amt>')
    error = refused(data, StatementCode.TOTALS_MISMATCH, line_of(V02, "<Ntry>"))
    assert "3 transaction details" in error.message


def test_batch_count_and_total_are_checked():
    data = V02.replace(b"<NbOfTxs>3</NbOfTxs>", b"<NbOfTxs>4</NbOfTxs>")
    refused(data, StatementCode.TOTALS_MISMATCH, line_of(V02, "<Btch>"))
    data = V08.replace(b'<TtlAmt Ccy="CNY">21288.23', b'<TtlAmt Ccy="CNY">21288.24')
    refused(data, StatementCode.TOTALS_MISMATCH, line_of(V08, "<TtlAmt"))


def test_balances_that_do_not_add_up():
    data = V02.replace(b'<Amt Ccy="EUR">32463.05</Amt>', b'<Amt Ccy="EUR">32463.06</Amt>')
    error = refused(data, StatementCode.TOTALS_MISMATCH, line_of(V02, "<Cd>CLBD</Cd>") - 3)
    assert "opening 2500000" in error.message


def test_summary_that_disagrees_with_the_entries():
    data = V02.replace(b"<NbOfNtries>4</NbOfNtries>", b"<NbOfNtries>5</NbOfNtries>")
    refused(data, StatementCode.TOTALS_MISMATCH, line_of(V02, "<TtlNtries>"))
    data = V02.replace(b"<Sum>1257.50</Sum>", b"<Sum>1257.00</Sum>")
    refused(data, StatementCode.TOTALS_MISMATCH, line_of(V02, "<Sum>1257.50"))


def test_a_batch_detail_without_an_amount():
    data = V02.replace(
        b'<AmtDtls>\n                            <TxAmt>\n                                <Amt Ccy="EUR">449.99</Amt>\n                            </TxAmt>\n                        </AmtDtls>',
        b"",
    )
    refused(data, StatementCode.MISSING_COLUMN, line_of(V02, "<TxDtls>", 2))


# --- truncated, encoding, not a statement -------------------------------------------------


def test_cut_xml_is_truncated():
    cut = V02[: V02.index(b"<Ntry>", V02.index(b"<Ntry>") + 1) + 40]
    refused(cut, StatementCode.TRUNCATED)


def test_no_closing_balance_is_truncated():
    start = V02.index(b"<Bal>", V02.index(b"<Bal>") + 1)
    end = V02.index(b"</Bal>", start) + len(b"</Bal>")
    error = refused(V02[:start] + V02[end:], StatementCode.TRUNCATED)
    assert "CLBD" in error.message


def test_bytes_that_are_not_the_declared_encoding():
    data = V02.replace(b"STRIPE PAYMENTS", "STRIPE PAYMENTS É".encode("latin-1"))
    refused(data, StatementCode.ENCODING, line_of(V02, "STRIPE PAYMENTS"))
    refused(V02.replace(b'encoding="UTF-8"', b'encoding="X-NOPE"'), StatementCode.ENCODING, 1)


def test_declared_single_byte_encoding_is_read():
    data = V02.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"')
    data = data.replace(b"J. JANSEN", "J. JANSEN É".encode("latin-1"))
    assert camt053.parse(data, "l.xml").lines.num_rows == 6


def test_byte_order_marks():
    assert camt053.parse(b"\xef\xbb\xbf" + V02, "bom.xml").lines.num_rows == 6
    utf16 = V02.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert camt053.parse(utf16, "u16.xml").lines.num_rows == 6


@pytest.mark.parametrize(
    "data",
    [b"", b"   ", b"hello, world", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", b":20:STMT\n:25:X\n"],
)
def test_not_xml(data):
    refused(data, StatementCode.UNSUPPORTED)


def test_broken_xml_names_the_line():
    data = V02.replace(b"<BookgDt>", b"<BookgDt", 1)
    refused(data, StatementCode.UNSUPPORTED, line_of(V02, "<BookgDt>") + 1)


def test_other_camt_messages_are_not_statements():
    report = V02.replace(b"BkToCstmrStmt", b"BkToCstmrAcctRpt").replace(b"<Stmt>", b"<Rpt>")
    refused(report.replace(b"</Stmt>", b"</Rpt>"), StatementCode.UNSUPPORTED)


def test_two_statements_in_one_document():
    start = V02.index(b"<Stmt>")
    end = V02.index(b"</Stmt>") + len(b"</Stmt>")
    doubled = V02[:end] + V02[start:end] + V02[end:]
    refused(doubled, StatementCode.UNSUPPORTED, V02[:end].count(b"\n") + 1)


# --- missing elements, bad values ---------------------------------------------------------


def test_missing_required_elements():
    no_account = V02.replace(b"<IBAN>NL91EXMP0417164300</IBAN>", b"")
    refused(no_account, StatementCode.MISSING_COLUMN, line_of(V02, "<Acct>"))
    no_opening = V02.replace(b"<Cd>OPBD</Cd>", b"<Cd>XXXX</Cd>")
    refused(no_opening, StatementCode.MISSING_COLUMN)
    no_indicator = V02.replace(b"<CdtDbtInd>DBIT</CdtDbtInd>\n                <Sts>", b"<Sts>", 1)
    refused(no_indicator, StatementCode.MISSING_COLUMN, line_of(V02, "<Ntry>"))
    no_currency = V02.replace(b'<Amt Ccy="EUR">8420.55', b"<Amt>8420.55")
    refused(no_currency, StatementCode.MISSING_COLUMN, line_of(V02, '<Amt Ccy="EUR">8420.55'))
    no_date = V02.replace(
        b"<BookgDt>\n                    <Dt>2026-01-12</Dt>\n                </BookgDt>\n"
        b"                <ValDt>\n                    <Dt>2026-01-12</Dt>\n"
        b"                </ValDt>\n                <AcctSvcrRef>2026011200000103",
        b"<AcctSvcrRef>2026011200000103",
    )
    refused(no_date, StatementCode.MISSING_COLUMN, line_of(V02, "<Ntry>", 3))


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        (b">8420.55<", b">8,420.55<", ">8420.55<"),
        (b">8420.55<", b">-8420.55<", ">8420.55<"),
        (b">8420.55<", b">8420.555<", ">8420.55<"),
        (b">8420.55<", b">1e3<", ">8420.55<"),
        (b'Ccy="EUR">7.50', b'Ccy="EUX">7.50', 'Ccy="EUR">7.50'),
        (
            b"<Dt>2026-01-12</Dt>\n                </BookgDt>",
            b"<Dt>2026-13-12</Dt>\n                </BookgDt>",
            "<Dt>2026-01-12</Dt>\n                </BookgDt>",
        ),
        (
            b"<CdtDbtInd>CRDT</CdtDbtInd>\n                <RvslInd>",
            b"<CdtDbtInd>CR</CdtDbtInd>\n                <RvslInd>",
            "<CdtDbtInd>CRDT</CdtDbtInd>\n                <RvslInd>",
        ),
    ],
)
def test_bad_values_name_their_line(old, new, needle):
    assert old in V02
    refused(V02.replace(old, new, 1), StatementCode.BAD_VALUE, line_of(V02, needle))


def test_an_entry_in_another_currency():
    data = V02.replace(b'<Amt Ccy="EUR">7.50</Amt>', b'<Amt Ccy="USD">7.50</Amt>')
    refused(data, StatementCode.BAD_VALUE, line_of(V02, "<Ntry>", 3))


# --- hostile documents --------------------------------------------------------------------


def test_external_entities_are_refused_and_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    doctype = (
        f'<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'.encode() + b"<Document"
    )
    data = V02.replace(b"<Document", doctype, 1).replace(
        b"<Ustrd>STRIPE PAYOUT", b"<Ustrd>&xxe; STRIPE PAYOUT"
    )
    error = refused(data, StatementCode.UNSUPPORTED)
    assert "TOP-SECRET" not in str(error)


def test_entity_expansion_is_refused():
    bomb = b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
    for n in range(1, 10):
        bomb += f'<!ENTITY {chr(97 + n)} "{("&" + chr(96 + n) + ";") * 10}">'.encode()
    bomb += b"]>\n<Document><BkToCstmrStmt>&j;</BkToCstmrStmt></Document>"
    refused(bomb, StatementCode.UNSUPPORTED)
