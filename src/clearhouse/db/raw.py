"""Driver-level statements for the ledger's hot path.

SQLAlchemy Core builds, caches and executes a statement in roughly 60-100 µs of Python; an entry
needs half a dozen, which alone would cap a single SQLite writer far below its fsync rate. The
ledger's write path therefore sends fixed SQL through the DBAPI cursor of the same connection and
transaction. The SQL is written once with ``:name`` parameters (which sqlite3 accepts) and turned
into psycopg's ``%(name)s`` form for PostgreSQL. Everything else in Clearhouse uses Core.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Connection

_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@lru_cache(maxsize=512)
def _to_pyformat(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


class Raw:
    def __init__(self, conn: Connection) -> None:
        self.postgres = conn.dialect.name == "postgresql"
        self._cursor = conn.connection.cursor()

    def _sql(self, sql: str) -> str:
        return _to_pyformat(sql) if self.postgres else sql

    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._sql(sql), params or {})
        return list(self._cursor.fetchall())

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._cursor.execute(self._sql(sql), params or {})

    def many(self, sql: str, rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]]) -> None:
        if len(rows) == 1:
            # A one-row executemany costs psycopg a pipeline of its own.
            self._cursor.execute(self._sql(sql), rows[0])
        elif rows:
            self._cursor.executemany(self._sql(sql), rows)
