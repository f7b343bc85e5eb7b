"""The normalised statement store (R1, R2): parsed lines as Parquet partitions, one file per
imported statement, and a row per file in the database that makes the import count.

Lines go to Parquet, not to a table: a day of a large merchant is millions of rows that are only
ever read whole by the matcher (DuckDB reads the partitions directly), and a write of a million
rows to Parquet takes well under a second where inserting them takes minutes. The database row is
the commit point: a file whose row is absent was never imported (a crash between the two leaves
an orphan Parquet file that the next import of the same bytes overwrites), and a file whose
digest is already there changes nothing.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from clearhouse.clock import Clock
from clearhouse.db.schema import statement_files
from clearhouse.db.transaction import run_in_transaction
from clearhouse.reconciliation.statements.model import LINES, Statement


@dataclass(frozen=True, slots=True)
class Imported:
    sha256: str
    source: str
    format: str
    account: str
    business_date: date
    lines: int
    already: bool  # the same bytes were imported before: nothing changed


class StatementStore:
    """``root`` holds ``statements/<source>/<business date>/<sha256>.parquet``."""

    def __init__(self, engine: Engine, root: Path, clock: Clock) -> None:
        self._engine = engine
        self._root = root
        self._clock = clock

    def put(self, statement: Statement, fmt: str, by: str) -> Imported:
        """Store a parsed statement once. A later file for the same source, account, business
        date and format supersedes the earlier one (a channel re-issues a corrected bill); the
        earlier stays on record, out of matching."""
        found = self._find(statement.sha256)
        if found is not None:
            return found
        path = self._write(statement)

        def record(conn: Connection) -> None:
            conn.execute(
                update(statement_files)
                .where(
                    statement_files.c.source == statement.source,
                    statement_files.c.account == statement.account,
                    statement_files.c.business_date == statement.business_date,
                    statement_files.c.format == fmt,
                    statement_files.c.superseded_by.is_(None),
                )
                .values(superseded_by=statement.sha256)
            )
            conn.execute(
                insert(statement_files).values(
                    sha256=statement.sha256,
                    source=statement.source,
                    format=fmt,
                    account=statement.account,
                    business_date=statement.business_date,
                    file=statement.file[-255:],
                    path=str(path.relative_to(self._root)),
                    lines=statement.lines.num_rows,
                    totals=json.dumps(
                        [
                            {"currency": t.currency, "count": t.count, "amount": t.amount}
                            | {"fee": t.fee}
                            for t in statement.totals
                        ]
                    ),
                    imported_by=by,
                    imported_at=self._clock.now(),
                )
            )

        try:
            run_in_transaction(self._engine, record)
        except IntegrityError:
            # Imported at the same moment by someone else: theirs counts, ours is the same bytes.
            found = self._find(statement.sha256)
            if found is None:
                raise
            return found
        return Imported(
            statement.sha256,
            statement.source,
            fmt,
            statement.account,
            statement.business_date,
            statement.lines.num_rows,
            already=False,
        )

    def current(self, source: str, business_date: date, fmt: str | None = None) -> list[Path]:
        """The Parquet files of the current (not superseded) statements of a source's day."""
        query = select(statement_files.c.path).where(
            statement_files.c.source == source,
            statement_files.c.business_date == business_date,
            statement_files.c.superseded_by.is_(None),
        )
        if fmt is not None:
            query = query.where(statement_files.c.format == fmt)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(statement_files.c.sha256)).all()
        return [self._root / row.path for row in rows]

    def read(self, paths: list[Path]) -> pa.Table:
        """The lines of these files as one table (empty with the schema when there are none)."""
        if not paths:
            return LINES.empty_table()
        return pa.concat_tables([pq.read_table(p, schema=LINES) for p in paths])

    def _find(self, sha256: str) -> Imported | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(statement_files).where(statement_files.c.sha256 == sha256)
            ).first()
        if row is None:
            return None
        return Imported(
            row.sha256, row.source, row.format, row.account, row.business_date, row.lines, True
        )

    def _write(self, statement: Statement) -> Path:
        folder = self._root / "statements" / statement.source / statement.business_date.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{statement.sha256}.parquet"
        partial = folder / f".{statement.sha256}.{uuid.uuid4().hex}.partial"
        table = statement.lines.cast(LINES)
        pq.write_table(table, partial, compression="zstd")
        os.replace(partial, final)  # readers never see half a file
        return final
