"""The statement store on SQLite and PostgreSQL: idempotent by digest, superseded by a re-issued
file, safe under concurrent imports of one file, and healed when a crash left Parquet without
its row."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clearhouse.bootstrap import App
from clearhouse.clock import FixedClock
from clearhouse.db.schema import statement_files
from clearhouse.reconciliation import formats
from clearhouse.reconciliation.statements import samples
from clearhouse.reconciliation.statements.model import LINES, Statement
from clearhouse.reconciliation.store import StatementStore
from tests.unit.reconciliation.intake_support import DAY

FMT = formats.WECHATPAY_TRADE


def bill(rows: int) -> Statement:
    data = samples.wechat_trade_bill(rows, day=DAY)
    return formats.get(FMT).parse(data, f"trade-{rows}.csv", business_date=DAY)


def register(app: App) -> list[tuple[str, str | None]]:
    with app.engine.connect() as conn:
        rows = conn.execute(
            select(statement_files.c.sha256, statement_files.c.superseded_by).order_by(
                statement_files.c.imported_at, statement_files.c.sha256
            )
        ).all()
    return [(r.sha256, r.superseded_by) for r in rows]


@pytest.fixture
def store(app: App, tmp_path: Path) -> StatementStore:
    return StatementStore(app.engine, tmp_path / "recon", app.clock)


def test_the_same_statement_twice_is_stored_once(app: App, store: StatementStore) -> None:
    statement = bill(10)
    first = store.put(statement, FMT, "alice")
    again = store.put(statement, FMT, "bob")
    assert not first.already
    assert again.already
    assert dataclasses.replace(again, already=False) == first
    assert (first.source, first.account, first.business_date, first.lines) == (
        "wechatpay",
        "1900000001",
        DAY,
        10,
    )
    assert register(app) == [(statement.sha256, None)]
    paths = store.current("wechatpay", DAY)
    assert [p.name for p in paths] == [f"{statement.sha256}.parquet"]
    table = store.read(paths)
    assert table.schema == LINES
    assert table.equals(statement.lines.cast(LINES))
    with app.engine.connect() as conn:
        who = conn.execute(select(statement_files.c.imported_by)).scalar_one()
    assert who == "alice"  # the second import changed nothing


def test_a_reissued_file_supersedes_the_earlier_one(
    app: App, store: StatementStore, clock: FixedClock
) -> None:
    first, corrected = bill(10), bill(12)
    store.put(first, FMT, "pull")
    clock.advance(timedelta(hours=1))
    store.put(corrected, FMT, "pull")
    assert register(app) == [(first.sha256, corrected.sha256), (corrected.sha256, None)]
    assert store.current("wechatpay", DAY) == store.current("wechatpay", DAY, FMT)
    [current] = store.current("wechatpay", DAY)
    assert store.read([current]).num_rows == 12
    # Another format of the same day is another document: it supersedes nothing.
    assert store.current("wechatpay", DAY, formats.WECHATPAY_FUNDFLOW) == []
    # The superseded file, imported again, is still the one on record and still superseded.
    assert store.put(first, FMT, "pull").already
    assert register(app) == [(first.sha256, corrected.sha256), (corrected.sha256, None)]
    assert store.read(store.current("wechatpay", DAY + timedelta(days=1))) == LINES.empty_table()


def test_concurrent_imports_of_one_file_store_it_once(app: App, store: StatementStore) -> None:
    statement = bill(50)
    barrier = threading.Barrier(4)
    results = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            barrier.wait()
            results.append(store.put(statement, FMT, threading.current_thread().name))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.already for r in results) == [False, True, True, True]
    assert register(app) == [(statement.sha256, None)]
    assert store.read(store.current("wechatpay", DAY)).num_rows == 50


def test_a_crash_between_the_lines_and_the_row_is_healed_by_importing_again(
    app: App, store: StatementStore, tmp_path: Path
) -> None:
    statement = bill(10)
    # What a crash leaves: Parquet written (here even a torn one), the row never committed.
    folder = tmp_path / "recon" / "statements" / "wechatpay" / DAY.isoformat()
    folder.mkdir(parents=True)
    (folder / f"{statement.sha256}.parquet").write_bytes(b"PAR1 torn")
    (folder / f".{statement.sha256}.dead.partial").write_bytes(b"half")
    assert store.current("wechatpay", DAY) == []  # not imported: no row, no lines
    imported = store.put(statement, FMT, "retry")
    assert not imported.already
    assert store.read(store.current("wechatpay", DAY)).equals(statement.lines.cast(LINES))
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(statement_files)).scalar_one() == 1
