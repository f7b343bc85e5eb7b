"""ISO 20022 camt.053 (BankToCustomerStatement) into normalised lines.

Read by local element names, so every version's namespace works (``.001.02`` to ``.001.13``
share the elements used here; where they differ, both forms are read: ``Sts`` as text or as
``Sts/Cd``, a detail's amount as ``TxDtls/Amt`` or ``AmtDtls/TxAmt/Amt``).

Why lxml directly and not a camt package: the candidates on PyPI (``camt053`` 0.0.23,
``bankstatementparser`` 0.0.29) are pre-1.0 releases, neither among the widely used packages,
with most of their surface elsewhere (reversing entries, editor and agent plug-ins, PDF
extraction, pandas frames) and dependencies to match. Neither promises what this module must
do: one line per transaction detail of a batch-booked entry with the details checked against
the entry, amounts exact in minor units, and the typed refusals of ``errors.py`` with the line
to blame. The mapping below is a page of code over a pinned, widely used XML library.

Safety (``_xml.py``): no entity is resolved, no DTD loaded, no network touched; a document
with a DTD is refused outright, so external entities and entity expansion never happen.

Mapping: one line per booked entry, or, for a batch-booked entry (``NtryDtls/Btch`` or
several ``TxDtls``), one line per transaction detail with ``payout_id`` set to the entry's
reference so the details can be grouped again. ``merchant_ref`` is the ``EndToEndId`` (our
reference as we sent it), ``channel_txn_id`` the bank's reference, ``memo`` the remittance
information, ``status`` the entry status. Entries not booked (``PDNG``, ``INFO``) move no
money and are left out. A charge (bank transaction sub-family ``CHRG``) is kind ``fee``;
everything else is ``transfer``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from clearhouse.reconciliation.statements._bank import (
    SOURCE,
    BankLine,
    check_balances,
    check_currency,
    day_start,
    sha256,
    to_minor,
    to_table,
)
from clearhouse.reconciliation.statements._xml import Node
from clearhouse.reconciliation.statements._xml import find as _find
from clearhouse.reconciliation.statements._xml import find_all as _all
from clearhouse.reconciliation.statements._xml import kid as _kid
from clearhouse.reconciliation.statements._xml import kids as _kids
from clearhouse.reconciliation.statements._xml import load as _load
from clearhouse.reconciliation.statements._xml import local_name as _name
from clearhouse.reconciliation.statements._xml import need as _need
from clearhouse.reconciliation.statements._xml import text as _text
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import Kind, Statement

__all__ = ["parse"]

_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:\d{2})$")
_OPENING = ("OPBD", "PRCD")  # opening booked; previously closed booked, which some banks send
_NOT_GIVEN = "NOTPROVIDED"  # the EndToEndId placeholder when the payer gave none


def parse(data: bytes, file: str) -> Statement:
    """The statement in ``data`` (the raw file), or a ``StatementError`` naming the cause."""
    stmt = _statement(_load(data, file), file)
    account = _account(stmt, file)
    currency, opening, closing, closing_node = _balances(stmt, file)
    business_day = _balance_day(closing_node, file)
    lines: list[BankLine] = []
    entries = _kids(stmt, "Ntry")
    for entry in entries:
        lines.extend(_entry(entry, currency, file))
    _check_summary(stmt, entries, currency, file)
    totals = check_balances(file, currency, opening, closing, lines, closing_node.sourceline)
    return Statement(
        source=SOURCE,
        file=file,
        sha256=sha256(data),
        account=account,
        business_date=business_day,
        lines=to_table(account, lines),
        totals=[totals],
    )


# --- the document -------------------------------------------------------------------------


def _statement(root: Node, file: str) -> Node:
    found = root if _name(root) == "BkToCstmrStmt" else None
    if found is None:
        # Document directly, or inside a business message envelope (AppHdr + Document).
        found = next((n for n in root.iter() if _name(n) == "BkToCstmrStmt"), None)
    if found is None:
        raise StatementError(
            StatementCode.UNSUPPORTED,
            file,
            f"not a camt.053 statement (root {_name(root)}, no BkToCstmrStmt)",
            root.sourceline,
        )
    stmts = _kids(found, "Stmt")
    if not stmts:
        raise StatementError(StatementCode.MISSING_COLUMN, file, "no Stmt", found.sourceline)
    if len(stmts) > 1:
        # One Statement per file (its sha256 is the file's): a multi-account file is split first.
        raise StatementError(
            StatementCode.UNSUPPORTED,
            file,
            f"{len(stmts)} statements in one document; one per file is supported",
            stmts[1].sourceline,
        )
    return stmts[0]


def _account(stmt: Node, file: str) -> str:
    acct = _need(stmt, "Acct", file)
    value = _text(acct, "Id/IBAN") or _text(acct, "Id/Othr/Id")
    if not value:
        raise StatementError(
            StatementCode.MISSING_COLUMN, file, "Acct/Id has no IBAN or Othr/Id", acct.sourceline
        )
    return value


def _balances(stmt: Node, file: str) -> tuple[str, int, int, Node]:
    found: dict[str, Node] = {}
    for bal in _kids(stmt, "Bal"):
        code = _text(bal, "Tp/CdOrPrtry/Cd") or _text(bal, "Tp/CdOrPrtry/Prtry")
        if code is not None:
            found.setdefault(code, bal)
    closing_node = found.get("CLBD")
    if closing_node is None:
        raise StatementError(StatementCode.TRUNCATED, file, "no closing balance (CLBD)")
    opening_node = next((found[c] for c in _OPENING if c in found), None)
    if opening_node is None:
        raise StatementError(
            StatementCode.MISSING_COLUMN, file, "no opening balance (OPBD)", stmt.sourceline
        )
    closing, currency = _signed(closing_node, file)
    opening, opening_currency = _signed(opening_node, file)
    declared = _find(stmt, "Acct/Ccy")
    checks = [(opening_currency, opening_node)]
    if declared is not None:
        checks.append(((declared.text or "").strip(), declared))
    for other, node in checks:
        if other != currency:
            raise StatementError(
                StatementCode.BAD_VALUE,
                file,
                f"currency {other} differs from the closing balance's {currency}",
                node.sourceline,
            )
    return currency, opening, closing, closing_node


def _balance_day(bal: Node, file: str) -> date:
    on = _find(bal, "Dt/Dt")
    if on is not None:
        return _date(on, file)
    at = _find(bal, "Dt/DtTm")
    if at is not None:
        return _local_day(at, file)
    raise StatementError(
        StatementCode.MISSING_COLUMN, file, "the closing balance has no date", bal.sourceline
    )


def _check_summary(stmt: Node, entries: list[Node], currency: str, file: str) -> None:
    """The optional ``TxsSummry`` against the booked entries (what the balances move by)."""
    summary = _kid(stmt, "TxsSummry")
    if summary is None:
        return
    booked = [e for e in entries if _status(e, file) == "BOOK"]
    credits = [e for e in booked if _text(e, "CdtDbtInd") == "CRDT"]
    debits = [e for e in booked if _text(e, "CdtDbtInd") == "DBIT"]
    for path, group in (("TtlNtries", booked), ("TtlCdtNtries", credits), ("TtlDbtNtries", debits)):
        block = _kid(summary, path)
        if block is None:
            continue
        count = _text(block, "NbOfNtries")
        if count is not None and count != str(len(group)):
            raise StatementError(
                StatementCode.TOTALS_MISMATCH,
                file,
                f"{path}/NbOfNtries says {count}, the statement has {len(group)} booked",
                block.sourceline,
            )
        declared = _kid(block, "Sum")
        if declared is None:
            continue
        total = sum(_amount(_need(e, "Amt", file), file)[0] for e in group)
        if to_minor(declared.text or "", currency, file, declared.sourceline) != total:
            raise StatementError(
                StatementCode.TOTALS_MISMATCH,
                file,
                f"{path}/Sum differs from the booked entries' sum",
                declared.sourceline,
            )


# --- entries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the lines of one entry share."""

    day: date
    at: datetime
    kind: Kind
    currency: str
    status: str
    ref: str | None  # the bank's reference of the entry
    memo: str | None

    def line(
        self,
        line_no: int,
        amount: int,
        *,
        channel_txn_id: str | None = None,
        merchant_ref: str | None = None,
        payout_id: str | None = None,
        memo: str | None = None,
    ) -> BankLine:
        return BankLine(
            line_no=line_no,
            business_date=self.day,
            occurred_at=self.at,
            kind=self.kind,
            currency=self.currency,
            amount=amount,
            channel_txn_id=channel_txn_id,
            merchant_ref=merchant_ref,
            status=self.status,
            payout_id=payout_id,
            memo=memo or self.memo,
        )


