"""Matching channel statement lines with our records, and classifying what differs (R3, R4).

Everything runs as DuckDB SQL over Arrow tables or Parquet files; Python only assembles the
statements. Lines (``statements.model.LINES``) and records (``ours.OURS``) are identified by
their position in the input (``lid`` / ``oid``, 0-based; the n-th file of a list starts at
n * 2**40), which is what the outputs refer to.

The passes, each on what the previous ones left:

1. Reference (exact): a line's ``merchant_ref`` is our attempt or refund id, same channel and
   kind. One hash join over everything; a pair whose amount, currency and status agree, and
   whose line and record are in no other pair, is matched here. This is nearly every row, so
   only small remainders go on.
2. Transaction id (exact): lines and records the reference join left alone, joined on the
   channel's transaction id (a refund's: the channel's refund id).
   Pairs from 1 and 2 that disagree, or compete for one record, are settled one to one: per
   record the agreeing line first, then the one that moved money, then the earliest. A line
   that loses its record to another line is a duplicate.
3. Fuzzy: what is still unpaired, on the reference normalised (case, separators and our id
   prefixes dropped), same currency, amounts within ``amount_tolerance`` and times within
   ``time_window``; mutual best pairs by amount gap, then time gap. The tolerance decides
   pairing only: a paired difference in amount is still reported.

Paired lines and records are classified by ``classify.classify_pair``; matched pairs that
moved money get their fee checked against the channel's schedule in SQL (``fee_sql``). Lines
left with money are long, confirmed records left are short. Payouts and batch-booked bank
entries are checked many to one: a payout line, or a bank credit naming a payout as its
reference, against the sum of the lines that carry that ``payout_id``.

Every output is ordered, and every tie broken on positions, so the same inputs give the same
rows in the same order: matched pairs by line, differences by type code then line then record,
payout checks by line.

Known limits: a second listing of a transaction already matched, under no reference or another
one, is long rather than a duplicate (finding it would take a second pass over every record);
a refund's fee is checked only in our own currency (its share is prorated on our payment).

The SQL of the passes is in ``passes``, the many-to-one checks in ``payouts``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from clearhouse.currencies import CURRENCIES
from clearhouse.fees import FeeSchedule
from clearhouse.reconciliation.ours import OURS
from clearhouse.reconciliation.passes import Passes, quote
from clearhouse.reconciliation.statements.model import LINES

Source: TypeAlias = pa.Table | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

MATCHED = pa.schema(
    [
        pa.field("lid", pa.int64(), nullable=False),
        pa.field("oid", pa.int64(), nullable=False),
        pa.field("pass", pa.string(), nullable=False),  # a MatchPass
    ]
)

DIFFERENCES = pa.schema(
    [
        pa.field("type", pa.string(), nullable=False),  # a DifferenceType
        pa.field("pass", pa.string(), nullable=True),  # how the two sides were paired
        pa.field("lid", pa.int64(), nullable=True),
        pa.field("oid", pa.int64(), nullable=True),
        pa.field("source", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("business_date", pa.date32(), nullable=False),
        pa.field("line_no", pa.int32(), nullable=True),
        pa.field("channel_txn_id", pa.string(), nullable=True),
        pa.field("merchant_ref", pa.string(), nullable=True),
        pa.field("line_status", pa.string(), nullable=True),
        pa.field("line_currency", pa.string(), nullable=True),
        pa.field("line_amount", pa.int64(), nullable=True),
        pa.field("line_fee", pa.int64(), nullable=True),
        pa.field("attempt_id", pa.string(), nullable=True),
        pa.field("refund_id", pa.string(), nullable=True),
        pa.field("intent_id", pa.string(), nullable=True),
        pa.field("merchant_order_id", pa.string(), nullable=True),
        pa.field("our_status", pa.string(), nullable=True),
        pa.field("our_currency", pa.string(), nullable=True),
        pa.field("our_amount", pa.int64(), nullable=True),
        # What the line should have carried: the schedule's fee (FEE), our amount at the rate
        # we recorded (FX), the sum of a payout's items (PAYOUT).
        pa.field("expected", pa.int64(), nullable=True),
        pa.field("delta", pa.int64(), nullable=True),  # the line's figure minus the expected
        pa.field("payout_id", pa.string(), nullable=True),
        pa.field("items_count", pa.int64(), nullable=True),
        pa.field("age_days", pa.int32(), nullable=True),  # as_of minus the business date
    ]
)

PAYOUTS = pa.schema(
    [
        pa.field("lid", pa.int64(), nullable=False),  # the payout line or bank credit
        pa.field("payout_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("paid", pa.int64(), nullable=False),  # what left the channel / reached the bank
        pa.field("items_count", pa.int64(), nullable=False),
        pa.field("items_net", pa.int64(), nullable=True),
        pa.field("status", pa.string(), nullable=False),  # MATCHED | MISMATCH | UNVERIFIED
    ]
)


def default_schedules() -> dict[str, FeeSchedule]:
    """The published terms the gateway books by, so all three sides round alike."""
    # Imported here: the registry brings in every channel adapter, which a caller passing its
    # own schedules does not need.
    from clearhouse.gateway.channels.registry import TERMS

    return {name: terms.fees for name, terms in TERMS.items()}


@dataclass(frozen=True, slots=True)
class MatchConfig:
    """``amount_tolerance`` and ``time_window`` bound the fuzzy pass's pairing only."""

    schedules: Mapping[str, FeeSchedule] = field(default_factory=default_schedules)
    amount_tolerance: int = 0  # minor units, fuzzy pass only
    time_window: timedelta = timedelta(minutes=30)  # fuzzy pass only
    strip_prefixes: tuple[str, ...] = ("att", "ref")  # our id prefixes, dropped by fuzzy keys
    as_of: date | None = None  # for ages; the latest business date of the lines by default


