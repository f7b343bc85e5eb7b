"""Alipay's trade bill (``bill_type=trade``): the business detail (业务明细) and its summary
(业务明细(汇总)), served as a ZIP of two GBK CSV files; a bare detail CSV is accepted too.

Layout, per Alipay's bill download documentation and published samples: GBK text (decoded here
as GB18030, which reads every GBK byte sequence the same); ``#`` preamble lines (the query name,
``#账号：[<pid>0156]``, ``#起始日期：[YYYY年MM月DD日 HH:MM:SS]   终止日期：[...]``), a dashed
``#---业务明细列表---`` line, the column header, the rows, a dashed ``#---业务明细列表结束---`` line
and ``#`` footer lines that count and sum the payments (交易合计) and the refunds (退款合计). Cells
that spreadsheets would mangle (28-digit ids, and in practice many others) carry a leading or
trailing tab; the tabs are not data. Refund rows repeat the payment's 支付宝交易号 and 商户订单号,
are negative, and name our refund request in 退款批次号/请求号. 服务费 is negative where Alipay
charges it and positive where it gives it back. Times are Beijing wall clock.

Normalisation (``statements.model``): ``amount`` = 商家实收 (what the merchant receives), ``fee`` =
minus 服务费; a refund's ``merchant_ref`` is its 退款批次号/请求号 and ``parent_ref`` the payment's
商户订单号. The summary file's 合计 row is checked column by column against the detail.

The account log (账务明细, ``bill_type=signcustomer``: every movement of the Alipay balance,
with 收入金额 / 支出金额 columns and ``#收入合计`` / ``#支出合计`` footers) has the same frame
and is read too; its summary file's layout is not published, so only the detail's footers are
checked.
"""

# Alipay's texts use full-width punctuation; they are matched as Alipay writes them.
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clearhouse.reconciliation.statements.cncsv import (
    Digest,
    Layout,
    beijing_times,
    build_lines,
    decimal_text,
    first_failing,
    header_names,
    line_of,
    minor_units,
    read_rows,
)
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import (
    Kind,
    Statement,
    Totals,
    column_sum,
    lines_totals,
)

__all__ = ["SOURCE", "parse_bill"]

SOURCE = "alipay"
CURRENCY = "CNY"  # the trade bill is in yuan
_EXPONENT = 2
_ENCODING = "gb18030"
_ZIP_MAGIC = b"PK\x03\x04"
_GUARD = "\t"
_PAYMENT, _REFUND = "交易", "退款"
# The account line writes the 16-digit partner id followed by the balance account's suffix.
_PID_ACCOUNT = re.compile(r"(2088\d{12})\d{4}")

