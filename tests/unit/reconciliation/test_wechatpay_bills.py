"""WeChat Pay trade and fund-flow bills: the sandbox's files round-trip, the published layouts
parse, and every malformed file is refused with its code, file and line."""

# WeChat's texts use full-width punctuation; the tests write them as WeChat does.
# ruff: noqa: RUF001

import gzip
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from clearhouse.reconciliation.statements import samples, wechatpay
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import LINES
from clearhouse.sandbox.wechatpay.bills import Entry, fundflow_bill, trade_bill

BEIJING = timezone(timedelta(hours=8))
DAY = date(2026, 3, 1)
MCHID = "1900000001"
RATE = Decimal("0.006")


def entry(i: int, kind: str = "PAYMENT", **changes: object) -> Entry:
    fields: dict[str, object] = {
        "kind": kind,
        "at": datetime(2026, 3, 1, 9, i, 5, tzinfo=BEIJING),
        "appid": "wx8888888888888888",
        "mchid": MCHID,
        "transaction_id": f"42000012342026030100000{i:05d}",
        "out_trade_no": f"att_{i:04d}",
        "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "trade_type": "JSAPI",
        "description": "商品",
        "attach": "",
        "amount": 1000 + i,
        "fee": 6,
    }
    fields.update(changes)
    return Entry(**fields)  # type: ignore[arg-type]


ENTRIES = [
    entry(0),
    entry(1, amount=99_999_99, fee=60_000),
    entry(2),
    # A partial refund of payment 1 the same day: its own refund ids, the payment's order ids.
    entry(
        1,
        "REFUND",
        at=datetime(2026, 3, 1, 15, 0, tzinfo=BEIJING),
        amount=50_00,
        fee=-3,
        refund_id="50300000000000000000000000001",
        out_refund_no="rfd_0001",
    ),
    # A payment just before the Beijing midnight: still this bill's (16:00 UTC the day before).
    entry(3, at=datetime(2026, 3, 1, 0, 0, 1, tzinfo=BEIJING)),
    # Another day's payment: not in this bill.
    entry(4, at=datetime(2026, 3, 2, 0, 0, 1, tzinfo=BEIJING)),
]


def parse(data: bytes, name: str = "trade.csv") -> wechatpay.Statement:
    return wechatpay.parse_trade_bill(data, file=name, bill_date=DAY)


def expected_rows(kinds: set[str]) -> list[Entry]:
    rows = [e for e in sorted(ENTRIES, key=lambda e: e.at) if e.business_day() == DAY]
    return [e for e in rows if e.kind in kinds]


def refused(code: StatementCode, data: bytes, line: int | None, name: str = "bad.csv") -> str:
    with pytest.raises(StatementError) as caught:
        parse(data, name)
    assert caught.value.code is code, caught.value
    assert caught.value.file == name
    assert caught.value.line == line, caught.value
    return caught.value.message


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bill_type", "kinds"),
    [("ALL", {"PAYMENT", "REFUND"}), ("SUCCESS", {"PAYMENT"}), ("REFUND", {"REFUND"})],
)
def test_trade_bill_round_trips_the_entries_that_made_it(bill_type: str, kinds: set[str]) -> None:
    data = trade_bill(ENTRIES, DAY, bill_type, RATE)
    statement = parse(data)
    rows = expected_rows(kinds)
    assert statement.lines.schema == LINES
    assert statement.source == "wechatpay"
    assert statement.account == MCHID
    assert statement.business_date == DAY
    got = statement.lines.to_pylist()
    assert len(got) == len(rows)
    for number, (line, made) in enumerate(zip(got, rows, strict=True), start=2):
        refund = made.kind == "REFUND"
        assert line["kind"] == ("refund" if refund else "payment")
        assert line["channel_txn_id"] == made.transaction_id
        assert line["channel_refund_id"] == (made.refund_id if refund else None)
        assert line["merchant_ref"] == (made.out_refund_no if refund else made.out_trade_no)
        assert line["parent_ref"] == (made.out_trade_no if refund else None)
        assert line["amount"] == (-made.amount if refund else made.amount)
        assert line["fee"] == made.fee
        assert line["net"] == line["amount"] - line["fee"]
        assert line["occurred_at"] == made.at.astimezone(UTC)
        assert line["business_date"] == DAY
        assert line["currency"] == "CNY"
        assert line["account"] == MCHID
        assert line["status"] == "SUCCESS"
        assert line["memo"] == "商品"
        assert line["line_no"] == number
    [totals] = statement.totals
    assert totals.count == len(rows)
    assert totals.amount == sum(line["amount"] for line in got)
    assert totals.fee == sum(line["fee"] for line in got)
    assert totals.currency == "CNY"


