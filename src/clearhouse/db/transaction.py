"""Run a unit of work in one database transaction, retrying the transient failures.

A transaction that loses a deadlock or a serialization check on PostgreSQL, or finds SQLite busy,
is rolled back whole and run again from the start: the work function must therefore read what it
needs inside the transaction and have no side effects outside it.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from clearhouse.db.engine import READONLY
from clearhouse.errors import ClearhouseError

T = TypeVar("T")

MAX_ATTEMPTS = 8
_RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available
# The ledger's hot path talks to the driver directly (db/raw.py), so driver errors arrive
# unwrapped as well as wrapped in SQLAlchemy's DBAPIError.
_DRIVER_ERRORS = (DBAPIError, sqlite3.Error, psycopg.Error)


class TransactionRetriesExhausted(ClearhouseError):
    code = "DATABASE_BUSY"


def run_in_transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    readonly: bool = False,
    retry_integrity: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
) -> T:
    """Run ``work`` in a transaction; commit if it returns, roll back if it raises.

    ``retry_integrity``: a unique-key race (two requests with one idempotency key, two closes of
    one hold) is settled by running again, when the re-read finds the winner's committed row.
    """
    last: Exception | None = None
    for attempt in range(max_attempts):
        try:
            with engine.connect() as raw:
                conn = raw.execution_options(**{READONLY: True}) if readonly else raw
                with conn.begin():
                    return work(conn)
        except _DRIVER_ERRORS as exc:
            if not is_transient(exc, retry_integrity=retry_integrity):
                raise
            last = exc
            # Full jitter: colliding writers spread out instead of colliding again in lock step.
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))
    raise TransactionRetriesExhausted(
        f"transaction failed {max_attempts} times on contention; last error: {last}",
    )


def is_transient(exc: Exception, *, retry_integrity: bool) -> bool:
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig: object = exc.orig
    else:
        orig = exc
    if isinstance(orig, sqlite3.IntegrityError | psycopg.IntegrityError):
        return retry_integrity
    if getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    if isinstance(orig, psycopg.OperationalError) and orig.sqlstate is None:
        return True  # the connection broke: a new one is taken on the next attempt
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig).lower()
        return "database is locked" in message or "database is busy" in message
    return False