DETAIL = Layout(
    aliases={
        "trade_no": ("支付宝交易号",),
        "out_trade_no": ("商户订单号",),
        "kind": ("业务类型",),
        "subject": ("商品名称",),
        "created": ("创建时间",),
        "completed": ("完成时间",),
        "store_id": ("门店编号",),
        "store_name": ("门店名称",),
        "operator": ("操作员",),
        "terminal": ("终端号",),
        "buyer": ("对方账户",),
        "order_amount": ("订单金额(元)",),
        "received": ("商家实收(元)",),
        "red_packet": ("支付宝红包(元)",),
        "points": ("集分宝(元)",),
        "alipay_discount": ("支付宝优惠(元)",),
        "merchant_discount": ("商家优惠(元)",),
        "voucher": ("券核销金额(元)",),
        "voucher_name": ("券名称",),
        "merchant_red_packet": ("商家红包消费金额(元)",),
        "card": ("卡消费金额(元)",),
        "out_request_no": ("退款批次号/请求号", "退款批次号"),
        "service_fee": ("服务费(元)",),
        "profit_share": ("分润(元)",),
        "remark": ("备注",),
    },
    required=frozenset(
        {"trade_no", "out_trade_no", "kind", "completed", "received", "service_fee"}
        | {"out_request_no"}
    ),
)
SUMMARY = Layout(
    aliases={
        "store_id": ("门店编号",),
        "store_name": ("门店名称",),
        "payments": ("交易订单总笔数",),
        "refunds": ("退款订单总笔数",),
        "order_amount": ("订单金额(元)",),
        "received": ("商家实收(元)",),
        "alipay_discount": ("支付宝优惠(元)",),
        "merchant_discount": ("商家优惠(元)",),
        "card": ("卡消费金额(元)",),
        "service_fee": ("服务费(元)",),
        "profit_share": ("分润(元)",),
        "net": ("实收净额(元)",),
    },
    required=frozenset({"store_id", "payments", "refunds", "received", "service_fee"}),
)
# Summary amounts that are plain sums of the same detail column. 实收净额 is derived and its
# formula (with 分润) is not published, so it is not checked.
_SUMMED: tuple[str, ...] = (
    "received",
    "service_fee",
    "order_amount",
    "alipay_discount",
    "merchant_discount",
)
_SUMMED += ("card", "profit_share")
_ZEROS = pa.array([b"0.00", b"0.00\t", b"\t0.00", b"0", b"0.0"], pa.binary())
_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?)"
_PAYMENT_FOOTER = re.compile(
    rf"#交易合计[：:]\s*{_NUMBER}笔[，,]\s*商家实收共{_NUMBER}元(?:[，,]\s*商家优惠共{_NUMBER}元)?"
)
_REFUND_FOOTER = re.compile(
    rf"#退款合计[：:]\s*{_NUMBER}笔[，,]\s*商家实收退款共{_NUMBER}元"
    rf"(?:[，,]\s*商家优惠退款共{_NUMBER}元)?"
)
_SPAN = re.compile(r"#起始日期[：:]\s*\[(\d{4})年(\d{2})月(\d{2})日")
_ACCOUNT = re.compile(r"#账号[：:]\s*\[([^\]]*)\]")


@dataclass(frozen=True, slots=True)
class _Member:
    name: str  # for errors: ``archive!member``
    raw: bytes  # as stored (GBK)
    role: str


def parse_bill(
    data: bytes, *, file: str, bill_date: date | None = None, account: str | None = None
) -> Statement:
    """The bill ZIP as downloaded (or its detail CSV alone): the trade bill, or the account log.
    ``bill_date`` and ``account`` default to what the preamble says; a given ``bill_date`` must
    agree with it, a given ``account`` replaces it."""
    if data[:4] == _ZIP_MAGIC:
        detail, summary = _members(data, file)
    else:
        detail, summary = _open(file, data), None
    digest = Digest(detail.raw)  # the detail is the bill: the same bill zipped or not is one
    if detail.role == "account":
        return _account_log(detail, digest, file=file, bill_date=bill_date, account=account)
    if detail.role != "detail":
        raise StatementError(StatementCode.UNSUPPORTED, detail.name, "not an Alipay bill")
    return _business(detail, summary, digest, file=file, bill_date=bill_date, account=account)


# -- the archive -------------------------------------------------------------------------------


def _members(data: bytes, file: str) -> tuple[_Member, _Member | None]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = [info for info in archive.infolist() if not info.is_dir()]
        contents = [(info, archive.read(info)) for info in entries]
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise StatementError(StatementCode.TRUNCATED, file, f"broken ZIP archive: {exc}") from None
    detail: _Member | None = None
    summary: _Member | None = None
    for info, raw in contents:
        member = _open(f"{file}!{_member_name(info)}", raw)
        if member.role in ("detail", "account") and detail is None:
            detail = member
        elif member.role in ("summary", "account_summary") and summary is None:
            summary = member
        else:
            raise StatementError(
                StatementCode.UNSUPPORTED, member.name, "not one of the bill's two files"
            )
    if detail is None:
        raise StatementError(StatementCode.UNSUPPORTED, file, "no detail (业务明细 / 账务明细)")
    if summary is None and detail.role == "detail":
        raise StatementError(
            StatementCode.TRUNCATED, file, "the summary (业务明细(汇总)) is missing"
        )
    return detail, summary


