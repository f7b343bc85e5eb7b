"""Shared machinery of the Chinese channels' CSV bills (WeChat Pay, Alipay).

Both write plain comma-separated text with a few lines of preamble or summary around the detail
rows, yuan amounts as decimal text and Beijing wall-clock times. The detail rows are read by
pyarrow's CSV reader as strings and converted column by column with pyarrow.compute, so a bill of
a million rows never becomes a million Python objects. Every converter names the 1-based line of
the first value it refuses.
"""

from __future__ import annotations

import csv
import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from clearhouse.errors import UnknownCurrency
from clearhouse.money import currency as lookup_currency
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import LINES

# China has kept UTC+8 without daylight saving since 1991: a fixed offset is exact.
BEIJING_OFFSET_S = 8 * 3600
_TIME_TEXT_LEN = len("2024-01-31 23:59:59")
# Widest amount a decimal128(18, e) column holds; wider text is refused, never rounded.
_PRECISION = 18
_AMOUNT_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_BLOCK_SIZE = 1 << 20
# pyarrow has no type stubs here: a column is an Array or a ChunkedArray.
Column: TypeAlias = "pa.Array | pa.ChunkedArray"
# A line number, or how to count it: some are a pass over the whole file, paid only on error.
Line = int | Callable[[], int]


def at(line: Line) -> int:
    return line if isinstance(line, int) else line()


class Digest:
    """SHA-256 of a file, computed on a thread while the file is parsed (hashlib lets go of the
    interpreter lock on large inputs, so the two overlap on a second core)."""

    def __init__(self, data: bytes) -> None:
        self._hex = ""
        self._thread = threading.Thread(target=self._run, args=(data,), daemon=True)
        self._thread.start()

    def _run(self, data: bytes) -> None:
        self._hex = hashlib.sha256(data).hexdigest()

    def hexdigest(self) -> str:
        self._thread.join()
        return self._hex


def line_of(data: bytes, offset: int, first_line: int = 1, start: int = 0) -> int:
    """The 1-based line holding byte ``offset`` of ``data``, whose byte ``start`` begins line
    ``first_line``."""
    return first_line + data.count(b"\n", start, offset)


def check_utf8(data: bytes, file: str, first_line: int = 1) -> None:
    """Refuse bytes that are not UTF-8, naming the line of the first bad byte.

    Arrow's validator runs at memory speed; Python's decoder only runs to locate the fault.
    """
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    blob = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        blob.cast(pa.large_string())
    except pa.ArrowInvalid:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = line_of(data, exc.start, first_line)
            if exc.end == len(data) and exc.reason == "unexpected end of data":
                # A character cut in half at the very end: the file stops mid-row.
                raise StatementError(
                    StatementCode.TRUNCATED, file, "the file ends inside a character", line
                ) from None
            raise StatementError(
                StatementCode.ENCODING, file, "bytes that are not UTF-8", line
            ) from None
        raise  # the validator and the decoder disagree: not a data problem


def header_names(line: str) -> list[str]:
    """Column names of a header line; whitespace and spreadsheet tab guards are not part of
    a name, and full-width parentheses are folded to ASCII so both spellings of 金额(元) match."""
    names = []
    for cell in line.split(","):
        name = re.sub(r"\s+", "", cell).lstrip("\ufeff")
        names.append(name.replace("\uff08", "(").replace("\uff09", ")"))
    return names


@dataclass(frozen=True, slots=True)
class Layout:
    """The columns a format knows: canonical role -> the header spellings seen in the wild."""

    aliases: Mapping[str, tuple[str, ...]]
    required: frozenset[str]

    def resolve(self, names: Sequence[str], file: str, line: Line) -> dict[str, str]:
        """Map each role to the header name that carries it; refuse unknown and duplicate
        columns (the layout changed) and missing required ones."""
        by_name = {alias: role for role, spellings in self.aliases.items() for alias in spellings}
        found: dict[str, str] = {}
        for name in names:
            role = by_name.get(name)
            if role is None:
                raise StatementError(
                    StatementCode.UNKNOWN_COLUMN, file, f"unknown column {name!r}", at(line)
                )
            if role in found:
                raise StatementError(
                    StatementCode.UNKNOWN_COLUMN, file, f"column {name!r} appears twice", at(line)
                )
            found[role] = name
        missing = sorted(self.required - found.keys())
        if missing:
            wanted = ", ".join(self.aliases[role][0] for role in missing)
            raise StatementError(
                StatementCode.MISSING_COLUMN, file, f"missing column(s): {wanted}", at(line)
            )
        return found