def _entry(ntry: Node, currency: str, file: str) -> list[BankLine]:
    minor, ccy = _amount(_need(ntry, "Amt", file), file)
    amount = _sign(_need(ntry, "CdtDbtInd", file), file) * minor
    status = _status(ntry, file)
    if status != "BOOK":
        return []
    if ccy != currency:
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"entry in {ccy} on a {currency} account",
            ntry.sourceline,
        )
    day, at = _booked(ntry, file)
    charge = _text(ntry, "BkTxCd/Domn/Fmly/SubFmlyCd") == "CHRG"
    entry = _Entry(
        day=day,
        at=at,
        kind=Kind.FEE if charge else Kind.TRANSFER,
        currency=currency,
        status=status,
        ref=_text(ntry, "AcctSvcrRef") or _text(ntry, "NtryRef"),
        memo=_text(ntry, "AddtlNtryInf"),
    )
    batch = _find(ntry, "NtryDtls/Btch")
    details = [tx for dtls in _kids(ntry, "NtryDtls") for tx in _kids(dtls, "TxDtls")]
    if batch is None and len(details) <= 1:
        tx = details[0] if details else None
        if tx is not None:
            _check_details(ntry, [tx], amount, currency, file)
        return [
            entry.line(
                ntry.sourceline,
                amount,
                channel_txn_id=entry.ref or _detail_ref(tx),
                merchant_ref=_end_to_end(tx),
                memo=_detail_memo(tx),
            )
        ]
    return _batch(ntry, entry, amount, batch, details, file)