def _member_name(info: zipfile.ZipInfo) -> str:
    # Without the UTF-8 flag, zipfile read the name as CP437; Alipay writes it in GBK.
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode(_ENCODING)
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _open(name: str, raw: bytes) -> _Member:
    """A bill file, known by its marker line. Its bytes stay GBK: the rows are tokenised as
    they are (GBK's multi-byte characters never contain a comma, quote, tab or line break)
    and only the cells the lines need are decoded."""
    role = _role(raw[:4000].decode(_ENCODING, "replace"))
    if role is None and _role(raw[:4000].decode("utf-8", "replace")) is not None:
        # UTF-8 Chinese often decodes as (wrong) GB18030 without an error: the markers tell.
        raise StatementError(StatementCode.ENCODING, name, "UTF-8 text where GBK is due", 1)
    return _Member(name, raw, role or "")


def _text(member: _Member, start: int, end: int) -> str:
    """``raw[start:end]`` decoded, or the line of its first bad byte."""
    try:
        return member.raw[start:end].decode(_ENCODING)
    except UnicodeDecodeError as exc:
        line = line_of(member.raw, start + exc.start)
        raise StatementError(
            StatementCode.ENCODING, member.name, "bytes that are not GBK / GB18030", line
        ) from None


_ROLES = (
    ("业务明细列表", "detail"),
    ("业务汇总列表", "summary"),
    ("账务明细列表", "account"),
    ("账务汇总列表", "account_summary"),
)


def _role(head: str) -> str | None:
    """Which of the bill files this is, by its dashed marker line."""
    for line in head.splitlines():
        if line.startswith("#"):
            for word, role in _ROLES:
                if word in line:
                    return role
    return None


def _strings(
    values: pa.ChunkedArray, member: _Member, first_line: int, column: str
) -> pa.ChunkedArray:
    """GBK cells as text. ASCII cells (ids, amounts, times: nearly all of them) are the same
    bytes in both encodings; a column with other characters is decoded value by distinct
    value, which also refuses bytes that are not GB18030, with the line they are on."""
    try:
        text = values.cast(pa.string())
        if not len(text) or pc.all(pc.string_is_ascii(text)).as_py():
            return text
    except pa.ArrowInvalid:
        pass
    encoded = pc.dictionary_encode(values.combine_chunks())
    decoded = []
    for index, cell in enumerate(encoded.dictionary.to_pylist()):
        try:
            decoded.append(cell.decode(_ENCODING))
        except UnicodeDecodeError:
            row = pc.index(encoded.indices, index).as_py()
            raise StatementError(
                StatementCode.ENCODING,
                member.name,
                f"{column}: bytes that are not GBK / GB18030",
                first_line + row,
            ) from None
    words = pa.array(decoded, pa.string())
    return pa.chunked_array([pc.take(words, encoded.indices)])


# -- sections ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Section:
    preamble: list[str]  # the ``#`` lines before the table
    header: str
    header_line: int
    body_start: int  # offsets into the member's data
    body_end: int
    footer: list[str]  # the non-blank lines after the closing marker
    footer_line: int  # the first footer line's number


def _section(member: _Member, opening: str, closing: str) -> _Section:
    data = member.raw
    open_at = _marker(data, opening, 0)
    if open_at < 0:
        raise StatementError(StatementCode.UNSUPPORTED, member.name, f"no {opening} line")
    header_start = data.find(b"\n", open_at) + 1
    header_end = data.find(b"\n", header_start)
    close_at = _marker(data, closing, header_start) if header_start else -1
    if header_start == 0 or header_end < 0 or close_at < 0:
        raise StatementError(StatementCode.TRUNCATED, member.name, f"the {closing} line is missing")
    close_end = data.find(b"\n", close_at)
    footer = _text(member, close_end + 1, len(data)).splitlines() if close_end >= 0 else []
    preamble = _text(member, 0, open_at).removeprefix("\ufeff").splitlines()
    header_line = len(preamble) + 2
    close_line = header_line + 1 + data.count(b"\n", header_end + 1, close_at)
    return _Section(
        preamble=preamble,
        header=_text(member, header_start, header_end).rstrip("\r"),
        header_line=header_line,
        body_start=header_end + 1,
        body_end=close_at,
        footer=[line.strip() for line in footer if line.strip()],
        footer_line=close_line + 1,
    )


