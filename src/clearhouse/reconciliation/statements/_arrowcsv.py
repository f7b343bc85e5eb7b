"""What the Stripe and PayPal parsers share: strict UTF-8, every CSV field read as a string by
pyarrow.csv, and conversions done column by column with pyarrow.compute that name the first record
they refuse without a Python loop over the rows.

Records are numbered from 1 as pyarrow counts them: blank lines are skipped, and a quoted value
that spans lines stays one record. In the files these parsers read neither happens, so the number
is the line an editor shows.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clearhouse.errors import UnknownCurrency
from clearhouse.money import currency as lookup_currency
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.statements.model import LINES

_BLOCK_SIZE = 1 << 22


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utf8_body(data: bytes, file: str) -> bytes:
    """``data`` without a UTF-8 byte order mark, or ENCODING naming the line of the first bad
    byte. Arrow validates the bytes in place; Python's decoder runs only to locate a fault."""
    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    offsets = pa.array([0, len(body)], pa.int64()).buffers()[1]
    blob = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(body)])
    try:
        blob.cast(pa.large_string())
    except pa.ArrowInvalid:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = body.count(b"\n", 0, exc.start) + 1
            bad = body[exc.start : exc.start + 1].hex()
            raise StatementError(
                StatementCode.ENCODING, file, f"byte 0x{bad} is not UTF-8", line
            ) from None
        raise
    return body


@dataclass(frozen=True, slots=True)
class Odd:
    """A record whose field count differs from the header's: kept aside, not in the table."""

    record: int
    text: str
    fields: int


def read_strings(
    body: bytes,
    names: Sequence[str],
    keep: Iterable[str],
    *,
    skip: int,
    delimiter: str = ",",
    quoted: bool = True,
) -> tuple[pa.Table, list[Odd]]:
    """Every record with ``len(names)`` fields as strings (columns ``keep`` only), and the
    records of any other width aside with their numbers. ``skip`` leading records (a header)
    are not read but still counted. Serial reading is what gives the odd records their numbers.
    ``quoted=False`` for layouts that quote nothing, where a quote is a plain character.
    """
    odd: list[Odd] = []

    def aside(row: Any) -> str:
        odd.append(Odd(int(row.number), str(row.text), int(row.actual_columns)))
        return "skip"

    table = pacsv.read_csv(
        pa.BufferReader(body),
        read_options=pacsv.ReadOptions(
            column_names=list(names), skip_rows=skip, use_threads=False, block_size=_BLOCK_SIZE
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            quote_char='"' if quoted else False,
            newlines_in_values=quoted,
            invalid_row_handler=aside,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            include_columns=list(keep),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    return table.combine_chunks(), odd


def flat(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if not isinstance(values, pa.ChunkedArray):
        return values
    return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()


def first_false(ok: pa.Array) -> int | None:
    """Index of the first false (or null) in ``ok``, or None when all hold."""
    found = pc.index(pc.fill_null(ok, False), False).as_py()
    return None if found < 0 else int(found)


def require(
    ok: pa.Array,
    values: pa.Array,
    records: pa.Array,
    file: str,
    what: str,
    code: StatementCode = StatementCode.BAD_VALUE,
) -> None:
    """Refuse the file at the first record where ``ok`` fails, quoting its value."""
    index = first_false(ok)
    if index is not None:
        raise StatementError(
            code, file, f"{what}: {values[index].as_py()!r}", int(records[index].as_py())
        )


def blank_to_null(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def exponents(codes: pa.Array, records: pa.Array, file: str) -> pa.Array:
    """Each row's ISO 4217 exponent; BAD_VALUE at the first code that is not a currency. The
    distinct codes are few, so only they are looked up in Python."""
    distinct = pc.unique(codes).to_pylist()
    known: list[str] = []
    found: list[int] = []
    for code in distinct:
        try:
            found.append(lookup_currency(code).exponent)
            known.append(code)
        except UnknownCurrency:
            continue
    positions = pc.index_in(codes, value_set=pa.array(known, pa.string()))
    require(pc.is_valid(positions), codes, records, file, "not an ISO 4217 currency")
    return pc.take(pa.array(found, pa.int64()), positions)


def digits(text: pa.Array, start: int, stop: int) -> pa.Array:
    """The integer written at ``[start, stop)`` of ASCII text of a known shape."""
    cut = pc.binary_slice(text.cast(pa.binary()), start, stop)
    return cut.cast(pa.string()).cast(pa.int64())


def wall_clock(text: pa.Array, separator: str) -> tuple[pa.Array, pa.Array]:
    """Naive second-precision timestamps of ``yyyy<sep>mm<sep>dd hh:mm:ss`` text already checked
    to have that shape, and a mask of the values that are a real time: Arrow's parser rolls
    30 February over to 1 March, so the day, minute and second it read are compared with the
    text's own."""
    parsed = pc.strptime(
        text, format=f"%Y{separator}%m{separator}%d %H:%M:%S", unit="s", error_is_null=True
    )
    same = [
        pc.equal(pc.day(parsed), digits(text, 8, 10)),
        pc.equal(pc.minute(parsed), digits(text, 14, 16)),
        pc.equal(pc.second(parsed), digits(text, 17, 19)),
    ]
    ok = pc.and_(pc.and_(same[0], same[1]), same[2])
    return parsed, pc.fill_null(ok, False)


def arange(start: int, stop: int) -> pa.Array:
    """``start, start + 1, ... stop - 1`` as int32, built without a Python int per value."""
    ones = pa.repeat(pa.scalar(1, pa.int32()), max(stop - start, 0))
    return pc.add(pc.cumulative_sum(ones), start - 1)


def constant(value: str, rows: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), rows)


def lines_table(columns: dict[str, pa.Array]) -> pa.Table:
    """The LINES table; every non-nullable column must already be free of nulls."""
    arrays = [flat(columns[f.name]).cast(f.type) for f in LINES]
    for f, array in zip(LINES, arrays, strict=True):
        if not f.nullable and array.null_count:
            raise AssertionError(f"null in {f.name}")
    return pa.Table.from_arrays(arrays, schema=LINES)
