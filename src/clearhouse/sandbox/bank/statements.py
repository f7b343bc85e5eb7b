"""Daily statements of the platform's settlement account at the payout bank, as the bank would
send them: ISO 20022 camt.053.001.08 and SWIFT MT940.

The account is debited with every withdrawal batch the bank paid, booked as one entry per
batch (camt.053: ``NtryDtls/Btch`` and one ``TxDtls`` per withdrawal, ``EndToEndId`` our
withdrawal id; MT940: one ``:61:`` per batch, our batch id in the ``:86:``), and credited with
what the state received (``PayoutBank.receive``: channels paying out). A day is the bank's
own day (Asia/Shanghai). A statement is a function of the state and the day only, so asking
twice gives the same bytes (and the same file digest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from lxml import etree

from clearhouse.money import Money
from clearhouse.sandbox.bank.state import CURRENCY, PayoutBank

__all__ = ["FORMATS", "Book", "Entry", "Item", "book", "camt053", "mt940", "render"]

ZONE = ZoneInfo("Asia/Shanghai")
BIC = "CLHBCNSHXXX"  # the sandbox bank's (made-up) BIC
CAMT_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
_MT940_WIDTH = 65  # an :86: line
_MT940_LINES = 6  # lines of an :86:
_MT940_REF = 16  # the customer and bank references of a :61:


@dataclass(frozen=True, slots=True)
class Item:
    """One withdrawal of a batch entry."""

    ref: str  # our withdrawal id (EndToEndId)
    amount: int  # minor units, positive
    bank_txn_id: str
    account_no: str


@dataclass(frozen=True, slots=True)
class Entry:
    ref: str  # the bank's reference of the entry (AcctSvcrRef, the :61: bank reference)
    at: datetime
    amount: int  # signed minor units: credit positive
    memo: str
    batch_no: str | None = None
    items: tuple[Item, ...] = ()
    payer: str | None = None
    end_to_end_id: str | None = None


@dataclass(frozen=True, slots=True)
class Book:
    """One day of the settlement account."""

    account: str
    currency: str
    day: date
    opening: int
    entries: tuple[Entry, ...]

    @property
    def closing(self) -> int:
        return self.opening + sum(e.amount for e in self.entries)

    @property
    def created_at(self) -> datetime:
        """The statement is the day's final one: stamped at the bank's midnight after it."""
        return datetime.combine(self.day + timedelta(days=1), time(0), ZONE)


def book(bank: PayoutBank, day: date) -> Book:
    """The movements of ``day`` and the balance before them, from the bank's state."""
    paid, credits = bank.paid(), bank.received()
    before = bank.opening_balance_minor
    before += sum(c.amount.amount for c in credits if _day(c.at) < day)
    before -= sum(p.amount.amount for p in paid if _day(p.at) < day)
    batches: dict[str, list[Item]] = {}
    first: dict[str, datetime] = {}
    for p in sorted(paid, key=lambda p: (p.at, p.ref)):
        if _day(p.at) != day:
            continue
        batches.setdefault(p.batch_no, []).append(
            Item(p.ref, p.amount.amount, p.bank_txn_id or "", p.account_no)
        )
        first.setdefault(p.batch_no, p.at)
    entries = [
        Entry(
            ref=_entry_ref(batch_no, day),
            at=first[batch_no],
            amount=-sum(i.amount for i in items),
            memo=f"PAYOUT BATCH {batch_no} {len(items)} ITEMS",
            batch_no=batch_no,
            items=tuple(items),
        )
        for batch_no, items in batches.items()
    ]
    entries += [
        Entry(c.ref, c.at, c.amount.amount, c.memo, payer=c.payer, end_to_end_id=c.end_to_end_id)
        for c in credits
        if _day(c.at) == day
    ]
    entries.sort(key=lambda e: e.at)  # stable: same-instant entries keep the order received
    return Book(bank.settlement_account, CURRENCY, day, before, tuple(entries))


def _day(at: datetime) -> date:
    return at.astimezone(ZONE).date()


def _entry_ref(batch_no: str, day: date) -> str:
    # Stable across calls, 16 characters: fits the bank reference of an MT940 :61: too.
    digest = hashlib.sha256(batch_no.encode()).hexdigest()[:9].upper()
    return f"B{day:%y%m%d}{digest}"


def _decimal(minor: int, sep: str = ".") -> str:
    text = str(Money(abs(minor), CURRENCY).to_decimal())
    return text.replace(".", sep)


def _mask(account_no: str) -> str:
    return f"{account_no[:4]}****{account_no[-4:]}" if len(account_no) > 8 else account_no


# --- camt.053.001.08 ----------------------------------------------------------------------