def _marker(data: bytes, word: str, start: int) -> int:
    """Offset of the ``#---word---`` line (the dash counts vary between files)."""
    needle = word.encode(_ENCODING)
    at = start
    while True:
        found = data.find(needle, at)
        if found < 0:
            return -1
        line_start = data.rfind(b"\n", 0, found) + 1
        line_end = data.find(b"\n", found)
        line = data[line_start : line_end if line_end >= 0 else len(data)].strip()
        if line.startswith(b"#") and line.strip(b"#-\r ") == needle:
            return line_start
        at = found + len(needle)


# -- the business detail -----------------------------------------------------------------------


def _business(
    detail: _Member,
    summary: _Member | None,
    digest: Digest,
    *,
    file: str,
    bill_date: date | None,
    account: str | None,
) -> Statement:
    section = _section(detail, "业务明细列表", "业务明细列表结束")
    day, owner = _day_and_owner(section.preamble, detail.name, bill_date, account)
    names = header_names(section.header)
    roles = DETAIL.resolve(names, detail.name, section.header_line)
    first = section.header_line + 1
    wanted = ["trade_no", "out_trade_no", "kind", "subject", "completed", "out_request_no"]
    wanted += _SUMMED
    table = read_rows(
        detail.raw,
        section.body_start,
        section.body_end,
        names,
        list(dict.fromkeys(roles[role] for role in wanted if role in roles)),
        file=detail.name,
        first_line=first,
        quoting=True,
        binary=True,
    )

    def column(role: str) -> pa.ChunkedArray:
        # Tabs guard codes and amounts alike; they are trimmed off every column read.
        text = _strings(table[roles[role]], detail, first, roles[role])
        return pc.utf8_trim(text, _GUARD)

    cols = {
        role: column(role)
        for role in dict.fromkeys(wanted)
        if role in roles and role not in _SUMMED[2:]
    }
    kind_text = cols["kind"]
    known = pc.is_in(kind_text, value_set=pa.array([_PAYMENT, _REFUND]))
    if len(kind_text) and not pc.all(known).as_py():
        index = first_failing(kind_text, lambda text: text in (_PAYMENT, _REFUND))
        raise StatementError(
            StatementCode.BAD_VALUE,
            detail.name,
            f"{roles['kind']}: unknown value {kind_text[index].as_py()!r}",
            first + index,
        )
    is_refund = pc.equal(kind_text, _REFUND)

    def money(role: str) -> pa.ChunkedArray:
        raw = table[roles[role]]
        # Most of these columns are zero on every row: a byte test settles that cheaply.
        if role not in cols and pc.all(pc.is_in(raw, value_set=_ZEROS)).as_py():
            return pa.chunked_array([np.zeros(len(raw), dtype=np.int64)], type=pa.int64())
        values = cols[role] if role in cols else column(role)
        return minor_units(
            values, _EXPONENT, file=detail.name, first_line=first, column=roles[role]
        )

    amounts = {role: money(role) for role in _SUMMED if role in roles}
    received = amounts["received"]
    fee = pc.negate_checked(amounts["service_fee"])
    null = pa.scalar(None, pa.string())
    out_trade_no = cols["out_trade_no"]
    lines = build_lines(
        source=SOURCE,
        account=owner,
        business_date=day,
        occurred_at=beijing_times(
            cols["completed"], file=detail.name, first_line=first, column=roles["completed"]
        ),
        kind=pc.if_else(is_refund, Kind.REFUND.value, Kind.PAYMENT.value),
        channel_txn_id=cols["trade_no"],
        channel_refund_id=None,  # Alipay gives a refund no id of its own
        merchant_ref=pc.if_else(is_refund, cols["out_request_no"], out_trade_no),
        parent_ref=pc.if_else(is_refund, out_trade_no, null),
        status=kind_text,
        currency=CURRENCY,
        amount=received,
        fee=fee,
        memo=cols.get("subject"),
        first_line=first,
    )
    refunds = _count(is_refund)
    _check_footer(section, detail.name, is_refund, received, amounts.get("merchant_discount"))
    declared_fee = column_sum(fee)
    if summary is not None:
        declared_fee = -_check_summary(summary, amounts, len(received) - refunds, refunds)
    # The footers' sums, checked equal to the rows'.
    totals = Totals(
        count=len(received), amount=column_sum(received), fee=declared_fee, currency=CURRENCY
    )
    return Statement(
        source=SOURCE,
        file=file,
        sha256=digest.hexdigest(),
        account=owner,
        business_date=day,
        lines=lines,
        totals=[totals],
    )


