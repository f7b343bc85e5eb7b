import sqlite3

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from clearhouse.db.raw import _to_pyformat
from clearhouse.db.transaction import TransactionRetriesExhausted, is_transient, run_in_transaction


@pytest.mark.parametrize(
    ("exc", "integrity", "expected"),
    [
        (psycopg.errors.DeadlockDetected("deadlock"), False, True),
        (psycopg.errors.SerializationFailure("serialize"), False, True),
        (psycopg.errors.LockNotAvailable("lock timeout"), False, True),
        (psycopg.errors.UniqueViolation("dup"), False, False),
        (psycopg.errors.UniqueViolation("dup"), True, True),
        (psycopg.errors.CheckViolation("check"), True, True),
        (psycopg.errors.UndefinedTable("no table"), True, False),
        (sqlite3.OperationalError("database is locked"), False, True),
        (sqlite3.OperationalError("no such table: x"), False, False),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), True, True),
        (OperationalError("stmt", {}, sqlite3.OperationalError("database is locked")), False, True),
    ],
)
def test_transient_errors(exc, integrity, expected):
    assert is_transient(exc, retry_integrity=integrity) is expected


def test_retries_then_gives_up(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    calls = []

    def always_locked(conn):
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(TransactionRetriesExhausted):
        run_in_transaction(engine, always_locked, max_attempts=3)
    assert len(calls) == 3

    def fails_once(conn):
        calls.append(2)
        if calls.count(2) == 1:
            raise sqlite3.OperationalError("database is locked")
        return conn.execute(text("SELECT 41 + 1")).scalar_one()

    assert run_in_transaction(engine, fails_once) == 42


def test_named_parameters_become_pyformat():
    assert (
        _to_pyformat("SELECT :a, :b_2 WHERE x = '50%'") == "SELECT %(a)s, %(b_2)s WHERE x = '50%%'"
    )
    assert _to_pyformat("SELECT x::text, :v") == "SELECT x::text, %(v)s"