@dataclass(frozen=True, slots=True)
class Resources:
    """DuckDB's limits for one run: its threads, its memory, where it spills."""

    threads: int | None = None
    memory_limit: str | None = None  # "2GB"
    temp_directory: str | None = None


@dataclass(frozen=True, slots=True)
class MatchResult:
    matched: pa.Table | None  # MATCHED; None when written to ``matched_path``
    differences: pa.Table  # DIFFERENCES
    payouts: pa.Table  # PAYOUTS
    counts: dict[str, int]
    seconds: dict[str, float]  # wall time of each step: diagnostics, not part of the answer


def match(
    lines: Source,
    ours: Source,
    config: MatchConfig | None = None,
    *,
    resources: Resources | None = None,
    matched_path: str | os.PathLike[str] | None = None,
) -> MatchResult:
    """Match ``lines`` with ``ours``: Arrow tables, or Parquet files of the same schemas.

    ``matched_path``: write the matched pairs there as Parquet instead of returning them (at
    millions of rows they need not pass through Python at all).
    """
    config = config or MatchConfig()
    res = resources or Resources()
    settings: dict[str, Any] = {}
    if res.threads is not None:
        settings["threads"] = res.threads
    if res.memory_limit is not None:
        settings["memory_limit"] = res.memory_limit
    if res.temp_directory is not None:
        settings["temp_directory"] = res.temp_directory
    con = duckdb.connect(":memory:", config=settings)
    try:
        con.execute("SET enable_progress_bar = false")
        # Every output is ordered explicitly, so intermediate tables need not keep input order.
        con.execute("SET preserve_insertion_order = false")
        # Positions of one file are dense (0..n-1): grouping by them can index an array of
        # 2**24 slots instead of hashing, which halves the cost of finding contested records.
        con.execute("SET perfect_ht_threshold = 24")
        _input(con, "lines_in", "lid", lines, LINES)
        _input(con, "ours_in", "oid", ours, OURS)
        _currencies(con)
        passes = Passes(con, config)
        matched, differences, payouts, counts = passes.run(matched_path)
        return MatchResult(
            matched=None if matched is None else matched.cast(MATCHED),
            differences=differences.cast(DIFFERENCES),
            payouts=payouts.cast(PAYOUTS),
            counts=counts,
            seconds=passes.seconds,
        )
    finally:
        con.close()


# --- inputs -----------------------------------------------------------------------------------


def _check_schema(found: pa.Schema, wanted: pa.Schema, what: str) -> None:
    missing = [f.name for f in wanted if f.name not in found.names]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")


def _input(
    con: duckdb.DuckDBPyConnection, name: str, key: str, source: Source, schema: pa.Schema
) -> None:
    columns = ", ".join(f.name for f in schema)
    if isinstance(source, pa.Table):
        _check_schema(source.schema, schema, name)
        # Positions travel with the rows: a scan in parallel may reorder them.
        numbered = source.select(schema.names).append_column(
            key, pa.array(range(source.num_rows), pa.int64())
        )
        con.register(f"{name}_arrow", numbered)
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT {columns}, {key} FROM {name}_arrow")
        return
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    parts = []
    for index, path in enumerate(paths):
        _check_schema(pq.read_schema(path), schema, f"{name} {path}")
        parts.append(
            f"SELECT {columns}, file_row_number + {index << 40} AS {key} "
            f"FROM read_parquet({quote(os.fspath(path))}, file_row_number = true)"
        )
    con.execute(f"CREATE TEMP VIEW {name} AS {' UNION ALL '.join(parts)}")


def _currencies(con: duckdb.DuckDBPyConnection) -> None:
    codes = sorted(CURRENCIES)
    table = pa.table(
        {
            "code": pa.array(codes, pa.string()),
            "unit": pa.array([10 ** CURRENCIES[c][1] for c in codes], pa.int64()),
        }
    )
    con.register("currency_units", table)