def camt053(bank: PayoutBank, day: date) -> bytes:
    return _camt053(book(bank, day))


def _camt053(b: Book) -> bytes:
    root = etree.Element(f"{{{CAMT_NS}}}Document", nsmap={None: CAMT_NS})
    msg = _el(root, "BkToCstmrStmt")
    header = _el(msg, "GrpHdr")
    _el(header, "MsgId", f"{b.account[-6:]}{b.day:%Y%m%d}")
    _el(header, "CreDtTm", b.created_at.isoformat())
    pages = _el(header, "MsgPgntn")
    _el(pages, "PgNb", "1")
    _el(pages, "LastPgInd", "true")
    stmt = _el(msg, "Stmt")
    _el(stmt, "Id", f"{b.account}-{b.day:%Y%m%d}")
    _el(stmt, "ElctrncSeqNb", str(b.day.timetuple().tm_yday))
    _el(stmt, "CreDtTm", b.created_at.isoformat())
    period = _el(stmt, "FrToDt")
    _el(period, "FrDtTm", datetime.combine(b.day, time(0), ZONE).isoformat())
    _el(period, "ToDtTm", datetime.combine(b.day, time(23, 59, 59), ZONE).isoformat())
    acct = _el(stmt, "Acct")
    _el(_el(_el(acct, "Id"), "Othr"), "Id", b.account)
    _el(acct, "Ccy", b.currency)
    _el(acct, "Nm", "CLEARHOUSE PLATFORM SETTLEMENT")
    _el(_el(_el(acct, "Svcr"), "FinInstnId"), "BICFI", BIC)
    for code, amount in (("OPBD", b.opening), ("CLBD", b.closing)):
        bal = _el(stmt, "Bal")
        _el(_el(_el(bal, "Tp"), "CdOrPrtry"), "Cd", code)
        _amount(bal, "Amt", amount, b.currency)
        _el(bal, "CdtDbtInd", _indicator(amount))
        _el(_el(bal, "Dt"), "Dt", b.day.isoformat())
    _summary(stmt, b)
    for n, entry in enumerate(b.entries, start=1):
        _camt_entry(_el(stmt, "Ntry"), n, entry, b.currency)
    body = etree.tostring(root, encoding="UTF-8", pretty_print=True)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + bytes(body)


def _el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, f"{{{CAMT_NS}}}{name}")
    if text is not None:
        child.text = text
    return child


def _amount(parent: etree._Element, name: str, minor: int, currency: str) -> None:
    node = _el(parent, name, _decimal(minor))
    node.set("Ccy", currency)


def _indicator(amount: int) -> str:
    return "DBIT" if amount < 0 else "CRDT"


def _summary(stmt: etree._Element, b: Book) -> None:
    credits = [e.amount for e in b.entries if e.amount > 0]
    debits = [-e.amount for e in b.entries if e.amount < 0]
    summary = _el(stmt, "TxsSummry")
    total = _el(summary, "TtlNtries")
    _el(total, "NbOfNtries", str(len(b.entries)))
    _el(total, "Sum", _decimal(sum(credits) + sum(debits)))
    net = _el(total, "TtlNetNtry")
    _el(net, "Amt", _decimal(sum(credits) - sum(debits)))
    _el(net, "CdtDbtInd", _indicator(sum(credits) - sum(debits)))
    for name, group in (("TtlCdtNtries", credits), ("TtlDbtNtries", debits)):
        block = _el(summary, name)
        _el(block, "NbOfNtries", str(len(group)))
        _el(block, "Sum", _decimal(sum(group)))


def _camt_entry(ntry: etree._Element, n: int, e: Entry, currency: str) -> None:
    _el(ntry, "NtryRef", str(n))
    _amount(ntry, "Amt", e.amount, currency)
    _el(ntry, "CdtDbtInd", _indicator(e.amount))
    _el(_el(ntry, "Sts"), "Cd", "BOOK")
    _el(_el(ntry, "BookgDt"), "DtTm", e.at.astimezone(ZONE).isoformat())
    _el(_el(ntry, "ValDt"), "Dt", _day(e.at).isoformat())
    _el(ntry, "AcctSvcrRef", e.ref)
    domain = _el(_el(ntry, "BkTxCd"), "Domn")
    _el(domain, "Cd", "PMNT")
    fmly = _el(domain, "Fmly")
    _el(fmly, "Cd", "ICDT" if e.amount < 0 else "RCDT")
    _el(fmly, "SubFmlyCd", "DMCT")
    details = _el(ntry, "NtryDtls")
    if e.batch_no is not None:
        batch = _el(details, "Btch")
        _el(batch, "MsgId", e.batch_no)
        _el(batch, "PmtInfId", e.batch_no)
        _el(batch, "NbOfTxs", str(len(e.items)))
        _amount(batch, "TtlAmt", e.amount, currency)
        _el(batch, "CdtDbtInd", _indicator(e.amount))
        for item in e.items:
            _camt_item(_el(details, "TxDtls"), e, item, currency)
    else:
        tx = _el(details, "TxDtls")
        refs = _el(tx, "Refs")
        _el(refs, "AcctSvcrRef", e.ref)
        _el(refs, "EndToEndId", e.end_to_end_id or "NOTPROVIDED")
        _amount(tx, "Amt", e.amount, currency)
        _el(tx, "CdtDbtInd", _indicator(e.amount))
        _el(_el(_el(_el(tx, "RltdPties"), "Dbtr"), "Pty"), "Nm", e.payer or "")
        _el(_el(tx, "RmtInf"), "Ustrd", e.memo)
    _el(ntry, "AddtlNtryInf", e.memo)


