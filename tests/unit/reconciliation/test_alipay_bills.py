"""Alipay trade bills (business detail + summary ZIP): the sandbox's files round-trip, the
published layout parses, and every malformed file is refused with its code, file and line."""

# Alipay's texts use full-width punctuation; the tests write them as Alipay does.
# ruff: noqa: RUF001

import io
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from clearhouse.money import Money
from clearhouse.reconciliation.statements import alipay, samples
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import LINES
from clearhouse.sandbox.alipay.bills import bill_zip, detail_csv, summary_csv
from clearhouse.sandbox.alipay.state import BillLine

BEIJING = timezone(timedelta(hours=8))
DAY = date(2026, 3, 1)
PID = "2088102177846880"
EXPORTED = datetime(2026, 3, 2, 9, 0, tzinfo=BEIJING)
NAME = "bill.zip"
DETAIL = f"{NAME}!{PID}_20260301_业务明细.csv"
SUMMARY = f"{NAME}!{PID}_20260301_业务明细(汇总).csv"


def cny(fen: int) -> Money:
    return Money(fen, "CNY")


def payment(i: int, fen: int, fee: int) -> BillLine:
    return BillLine(
        kind="交易",
        trade_no=f"2026030122001{i:015d}",
        out_trade_no=f"att_{i:04d}",
        subject="商品, 大号",  # a comma: the sandbox quotes it, as a CSV writer does
        created_at=datetime(2026, 3, 1, 9, i, tzinfo=BEIJING),
        completed_at=datetime(2026, 3, 1, 9, i, 30, tzinfo=BEIJING),
        buyer="buy***@example.com",
        amount=cny(fen),
        fee=cny(-fee),
    )


LINES_MADE = [
    payment(0, 1000, 6),
    payment(1, 99_999_99, 60_000),
    BillLine(
        kind="退款",
        trade_no=f"2026030122001{1:015d}",
        out_trade_no="att_0001",
        subject="商品, 大号",
        created_at=datetime(2026, 3, 1, 9, 1, tzinfo=BEIJING),
        completed_at=datetime(2026, 3, 1, 23, 59, 59, tzinfo=BEIJING),
        buyer="buy***@example.com",
        amount=cny(-50_00),
        fee=cny(3),
        out_request_no="rfd_0001",
    ),
    payment(2, 1, 0),
]


def parse(data: bytes, name: str = NAME, **kwargs: object) -> alipay.Statement:
    return alipay.parse_bill(data, file=name, **kwargs)  # type: ignore[arg-type]


def refused(code: StatementCode, data: bytes, file: str, line: int | None) -> str:
    with pytest.raises(StatementError) as caught:
        parse(data)
    assert caught.value.code is code, caught.value
    assert caught.value.file == file, caught.value
    assert caught.value.line == line, caught.value
    return caught.value.message


