"""WeChat Pay bills: the trade bill (交易账单, types ALL / SUCCESS / REFUND) and the fund-flow bill
(资金账单), as the download API serves them, plain or gzip-compressed (``tar_type=GZIP``).

Layout, per WeChat Pay's published format: UTF-8 (often with a byte-order mark), comma-separated,
no quoting; a plain header row; detail rows whose every field starts with a backtick (so
spreadsheets keep long numbers as text); then a plain summary header row and one backticked
summary row. The three trade bill types carry different columns (REFUND adds 退款申请时间 and
退款成功时间, SUCCESS drops the refund columns and has a shorter summary) and merchants still on
the early layout have 总金额 / 企业红包金额 where current bills have 应结订单金额 / 代金券金额, so
columns are mapped by header name. Amounts are yuan text, two decimals, except 手续费 which is
written with five (``0.06000``): any digit past the fen that is not zero is refused, never
rounded. Times are Beijing wall clock.

Normalisation (``statements.model``): a payment row is ``payment`` with ``amount`` = 应结订单金额
(what settles to the merchant, merchant-funded coupons excluded); a refund row (交易状态 REFUND)
repeats the payment's 微信订单号 and 商户订单号 and is ``refund`` with ``amount`` = minus 退款金额,
``merchant_ref`` = 商户退款单号 and ``parent_ref`` = 商户订单号; ``fee`` is 手续费 as written
(negative on a refund: the fee given back). A refund's time is 退款申请时间 when the bill has it
(the REFUND bill's 交易时间 is the payment's), else 交易时间, which on ALL bills is the refund's.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from clearhouse.reconciliation.statements.cncsv import (
    Digest,
    Layout,
    Line,
    at,
    beijing_times,
    build_lines,
    check_utf8,
    decimal_text,
    exponent_of,
    first_failing,
    header_names,
    line_of,
    minor_units,
    read_rows,
    single_currency,
    strip_prefix,
)
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import (
    Kind,
    Statement,
    Totals,
    column_sum,
    lines_totals,
)

__all__ = ["SOURCE", "parse_bill", "parse_fundflow_bill", "parse_trade_bill"]

SOURCE = "wechatpay"
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_MIN_LEN = 18  # header and trailer of an empty member
_DEFLATE_MAX_RATIO = 1032  # the most deflate can expand
_GUARD = "`"
_DETAIL_FIRST_LINE = 2

TRADE = Layout(
    aliases={
        "time": ("交易时间",),
        "appid": ("公众账号ID",),
        "mchid": ("商户号",),
        "sub_mchid": ("特约商户号", "子商户号"),
        "device": ("设备号",),
        "transaction_id": ("微信订单号",),
        "out_trade_no": ("商户订单号",),
        "openid": ("用户标识",),
        "trade_type": ("交易类型",),
        "trade_state": ("交易状态",),
        "bank": ("付款银行",),
        "currency": ("货币种类",),
        "settlement": ("应结订单金额", "总金额"),
        "coupon": ("代金券金额", "企业红包金额", "代金券或立减优惠金额"),
        "refund_apply_time": ("退款申请时间",),
        "refund_success_time": ("退款成功时间",),
        "refund_id": ("微信退款单号",),
        "out_refund_no": ("商户退款单号",),
        "refund": ("退款金额",),
        "coupon_refund": ("充值券退款金额", "企业红包退款金额", "代金券或立减优惠退款金额"),
        "refund_type": ("退款类型",),
        "refund_status": ("退款状态",),
        "description": ("商品名称",),
        "attach": ("商户数据包",),
        "fee": ("手续费",),
        "rate": ("费率",),
        "order_amount": ("订单金额",),
        "refund_requested": ("申请退款金额",),
        "rate_note": ("费率备注",),
    },
    required=frozenset(
        {"time", "mchid", "transaction_id", "out_trade_no", "trade_state", "currency"}
        | {"settlement", "fee"}
    ),
)
# Needed as soon as one refund row appears (the SUCCESS bill has none of them).
_REFUND_ROLES = ("refund_id", "out_refund_no", "refund")
TRADE_SUMMARY = Layout(
    aliases={
        "count": ("总交易单数",),
        "settlement": ("应结订单总金额", "总交易额"),
        "refund": ("退款总金额", "总退款金额"),
        "coupon_refund": ("充值券退款总金额", "总企业红包退款金额", "总代金券或立减优惠退款金额"),
        "fee": ("手续费总金额",),
        "order_amount": ("订单总金额",),
        "refund_requested": ("申请退款总金额",),
    },
    required=frozenset({"count", "settlement", "fee"}),
)
FUND = Layout(
    aliases={
        "time": ("记账时间",),
        "business_no": ("微信支付业务单号",),
        "flow_no": ("资金流水单号",),
        "business_name": ("业务名称",),
        "business_type": ("业务类型",),
        "direction": ("收支类型",),
        "amount": ("收支金额(元)",),
        "balance": ("账户结余(元)",),
        "applicant": ("资金变更提交申请人",),
        "memo": ("备注",),
        "voucher": ("业务凭证号",),
    },
    required=frozenset(
        {"time", "business_no", "business_name", "business_type", "direction", "amount"}
    ),
)
FUND_SUMMARY = Layout(
    aliases={
        "count": ("资金流水总笔数",),
        "income_count": ("收入笔数",),
        "income": ("收入金额",),
        "expense_count": ("支出笔数",),
        "expense": ("支出金额",),
    },
    required=frozenset({"count", "income_count", "income", "expense_count", "expense"}),
)
_FREE_TEXT = frozenset({"description", "memo"})
_TRADE_STATES = ("SUCCESS", "REFUND", "REVOKED")  # REVOKED: a payment reversed after success
_INCOME, _EXPENSE = "收入", "支出"
# 业务类型 first (the finer word), then 业务名称; what neither knows is ``other``, still signed.
_FUND_TYPE_KIND = {
    "交易": Kind.PAYMENT,
    "扣除交易手续费": Kind.FEE,
    "退还交易手续费": Kind.FEE,
    "退款": Kind.REFUND,
    "退款关闭": Kind.REFUND,  # a failed refund's money coming back
}
_FUND_NAME_KIND = {
    "交易": Kind.PAYMENT,
    "退款": Kind.REFUND,
    "提现": Kind.PAYOUT,
    "充值": Kind.TRANSFER,
}


@dataclass(frozen=True, slots=True)
class _Bill:
    """A bill cut into its sections; offsets index ``data`` (decompressed)."""

    data: bytes
    names: list[str]
    body_start: int
    body_end: int
    summary_names: list[str]
    summary_values: list[str]
    summary_start: int  # offset of the summary values' line

    def summary_line(self) -> int:
        """Counted only when an error names it: counting is a pass over the whole file."""
        return line_of(self.data, self.summary_start)


def parse_bill(
    data: bytes, *, file: str, bill_date: date, account: str | None = None, currency: str = "CNY"
) -> Statement:
    """Either bill, told apart by its first column. ``account`` is required for the fund-flow
    bill (its rows do not name the merchant); ``currency`` only applies to it."""
    raw = _open(data, file)
    first = header_names(raw[: raw.find(b"\n")].decode("utf-8", "replace"))[0]
    if first == "记账时间":
        if account is None:
            raise StatementError(
                StatementCode.UNSUPPORTED, file, "a fund-flow bill needs its merchant id"
            )
        return _fundflow(raw, file=file, bill_date=bill_date, account=account, currency=currency)
    return _trade(raw, file=file, bill_date=bill_date, account=account)


def parse_trade_bill(
    data: bytes, *, file: str, bill_date: date, account: str | None = None
) -> Statement:
    """The trade bill of ``bill_date`` (any type). ``account`` defaults to the rows' merchant
    (特约商户号 for a sub-merchant, else 商户号)."""
    return _trade(_open(data, file), file=file, bill_date=bill_date, account=account)


def parse_fundflow_bill(
    data: bytes, *, file: str, bill_date: date, account: str, currency: str = "CNY"
) -> Statement:
    """The fund-flow bill of ``bill_date`` for merchant ``account`` (basic account: CNY)."""
    return _fundflow(
        _open(data, file), file=file, bill_date=bill_date, account=account, currency=currency
    )


# -- the bytes ---------------------------------------------------------------------------------


def _open(data: bytes, file: str) -> bytes:
    """Decompress a gzip bill; the rest stays as served."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = _gunzip(data)
        except EOFError:
            raise StatementError(
                StatementCode.TRUNCATED, file, "gzip stream ends before its end"
            ) from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise StatementError(
                StatementCode.UNSUPPORTED, file, f"broken gzip stream: {exc}"
            ) from None
    # The byte-order mark stays: slicing it off would copy the file, and only the header line,
    # which drops it, sees it.
    if not data or data.isspace():  # isspace stops at the first other byte
        raise StatementError(StatementCode.TRUNCATED, file, "empty file")
    return data


