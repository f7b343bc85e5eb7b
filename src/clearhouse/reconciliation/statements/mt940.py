"""SWIFT MT940 (customer statement message) into normalised lines, read with the ``mt-940``
package.

The package reads the fields (``:60F:`` balances, ``:61:`` amount, sign, dates, type code and
references); this module adds what it leaves to its caller: the 1-based line of every field
(its errors name none), the required fields, the balance check, exact minor units from its
``Decimal`` amounts, and the refusals of ``errors.py``. It runs with every opt-in fix of the
package switched on (reversal marks signed, lowercase marks, long ``:86:`` kept whole, byte
order mark dropped).

One statement per file (``:20:`` once): the ``Statement`` of a file carries one account and
one day. A SWIFT envelope (``{1:...}{2:...}{4:`` ... ``-}``) around the block is accepted.

Mapping: one line per ``:61:``; ``amount`` signed by the mark (``D`` and ``RC`` out, ``C`` and
``RD`` in); ``channel_txn_id`` the bank reference (after ``//``), ``merchant_ref`` the account
owner's reference unless ``NONREF``; ``memo`` the ``:86:`` text that follows the line, its
wrapped 65-character lines joined again; kind ``fee`` for the charge and commission type
codes (``CHG``, ``COM``), ``transfer`` otherwise. The file is read as UTF-8 unless told
otherwise; bytes that do not decode are refused, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

import mt940 as swift

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
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import Kind, Statement

__all__ = ["parse"]

_TAG = re.compile(r"^:(?P<tag>[0-9]{2}|NS)(?P<sub>[A-Z])?:", re.IGNORECASE)
_WRAP = 65  # an :86: line is at most 65 characters: a full line was wrapped, not ended
_NO_REF = "NONREF"
# 1!a6!n3!a15d, whole: the package reads a balance's leading part and ignores what follows.
_BALANCE = re.compile(r"[CD][0-9]{6}[A-Z]{3}[0-9]+,[0-9]*")
_FEE_TYPES = frozenset({"CHG", "COM"})
_OPTIONS = swift.Options.all()


@dataclass(frozen=True, slots=True)
class _Field:
    tag: str  # "20", "60F", "61", ...
    line: int  # 1-based line of the tag in the file
    value: str


def parse(data: bytes, file: str, encoding: str = "utf-8") -> Statement:
    """The statement in ``data`` (the raw file), or a ``StatementError`` naming the cause."""
    text = _decode(data, file, encoding)
    fields = _fields(text, file)
    _one(fields, ("20",), file, StatementCode.MISSING_COLUMN)
    if sum(f.tag == "20" for f in fields) > 1:
        second = [f for f in fields if f.tag == "20"][1]
        raise StatementError(
            StatementCode.UNSUPPORTED,
            file,
            "more than one statement (:20:) in the file; one per file is supported",
            second.line,
        )
    account_field = _one(fields, ("25",), file, StatementCode.MISSING_COLUMN)
    _one(fields, ("28C", "28"), file, StatementCode.MISSING_COLUMN)
    opening_field = _one(fields, ("60F", "60M", "60"), file, StatementCode.MISSING_COLUMN)
    closing_field = _one(fields, ("62F", "62M", "62"), file, StatementCode.TRUNCATED)
    parsed = _run_library(fields, file)
    account = str(parsed.data.get("account_identification") or "").strip()
    if not account:
        raise StatementError(
            StatementCode.MISSING_COLUMN, file, ":25: is empty", account_field.line
        )
    opening, currency = _balance(parsed, opening_field, file)
    closing, closing_currency = _balance(parsed, closing_field, file)
    if closing_currency != currency:
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"closing balance in {closing_currency}, opening in {currency}",
            closing_field.line,
        )
    lines = _lines(parsed, fields, currency, file)
    _check_sums(parsed, fields, lines, file)
    totals = check_balances(file, currency, opening, closing, lines, closing_field.line)
    closing_day = _balance_model(parsed, closing_field).date
    return Statement(
        source=SOURCE,
        file=file,
        sha256=sha256(data),
        account=account,
        business_date=date(closing_day.year, closing_day.month, closing_day.day),
        lines=to_table(account, lines),
        totals=[totals],
    )


# --- the text and its fields --------------------------------------------------------------


def _decode(data: bytes, file: str, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise StatementError(
            StatementCode.ENCODING, file, f"bytes that are not {encoding}", line
        ) from None
    return text.removeprefix("\ufeff")


def _fields(text: str, file: str) -> list[_Field]:
    """Every field with its line, the way the package finds them (a known tag at a line start).

    Lines of a SWIFT envelope around block 4 and the ``-`` that ends the block are no fields.
    """
    fields: list[_Field] = []
    known = {str(tag_id) for tag_id in swift.tags.TAG_BY_ID}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        found = _TAG.match(line)
        tag = (found.group("tag") + (found.group("sub") or "")).upper() if found else ""
        if found and (tag in known or found.group("tag").upper() in known):
            fields.append(_Field(tag, number, line[found.end() :]))
        elif fields and line.strip() not in {"-", "-}"} and not line.startswith("{5:"):
            last = fields[-1]
            fields[-1] = _Field(last.tag, last.line, f"{last.value}\n{line}")
    if not fields:
        raise StatementError(StatementCode.UNSUPPORTED, file, "no MT940 field (:20:, :61:, ...)")
    return fields


def _one(fields: list[_Field], tags: tuple[str, ...], file: str, code: StatementCode) -> _Field:
    for tag in tags:
        found = next((f for f in fields if f.tag == tag), None)
        if found is not None:
            return found
    raise StatementError(code, file, f"no :{tags[0]}: field")


def _run_library(fields: list[_Field], file: str) -> Any:
    # The package reads the fields found here, so both see the same text (no envelope).
    text = "\n".join(f":{field.tag}:{field.value}" for field in fields)
    try:
        return swift.parse(text, options=_OPTIONS)
    except (RuntimeError, ValueError, InvalidOperation, TypeError, KeyError):
        pass
    # The package names no line: replay the fields one by one to find the one it refused.
    for field in fields:
        if not _field_parses(field):
            raise StatementError(
                StatementCode.BAD_VALUE, file, f"bad :{field.tag}: {field.value!r}", field.line
            ) from None
    raise StatementError(StatementCode.BAD_VALUE, file, "a field does not parse")


def _field_parses(field: _Field) -> bool:
    scratch = swift.models.Transactions(options=_OPTIONS)
    tag_id = int(field.tag) if field.tag.isdigit() else field.tag
    tag = scratch.tags.get(tag_id) or scratch.tags.get(_base_id(field.tag))
    if tag is None:
        return True
    try:
        values = tag.parse(scratch, field.value.strip())
        for step in scratch.processors.get(f"pre_{tag.slug}", []):
            values = step(scratch, tag, values)
        tag(scratch, values)
    except (RuntimeError, ValueError, InvalidOperation, TypeError, KeyError):
        return False
    return True


def _base_id(tag: str) -> int | str:
    base = tag[:2]
    return int(base) if base.isdigit() else base


# --- balances and lines -------------------------------------------------------------------

_BALANCE_KEYS = {
    "60F": "final_opening_balance",
    "60M": "intermediate_opening_balance",
    "60": "opening_balance",
    "62F": "final_closing_balance",
    "62M": "intermediate_closing_balance",
    "62": "closing_balance",
}


def _balance_model(parsed: Any, field: _Field) -> Any:
    return parsed.data[_BALANCE_KEYS[field.tag]]


def _balance(parsed: Any, field: _Field, file: str) -> tuple[int, str]:
    if not _BALANCE.fullmatch(field.value.strip()) or len(field.value.strip()) > 25:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"bad :{field.tag}: {field.value!r}", field.line
        )
    amount = _balance_model(parsed, field).amount
    currency = check_currency(str(amount.currency), file, field.line)
    value: Decimal = amount.amount
    minor = to_minor(abs(value), currency, file, field.line)
    return (-minor if value < 0 else minor), currency


def _lines(parsed: Any, fields: list[_Field], currency: str, file: str) -> list[BankLine]:
    statement_fields = [f for f in fields if f.tag == "61"]
    memos = _memos(fields)
    for field, txn in zip(statement_fields, parsed.transactions, strict=False):
        if not txn.data.get("id"):
            # Without the type code the package folds the next :61: into this one.
            raise StatementError(
                StatementCode.BAD_VALUE, file, ":61: has no transaction type code", field.line
            )
    if len(parsed.transactions) != len(statement_fields):
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"{len(statement_fields)} :61: lines, {len(parsed.transactions)} read",
        )
    return [
        _line(txn.data, field, memos.get(field.line), currency, file)
        for field, txn in zip(statement_fields, parsed.transactions, strict=True)
    ]


def _line(
    data: dict[str, Any], field: _Field, memo: str | None, currency: str, file: str
) -> BankLine:
    amount = data["amount"]
    if amount.currency != currency:
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"line in {amount.currency}, statement in {currency}",
            field.line,
        )
    value: Decimal = amount.amount
    minor = to_minor(abs(value), currency, file, field.line)
    booked = data.get("entry_date") or data["date"]
    day = date(booked.year, booked.month, booked.day)
    type_code = str(data["id"]).upper()
    bank_ref = _ref(data.get("bank_reference"))
    return BankLine(
        line_no=field.line,
        business_date=day,
        occurred_at=day_start(day),
        kind=Kind.FEE if type_code[1:] in _FEE_TYPES else Kind.TRANSFER,
        currency=currency,
        amount=-minor if value < 0 else minor,
        channel_txn_id=bank_ref,
        merchant_ref=_ref(data.get("customer_reference")),
        status=str(data["status"]),
        payout_id=None,
        memo=memo,
    )


def _ref(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return None if not text or text.upper() == _NO_REF else text


def _memos(fields: list[_Field]) -> dict[int, str]:
    """The :86: that directly follows a :61:, keyed by that :61:'s line."""
    memos: dict[int, str] = {}
    for before, field in pairwise(fields):
        if field.tag == "86" and before.tag == "61":
            memos[before.line] = _unwrap(field.value)
    return memos


def _unwrap(value: str) -> str:
    parts = [part.rstrip("\r") for part in value.split("\n")]
    text = parts[0]
    for previous, part in pairwise(parts):
        # A full-width line was cut by the bank's wrapping: glue it back without a space.
        text += part if len(previous) >= _WRAP else f" {part}"
    return text.strip()


def _check_sums(parsed: Any, fields: list[_Field], lines: list[BankLine], file: str) -> None:
    """The optional :90D: / :90C: (number and sum of debit / credit lines) against the lines."""
    for tag, key, sign in (("90D", "sum_debit_entries", -1), ("90C", "sum_credit_entries", 1)):
        declared = parsed.data.get(key)
        field = next((f for f in fields if f.tag == tag), None)
        if declared is None or field is None:
            continue
        group = [row.amount for row in lines if row.amount * sign > 0]
        minor = to_minor(abs(declared.amount), str(declared.currency), file, field.line)
        if int(declared.number or 0) != len(group) or minor != abs(sum(group)):
            raise StatementError(
                StatementCode.TOTALS_MISMATCH,
                file,
                f":{tag}: says {declared.number} lines for {minor}, "
                f"the statement has {len(group)} for {abs(sum(group))}",
                field.line,
            )
