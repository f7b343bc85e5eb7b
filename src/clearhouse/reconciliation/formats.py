"""The statement formats intake knows (R1): a name per real file format, the source (channel) it
belongs to, what its parser needs from the caller, and detection from the bytes where the
bytes say unambiguously what they are.

What each parser needs besides the bytes: a WeChat Pay bill states neither its day nor (the
fund-flow bill) its merchant; a Stripe report states neither the account it was run for nor
its day. Alipay's, PayPal's, quick pay's and the banks' files state both, and a given value
is checked against (Alipay's and quick pay's day, quick pay's merchant number) or replaces
(Alipay's account) what the file says.

Quick pay's two acquirers (channel instances ``quickpay`` and ``quickpay_b``) write the same
layout, naming their merchant number, not the instance: one format per instance, sharing a
``layout``. The bytes tell the layout; the channel (given, or the puller's) tells the format.

Identity: a statement is stored once per digest of its bytes. A file that names neither its
account nor its day (a Stripe report, whose bytes are only a header on a quiet day) would make
every quiet day of every account one file, so its digest also covers the account and the day
the caller gave.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from clearhouse.errors import ClearhouseError
from clearhouse.reconciliation.statements import (
    alipay,
    camt053,
    mt940,
    paypal,
    quickpay,
    stripe,
    wechatpay,
)
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import Statement

WECHATPAY_TRADE = "wechatpay-trade"
WECHATPAY_FUNDFLOW = "wechatpay-fundflow"
ALIPAY = "alipay"
STRIPE = "stripe"
PAYPAL_STL = "paypal-stl"
CAMT053 = "camt053"
MT940 = "mt940"
BANK = "bank"  # the source of bank statements (camt053, mt940)
QUICKPAY_LAYOUT = "quickpay-file"  # the daily file, as each quick pay acquirer writes it
# The quick pay channel instances and their daily file's format.
QUICKPAY_FILES = {"quickpay": QUICKPAY_LAYOUT, "quickpay_b": "quickpay_b-file"}

_HEAD = 4096  # bytes looked at to detect a format
_ZIP_MAGIC = b"PK\x03\x04"
_GZIP_MAGIC = b"\x1f\x8b"


class UnknownFormat(ClearhouseError):
    """A format or channel name intake does not know (``details["known"]`` lists them)."""

    code = "STATEMENT_UNKNOWN_FORMAT"


class ArgumentMissing(ClearhouseError):
    """The format needs a value its file does not state (the bill date, the account)."""

    code = "STATEMENT_ARGUMENT_MISSING"


Parse = Callable[[bytes, str, date | None, str | None], Statement]


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    source: str  # the statement lines' source: a channel name, or "bank"
    parse_bytes: Parse = dataclasses.field(repr=False)
    needs_date: bool = False  # the file does not state its business date
    needs_account: bool = False  # the file does not state its account
    states_identity: bool = True  # the bytes alone tell this file from another day's
    # Its lines are transactions to match with our records. A fund-flow bill lists the balance
    # movements the trade bill's payments and refunds caused: kept, not matched a second time.
    matched: bool = True
    # Several sources' files in one layout that the bytes cannot tell apart: its name.
    layout: str | None = None

    def parse(
        self,
        data: bytes,
        file: str,
        *,
        business_date: date | None = None,
        account: str | None = None,
    ) -> Statement:
        """The parsed statement, or ``StatementError`` naming ``file`` (and the line)."""
        for needed, value, what in (
            (self.needs_date, business_date, "business_date"),
            (self.needs_account, account, "account"),
        ):
            if needed and value is None:
                raise ArgumentMissing(
                    f"a {self.name} file does not state its {what}: give it",
                    format=self.name,
                    argument=what,
                )
        statement = self.parse_bytes(data, file, business_date, account)
        if not self.states_identity:
            digest = hashlib.sha256(
                f"{statement.sha256}\n{statement.account}\n{statement.business_date}".encode()
            ).hexdigest()
            statement = dataclasses.replace(statement, sha256=digest)
        return statement


def _day(value: date | None) -> date:
    assert value is not None  # Format.parse checked it
    return value


def _text(value: str | None) -> str:
    assert value is not None
    return value


def _quickpay(channel: str) -> Parse:
    def parse(data: bytes, file: str, day: date | None, account: str | None) -> Statement:
        return quickpay.parse(data, file, source=channel, business_date=day, account=account)

    return parse


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            WECHATPAY_TRADE,
            wechatpay.SOURCE,
            lambda d, f, day, acct: wechatpay.parse_trade_bill(
                d, file=f, bill_date=_day(day), account=acct
            ),
            needs_date=True,
        ),
        Format(
            WECHATPAY_FUNDFLOW,
            wechatpay.SOURCE,
            lambda d, f, day, acct: wechatpay.parse_fundflow_bill(
                d, file=f, bill_date=_day(day), account=_text(acct)
            ),
            needs_date=True,
            needs_account=True,
            matched=False,
        ),
        Format(
            ALIPAY,
            alipay.SOURCE,
            lambda d, f, day, acct: alipay.parse_bill(d, file=f, bill_date=day, account=acct),
        ),
        Format(
            STRIPE,
            stripe.SOURCE,
            lambda d, f, day, acct: stripe.parse(
                d, f, account=_text(acct), business_date=_day(day)
            ),
            needs_date=True,
            needs_account=True,
            states_identity=False,
        ),
        Format(PAYPAL_STL, paypal.SOURCE, lambda d, f, day, acct: paypal.parse(d, f)),
        Format(CAMT053, BANK, lambda d, f, day, acct: camt053.parse(d, f)),
        Format(MT940, BANK, lambda d, f, day, acct: mt940.parse(d, f)),
        *(
            Format(name, channel, _quickpay(channel), layout=QUICKPAY_LAYOUT)
            for channel, name in QUICKPAY_FILES.items()
        ),
    )
}


def get(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormat(f"unknown statement format {name!r}", known=sorted(FORMATS)) from None


def sources() -> list[str]:
    """Every source (channel, or ``bank``) some format belongs to."""
    return sorted({f.source for f in FORMATS.values()})


def matched_formats(source: str) -> list[str]:
    """The formats of a source whose lines a reconciliation batch matches."""
    return [f.name for f in of_source(source) if f.matched]


def of_source(source: str) -> list[Format]:
    found = [f for f in FORMATS.values() if f.source == source]
    if not found:
        raise UnknownFormat(f"no statement format for {source!r}", known=sources())
    return found


def detect(data: bytes, file: str) -> Format:
    """The format ``data`` is unambiguously in, or ``StatementError`` (UNSUPPORTED)."""
    found = _candidates(data, file)
    if len(found) > 1:
        raise StatementError(
            StatementCode.UNSUPPORTED,
            file,
            f"a {found[0].layout} file, which {sorted(f.source for f in found)} all issue: "
            "give the channel",
        )
    return found[0]


def _candidates(data: bytes, file: str) -> list[Format]:
    """The formats ``data`` may be in: one, or every format of a shared layout."""
    name = _detect(data)
    if name is None:
        raise StatementError(
            StatementCode.UNSUPPORTED,
            file,
            f"not a statement format this can tell from its bytes (one of {sorted(FORMATS)})",
        )
    found = FORMATS[name]
    if found.layout is None:
        return [found]
    return [f for f in FORMATS.values() if f.layout == found.layout]


def resolve(
    data: bytes, file: str, *, channel: str | None = None, fmt: str | None = None
) -> Format:
    """The format a file is imported as: ``fmt`` when given (its channel, if also given, must
    be its source), else detected and checked to belong to ``channel``."""
    if fmt is not None:
        found = get(fmt)
        if channel is not None and found.source != channel:
            raise UnknownFormat(
                f"format {fmt!r} is a {found.source} format, not {channel}'s",
                known=[f.name for f in of_source(channel)],
            )
        return found
    if channel is None:
        return detect(data, file)
    of_source(channel)  # an unknown channel is its own error, before looking at bytes
    candidates = _candidates(data, file)
    own = [f for f in candidates if f.source == channel]
    if not own:
        what = candidates[0].layout or candidates[0].name
        raise StatementError(
            StatementCode.UNSUPPORTED, file, f"a {what} file, not a {channel} statement"
        )
    return own[0]


def _detect(data: bytes) -> str | None:
    if data.startswith(_ZIP_MAGIC):
        return ALIPAY  # only Alipay serves its bill as a ZIP
    head = data[:_HEAD]
    if head.startswith(_GZIP_MAGIC):
        unzipped = _gunzip_head(head)  # WeChat Pay's bills with tar_type=GZIP
        return None if unzipped is None else _wechat(unzipped)
    head = head.removeprefix(codecs.BOM_UTF8).lstrip()
    if head.startswith(b"<"):
        return CAMT053 if b"camt.053" in head else None
    if head.startswith((b"{1:", b":20:")) or b"\n:20:" in head:
        return MT940
    if head.startswith((b'"RH"', b"RH,")):
        return PAYPAL_STL
    if head.startswith(quickpay.HEAD):
        return QUICKPAY_LAYOUT
    if head.startswith(b"#") and "支付宝" in _first_line(head, "gb18030"):
        return ALIPAY  # the detail CSV alone, as it is inside the ZIP
    wechat = _wechat(head)
    if wechat is not None:
        return wechat
    header = _first_line(head, "utf-8").split(",")
    if {"balance_transaction_id", "reporting_category"} <= {h.strip('"') for h in header}:
        return STRIPE
    return None


def _wechat(head: bytes) -> str | None:
    first = _first_line(head.removeprefix(codecs.BOM_UTF8), "utf-8").split(",")[0].strip()
    return {"交易时间": WECHATPAY_TRADE, "记账时间": WECHATPAY_FUNDFLOW}.get(first)


def _first_line(head: bytes, encoding: str) -> str:
    return head.split(b"\n", 1)[0].decode(encoding, "replace").strip()


def _gunzip_head(head: bytes) -> bytes | None:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _HEAD)
    except zlib.error:
        return None
