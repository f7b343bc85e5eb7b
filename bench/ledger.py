"""Ledger throughput, latency and storage. Prints one JSON line of figures.

    python bench/ledger.py [--quick] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

sqlite_single_tps   one writer, one entry per commit (synchronous=FULL: every commit is fsynced)
sqlite_batch_tps    one writer, 1,000 entries per commit through Ledger.submit
pg_uniform_tps      8 processes, transfers between random pairs of 10,000 buyer accounts
pg_hot_tps          8 processes, every entry touches the platform's channel clearing account
pg_hot_tps_by_workers   the same with 4, 8, 16 and 32 processes (must not collapse)
pg_uniform_tps_by_workers   uniform traffic with 4, 8, 16 and 32 processes (what the hot figures
                    are compared with: the machine's own decline as processes outnumber cores)
pg_hot_unsharded_tps    8 processes with the clearing account forced to one shard (the problem)
pg_p99_ms / pg_p50_ms   single entries paced at half of pg_uniform_tps, 8 processes
bytes_per_entry     SQLite file growth per entry; pg_bytes_per_entry the same for PostgreSQL
pg_client_cpu_ms_per_entry / pg_machine_cpu_ms_per_entry
                    one process posting back to back: its own CPU per entry, and the whole
                    machine's (client + PostgreSQL) per entry
sqlite_commit_ms    median cost of committing a one-row transaction with the same settings (the
                    disk's floor under sqlite_single_tps)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from clearhouse.accounts import handlers
from clearhouse.accounts.model import PLATFORM_ACCOUNT_ID, CustomerKind, KycLevel, Role
from clearhouse.bootstrap import build_app, upgrade_database
from clearhouse.config import Settings
from clearhouse.db.transaction import run_in_transaction
from clearhouse.ledger.requests import Post

ACCOUNTS = 10_000
FUNDING = 1_000_000_00  # each buyer starts with 1,000,000.00


def setup(url: str, accounts: int) -> list[str]:
    """Migrate, open ``accounts`` buyers and fund them; return their account ids."""
    app = build_app(Settings(database_url=url))
    upgrade_database(app)
    now = app.clock.now()

    def work(conn):  # type: ignore[no-untyped-def]
        ids = []
        for i in range(accounts):
            holder = handlers.open_holder(
                conn,
                app.chart,
                name=f"b{i}",
                login=f"b{i}",
                kind=CustomerKind.PERSON,
                kyc_level=KycLevel.CLASS_III,
                roles=[Role.BUYER_BALANCE],
                currency="CNY",
                pii_key=b"k",
                now=now,
            )
            ids.append(holder.account_id)
        return ids

    ids = run_in_transaction(app.engine, work)
    for start in range(0, accounts, 1000):
        reqs = [
            Post(f"fund-{a}", "4002", "CNY", {"amount": FUNDING}, {"buyer": a})
            for a in ids[start : start + 1000]
        ]
        assert all(o.ok for o in app.ledger.submit(reqs))
    app.close()
    return ids


def transfer(ids: list[str], rng: random.Random, tag: str, n: int) -> Post:
    payer, payee = rng.sample(ids, 2)
    return Post(
        f"{tag}-{n}",
        "8001",
        "CNY",
        {"amount": rng.randint(1, 10_000)},
        {"payer": payer, "payee": payee},
    )


def hot(ids: list[str], rng: random.Random, tag: str, n: int) -> Post:
    return Post(
        f"{tag}-{n}", "4002", "CNY", {"amount": rng.randint(1, 10_000)}, {"buyer": rng.choice(ids)}
    )


def worker(
    url: str,
    ids: list[str],
    kind: str,
    seconds: float,
    rate: float | None,
    seed: int,
    ready,
    go,
    results,
) -> None:  # type: ignore[no-untyped-def]
    """Start up and warm up (imports, connection, prepared statements), then wait for the common
    start so no process's start-up eats into another's measured window."""
    app = build_app(Settings(database_url=url), pool_size=1)
    make = transfer if kind == "uniform" else hot
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:10]
    for n in range(50):
        assert app.ledger.submit([make(ids, rng, f"warm-{tag}", n)])[0].ok
    ready.put(seed)
    go.wait()
    done, latencies = 0, []
    cpu0, busy0 = time.process_time(), _machine_busy_seconds()
    start = time.perf_counter()
    next_at = start
    while (now := time.perf_counter()) - start < seconds:
        if rate:
            if now < next_at:
                time.sleep(next_at - now)
            next_at += 1.0 / rate
        t0 = time.perf_counter()
        out = app.ledger.submit([make(ids, rng, tag, done)])[0]
        latencies.append((time.perf_counter() - t0) * 1000)
        assert out.ok, out
        done += 1
    cpu, busy = time.process_time() - cpu0, _machine_busy_seconds() - busy0
    app.close()
    results.put((done, latencies, cpu, busy))


class Run(NamedTuple):
    tps: float
    latencies: list[float]  # ms, sorted
    cpu_seconds: float  # the workers' own CPU over their measured windows
    machine_busy_seconds: float  # all cores, over the longest window (meaningful for 1 worker)


def run_workers(
    url: str, ids: list[str], kind: str, workers: int, seconds: float, rate: float | None = None
) -> Run:
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=worker, args=(url, ids, kind, seconds, rate, i, ready, go, results))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    go.set()
    outcomes = [results.get(timeout=300 + seconds) for _ in procs]
    for p in procs:
        p.join()
    total = sum(o[0] for o in outcomes)
    lat = sorted(x for o in outcomes for x in o[1])
    return Run(total / seconds, lat, sum(o[2] for o in outcomes), max(o[3] for o in outcomes))


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def bench_sqlite(quick: bool) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp / 'bench.db'}"
    accounts = 1_000 if quick else ACCOUNTS
    ids = setup(url, accounts)
    app = build_app(Settings(database_url=url))
    rng = random.Random(1)
    db_file = tmp / "bench.db"
    n, t0 = 0, time.perf_counter()
    seconds = 2 if quick else 5
    while time.perf_counter() - t0 < seconds:
        assert app.ledger.submit([transfer(ids, rng, "single", n)])[0].ok
        n += 1
    single = n / (time.perf_counter() - t0)
    app.engine.dispose()
    size_before = _sqlite_size(db_file)
    batches = 5 if quick else 20
    t0 = time.perf_counter()
    for b in range(batches):
        reqs = [transfer(ids, rng, f"batch{b}", i) for i in range(1000)]
        assert all(o.ok for o in app.ledger.submit(reqs))
    batch = batches * 1000 / (time.perf_counter() - t0)
    app.close()
    grown = _sqlite_size(db_file) - size_before
    return {
        "sqlite_commit_ms": _sqlite_commit_ms(tmp / "commit.db"),
        "sqlite_single_tps": round(single),
        "sqlite_batch_tps": round(batch),
        "bytes_per_entry": round(grown / (batches * 1000)),
    }


def _sqlite_commit_ms(path: Path) -> float:
    import sqlite3

    con = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL"):
        con.execute(f"PRAGMA {pragma}")
    con.execute("CREATE TABLE t (x INTEGER)")
    times = []
    for i in range(500):
        t0 = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO t VALUES (?)", (i,))
        con.execute("COMMIT")
        times.append((time.perf_counter() - t0) * 1000)
    con.close()
    return round(statistics.median(times), 3)


def _sqlite_size(path: Path) -> int:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = (
        con.execute("PRAGMA page_count").fetchone()[0]
        - con.execute("PRAGMA freelist_count").fetchone()[0]
    )
    size = pages * con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    return int(size)


def bench_postgres(admin_url: str, quick: bool) -> dict[str, object]:
    admin = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"clearhouse_bench_{uuid.uuid4().hex[:8]}"
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    seconds = 3 if quick else 10
    out: dict[str, object] = {}
    try:
        ids = setup(url, 1_000 if quick else ACCOUNTS)
        _settle(url)
        size0, entries0 = _pg_size(url)
        peak = run_workers(url, ids, "uniform", 8, seconds)
        uniform, lat = peak.tps, peak.latencies
        out["pg_uniform_tps"] = round(uniform)
        out["pg_uniform_p99_ms"] = round(pct(lat, 0.99), 2)
        size1, entries1 = _pg_size(url)
        out["pg_bytes_per_entry"] = round((size1 - size0) / max(1, entries1 - entries0))
        by_workers: dict[str, dict[str, int]] = {"hot": {}, "uniform": {}}
        for kind, table in by_workers.items():
            for w in (4, 8, 16, 32):
                table[str(w)] = round(run_workers(url, ids, kind, w, seconds).tps)
            out[f"pg_{kind}_tps_by_workers"] = table
        out["pg_hot_tps"] = by_workers["hot"]["8"]
        paced_run = run_workers(url, ids, "uniform", 8, seconds, rate=uniform / 2 / 8)
        paced, lat = paced_run.tps, paced_run.latencies
        out["pg_paced_tps"] = round(paced)
        out["pg_p50_ms"] = round(statistics.median(lat), 2)
        out["pg_p99_ms"] = round(pct(lat, 0.99), 2)
        # Where the time goes: one process posting back to back, its own CPU and the machine's,
        # both over its measured window only (not its start-up).
        one = run_workers(url, ids, "uniform", 1, seconds)
        entries = one.tps * seconds
        out["pg_client_cpu_ms_per_entry"] = round(one.cpu_seconds * 1000 / entries, 3)
        out["pg_machine_cpu_ms_per_entry"] = round(one.machine_busy_seconds * 1000 / entries, 3)
        _force_single_shard(url)
        tps = run_workers(url, ids, "hot", 8, seconds).tps
        out["pg_hot_unsharded_tps"] = round(tps)
    finally:
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()
    return out


def _machine_busy_seconds() -> float:
    """CPU seconds all cores have spent not idle since boot (Linux /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def _settle(url: str) -> None:
    """Start from the state autovacuum would reach after the bulk set-up, not in the middle of it."""
    eng = create_engine(make_url(url), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text("VACUUM ANALYZE"))
    eng.dispose()


def _pg_size(url: str) -> tuple[int, int]:
    eng = create_engine(make_url(url))
    tables = ["journal_entries", "postings", "balance_history", "ledger_requests", "balances"]
    with eng.connect() as c:
        c.execute(text("CHECKPOINT"))
        size = sum(
            int(c.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar_one())
            for t in tables
        )
        entries = int(c.execute(text("SELECT count(*) FROM journal_entries")).scalar_one())
    eng.dispose()
    return size, entries


def _force_single_shard(url: str) -> None:
    """Bench-only: the clearing account as it would be without sharding (all rows in shard 0)."""
    eng = create_engine(make_url(url))
    with eng.begin() as c:
        fid = c.execute(
            text(
                "SELECT id FROM fund_accounts WHERE account_id = :a AND role = 'channel_clearing' AND sub = 'wechatpay'"
            ),
            {"a": PLATFORM_ACCOUNT_ID},
        ).scalar_one()
        c.execute(text("UPDATE fund_accounts SET shards = 1 WHERE id = :f"), {"f": fid})
    eng.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, short runs (a smoke test)"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "CLEARHOUSE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    figures: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    }
    figures.update(bench_sqlite(args.quick))
    if not args.skip_pg:
        figures.update(bench_postgres(args.pg_url, args.quick))
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