def _day_and_owner(
    preamble: list[str], name: str, bill_date: date | None, account: str | None
) -> tuple[date, str]:
    """The bill's day (it must be the one asked for, when one was) and its owner."""
    day, owner, day_line = _preamble(preamble, name)
    if bill_date is not None and day is not None and bill_date != day:
        raise StatementError(
            StatementCode.BAD_VALUE, name, f"bill of {day}, expected {bill_date}", day_line
        )
    day = bill_date or day
    if day is None:
        raise StatementError(StatementCode.MISSING_COLUMN, name, "no 起始日期 line")
    return day, account or owner or ""


def _preamble(lines: list[str], name: str) -> tuple[date | None, str | None, int | None]:
    """The bill's day, owner (partner id) and the line that dates it."""
    day: date | None = None
    owner: str | None = None
    day_line: int | None = None
    for number, line in enumerate(lines, start=1):
        span = _SPAN.search(line)
        if span:
            day_line = number
            try:
                day = date(int(span[1]), int(span[2]), int(span[3]))
            except ValueError:
                raise StatementError(
                    StatementCode.BAD_VALUE, name, f"bad date in {line!r}", number
                ) from None
        found = _ACCOUNT.search(line)
        if found:
            pid = _PID_ACCOUNT.fullmatch(found[1])
            owner = pid[1] if pid else found[1]
    return day, owner, day_line


def _count(mask: pa.ChunkedArray) -> int:
    return int(pc.sum(mask.cast(pa.int64())).as_py() or 0)


def _mismatch(name: str, line: int, what: str, declared: int, actual: int) -> StatementError:
    return StatementError(
        StatementCode.TOTALS_MISMATCH,
        name,
        f"{what}: the bill declares {declared}, its rows add up to {actual}",
        line,
    )


def _check_footer(
    section: _Section,
    name: str,
    is_refund: pa.ChunkedArray,
    received: pa.ChunkedArray,
    discount: pa.ChunkedArray | None,
) -> None:
    """The detail's own footer: count and sums of payments (交易合计) and refunds (退款合计)."""
    found = {}
    for offset, text in enumerate(section.footer):
        for label, pattern in (("payments", _PAYMENT_FOOTER), ("refunds", _REFUND_FOOTER)):
            match = pattern.match(text)
            if match:
                found[label] = (match, section.footer_line + offset)
    missing = {"payments", "refunds"} - found.keys()
    if missing:
        what = "交易合计" if "payments" in missing else "退款合计"
        raise StatementError(StatementCode.TRUNCATED, name, f"footer line #{what} is missing")
    for label, rows in (("payments", pc.invert(is_refund)), ("refunds", is_refund)):
        match, line = found[label]
        title = "交易合计" if label == "payments" else "退款合计"
        count = decimal_text(match[1], 0, file=name, line=line, what=title)
        if count != _count(rows):
            raise _mismatch(name, line, f"{title} count", count, _count(rows))
        sums = [(match[2], received, "商家实收")]
        if match[3] is not None and discount is not None:
            sums.append((match[3], discount, "商家优惠"))
        for declared, values, what in sums:
            stated = decimal_text(declared, _EXPONENT, file=name, line=line, what=title)
            actual = column_sum(pc.if_else(rows, values, 0))
            if stated != actual:
                raise _mismatch(name, line, f"{title} {what}", stated, actual)