def _gunzip(data: bytes) -> bytes:
    """Inflate in one call into a buffer sized by the trailer's ISIZE: more than twice as fast
    as ``gzip.decompress``, which grows its output block by block and joins the blocks. The
    one-shot call refuses anything but one whole member of exactly that size, so a stream of
    several members, over 4 GiB, truncated or broken takes ``gzip``'s own path, which
    reads every member and names the fault."""
    if len(data) > _GZIP_MIN_LEN:
        size = int.from_bytes(data[-4:], "little")
        if size <= _DEFLATE_MAX_RATIO * len(data):  # ISIZE of a truncated file is noise
            try:
                inflated: bytes = pa.decompress(
                    data, decompressed_size=size, codec="gzip", asbytes=True
                )
                return inflated
            except OSError:
                pass
    return gzip.decompress(data)


def _sections(raw: bytes, file: str, summary_first: str) -> _Bill:
    header_end = raw.find(b"\n")
    end = len(raw)
    while end and raw[end - 1 : end] in (b"\r", b"\n"):
        end -= 1
    values_start = raw.rfind(b"\n", 0, end) + 1
    names_end = values_start - 1
    if names_end > 0 and raw[names_end - 1 : names_end] == b"\r":
        names_end -= 1
    names_start = raw.rfind(b"\n", 0, max(names_end, 0)) + 1
    summary_names = [
        name.removeprefix(_GUARD) for name in header_names(raw[names_start:names_end].decode())
    ]
    if header_end < 0 or names_start <= header_end or summary_names[0] != summary_first:
        raise StatementError(
            StatementCode.TRUNCATED, file, f"no summary ({summary_first}...) at the end"
        )
    values = [cell.strip() for cell in raw[values_start:end].decode().split(",")]
    if len(values) != len(summary_names):
        raise StatementError(
            StatementCode.TRUNCATED,
            file,
            f"summary row has {len(values)} of {len(summary_names)} values",
            line_of(raw, values_start),
        )
    body_end = names_start
    while body_end > header_end + 1 and raw[body_end - 1 : body_end] in (b"\r", b"\n"):
        body_end -= 1
    return _Bill(
        data=raw,
        names=header_names(raw[:header_end].decode()),
        body_start=header_end + 1,
        body_end=body_end,
        summary_names=summary_names,
        summary_values=[value.removeprefix(_GUARD) for value in values],
        summary_start=values_start,
    )