def test_refund_amounts_are_exact_fen_of_large_values() -> None:
    statement = parse(trade_bill(ENTRIES, DAY, "ALL", RATE))
    amounts = statement.lines.column("amount").to_pylist()
    assert 99_999_99 in amounts
    assert -50_00 in amounts
    assert statement.lines.column("amount").type == pa.int64()


def test_gzip_bill_is_the_same_bill() -> None:
    plain = trade_bill(ENTRIES, DAY, "ALL", RATE)
    zipped = parse(gzip.compress(plain), "trade.csv.gz")
    assert zipped.lines.equals(parse(plain).lines)
    # The digest is of the bill, so fetching it compressed does not make it a new import.
    assert zipped.sha256 == parse(plain).sha256
    assert zipped.file == "trade.csv.gz"


@pytest.mark.parametrize("split", [100, 9 / 10])
def test_gzip_of_several_members_is_read_whole(split: float) -> None:
    # The fast path sizes its buffer from the last member's trailer: with several members it
    # must not stop at that size, whichever member is the larger.
    plain = samples.wechat_trade_bill(2_000, day=DAY)
    cut = int(split) if split >= 1 else int(len(plain) * split)
    two = gzip.compress(plain[:cut]) + gzip.compress(plain[cut:])
    assert parse(two, "trade.csv.gz").lines.equals(parse(plain).lines)