def _camt_item(tx: etree._Element, e: Entry, item: Item, currency: str) -> None:
    refs = _el(tx, "Refs")
    _el(refs, "MsgId", e.batch_no)
    _el(refs, "AcctSvcrRef", item.bank_txn_id)
    _el(refs, "PmtInfId", e.batch_no)
    _el(refs, "EndToEndId", item.ref)
    _el(refs, "TxId", item.bank_txn_id)
    _amount(tx, "Amt", -item.amount, currency)
    _el(tx, "CdtDbtInd", "DBIT")
    amounts = _el(tx, "AmtDtls")
    _amount(_el(amounts, "InstdAmt"), "Amt", item.amount, currency)
    _amount(_el(amounts, "TxAmt"), "Amt", item.amount, currency)
    creditor = _el(_el(_el(tx, "RltdPties"), "CdtrAcct"), "Id")
    _el(_el(creditor, "Othr"), "Id", _mask(item.account_no))
    _el(_el(tx, "RmtInf"), "Ustrd", f"WITHDRAWAL {item.ref}")


# --- MT940 --------------------------------------------------------------------------------


def mt940(bank: PayoutBank, day: date) -> bytes:
    return _mt940(book(bank, day))


def _mt940(b: Book) -> bytes:
    on = f"{b.day:%y%m%d}"
    lines = [
        f":20:{b.day:%Y%m%d}STMT",
        f":25:{b.account}",
        f":28C:{b.day.timetuple().tm_yday:05d}/001",
        f":60F:{_mark(b.opening)}{on}{b.currency}{_decimal(b.opening, ',')}",
    ]
    for e in b.entries:
        reference = e.end_to_end_id if e.end_to_end_id and len(e.end_to_end_id) <= 16 else "NONREF"
        lines.append(
            f":61:{on}{_day(e.at):%m%d}{_mark(e.amount)}{_decimal(e.amount, ',')}NTRF"
            f"{reference}//{e.ref[:_MT940_REF]}"
        )
        if e.batch_no is not None:
            lines.append(f"PAYOUT BATCH {len(e.items)} ITEMS")  # supplementary details, 34x
        lines += _wrap(e.memo)
    lines.append(f":62F:{_mark(b.closing)}{on}{b.currency}{_decimal(b.closing, ',')}")
    lines.append(f":64:{_mark(b.closing)}{on}{b.currency}{_decimal(b.closing, ',')}")
    lines.append("-")
    # SWIFT lines end in CR LF.
    return ("\r\n".join(lines) + "\r\n").encode()


def _mark(amount: int) -> str:
    return "D" if amount < 0 else "C"


def _wrap(memo: str) -> list[str]:
    # 6 lines of 65 characters after the tag; a longer memo is cut, as banks cut it.
    chunks = [memo[i : i + _MT940_WIDTH] for i in range(0, len(memo), _MT940_WIDTH)]
    chunks = chunks[:_MT940_LINES] or [""]
    return [f":86:{chunks[0]}", *chunks[1:]]


# --- the interface ------------------------------------------------------------------------

FORMATS: dict[str, tuple[Callable[[PayoutBank, date], bytes], str]] = {
    "camt053": (camt053, "application/xml"),
    "mt940": (mt940, "text/plain; charset=utf-8"),
}


def render(bank: PayoutBank, day: date, fmt: str) -> tuple[bytes, str]:
    """The statement of ``day`` in ``fmt`` (a key of ``FORMATS``) and its media type."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown statement format {fmt!r}; one of {sorted(FORMATS)}")
    make, media_type = FORMATS[fmt]
    return make(bank, day), media_type