def _batch(
    ntry: Node, entry: _Entry, amount: int, batch: Node | None, details: list[Node], file: str
) -> list[BankLine]:
    """A batch-booked entry: one line per transaction detail, grouped by the entry's reference."""
    ours = (_text(batch, "PmtInfId") or _text(batch, "MsgId")) if batch is not None else None
    group = entry.ref or ours
    if not details:
        # Booked as one sum with the items reported elsewhere (camt.054): the batch is the line.
        return [
            entry.line(
                ntry.sourceline,
                amount,
                channel_txn_id=entry.ref,
                merchant_ref=ours,
                payout_id=group,
            )
        ]
    amounts = _check_details(ntry, details, amount, entry.currency, file)
    if batch is not None:
        _check_batch(batch, details, amounts, file)
    return [
        entry.line(
            tx.sourceline,
            part,
            channel_txn_id=_detail_ref(tx) or (f"{entry.ref}/{n}" if entry.ref else None),
            merchant_ref=_end_to_end(tx),
            payout_id=group,
            memo=_detail_memo(tx),
        )
        for n, (tx, part) in enumerate(zip(details, amounts, strict=True), start=1)
    ]


def _check_details(
    ntry: Node, details: list[Node], entry_amount: int, currency: str, file: str
) -> list[int]:
    """Each detail's signed amount; together they must make the entry's amount."""
    amounts: list[int] = []
    for tx in details:
        node = _detail_amount(tx, currency)
        if node is None:
            if len(details) == 1:
                amounts.append(entry_amount)  # a single detail may leave the amount to its entry
                continue
            raise StatementError(
                StatementCode.MISSING_COLUMN,
                file,
                "a transaction detail of a batch has no amount",
                tx.sourceline,
            )
        minor, ccy = _amount(node, file)
        if ccy != currency:
            raise StatementError(
                StatementCode.BAD_VALUE,
                file,
                f"detail in {ccy}, entry in {currency}",
                node.sourceline,
            )
        indicator = _kid(tx, "CdtDbtInd")
        sign = _sign(indicator, file) if indicator is not None else (1 if entry_amount >= 0 else -1)
        amounts.append(sign * minor)
    if sum(amounts) != entry_amount:
        raise StatementError(
            StatementCode.TOTALS_MISMATCH,
            file,
            f"the {len(details)} transaction details sum to {sum(amounts)}, "
            f"the entry says {entry_amount} (minor units)",
            ntry.sourceline,
        )
    return amounts