def read_rows(
    data: bytes,
    start: int,
    end: int,
    names: Sequence[str],
    wanted: Iterable[str],
    *,
    file: str,
    first_line: int,
    quoting: bool,
    binary: bool = False,
) -> pa.Table:
    """Read the detail rows ``data[start:end]`` (no header line) as strings, without copying
    them; a row with the wrong number of fields is refused with its line. ``binary`` reads
    bytes of another encoding, for the caller to decode."""
    wanted = list(wanted)
    # Empty lines are kept as rows of empty fields (ignore_empty_lines=False), so line numbers
    # stay right and the converters refuse them with their line.
    if end - start <= 2 and not data[start:end].strip():
        kind = pa.binary() if binary else pa.string()
        return pa.table({name: pa.chunked_array([], kind) for name in wanted})
    try:
        return pcsv.read_csv(
            pa.py_buffer(data).slice(start, end - start),
            read_options=pcsv.ReadOptions(
                column_names=list(names), use_threads=True, block_size=_BLOCK_SIZE
            ),
            parse_options=pcsv.ParseOptions(
                quote_char='"' if quoting else False,
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=False,
            ),
            convert_options=pcsv.ConvertOptions(
                include_columns=wanted,
                column_types=dict.fromkeys(names, pa.binary() if binary else pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                # The caller has validated the whole file (check_utf8) or decodes it itself.
                check_utf8=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        line, fields = _misshapen_row(data, start, end, len(names), quoting)
        if line is None:
            raise StatementError(StatementCode.BAD_VALUE, file, f"unreadable rows: {exc}") from None
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"row has {fields} fields where the header has {len(names)}",
            first_line + line,
        ) from None


def _misshapen_row(
    data: bytes, start: int, end: int, width: int, quoting: bool
) -> tuple[int | None, int]:
    """The first row (0-based) whose field count is not ``width`` (error path only)."""
    rows = data[start:end].split(b"\n")
    for index, raw in enumerate(rows):
        line = raw.rstrip(b"\r").decode("latin-1")  # delimiters are ASCII in every encoding
        if not line and index == len(rows) - 1:
            break
        fields = len(next(csv.reader([line]), [""])) if quoting else line.count(",") + 1
        if fields != width:
            return index, fields
    return None, 0


def first_failing(values: Column, ok: Callable[[str], bool]) -> int:
    """Index of the first value ``ok`` refuses (error path only: a Python loop)."""
    for index, value in enumerate(values.to_pylist()):
        if not ok(value):
            return index
    return 0


def minor_units(
    values: Column,
    exponent: int,
    *,
    file: str,
    first_line: int,
    column: str,
) -> pa.ChunkedArray:
    """Decimal text (``-12.34``, ``7.79000``) to int64 minor units, exactly.

    Arrow's decimal cast refuses a value whose digits beyond ``exponent`` are not zero, so
    nothing is rounded; the int64 is the decimal's own unscaled integer (its low 64 bits, which
    hold the whole value at precision 18).
    """
    chunked = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    try:
        dec = pc.cast(chunked, pa.decimal128(_PRECISION, exponent))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        index = first_failing(chunked, lambda text: _exact(text, exponent))
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"{column}: {chunked[index].as_py()!r} is not an amount of {exponent} decimals",
            first_line + index,
        ) from None
    if dec.null_count:
        index = first_failing(chunked, lambda text: text is not None)
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"{column}: empty amount", first_line + index
        )
    parts = []
    for chunk in dec.chunks:
        words = np.frombuffer(chunk.buffers()[1], dtype=np.int64)
        parts.append(pa.array(words[2 * chunk.offset : 2 * (chunk.offset + len(chunk)) : 2]))
    return pa.chunked_array(parts, type=pa.int64())


def _exact(text: str | None, exponent: int) -> bool:
    if text is None or not _AMOUNT_RE.fullmatch(text):
        return False
    value = Decimal(text).scaleb(exponent)
    return value == value.to_integral_value() and len(text) < _PRECISION


def decimal_text(text: str, exponent: int, *, file: str, line: Line, what: str) -> int:
    """One declared total (summary or footer) as minor units, exactly; counts use exponent 0
    (WeChat's fund bill writes them as ``20.0``)."""
    text = text.strip().lstrip("`").strip("\t")
    try:
        value = Decimal(text).scaleb(exponent)
    except InvalidOperation:
        value = Decimal("NaN")
    if not _AMOUNT_RE.fullmatch(text) or value != value.to_integral_value():
        raise StatementError(StatementCode.BAD_VALUE, file, f"{what}: {text!r}", at(line))
    return int(value)


def beijing_times(values: Column, *, file: str, first_line: int, column: str) -> Column:
    """``YYYY-MM-DD HH:MM:SS`` Beijing wall-clock text to UTC microsecond timestamps."""
    arr = values
    shape_ok = pc.all(pc.equal(pc.binary_length(arr), _TIME_TEXT_LEN)).as_py()
    parsed = None
    if shape_ok or len(arr) == 0:
        try:
            parsed = pc.cast(arr, pa.timestamp("s"))
        except pa.ArrowInvalid:
            parsed = None
    if parsed is None:
        index = first_failing(arr, _is_time)
        raise StatementError(
            StatementCode.BAD_VALUE,
            file,
            f"{column}: {arr[index].as_py()!r} is not a time",
            first_line + index,
        )
    seconds = pc.subtract(parsed.cast(pa.int64()), BEIJING_OFFSET_S)
    return pc.multiply(seconds, 1_000_000).cast(pa.timestamp("us", tz="UTC"))


