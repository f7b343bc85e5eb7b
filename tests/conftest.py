"""Database fixtures: every DB test runs on SQLite and, when enabled, on PostgreSQL.

PostgreSQL runs when CLEARHOUSE_TEST_POSTGRES_URL names a server's maintenance database (CI sets
it); each test session creates its own database there and drops it at the end. When the variable
is set, an unreachable server is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url

from clearhouse.accounts import handlers
from clearhouse.accounts.model import CustomerKind, KycLevel, Role
from clearhouse.bootstrap import App, build_app, upgrade_database
from clearhouse.clock import FixedClock
from clearhouse.config import Settings
from clearhouse.db.schema import metadata
from clearhouse.db.transaction import run_in_transaction

PG_ADMIN_URL = os.environ.get("CLEARHOUSE_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against PostgreSQL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_ADMIN_URL:
        return
    skip = pytest.mark.skip(reason="set CLEARHOUSE_TEST_POSTGRES_URL to run the PostgreSQL suite")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database for this session, migrated and seeded once."""
    admin = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg")
    name = f"clearhouse_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    app = build_app(Settings(database_url=url), FixedClock(START))
    upgrade_database(app)
    app.close()
    yield url
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    # Seeded at the tests' own start time, so balance history stamps match entry times.
    app = build_app(Settings(database_url=f"sqlite:///{path}"), FixedClock(START))
    upgrade_database(app)
    app.close()  # the last connection to close checkpoints the WAL into the main file
    assert not path.with_name(path.name + "-wal").exists()
    return path


def reset_postgres(url: str) -> None:
    """Empty every table but the schema version, then seed the reference data again."""
    app = build_app(Settings(database_url=url), FixedClock(START))
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with app.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    upgrade_database(app)
    app.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "clearhouse.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    reset_postgres(url)
    return url


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def app(database_url: str, clock: FixedClock) -> Iterator[App]:
    app = build_app(Settings(database_url=database_url), clock)
    yield app
    app.close()


Party = handlers.Holder


def open_party(
    app: App,
    name: str,
    roles: tuple[Role, ...],
    *,
    kind: CustomerKind = CustomerKind.PERSON,
    kyc: KycLevel = KycLevel.CLASS_III,
    currency: str = "CNY",
) -> Party:
    """A customer with one account holding a fund account per role."""
    now = app.clock.now()

    def work(conn: Connection) -> Party:
        return handlers.open_holder(
            conn,
            app.chart,
            name=name,
            login=f"{name}-{uuid.uuid4().hex[:8]}",
            kind=kind,
            kyc_level=kyc,
            roles=roles,
            currency=currency,
            pii_key=b"test",
            now=now,
        )

    return run_in_transaction(app.engine, work)


def platform_fund(app: App, role: Role, sub: str = "", currency: str = "CNY") -> int:
    from clearhouse.accounts.model import PLATFORM_ACCOUNT_ID

    def work(conn: Connection) -> int:
        fid = handlers.find_fund_account(conn, PLATFORM_ACCOUNT_ID, role, currency, sub)
        assert fid is not None, f"no platform {role}.{sub}"
        return fid

    return run_in_transaction(app.engine, work, readonly=True)
