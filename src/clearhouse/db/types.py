"""Column types shared by every table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from clearhouse.clock import from_micros, to_micros

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); PostgreSQL needs a BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Instant(TypeDecorator[datetime]):
    """A UTC instant stored as integer microseconds since the epoch.

    Exact, compact (8 bytes instead of a 26-character string on SQLite), ordered the same on both
    databases, and impossible to store without a time zone.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        return None if value is None else to_micros(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else from_micros(int(value))
