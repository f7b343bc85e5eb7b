"""Column types shared by every table."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import BigInteger, Integer, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

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


class BigAmount(TypeDecorator[int]):
    """An exact integer beyond 64 bits, for totals of many amounts: NUMERIC(38, 0) on
    PostgreSQL, decimal text on SQLite (whose integers stop at 64 bits and whose NUMERIC
    affinity would turn large values into floating point)."""

    impl = Numeric(38, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(38, 0))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


_RATE_PLACES = Decimal("1e-12")


class Rate(TypeDecorator[Decimal]):
    """An exact exchange rate: NUMERIC(38, 12) on PostgreSQL, decimal text on SQLite (whose
    NUMERIC affinity would store it as floating point). Read back as ``Decimal``."""

    impl = Numeric(38, 12)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(38, 12))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise ValueError(f"a rate is a positive Decimal, not {value!r}")
        # Twelve places on both databases (PostgreSQL's NUMERIC rounds half away from zero).
        exact = value.quantize(_RATE_PLACES, rounding=ROUND_HALF_UP)
        return str(exact) if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))
