"""Quick pay's daily file: the sandbox's writer read back into statement lines in the merchant's
view, the trailer checked, the two acquirers told apart only by the channel, and malformed files
refused whole with the file and line named."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from clearhouse.money import Money
from clearhouse.reconciliation import formats
from clearhouse.reconciliation.statements import quickpay
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.sandbox.quickpay.files import FileLine, daily_file

DAY = date(2026, 11, 2)
MER_ID = "898123456789012"
AT = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
CARD = "621999*********0010"
FILE = "QPRF_898123456789012_20261102.txt"


def fen(amount: int) -> Money:
    return Money(amount, "CNY")


def sample() -> str:
    """A payment, a late duplicate charge of another, and a partial refund of the first."""
    lines = [
        FileLine("01", "att-1", "", "q1", AT, AT, CARD, fen(10_000), fen(50)),
        FileLine("01", "att-2", "", "q2", AT, AT + timedelta(hours=1), CARD, fen(750), fen(4)),
        FileLine("01", "att-2", "", "q3", AT, AT + timedelta(hours=1), CARD, fen(750), fen(4)),
        FileLine("04", "rf-1", "att-1", "q4", AT, AT + timedelta(hours=2), CARD, fen(-3_000), fen(-15)),
    ]  # fmt: skip
    return daily_file(MER_ID, DAY, lines, AT + timedelta(days=1))


def refused(text: str, code: StatementCode, line: int | None) -> StatementError:
    with pytest.raises(StatementError) as caught:
        quickpay.parse(text.encode(), FILE)
    assert (caught.value.code, caught.value.file, caught.value.line) == (code, FILE, line)
    return caught.value


def test_the_sandbox_file_reads_back_in_the_merchants_view() -> None:
    statement = quickpay.parse(sample().encode(), FILE, source="quickpay_b")
    assert (statement.source, statement.account, statement.business_date) == (
        "quickpay_b",
        MER_ID,
        DAY,
    )
    rows = statement.lines.to_pylist()
    got = [
        (
            r["line_no"],
            r["kind"],
            r["merchant_ref"],
            r["parent_ref"],
            r["channel_txn_id"],
            r["channel_refund_id"],
            r["amount"],
            r["fee"],
            r["net"],
        )
        for r in rows
    ]
    assert got == [
        (2, "payment", "att-1", None, "q1", None, 10_000, 50, 9_950),
        (3, "payment", "att-2", None, "q2", None, 750, 4, 746),
        (4, "payment", "att-2", None, "q3", None, 750, 4, 746),
        (5, "refund", "rf-1", "att-1", None, "q4", -3_000, -15, -2_985),
    ]
    assert {r["source"] for r in rows} == {"quickpay_b"}
    assert {(r["currency"], r["business_date"], r["status"]) for r in rows} == {("CNY", DAY, None)}
    assert [r["occurred_at"] for r in rows] == [
        AT,
        AT + timedelta(hours=1),
        AT + timedelta(hours=1),
        AT + timedelta(hours=2),
    ]
    assert rows[0]["memo"] == CARD
    [totals] = statement.totals
    assert (totals.count, totals.amount, totals.fee, totals.currency) == (4, 8_500, 43, "CNY")


def test_a_quiet_day_is_a_file_without_lines() -> None:
    statement = quickpay.parse(daily_file(MER_ID, DAY, [], AT).encode(), FILE)
    assert (statement.source, statement.lines.num_rows) == ("quickpay", 0)
    assert statement.totals[0].amount == 0


def test_each_acquirer_has_its_format_and_the_channel_picks_it() -> None:
    data = sample().encode()
    assert formats.matched_formats("quickpay") == ["quickpay-file"]
    assert formats.matched_formats("quickpay_b") == ["quickpay_b-file"]
    for channel in ("quickpay", "quickpay_b"):
        found = formats.resolve(data, FILE, channel=channel)
        assert found.source == channel
        assert found.parse(data, FILE).source == channel
    # The bytes tell the layout, not which acquirer wrote it.
    with pytest.raises(StatementError) as caught:
        formats.detect(data, FILE)
    assert caught.value.code is StatementCode.UNSUPPORTED
    assert "quickpay_b" in caught.value.message
    with pytest.raises(StatementError):
        formats.resolve(data, FILE, channel="wechatpay")


def test_a_given_day_or_merchant_must_be_the_files() -> None:
    data = sample().encode()
    fmt = formats.get("quickpay-file")
    assert fmt.parse(data, FILE, business_date=DAY, account=MER_ID).lines.num_rows == 4
    for args in ({"business_date": DAY + timedelta(days=1)}, {"account": "898000000000001"}):
        with pytest.raises(StatementError) as caught:
            fmt.parse(data, FILE, **args)  # type: ignore[arg-type]
        assert (caught.value.code, caught.value.line) == (StatementCode.BAD_VALUE, 1)


def lines_of(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def joined(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def test_a_truncated_file_is_refused() -> None:
    lines = lines_of(sample())
    refused("", StatementCode.TRUNCATED, 1)
    refused(joined(lines[:-1]), StatementCode.TRUNCATED, 5)  # no trailer
    refused(joined(lines[:1]), StatementCode.TRUNCATED, 1)
    cut = lines[:-1]
    cut[-1] = cut[-1][:20]  # cut off in the middle of the last detail line
    refused(joined(cut), StatementCode.TRUNCATED, 5)


def test_a_trailer_that_does_not_add_up_is_refused() -> None:
    lines = lines_of(sample())
    assert lines[-1] == "T|4|3|11500|1|3000|43|8457"
    for wrong in ("T|4|3|11500|1|3000|42|8458", "T|3|3|11500|1|3000|43|8457"):
        error = refused(joined([*lines[:-1], wrong]), StatementCode.TOTALS_MISMATCH, 6)
        assert FILE in str(error)
    # A line whose net is not its amount minus its fee.
    bad = lines[1].rsplit("|", 1)[0] + "|9951"
    refused(joined([lines[0], bad, *lines[2:]]), StatementCode.TOTALS_MISMATCH, 2)


def test_an_unknown_column_or_layout_is_refused() -> None:
    lines = lines_of(sample())
    wide = [lines[0], lines[1] + "|extra", *lines[2:]]
    refused(joined(wide), StatementCode.UNKNOWN_COLUMN, 2)
    version = lines[0].replace("|QPRF|1|", "|QPRF|2|")
    refused(joined([version, *lines[1:]]), StatementCode.UNKNOWN_COLUMN, 1)
    refused("H|XXXX|1|898|20261102|20261103000000\n", StatementCode.UNSUPPORTED, 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (9, "10.00"),  # fen are integers
        (9, "-10000"),  # a consumption is money in
        (10, "-50"),  # its fee is charged, not given back
        (2, "02"),  # no such txnType
        (7, "20261131100000"),  # no such day
        (7, "20261101235959"),  # completed on another day than the file's
        (3, ""),  # no orderId
        (4, "att-0"),  # a consumption refunds nothing
        (1, "7"),  # out of sequence: a line is missing
    ],
)
def test_a_bad_value_is_refused_at_its_line(field: int, value: str) -> None:
    lines = lines_of(sample())
    fields = lines[2].split("|")
    fields[field] = value
    if field in (9, 10) and value.lstrip("-").isdigit():
        fields[11] = str(int(fields[9]) - int(fields[10]))
    refused(joined([*lines[:2], "|".join(fields), *lines[3:]]), StatementCode.BAD_VALUE, 3)


def test_bytes_that_are_not_utf8_are_refused() -> None:
    data = sample().encode().replace(b"att-2", b"att-\xff", 1)
    with pytest.raises(StatementError) as caught:
        quickpay.parse(data, FILE)
    assert (caught.value.code, caught.value.line) == (StatementCode.ENCODING, 3)