def _check_summary(
    member: _Member, amounts: dict[str, pa.ChunkedArray], payments: int, refunds: int
) -> int:
    """Check the summary file's 合计 row; returns its declared 服务费 (as Alipay signs it)."""
    section = _section(member, "业务汇总列表", "业务汇总列表结束")
    names = header_names(section.header)
    roles = SUMMARY.resolve(names, member.name, section.header_line)
    body = _text(member, section.body_start, section.body_end)
    total: list[str] | None = None
    line = section.header_line
    for offset, row in enumerate(body.splitlines(), start=1):
        cells = [cell.strip() for cell in next(csv.reader([row]), [])]
        store = names.index(roles["store_id"])
        if len(cells) > store and cells[store] == "合计":
            total, line = cells, section.header_line + offset
    if total is None or len(total) != len(names):
        raise StatementError(StatementCode.TRUNCATED, member.name, "no 合计 row in the summary")
    values = dict(zip(names, total, strict=True))

    def stated(role: str, exponent: int) -> int:
        name = roles[role]
        return decimal_text(values[name], exponent, file=member.name, line=line, what=name)

    for role, actual in (("payments", payments), ("refunds", refunds)):
        if stated(role, 0) != actual:
            raise _mismatch(member.name, line, roles[role], stated(role, 0), actual)
    for role in _SUMMED:
        if role in roles:
            if role not in amounts:
                raise StatementError(
                    StatementCode.MISSING_COLUMN,
                    member.name,
                    f"the detail has no {roles[role]} column to check the summary's against",
                    line,
                )
            if stated(role, _EXPONENT) != column_sum(amounts[role]):
                raise _mismatch(
                    member.name,
                    line,
                    roles[role],
                    stated(role, _EXPONENT),
                    column_sum(amounts[role]),
                )
    return stated("service_fee", _EXPONENT)


# -- the account log (账务明细, ``bill_type=signcustomer``) -----------------------------------

ACCOUNT = Layout(
    aliases={
        "log_no": ("账务流水号",),
        "trade_no": ("业务流水号",),
        "out_trade_no": ("商户订单号",),
        "subject": ("商品名称",),
        "time": ("发生时间",),
        "counterparty": ("对方账号",),
        "income": ("收入金额(+元)",),
        "expense": ("支出金额(-元)",),
        "balance": ("账户余额(元)",),
        "channel": ("交易渠道",),
        "kind": ("业务类型",),
        "remark": ("备注",),
    },
    required=frozenset({"log_no", "trade_no", "time", "income", "expense", "kind"}),
)
# 业务类型 words of the account log; what is not here is ``other``, still signed.
_ACCOUNT_KINDS = {
    "在线支付": Kind.PAYMENT,
    "交易付款": Kind.PAYMENT,
    "交易": Kind.PAYMENT,
    "交易退款": Kind.REFUND,
    "退款": Kind.REFUND,
    "收费": Kind.FEE,
    "服务费": Kind.FEE,
    "交易服务费": Kind.FEE,
    "手续费": Kind.FEE,
    "提现": Kind.PAYOUT,
    "转账": Kind.TRANSFER,
    "充值": Kind.TRANSFER,
}
_INCOME_FOOTER = re.compile(rf"#收入合计[：:]\s*{_NUMBER}笔[，,]\s*共{_NUMBER}元")
_EXPENSE_FOOTER = re.compile(rf"#支出合计[：:]\s*{_NUMBER}笔[，,]\s*共{_NUMBER}元")