def test_truncated_gzip_is_refused() -> None:
    zipped = gzip.compress(trade_bill(ENTRIES, DAY, "ALL", RATE))
    with pytest.raises(StatementError) as caught:
        parse(zipped[: len(zipped) // 2], "trade.csv.gz")
    assert caught.value.code is StatementCode.TRUNCATED


def test_fundflow_bill_round_trips_money_and_fees_in_the_merchants_view() -> None:
    data = fundflow_bill(ENTRIES, DAY)
    statement = wechatpay.parse_fundflow_bill(data, file="fund.csv", bill_date=DAY, account=MCHID)
    got = statement.lines.to_pylist()
    rows = expected_rows({"PAYMENT", "REFUND"})
    # Each payment books the money and its fee, each refund the money and the fee given back.
    assert len(got) == 2 * len(rows)
    assert [line["kind"] for line in got] == [
        kind
        for e in rows
        for kind in (("refund", "fee") if e.kind == "REFUND" else ("payment", "fee"))
    ]
    for (money, fee), made in zip(zip(got[::2], got[1::2], strict=True), rows, strict=True):
        if made.kind == "PAYMENT":
            assert (money["amount"], money["fee"]) == (made.amount, 0)
            assert money["channel_txn_id"] == made.transaction_id
        else:
            assert (money["amount"], money["fee"]) == (-made.amount, 0)
            assert money["channel_refund_id"] == made.refund_id
            assert money["channel_txn_id"] is None
        assert (fee["amount"], fee["fee"]) == (0, made.fee)
        assert fee["net"] == -made.fee
        assert money["occurred_at"] == made.at.astimezone(UTC)
    assert statement.account == MCHID
    [totals] = statement.totals
    assert totals.count == len(got)
    assert totals.amount - totals.fee == sum(line["net"] for line in got)


def test_parse_bill_tells_the_two_bills_apart() -> None:
    trade = wechatpay.parse_bill(trade_bill(ENTRIES, DAY, "ALL", RATE), file="a", bill_date=DAY)
    fund = wechatpay.parse_bill(fundflow_bill(ENTRIES, DAY), file="b", bill_date=DAY, account=MCHID)
    assert set(trade.lines.column("kind").to_pylist()) == {"payment", "refund"}
    assert "fee" in fund.lines.column("kind").to_pylist()


# -- the published layouts ---------------------------------------------------------------------

ALL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
SUMMARY = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)


def ticked(*fields: str) -> str:
    return ",".join("`" + f for f in fields)


PAYMENT_ROW = ticked(
    *("2026-03-01 13:51:31", "wxfdc955f7104ad557", "1800236710", "0", ""),
    *("4200000612202603010748613220", "2026WERUN1647840687637", "oZWaCKXip5njeEiloC4oeOV1TTsk"),
    *("JSAPI", "SUCCESS", "OTHERS", "CNY", "100.00", "0.00", "0", "0", "0.00", "0.00", "", ""),
    *("测试支付,含逗号的商品".replace(",", "，"), "", "0.60000", "0.60%", "100.00", "0.00", ""),
)
REFUND_ROW = ticked(
    *("2026-03-01 18:13:10", "wxfdc955f7104ad557", "1800236710", "0", ""),
    *("4200000612202603010748613220", "2026WERUN1647840687637", "oZWaCKXip5njeEiloC4oeOV1TTsk"),
    *("JSAPI", "REFUND", "OTHERS", "CNY", "0.00", "0.00", "50300707812026030106030155182"),
    *("R2026WERUN1647840687637", "40.00", "0.00", "ORIGINAL", "PROCESSING", "测试支付", ""),
    *("-0.24000", "0.60%", "0.00", "40.00", ""),
)
PUBLISHED_ALL = (
    "\ufeff"
    + "\r\n".join(
        [
            ALL_HEADER,
            PAYMENT_ROW,
            REFUND_ROW,
            SUMMARY,
            ticked("2", "100.00", "40.00", "0.00", "0.36000", "100.00", "40.00"),
        ]
    )
    + "\r\n"
).encode()


def test_published_all_bill() -> None:
    statement = parse(PUBLISHED_ALL)
    pay, refund = statement.lines.to_pylist()
    assert (pay["kind"], pay["amount"], pay["fee"], pay["net"]) == ("payment", 10000, 60, 9940)
    assert pay["memo"] == "测试支付，含逗号的商品"
    assert (refund["kind"], refund["amount"], refund["fee"]) == ("refund", -4000, -24)
    assert refund["status"] == "PROCESSING"  # the refund's own state, not 交易状态
    assert refund["merchant_ref"] == "R2026WERUN1647840687637"
    assert refund["parent_ref"] == "2026WERUN1647840687637"
    assert refund["occurred_at"] == datetime(2026, 3, 1, 10, 13, 10, tzinfo=UTC)
    assert statement.account == "1800236710"
    [totals] = statement.totals
    assert (totals.count, totals.amount, totals.fee) == (2, 6000, 36)


def test_published_refund_bill_times_a_refund_by_its_application() -> None:
    header = ALL_HEADER.replace("代金券金额,", "代金券金额,退款申请时间,退款成功时间,")
    cells = REFUND_ROW.split(",")
    # The REFUND bill's 交易时间 is the payment's; the refund has its own two times.
    cells[0] = "`2026-02-27 08:00:00"
    row = ",".join([*cells[:14], "`2026-03-01 18:13:10", "`2026-03-01 18:13:12", *cells[14:]])
    data = "\r\n".join(
        [header, row, SUMMARY, ticked("1", "0.00", "40.00", "0.00", "-0.24000", "0.00", "40.00")]
    ).encode()
    [line] = parse(data).lines.to_pylist()
    assert line["occurred_at"] == datetime(2026, 3, 1, 10, 13, 10, tzinfo=UTC)
    assert line["amount"] == -4000


def test_published_success_bill_with_its_short_summary() -> None:
    header = (
        "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
        "交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,"
        "订单金额,费率备注"
    )
    cells = PAYMENT_ROW.split(",")
    row = ",".join([*cells[:14], *cells[20:24], cells[24], cells[26]])
    data = "\n".join(
        [
            header,
            row,
            "总交易单数,应结订单总金额,手续费总金额,订单总金额",
            ticked("1", "100.00", "0.60000", "100.00"),
        ]
    ).encode()
    [line] = parse(data).lines.to_pylist()
    assert (line["amount"], line["fee"]) == (10000, 60)


def test_early_layout_of_merchants_without_the_free_coupon_upgrade() -> None:
    header = (
        "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
        "付款银行,货币种类,总金额,企业红包金额,微信退款单号,商户退款单号,退款金额,企业红包退款金额,"
        "退款类型,退款状态,商品名称,商户数据包,手续费,费率"
    )
    row = ",".join(PAYMENT_ROW.split(",")[:24])
    summary = "总交易单数,总交易额,总退款金额,总企业红包退款金额,手续费总金额"
    data = "\r\n".join([header, row, summary, ticked("1", "100.00", "0.00", "0.00", "0.60000")])
    [line] = parse(data.encode()).lines.to_pylist()
    assert (line["amount"], line["fee"]) == (10000, 60)


def test_sub_merchant_rows_belong_to_the_sub_merchant() -> None:
    data = PUBLISHED_ALL.replace(b"`1800236710,`0,", b"`1800236710,`1712734762,")
    statement = parse(data)
    assert set(statement.lines.column("account").to_pylist()) == {"1712734762"}


def test_published_fundflow_bill_with_full_width_headers_and_decimal_counts() -> None:
    data = "\r\n".join(
        [
            "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,"
            "账户结余（元）,资金变更提交申请人,备注,业务凭证号",
            ticked(
                *("2026-03-01 04:21:23", "50000305742026030103387128253"),
                *("1900009231202603015884652186", "退款", "退款", "支出", "0.02", "0.17"),
                *("system", "缺货", "REF4200000068202603013084726067"),
            ),
            ticked(
                *(
                    "2026-03-01 09:00:00",
                    "4200000068202603013084726068",
                    "1900009231202603015884652187",
                ),
                *("提现", "提现", "支出", "100.00", "0.00", "1900009231API", "", "W001"),
            ),
            "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额",
            ticked("2.0", "0.0", "0.00", "2.0", "100.02"),
        ]
    ).encode()
    statement = wechatpay.parse_fundflow_bill(data, file="f.csv", bill_date=DAY, account=MCHID)
    refund, payout = statement.lines.to_pylist()
    assert (refund["kind"], refund["amount"], refund["channel_refund_id"]) == (
        "refund",
        -2,
        "50000305742026030103387128253",
    )
    assert refund["memo"] == "缺货"
    assert refund["merchant_ref"] == "REF4200000068202603013084726067"
    assert (payout["kind"], payout["amount"]) == ("payout", -10000)


@pytest.mark.parametrize("bill_type", ["ALL", "SUCCESS", "REFUND"])
def test_generated_samples_parse_with_their_totals(bill_type: str) -> None:
    data = samples.wechat_trade_bill(1000, day=DAY, bill_type=bill_type)
    statement = parse(data)
    expected = {"ALL": 1000, "SUCCESS": 900, "REFUND": 100}[bill_type]
    assert statement.lines.num_rows == expected
    [totals] = statement.totals
    assert totals.amount == sum(statement.lines.column("amount").to_pylist())
    assert totals.fee == sum(statement.lines.column("fee").to_pylist())


def test_generated_fundflow_sample_parses() -> None:
    data = samples.wechat_fundflow_bill(1000, day=DAY)
    statement = wechatpay.parse_fundflow_bill(data, file="f.csv", bill_date=DAY, account=MCHID)
    assert statement.lines.num_rows == 2000
    assert sum(statement.lines.column("net").to_pylist()) == statement.totals[0].amount - (
        statement.totals[0].fee
    )


# -- refusals ----------------------------------------------------------------------------------

GOOD = trade_bill(ENTRIES, DAY, "ALL", RATE)
GOOD_LINES = GOOD.decode().split("\r\n")  # header, 5 rows, summary header, summary, ""


def rebuild(lines: list[str]) -> bytes:
    return "\r\n".join(lines).encode()


def test_truncated_file_without_summary() -> None:
    cut = GOOD[: GOOD.index("总交易单数".encode()) - 40]
    refused(StatementCode.TRUNCATED, cut, None)


def test_file_cut_inside_a_character() -> None:
    cut = GOOD.index("商品".encode(), GOOD.index(b"\n")) + 1  # in the first row
    refused(StatementCode.TRUNCATED, GOOD[:cut], 2)


def test_summary_row_cut_short() -> None:
    lines = [*GOOD_LINES[:-2], ",".join(GOOD_LINES[-2].split(",")[:3])]
    refused(StatementCode.TRUNCATED, rebuild(lines), 8)


def test_empty_file() -> None:
    refused(StatementCode.TRUNCATED, b"\r\n", None)


def test_wrong_encoding_names_the_line() -> None:
    refused(StatementCode.ENCODING, GOOD.decode().lstrip("\ufeff").encode("gbk"), 1)
    # A UTF-8 header with a GBK row: the row is named.
    lines = list(GOOD_LINES)
    lines[3] = lines[3].replace("商品", "\u5546\u54c1")
    mixed = rebuild(lines[:3]) + b"\r\n" + lines[3].encode("gbk") + b"\r\n" + rebuild(lines[4:])
    refused(StatementCode.ENCODING, mixed, 4)


def test_totals_that_do_not_add_up() -> None:
    lines = list(GOOD_LINES)
    cells = lines[-2].split(",")
    cells[4] = "`9.99000"  # 手续费总金额
    lines[-2] = ",".join(cells)
    message = refused(StatementCode.TOTALS_MISMATCH, rebuild(lines), 8)
    assert "手续费总金额" in message


def test_count_that_does_not_add_up() -> None:
    lines = list(GOOD_LINES)
    lines[-2] = "`6" + lines[-2][2:]
    refused(StatementCode.TOTALS_MISMATCH, rebuild(lines), 8)


def test_unknown_column_refuses_the_file() -> None:
    lines = list(GOOD_LINES)
    lines[0] = lines[0].replace("费率备注", "新字段")
    message = refused(StatementCode.UNKNOWN_COLUMN, rebuild(lines), 1)
    assert "新字段" in message


def test_unknown_summary_column_refuses_the_file() -> None:
    lines = list(GOOD_LINES)
    lines[-3] = lines[-3].replace("申请退款总金额", "新汇总")
    refused(StatementCode.UNKNOWN_COLUMN, rebuild(lines), 7)


def test_missing_column() -> None:
    drop = GOOD_LINES[0].split(",").index("微信订单号")
    lines = [
        ",".join(cell for i, cell in enumerate(line.split(",")) if i != drop) if n < 6 else line
        for n, line in enumerate(GOOD_LINES)
    ]
    message = refused(StatementCode.MISSING_COLUMN, rebuild(lines), 1)
    assert "微信订单号" in message


def test_refund_rows_need_the_refund_columns() -> None:
    header = GOOD_LINES[0].split(",")
    drop = {header.index(name) for name in ("微信退款单号", "商户退款单号", "退款金额")}
    lines = [
        ",".join(cell for i, cell in enumerate(line.split(",")) if i not in drop) if n < 6 else line
        for n, line in enumerate(GOOD_LINES)
    ]
    refused(StatementCode.MISSING_COLUMN, rebuild(lines), 1)


@pytest.mark.parametrize("amount", ["`10.0x", "`10.001", "`", "`1e400"])
def test_bad_amount_names_its_line(amount: str) -> None:
    lines = list(GOOD_LINES)
    cells = lines[3].split(",")
    cells[12] = amount  # 应结订单金额 of the second row
    lines[3] = ",".join(cells)
    message = refused(StatementCode.BAD_VALUE, rebuild(lines), 4)
    assert "应结订单金额" in message


def test_fee_with_a_fraction_of_a_fen_is_refused_not_rounded() -> None:
    lines = list(GOOD_LINES)
    cells = lines[2].split(",")
    cells[22] = "`0.05940"
    lines[2] = ",".join(cells)
    refused(StatementCode.BAD_VALUE, rebuild(lines), 3)


def test_bad_time_names_its_line() -> None:
    lines = list(GOOD_LINES)
    lines[5] = "`2026-03-01 25:00:00" + lines[5][20:]
    refused(StatementCode.BAD_VALUE, rebuild(lines), 6)


def test_unknown_trade_state() -> None:
    lines = list(GOOD_LINES)
    lines[2] = lines[2].replace("`SUCCESS,", "`NOTPAY,", 1)
    refused(StatementCode.BAD_VALUE, rebuild(lines), 3)


def test_row_with_an_extra_field() -> None:
    lines = list(GOOD_LINES)
    lines[4] += ",`extra"
    refused(StatementCode.BAD_VALUE, rebuild(lines), 5)


def test_field_without_its_backtick_and_blank_lines() -> None:
    lines = list(GOOD_LINES)
    lines[3] = lines[3][1:]
    refused(StatementCode.BAD_VALUE, rebuild(lines), 4)
    blank = [*GOOD_LINES[:3], "", *GOOD_LINES[3:]]
    refused(StatementCode.BAD_VALUE, rebuild(blank), 4)


def test_not_a_bill_at_all() -> None:
    refused(StatementCode.UNSUPPORTED, b'{"code":"NO_STATEMENT_EXIST","message":"x"}', None)


def test_fundflow_totals_and_directions_are_checked() -> None:
    lines = fundflow_bill(ENTRIES, DAY).decode().split("\r\n")
    bad_total = [*lines[:-2], lines[-2].replace("`", "`1", 1), ""]
    with pytest.raises(StatementError) as caught:
        wechatpay.parse_fundflow_bill(
            "\r\n".join(bad_total).encode(), file="f.csv", bill_date=DAY, account=MCHID
        )
    assert caught.value.code is StatementCode.TOTALS_MISMATCH
    bad_direction = list(lines)
    bad_direction[1] = bad_direction[1].replace("`收入", "`其他", 1)
    with pytest.raises(StatementError) as caught:
        wechatpay.parse_fundflow_bill(
            "\r\n".join(bad_direction).encode(), file="f.csv", bill_date=DAY, account=MCHID
        )
    assert (caught.value.code, caught.value.line) == (StatementCode.BAD_VALUE, 2)