def _read(bill: _Bill, roles: dict[str, str], wanted: list[str], file: str) -> dict[str, pa.Array]:
    """The wanted roles' columns, guard stripped."""
    names = [roles[role] for role in wanted if role in roles]
    table = read_rows(
        bill.data,
        bill.body_start,
        bill.body_end,
        bill.names,
        names,
        file=file,
        first_line=_DETAIL_FIRST_LINE,
        quoting=False,
    )
    return {
        role: strip_prefix(
            table[roles[role]],
            _GUARD,
            file=file,
            first_line=_DETAIL_FIRST_LINE,
            column=roles[role],
            text=role in _FREE_TEXT,
        )
        for role in wanted
        if role in roles
    }


def _summary(bill: _Bill, layout: Layout, file: str) -> dict[str, str]:
    roles = layout.resolve(bill.summary_names, file, lambda: bill.summary_line() - 1)
    by_name = dict(zip(bill.summary_names, bill.summary_values, strict=True))
    return {role: by_name[name] for role, name in roles.items()}


def _mismatch(file: str, line: Line, what: str, declared: int, actual: int) -> StatementError:
    return StatementError(
        StatementCode.TOTALS_MISMATCH,
        file,
        f"{what}: the bill declares {declared}, its rows add up to {actual}",
        at(line),
    )


def _refuse_unknown(values: pa.Array, known: tuple[str, ...], file: str, column: str) -> None:
    ok = pc.is_in(values, value_set=pa.array(known))
    if len(values) and not pc.all(ok).as_py():
        index = first_failing(values, lambda text: text in known)
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"{column}: unknown value {values[index].as_py()!r}",
            _DETAIL_FIRST_LINE + index,
        )


def _unsupported_unless(names: list[str], layout: Layout, file: str) -> None:
    known = {alias for spellings in layout.aliases.values() for alias in spellings}
    if not known.intersection(names):
        raise StatementError(StatementCode.UNSUPPORTED, file, "not a WeChat Pay bill")


# -- the trade bill ----------------------------------------------------------------------------