def archive(detail: bytes, summary: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr(f"{PID}_20260301_业务明细.csv", detail)
        if summary is not None:
            zipped.writestr(f"{PID}_20260301_业务明细(汇总).csv", summary)
    return buffer.getvalue()


GOOD_DETAIL = detail_csv(PID, DAY, LINES_MADE, EXPORTED)
GOOD_SUMMARY = summary_csv(PID, DAY, LINES_MADE, EXPORTED)


def rezip(detail: str = GOOD_DETAIL, summary: str | None = GOOD_SUMMARY) -> bytes:
    return archive(detail.encode("gb18030"), None if summary is None else summary.encode("gb18030"))


# -- round trips -------------------------------------------------------------------------------


def test_bill_round_trips_the_lines_that_made_it() -> None:
    statement = parse(bill_zip(PID, DAY, LINES_MADE, EXPORTED))
    assert statement.lines.schema == LINES
    assert (statement.source, statement.account, statement.business_date) == ("alipay", PID, DAY)
    got = statement.lines.to_pylist()
    assert len(got) == len(LINES_MADE)
    # Four preamble lines and the header: the first row is line 6.
    for number, (line, made) in enumerate(zip(got, LINES_MADE, strict=True), start=6):
        refund = made.kind == "退款"
        assert line["kind"] == ("refund" if refund else "payment")
        assert line["channel_txn_id"] == made.trade_no  # no tab left
        assert line["channel_refund_id"] is None
        assert line["merchant_ref"] == (made.out_request_no if refund else made.out_trade_no)
        assert line["parent_ref"] == (made.out_trade_no if refund else None)
        assert line["amount"] == made.amount.amount  # refunds negative, as in the bill
        assert line["fee"] == -made.fee.amount  # charged positive, given back negative
        assert line["net"] == line["amount"] - line["fee"]
        assert line["occurred_at"] == made.completed_at.astimezone(UTC)
        assert line["status"] == made.kind
        assert line["memo"] == "商品, 大号"
        assert (line["currency"], line["account"], line["business_date"]) == ("CNY", PID, DAY)
        assert line["line_no"] == number
    [totals] = statement.totals
    assert totals.count == 4
    assert totals.amount == 1000 + 99_999_99 - 50_00 + 1
    assert totals.fee == 6 + 60_000 - 3
    assert totals.currency == "CNY"


def test_bare_detail_csv_is_the_same_bill() -> None:
    zipped = parse(bill_zip(PID, DAY, LINES_MADE, EXPORTED))
    bare = parse(GOOD_DETAIL.encode("gb18030"), "detail.csv")
    assert bare.lines.equals(zipped.lines)
    assert bare.sha256 == zipped.sha256  # the digest is of the detail: one bill, one import


def test_empty_day() -> None:
    statement = parse(bill_zip(PID, DAY, [], EXPORTED))
    assert statement.lines.num_rows == 0
    assert statement.totals[0].count == 0


def test_given_date_and_account_must_agree_with_the_file() -> None:
    statement = parse(rezip(), bill_date=DAY, account="2088000000000001")
    assert statement.account == "2088000000000001"
    with pytest.raises(StatementError) as caught:
        parse(rezip(), bill_date=date(2026, 3, 2))
    assert (caught.value.code, caught.value.line) == (StatementCode.BAD_VALUE, 3)


# -- the published layout ----------------------------------------------------------------------

HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,"
    "对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注"
)
# As Alipay writes it: tabs after many cells, not only ids, and marker dashes that vary.
PUBLISHED = "\n".join(
    [
        "#支付宝业务明细查询",
        "#账号：[20880211096256330156]",
        "#起始日期：[2026年03月01日 00:00:00]   终止日期：[2026年03月02日 00:00:00]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        HEADER,
        "2026030122001458860515315453\t,service_1568601259302\t,交易\t,下单测试,"
        "2026-03-01 10:55:16,2026-03-01 10:55:23,alipay_store\t,alipay_store\t,alipay\t,\t,"
        "*津水(602***@qq.com)\t,100.00,100.00,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,\t,-0.38,0.00,下单测试",
        "2026030122001458860515315453\t,service_1568601259302\t,退款\t,下单测试,"
        "2026-03-01 10:55:16,2026-03-01 10:56:48,alipay_store\t,alipay_store\t,alipay\t,\t,"
        "*津水(602***@qq.com)\t,-30.00,-30.00,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,"
        "re_test_1568602607356\t,0.11,0.00,下单测试",
        "#-----------------------------------------业务明细列表结束------------------------------------",
        "#交易合计：1笔，商家实收共100.00元，商家优惠共0.00元",
        "#退款合计：1笔，商家实收退款共-30.00元，商家优惠退款共0.00元",
        "#导出时间：[2026年03月02日 09:39:22]",
    ]
)
PUBLISHED_SUMMARY = "\n".join(
    [
        "#支付宝业务汇总查询",
        "#账号：[20880211096256330156]",
        "#起始日期：[2026年03月01日 00:00:00]   终止日期：[2026年03月02日 00:00:00]",
        "#-----------------------------------------业务汇总列表----------------------------------------",
        "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,"
        "商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）",
        "alipay_store\t,alipay_store\t,1,1,70.00,70.00,0.00,0.00,0.00,-0.27,0.00,69.73",
        "合计,,1,1,70.00,70.00,0.00,0.00,0.00,-0.27,0.00,69.73",
        "#----------------------------------------业务汇总列表结束-------------------------------------",
        "#导出时间：[2026年03月02日 09:39:22]",
    ]
)