def _check_batch(batch: Node, details: list[Node], amounts: list[int], file: str) -> None:
    count = _text(batch, "NbOfTxs")
    if count is not None and count != str(len(details)):
        raise StatementError(
            StatementCode.TOTALS_MISMATCH,
            file,
            f"Btch/NbOfTxs says {count}, the entry has {len(details)} transaction details",
            batch.sourceline,
        )
    total = _kid(batch, "TtlAmt")
    if total is not None:
        minor, _ = _amount(total, file)
        if minor != abs(sum(amounts)):
            raise StatementError(
                StatementCode.TOTALS_MISMATCH,
                file,
                "Btch/TtlAmt differs from the transaction details' sum",
                total.sourceline,
            )


def _detail_amount(tx: Node, currency: str) -> Node | None:
    for path in ("Amt", "AmtDtls/TxAmt/Amt", "AmtDtls/InstdAmt/Amt"):
        node = _find(tx, path)
        # The instructed amount may be in the payer's currency: only usable in the account's.
        if node is not None and (path != "AmtDtls/InstdAmt/Amt" or node.get("Ccy") == currency):
            return node
    return None


def _detail_ref(tx: Node | None) -> str | None:
    if tx is None:
        return None
    return _text(tx, "Refs/AcctSvcrRef") or _text(tx, "Refs/TxId")


def _end_to_end(tx: Node | None) -> str | None:
    value = _text(tx, "Refs/EndToEndId") if tx is not None else None
    return None if value == _NOT_GIVEN else value


def _detail_memo(tx: Node | None) -> str | None:
    if tx is None:
        return None
    parts = [n.text.strip() for n in _all(tx, "RmtInf/Ustrd") if n.text and n.text.strip()]
    return " ".join(parts) if parts else _text(tx, "AddtlTxInf")


def _status(ntry: Node, file: str) -> str:
    node = _need(ntry, "Sts", file)
    # .001.02 writes <Sts>BOOK</Sts>; from .001.08 on it is <Sts><Cd>BOOK</Cd></Sts>.
    value = _text(node, "Cd") or _text(node, "Prtry") or (node.text or "").strip()
    if not value:
        raise StatementError(StatementCode.BAD_VALUE, file, "empty entry status", node.sourceline)
    return str(value)


def _booked(ntry: Node, file: str) -> tuple[date, datetime]:
    for path in ("BookgDt", "ValDt"):
        holder = _kid(ntry, path)
        if holder is None:
            continue
        on = _kid(holder, "Dt")
        if on is not None:
            day = _date(on, file)
            return day, day_start(day)
        at = _kid(holder, "DtTm")
        if at is not None:
            return _local_day(at, file), _instant(at, file)
    raise StatementError(
        StatementCode.MISSING_COLUMN, file, "an entry has no booking date", ntry.sourceline
    )


# --- values -------------------------------------------------------------------------------


def _amount(node: Node, file: str) -> tuple[int, str]:
    ccy = node.get("Ccy")
    if not ccy:
        raise StatementError(
            StatementCode.MISSING_COLUMN, file, f"{_name(node)} has no Ccy", node.sourceline
        )
    check_currency(ccy, file, node.sourceline)
    return to_minor(node.text or "", ccy, file, node.sourceline), ccy


def _signed(bal: Node, file: str) -> tuple[int, str]:
    minor, ccy = _amount(_need(bal, "Amt", file), file)
    return _sign(_need(bal, "CdtDbtInd", file), file) * minor, ccy


def _sign(node: Node, file: str) -> int:
    value = (node.text or "").strip()
    if value == "CRDT":
        return 1
    if value == "DBIT":
        return -1
    raise StatementError(
        StatementCode.BAD_VALUE, file, f"CdtDbtInd {value!r} is not CRDT or DBIT", node.sourceline
    )


def _date(node: Node, file: str) -> date:
    text = _OFFSET.sub("", (node.text or "").strip())
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"bad date {node.text!r}", node.sourceline
        ) from None


def _parse_instant(node: Node, file: str) -> datetime:
    try:
        return datetime.fromisoformat((node.text or "").strip())
    except ValueError:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"bad date-time {node.text!r}", node.sourceline
        ) from None


def _local_day(node: Node, file: str) -> date:
    """The bank's own day: the date as written, before any conversion to UTC."""
    return _parse_instant(node, file).date()


def _instant(node: Node, file: str) -> datetime:
    at = _parse_instant(node, file)
    # A time without an offset is the bank's local time, which the file does not name: UTC.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