def _trade(raw: bytes, *, file: str, bill_date: date, account: str | None) -> Statement:
    check_utf8(raw, file)
    first_names = header_names(raw[: max(raw.find(b"\n"), 0)].decode("utf-8", "replace"))
    _unsupported_unless(first_names, TRADE, file)
    # Of the bill itself, so the same bill fetched plain and gzipped is one import.
    digest = Digest(raw)
    bill = _sections(raw, file, "总交易单数")
    roles = TRADE.resolve(bill.names, file, 1)
    cols = _read(
        bill,
        roles,
        [
            "time",
            "mchid",
            "sub_mchid",
            "transaction_id",
            "out_trade_no",
            "trade_state",
            "currency",
            "settlement",
            "refund_apply_time",
            "refund_id",
            "out_refund_no",
            "refund",
            "refund_status",
            "description",
            "fee",
        ],
        file,
    )
    rows = len(cols["time"])
    state = cols["trade_state"]
    _refuse_unknown(state, _TRADE_STATES, file, roles["trade_state"])
    is_refund = pc.equal(state, "REFUND")
    refunds = int(pc.sum(is_refund.cast(pa.int64())).as_py() or 0)
    missing = [TRADE.aliases[role][0] for role in _REFUND_ROLES if role not in cols]
    if refunds and missing:
        raise StatementError(
            StatementCode.MISSING_COLUMN,
            file,
            f"refund rows without column(s): {', '.join(missing)}",
            1,
        )
    code = single_currency(cols["currency"], file, _DETAIL_FIRST_LINE, "CNY")
    exponent = exponent_of(code, file)

    def money(role: str) -> pa.Array:
        return minor_units(
            cols[role], exponent, file=file, first_line=_DETAIL_FIRST_LINE, column=roles[role]
        )

    settlement = money("settlement")
    fee = money("fee")
    refund = money("refund") if "refund" in cols else pa.array([0] * rows, pa.int64())
    amount = pc.if_else(is_refund, pc.negate_checked(refund), settlement)

    times = cols["time"]
    time_column = roles["time"]
    if "refund_apply_time" in cols:
        applied = cols["refund_apply_time"]
        times = pc.if_else(pc.and_(is_refund, pc.not_equal(applied, "")), applied, times)
        time_column = f"{time_column}/{roles['refund_apply_time']}"
    occurred = beijing_times(times, file=file, first_line=_DETAIL_FIRST_LINE, column=time_column)

    null = pa.scalar(None, pa.string())
    out_trade_no = cols["out_trade_no"]
    if refunds:
        refund_id = pc.if_else(is_refund, cols["refund_id"], null)
        merchant_ref = pc.if_else(is_refund, cols["out_refund_no"], out_trade_no)
        parent_ref = pc.if_else(is_refund, out_trade_no, null)
    else:
        refund_id, merchant_ref, parent_ref = None, out_trade_no, None
    status = state
    if "refund_status" in cols:
        refund_state = cols["refund_status"]
        status = pc.if_else(pc.and_(is_refund, pc.not_equal(refund_state, "")), refund_state, state)
    merchant = cols["mchid"]
    if "sub_mchid" in cols:
        sub = cols["sub_mchid"]
        merchant = pc.if_else(pc.is_in(sub, value_set=pa.array(["", "0"])), merchant, sub)
    lines = build_lines(
        source=SOURCE,
        account=merchant,
        business_date=bill_date,
        occurred_at=occurred,
        kind=pc.if_else(is_refund, Kind.REFUND.value, Kind.PAYMENT.value),
        channel_txn_id=cols["transaction_id"],
        channel_refund_id=refund_id,
        merchant_ref=merchant_ref,
        parent_ref=parent_ref,
        status=status,
        currency=code,
        amount=amount,
        fee=fee,
        memo=cols.get("description"),
        first_line=_DETAIL_FIRST_LINE,
    )

    totals = _trade_totals(
        bill, file, code, exponent, {"settlement": settlement, "fee": fee, "refund": refund}
    )
    if account is None:
        account = lines["account"][0].as_py() if rows else ""
    return Statement(
        source=SOURCE,
        file=file,
        sha256=digest.hexdigest(),
        account=str(account),
        business_date=bill_date,
        lines=lines,
        totals=[totals],
    )


def _trade_totals(
    bill: _Bill, file: str, code: str, exponent: int, columns: dict[str, pa.ChunkedArray]
) -> Totals:
    """Check the summary row: the count, and each declared sum against its column's."""
    declared = _summary(bill, TRADE_SUMMARY, file)
    line = bill.summary_line

    def number(role: str, scale: int) -> int:
        what = TRADE_SUMMARY.aliases[role][0]
        return decimal_text(declared[role], scale, file=file, line=line, what=what)

    rows = len(columns["fee"])
    count = number("count", 0)
    if count != rows:
        raise _mismatch(file, line, "总交易单数", count, rows)
    sums: dict[str, int] = {}
    for role in ("settlement", "fee", "refund"):
        if role not in declared:  # the SUCCESS bill declares no refunds
            continue
        sums[role] = number(role, exponent)
        actual = column_sum(columns[role])
        if sums[role] != actual:
            raise _mismatch(file, line, TRADE_SUMMARY.aliases[role][0], sums[role], actual)
    return Totals(
        count=count,
        amount=sums["settlement"] - sums.get("refund", 0),
        fee=sums["fee"],
        currency=code,
    )