def test_published_layout() -> None:
    data = archive(PUBLISHED.encode("gbk"), PUBLISHED_SUMMARY.encode("gbk"))
    statement = parse(data)
    pay, refund = statement.lines.to_pylist()
    assert statement.account == "2088021109625633"
    assert (pay["amount"], pay["fee"], pay["net"]) == (10000, 38, 9962)
    assert pay["channel_txn_id"] == "2026030122001458860515315453"
    assert pay["status"] == "交易"
    assert (refund["amount"], refund["fee"], refund["net"]) == (-3000, -11, -2989)
    assert refund["merchant_ref"] == "re_test_1568602607356"
    assert refund["parent_ref"] == "service_1568601259302"
    assert refund["occurred_at"] == datetime(2026, 3, 1, 2, 56, 48, tzinfo=UTC)
    [totals] = statement.totals
    assert (totals.count, totals.amount, totals.fee) == (2, 7000, 27)


def test_members_are_known_by_their_content_not_their_names() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("b.csv", PUBLISHED_SUMMARY.encode("gbk"))
        zipped.writestr("a.csv", PUBLISHED.encode("gbk"))
    assert parse(buffer.getvalue()).lines.num_rows == 2


def test_generated_sample_parses_with_its_totals() -> None:
    statement = parse(samples.alipay_bill_zip(1000, day=DAY, pid=PID))
    assert statement.lines.num_rows == 1000
    assert statement.business_date == DAY
    [totals] = statement.totals
    assert totals.amount == sum(statement.lines.column("amount").to_pylist())
    assert totals.fee == sum(statement.lines.column("fee").to_pylist())


# -- refusals ----------------------------------------------------------------------------------

DETAIL_LINES = GOOD_DETAIL.split("\r\n")  # 4 preamble, header, 4 rows, end, 3 footer, ""


def test_truncated_detail() -> None:
    cut = "\r\n".join(DETAIL_LINES[:7])
    refused(StatementCode.TRUNCATED, rezip(cut), DETAIL, None)


def test_missing_footer() -> None:
    cut = "\r\n".join(DETAIL_LINES[:10])
    refused(StatementCode.TRUNCATED, rezip(cut), DETAIL, None)


def test_missing_summary_file() -> None:
    refused(StatementCode.TRUNCATED, rezip(summary=None), NAME, None)


