"""Engines for the two supported databases, configured the same way everywhere.

SQLite: WAL, ``synchronous=FULL`` (a commit survives power loss), foreign keys on, and writes
open with ``BEGIN IMMEDIATE`` so two writers never deadlock on a lock upgrade. PostgreSQL: READ
COMMITTED; correctness comes from row locks taken in a fixed order, not from the isolation level.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.pool import QueuePool

from clearhouse.errors import ConfigurationError

SQLITE_BUSY_TIMEOUT_MS = 10_000
READONLY = "clearhouse_readonly"  # execution option: a SQLite read may take a deferred BEGIN


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, pool_size=pool_size)
    if url.startswith(("postgresql", "postgres")):
        return _postgres_engine(url, pool_size=pool_size)
    raise ConfigurationError(
        f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite or postgresql"
    )


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def _sqlite_engine(url: str, *, pool_size: int) -> Engine:
    # A small pool: opening a connection (and setting its pragmas) costs more than a whole entry.
    # A process builds its own engine after it starts (the composition root does), never shares.
    engine = create_engine(
        url,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the driver from issuing its own BEGIN; we issue the right one in _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(READONLY, False)
        # Straight to the driver: SQLAlchemy's statement machinery costs more than the BEGIN.
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: str, *, pool_size: int) -> Engine:
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(
        url,
        isolation_level="READ COMMITTED",
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per transaction; a dropped connection fails its
        # transaction, which is retried on a fresh one (db/transaction.py).
        pool_recycle=3600,
        # A statement stuck behind a lock for this long is a bug or an outage, not a wait.
        connect_args={"connect_timeout": 10, "options": "-c lock_timeout=10000"},
    )