# -- the fund-flow bill ------------------------------------------------------------------------


def _kinds(values: pa.Array, mapping: dict[str, Kind]) -> pa.Array:
    keys = pa.array(list(mapping))
    kinds = pa.array([kind.value for kind in mapping.values()])
    return pc.take(kinds, pc.index_in(values, value_set=keys))


def _fundflow(raw: bytes, *, file: str, bill_date: date, account: str, currency: str) -> Statement:
    check_utf8(raw, file)
    first_names = header_names(raw[: max(raw.find(b"\n"), 0)].decode("utf-8", "replace"))
    _unsupported_unless(first_names, FUND, file)
    exponent = exponent_of(currency, file)
    digest = Digest(raw)
    bill = _sections(raw, file, "资金流水总笔数")
    roles = FUND.resolve(bill.names, file, 1)
    cols = _read(
        bill,
        roles,
        [
            *("time", "business_no", "business_name", "business_type", "direction", "amount"),
            "memo",
            "voucher",
        ],
        file,
    )
    rows = len(cols["time"])
    direction = cols["direction"]
    _refuse_unknown(direction, (_INCOME, _EXPENSE), file, roles["direction"])
    income = pc.equal(direction, _INCOME)
    moved = minor_units(
        cols["amount"], exponent, file=file, first_line=_DETAIL_FIRST_LINE, column=roles["amount"]
    )
    if len(moved) and pc.min(moved).as_py() < 0:
        index = first_failing(pc.greater_equal(moved, 0), bool)
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"{roles['amount']}: negative amount (the sign is 收支类型's)",
            _DETAIL_FIRST_LINE + index,
        )
    signed = pc.if_else(income, moved, pc.negate(moved))
    kind = pc.coalesce(
        _kinds(cols["business_type"], _FUND_TYPE_KIND),
        _kinds(cols["business_name"], _FUND_NAME_KIND),
        pa.scalar(Kind.OTHER.value),
    )
    is_fee = pc.equal(kind, Kind.FEE.value)
    is_refund = pc.equal(kind, Kind.REFUND.value)
    zero = pa.scalar(0, pa.int64())
    null = pa.scalar(None, pa.string())
    business_no = cols["business_no"]
    lines = build_lines(
        source=SOURCE,
        account=account,
        business_date=bill_date,
        occurred_at=beijing_times(
            cols["time"], file=file, first_line=_DETAIL_FIRST_LINE, column=roles["time"]
        ),
        kind=kind,
        channel_txn_id=pc.if_else(is_refund, null, business_no),
        channel_refund_id=pc.if_else(is_refund, business_no, null),
        merchant_ref=cols.get("voucher"),
        parent_ref=None,
        status=cols["business_type"],
        currency=currency,
        # A fee row moves no payment money: what it takes is the fee, what it gives back a
        # negative fee, so net stays the balance change of every row.
        amount=pc.if_else(is_fee, zero, signed),
        fee=pc.if_else(is_fee, pc.negate(signed), zero),
        memo=cols.get("memo"),
        first_line=_DETAIL_FIRST_LINE,
    )

    declared = _summary(bill, FUND_SUMMARY, file)
    line = bill.summary_line

    def number(role: str, scale: int) -> int:
        what = FUND_SUMMARY.aliases[role][0]
        return decimal_text(declared[role], scale, file=file, line=line, what=what)

    income_rows = int(pc.sum(income.cast(pa.int64())).as_py() or 0)
    actual = {
        "count": rows,
        "income_count": income_rows,
        "expense_count": rows - income_rows,
        "income": column_sum(pc.if_else(income, moved, zero)),
        "expense": column_sum(pc.if_else(income, zero, moved)),
    }
    for role, value in actual.items():
        stated = number(role, 0 if role.endswith("count") else exponent)
        if stated != value:
            raise _mismatch(file, line, FUND_SUMMARY.aliases[role][0], stated, value)
    totals = lines_totals(lines, currency)
    return Statement(
        source=SOURCE,
        file=file,
        sha256=digest.hexdigest(),
        account=account,
        business_date=bill_date,
        lines=lines,
        totals=[totals],
    )