def test_broken_archive() -> None:
    data = bill_zip(PID, DAY, LINES_MADE, EXPORTED)
    refused(StatementCode.TRUNCATED, data[: len(data) // 2], NAME, None)


def test_wrong_encoding() -> None:
    # UTF-8 where GBK is due: it may even decode as (wrong) GB18030; the markers tell.
    data = archive(GOOD_DETAIL.encode("utf-8"), GOOD_SUMMARY.encode("gb18030"))
    refused(StatementCode.ENCODING, data, DETAIL, 1)
    lines = GOOD_DETAIL.encode("gb18030").split(b"\r\n")
    lines[6] = lines[6].replace(b"att_0001", b"att_\xff\xff01")
    data = archive(b"\r\n".join(lines), GOOD_SUMMARY.encode("gb18030"))
    refused(StatementCode.ENCODING, data, DETAIL, 7)


def test_footer_totals_that_do_not_add_up() -> None:
    lines = list(DETAIL_LINES)
    lines[11] = lines[11].replace("商家实收退款共-50.00元", "商家实收退款共-50.01元")
    message = refused(StatementCode.TOTALS_MISMATCH, rezip("\r\n".join(lines)), DETAIL, 12)
    assert "退款合计" in message
    lines = list(DETAIL_LINES)
    lines[10] = lines[10].replace("#交易合计：3笔", "#交易合计：4笔")
    refused(StatementCode.TOTALS_MISMATCH, rezip("\r\n".join(lines)), DETAIL, 11)


def test_summary_fee_that_does_not_add_up() -> None:
    summary = GOOD_SUMMARY.split("\r\n")
    cells = summary[5].split(",")
    cells[9] = "-600.04"  # 服务费
    summary[5] = ",".join(cells)
    message = refused(
        StatementCode.TOTALS_MISMATCH, rezip(summary="\r\n".join(summary)), SUMMARY, 6
    )
    assert "服务费" in message


def test_unknown_column() -> None:
    detail = GOOD_DETAIL.replace("分润（元）", "新字段（元）")
    refused(StatementCode.UNKNOWN_COLUMN, rezip(detail), DETAIL, 5)


def test_missing_column() -> None:
    lines = list(DETAIL_LINES)
    for n in range(4, 9):
        cells = lines[n].split(",")
        lines[n] = ",".join(cells[:-3] + cells[-2:])  # without 服务费
    message = refused(StatementCode.MISSING_COLUMN, rezip("\r\n".join(lines)), DETAIL, 5)
    assert "服务费" in message


@pytest.mark.parametrize("amount", ["10.0x", "10.001", ""])
def test_bad_amount_names_its_line(amount: str) -> None:
    lines = list(DETAIL_LINES)
    assert ",0.01,0.01," in lines[8]
    lines[8] = lines[8].replace(",0.01,0.01,", f",0.01,{amount},")
    message = refused(StatementCode.BAD_VALUE, rezip("\r\n".join(lines)), DETAIL, 9)
    assert "商家实收" in message


def test_bad_time_and_unknown_kind() -> None:
    lines = list(DETAIL_LINES)
    lines[6] = lines[6].replace("2026-03-01 09:01:30", "2026-03-01 9:1:30")
    refused(StatementCode.BAD_VALUE, rezip("\r\n".join(lines)), DETAIL, 7)
    lines = list(DETAIL_LINES)
    lines[5] = lines[5].replace(",交易,", ",转账,")
    refused(StatementCode.BAD_VALUE, rezip("\r\n".join(lines)), DETAIL, 6)


def test_row_with_an_extra_field() -> None:
    lines = list(DETAIL_LINES)
    lines[8] += ",extra"
    refused(StatementCode.BAD_VALUE, rezip("\r\n".join(lines)), DETAIL, 9)


def test_not_a_bill() -> None:
    refused(
        StatementCode.UNSUPPORTED,
        archive(b"hello", b"world"),
        f"{NAME}!{PID}_20260301_业务明细.csv",
        None,
    )


# -- the account log ---------------------------------------------------------------------------

ACCOUNT_LOG = "\r\n".join(
    [
        "#支付宝账务明细查询",
        "#账号：[20888011365400330156]",
        "#起始日期：[2026年03月01日 00:00:00]   终止日期：[2026年03月02日 00:00:00]",
        "#-----------------------------------------账务明细列表----------------------------------------",
        "账务流水号,业务流水号,商户订单号,商品名称,发生时间,对方账号,收入金额（+元）,支出金额（-元）,"
        "账户余额（元）,交易渠道,业务类型,备注",
        "54632446537371\t,2026030122001458860515315453\t,3226563\t,机票\t,2026-03-01 21:02:06,"
        "陈* (k***@126.com)\t,2274.00,0.00,14533.03,支付宝,在线支付,",
        "54632446537372\t,2026030122001458860515315453\t,3226563\t,机票\t,2026-03-01 21:02:06,"
        "\t,0.00,-13.64,14519.39,支付宝,收费,服务费[2026030122001458860515315453]",
        "54632446537373\t,2026030122001458860515315453\t,3226563\t,机票\t,2026-03-01 22:00:00,"
        "陈* (k***@126.com)\t,0.00,-100.00,14419.39,支付宝,交易退款,",
        "#----------------------------------------账务明细列表结束-------------------------------------",
        "#支出合计：2笔，共-113.64元",
        "#收入合计：1笔，共2274.00元",
        "#导出时间：[2026年03月02日 13:19:01]",
    ]
)


def test_account_log() -> None:
    statement = parse(ACCOUNT_LOG.encode("gbk"), "signcustomer.csv")
    pay, fee, refund = statement.lines.to_pylist()
    assert statement.account == "2088801136540033"
    assert (pay["kind"], pay["amount"], pay["fee"]) == ("payment", 227400, 0)
    assert (fee["kind"], fee["amount"], fee["fee"], fee["net"]) == ("fee", 0, 1364, -1364)
    assert (refund["kind"], refund["amount"]) == ("refund", -10000)
    assert pay["merchant_ref"] == "3226563"
    assert pay["channel_txn_id"] == "2026030122001458860515315453"
    assert [line["line_no"] for line in (pay, fee, refund)] == [6, 7, 8]
    assert statement.totals[0].amount - statement.totals[0].fee == 227400 - 1364 - 10000


def test_account_log_footer_is_checked() -> None:
    bad = ACCOUNT_LOG.replace("共-113.64元", "共-113.65元")
    with pytest.raises(StatementError) as caught:
        parse(bad.encode("gbk"), "signcustomer.csv")
    assert (caught.value.code, caught.value.line) == (StatementCode.TOTALS_MISMATCH, 10)
    cut = ACCOUNT_LOG.split("#支出合计")[0]
    with pytest.raises(StatementError) as caught:
        parse(cut.encode("gbk"), "signcustomer.csv")
    assert caught.value.code is StatementCode.TRUNCATED