def _account_log(
    detail: _Member, digest: Digest, *, file: str, bill_date: date | None, account: str | None
) -> Statement:
    """Every movement of the Alipay balance: income and expense columns, ``#收入合计`` and
    ``#支出合计`` footers. A fee row moves no payment money: its amount is 0 and what it
    takes is the fee (what it gives back a negative fee), so ``net`` is the balance change."""
    section = _section(detail, "账务明细列表", "账务明细列表结束")
    day, owner = _day_and_owner(section.preamble, detail.name, bill_date, account)
    names = header_names(section.header)
    roles = ACCOUNT.resolve(names, detail.name, section.header_line)
    first = section.header_line + 1
    wanted = ["log_no", "trade_no", "out_trade_no", "subject", "time", "income", "expense"]
    wanted += ["kind", "remark"]
    table = read_rows(
        detail.raw,
        section.body_start,
        section.body_end,
        names,
        [roles[role] for role in wanted if role in roles],
        file=detail.name,
        first_line=first,
        quoting=True,
        binary=True,
    )
    cols = {
        role: pc.utf8_trim(_strings(table[roles[role]], detail, first, roles[role]), _GUARD)
        for role in wanted
        if role in roles
    }

    def money(role: str) -> pa.ChunkedArray:
        return minor_units(
            cols[role], _EXPONENT, file=detail.name, first_line=first, column=roles[role]
        )

    income = pc.abs_checked(money("income"))
    expense = pc.abs_checked(money("expense"))  # written negative or not: it is money out
    signed = pc.subtract_checked(income, expense)
    keys = pa.array(list(_ACCOUNT_KINDS))
    kinds = pa.array([kind.value for kind in _ACCOUNT_KINDS.values()])
    kind = pc.coalesce(
        pc.take(kinds, pc.index_in(cols["kind"], value_set=keys)), pa.scalar(Kind.OTHER.value)
    )
    is_fee = pc.equal(kind, Kind.FEE.value)
    zero = pa.scalar(0, pa.int64())
    lines = build_lines(
        source=SOURCE,
        account=owner,
        business_date=day,
        occurred_at=beijing_times(
            cols["time"], file=detail.name, first_line=first, column=roles["time"]
        ),
        kind=kind,
        channel_txn_id=cols["trade_no"],
        channel_refund_id=None,
        merchant_ref=cols.get("out_trade_no"),
        parent_ref=None,
        status=cols["kind"],
        currency=CURRENCY,
        amount=pc.if_else(is_fee, zero, signed),
        fee=pc.if_else(is_fee, pc.negate(signed), zero),
        memo=cols.get("remark"),
        first_line=first,
    )
    found = {}
    for offset, text in enumerate(section.footer):
        for label, pattern in (("income", _INCOME_FOOTER), ("expense", _EXPENSE_FOOTER)):
            match = pattern.match(text)
            if match:
                found[label] = (match, section.footer_line + offset)
    for label, values, title in (("income", income, "收入合计"), ("expense", expense, "支出合计")):
        if label not in found:
            raise StatementError(
                StatementCode.TRUNCATED, detail.name, f"footer line #{title} is missing"
            )
        match, line = found[label]
        moved = pc.greater(values, 0)
        count = decimal_text(match[1], 0, file=detail.name, line=line, what=title)
        if count != _count(moved):
            raise _mismatch(detail.name, line, f"{title} count", count, _count(moved))
        stated = abs(decimal_text(match[2], _EXPONENT, file=detail.name, line=line, what=title))
        if stated != column_sum(values):
            raise _mismatch(detail.name, line, title, stated, column_sum(values))
    totals = lines_totals(lines, CURRENCY)
    return Statement(
        source=SOURCE,
        file=file,
        sha256=digest.hexdigest(),
        account=owner,
        business_date=day,
        lines=lines,
        totals=[totals],
    )