def _is_time(text: str | None) -> bool:
    if text is None or len(text) != _TIME_TEXT_LEN:
        return False
    try:
        pc.cast(pa.array([text]), pa.timestamp("s"))
    except pa.ArrowInvalid:
        return False
    return True


def strip_prefix(
    values: pa.ChunkedArray,
    prefix: str,
    *,
    file: str,
    first_line: int,
    column: str,
    text: bool = False,
) -> pa.ChunkedArray:
    """Drop the one-character spreadsheet guard every field of the row starts with.

    Codes, amounts and times cannot start with the guard, so trimming every leading guard (a
    cheap kernel) is exact for them; free ``text`` loses exactly one character.
    """
    if len(values) and not pc.all(pc.starts_with(values, prefix)).as_py():
        index = first_failing(values, lambda value: value.startswith(prefix))
        found = values[index].as_py()
        what = "empty field" if not found else f"field without its {prefix!r} prefix"
        raise StatementError(StatementCode.BAD_VALUE, file, f"{column}: {what}", first_line + index)
    if text:
        return pc.utf8_slice_codeunits(values, len(prefix))
    return pc.utf8_ltrim(values, prefix)


def exponent_of(code: str, file: str, line: int | None = None) -> int:
    try:
        return lookup_currency(code).exponent
    except UnknownCurrency:
        raise StatementError(
            StatementCode.BAD_VALUE, file, f"unknown currency {code!r}", line
        ) from None


def single_currency(values: Column, file: str, first_line: int, default: str) -> str:
    """The one currency of a file; a file mixing currencies is not one of these bills."""
    distinct = pc.unique(values).to_pylist()
    if not distinct:
        return default
    if len(distinct) > 1:
        raise StatementError(
            StatementCode.UNSUPPORTED, file, f"bill mixes currencies {sorted(distinct)}"
        )
    code = str(distinct[0])
    exponent_of(code, file, first_line)
    return code


def null_if_empty(values: Column) -> Column:
    """Empty text as null. The validity bitmap is rebuilt over the same offsets and bytes, so
    no string is copied."""
    if isinstance(values, pa.ChunkedArray):
        if not pc.any(pc.equal(values, "")).as_py():
            return values
        return pa.chunked_array([null_if_empty(chunk) for chunk in values.chunks], type=values.type)
    if len(values) == 0:
        return values
    keep = pc.and_(pc.is_valid(values), pc.greater(pc.binary_length(values), 0))
    if values.offset or keep.offset or keep.null_count:
        return pc.if_else(keep, values, pa.scalar(None, values.type))
    _, offsets, data = values.buffers()
    return pa.Array.from_buffers(values.type, len(values), [keep.buffers()[1], offsets, data])


def build_lines(
    *,
    source: str,
    account: str | Column,
    business_date: date,
    occurred_at: Column,
    kind: Column,
    channel_txn_id: Column | None,
    channel_refund_id: Column | None,
    merchant_ref: Column | None,
    parent_ref: Column | None,
    status: Column | None,
    currency: str,
    amount: Column,
    fee: Column,
    memo: Column | None,
    first_line: int,
) -> pa.Table:
    """Assemble a table of schema LINES; ``None`` columns are all null."""
    rows = len(amount)

    def text(values: Column | None) -> Column:
        if values is None:
            return pa.nulls(rows, pa.string())
        return null_if_empty(values)

    def repeat(value: str) -> pa.Array:
        return pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value])
        ).cast(pa.string())

    columns = {
        "source": repeat(source),
        "account": repeat(account) if isinstance(account, str) else account,
        "business_date": pa.array(np.full(rows, np.datetime64(business_date, "D")), pa.date32()),
        "occurred_at": occurred_at,
        "kind": kind,
        "channel_txn_id": text(channel_txn_id),
        "channel_refund_id": text(channel_refund_id),
        "merchant_ref": text(merchant_ref),
        "parent_ref": text(parent_ref),
        "status": text(status),
        "currency": repeat(currency),
        "amount": amount,
        "fee": fee,
        "net": pc.subtract_checked(amount, fee),
        "payout_id": pa.nulls(rows, pa.string()),
        "memo": text(memo),
        "line_no": pa.array(np.arange(first_line, first_line + rows, dtype=np.int32)),
    }
    return pa.Table.from_arrays([columns[f.name] for f in LINES], schema=LINES)
