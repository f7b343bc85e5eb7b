"""Several OS processes post against one database at once (SQLite and PostgreSQL).

The workers (``ledger_worker.py``) share buyers, the merchant, the bank reserve and the hot
sharded platform accounts, ask for more than buyers hold so INSUFFICIENT_FUNDS races happen,
retry their own keys and all send the same contested keys. Every balance is then recomputed from
the answers the workers got, independently of the ledger's own check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from clearhouse.accounts.model import Role
from clearhouse.bootstrap import App
from clearhouse.ledger import eod
from clearhouse.ledger.model import Counters, Side
from tests.conftest import open_party, platform_fund
from tests.integration.ledger_worker import CURRENCY, effects

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 5
OPS_PER_WORKER = 500
BUYERS = 8
BUYER_START = 5_000
BANK_CAPITAL = 25_000
WORKER_TIMEOUT = 120

BUSINESS_REJECTIONS = {"INSUFFICIENT_FUNDS"}

pytestmark = pytest.mark.slow


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def run_workers(tmp_path: Path, mode: str, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one process per config, release them together, wait, return their reports."""
    procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    go = tmp_path / f"{mode}-go"
    for cfg in configs:
        w = cfg["worker"]
        cfg["ready_path"] = str(tmp_path / f"{mode}-ready-{w}")
        cfg["go_path"] = str(go)
        cfg["out_path"] = str(tmp_path / f"{mode}-report-{w}.json")
        path = tmp_path / f"{mode}-config-{w}.json"
        path.write_text(json.dumps(cfg))
        log = tmp_path / f"{mode}-worker-{w}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.ledger_worker", mode, str(path)],
                cwd=ROOT,
                env=worker_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        procs.append((proc, log, Path(cfg["ready_path"])))
    try:
        deadline = time.monotonic() + 60
        while not all(ready.exists() for _, _, ready in procs):
            for proc, log, _ in procs:
                assert proc.poll() is None, f"worker died before start:\n{log.read_text()}"
            assert time.monotonic() < deadline, "workers did not get ready"
            time.sleep(0.01)
        go.touch()
        for proc, log, _ in procs:
            rc = proc.wait(timeout=WORKER_TIMEOUT)
            assert rc == 0, f"worker exited {rc}:\n{log.read_text()}"
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [json.loads(Path(cfg["out_path"]).read_text()) for cfg in configs]


def named_funds(app: App, buyers: list[Any], merchant: Any) -> dict[str, int]:
    funds = {f"buyer:{b.account_id}": b.fund_accounts[Role.BUYER_BALANCE] for b in buyers}
    funds["merchant"] = merchant.fund_accounts[Role.MERCHANT_SETTLEMENT]
    funds["escrow"] = platform_fund(app, Role.ESCROW)
    funds["commission"] = platform_fund(app, Role.COMMISSION_INCOME)
    funds["clearing"] = platform_fund(app, Role.CHANNEL_CLEARING, "wechatpay")
    funds["bank"] = platform_fund(app, Role.BANK_RESERVE, "icbc")
    funds["capital"] = platform_fund(app, Role.CAPITAL)
    return funds


def add(expected: dict[str, int], delta: dict[str, int], sign: int = 1) -> None:
    for name, amount in delta.items():
        expected[name] += sign * amount


def journal_count(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM journal_entries")).scalar_one())


def constrained_shortfalls(app: App) -> list[tuple[int, int, int, int]]:
    """(fund account, shard, posted, available) of every non-negative row below zero."""
    sql = text(
        "SELECT b.fund_account_id, b.shard, f.normal_side, b.debits_posted, b.credits_posted,"
        " b.debits_pending, b.credits_pending FROM balances b"
        " JOIN fund_accounts f ON f.id = b.fund_account_id WHERE f.non_negative"
    )
    with app.engine.connect() as conn:
        rows = conn.execute(sql).all()
    assert rows, "no constrained rows found"
    out = []
    for r in rows:
        c = Counters(*(int(v) for v in r[3:]))
        side = Side(r.normal_side)
        if c.posted(side) < 0 or c.available(side) < 0:
            out.append((int(r.fund_account_id), int(r.shard), c.posted(side), c.available(side)))
    return out


def open_pending_total(app: App) -> int:
    with app.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT coalesce(sum(debits_pending + credits_pending), 0) FROM balances")
            ).scalar_one()
        )


def assert_books_agree(app: App) -> None:
    totals = eod.trial_balance_totals(app.ledger.trial_balance())
    for currency, (debit, credit) in totals.items():
        assert debit == credit, f"trial balance {currency}: debits {debit} != credits {credit}"
    assert app.ledger.check() == []


def test_concurrent_workers_keep_the_books(app: App, tmp_path: Path, database_url: str) -> None:
    started = time.monotonic()
    buyers = [open_party(app, f"buyer{i}", (Role.BUYER_BALANCE,)) for i in range(BUYERS)]
    merchant = open_party(app, "merchant", (Role.MERCHANT_SETTLEMENT,))
    funds = named_funds(app, buyers, merchant)
    expected: dict[str, int] = defaultdict(int)
    setup = 0
    for b in buyers:
        parties = {"buyer": b.account_id}
        out = app.ledger.post(
            f"setup-topup-{b.account_id}",
            "4002",
            CURRENCY,
            {"amount": BUYER_START},
            parties=parties,
        )
        assert out.ok, out
        add(expected, effects("4002", {"amount": BUYER_START}, parties))
        setup += 1
    assert app.ledger.post("setup-capital", "9001", CURRENCY, {"amount": BANK_CAPITAL}).ok
    add(expected, effects("9001", {"amount": BANK_CAPITAL}, {}))
    setup += 1

    ids = [b.account_id for b in buyers]
    contested = []
    for i in range(16):  # the same keys and payloads in every worker
        payer, payee = ids[i % BUYERS], ids[(i * 3 + 1) % BUYERS]
        if i % 3 == 2:
            spec = {"code": "4002", "amounts": {"amount": 700 + i}, "parties": {"buyer": payee}}
        else:
            spec = {
                "code": "8001",
                "amounts": {"amount": 900 * (i + 1)},
                "parties": {
                    "payer": payer,
                    "payee": payee if payee != payer else ids[(i + 1) % BUYERS],
                },
            }
        contested.append({"key": f"contested-{i}", **spec})

    configs = [
        {
            "url": database_url,
            "worker": w,
            "seed": 1000 + w,
            "ops": OPS_PER_WORKER,
            "buyers": ids,
            "merchant": merchant.account_id,
            "contested": contested,
        }
        for w in range(WORKERS)
    ]
    reports = run_workers(tmp_path, "mix", configs)

    # 1. Nothing but business answers reached a caller: no deadlock, no serialization failure.
    errors = [e for r in reports for e in r["errors"]]
    assert errors == [], "\n".join(errors[:3])
    mismatches = [m for r in reports for m in r["retry_mismatches"]]
    assert mismatches == [], mismatches[:3]
    records = [rec for r in reports for rec in r["records"]]
    reasons = Counter(rec["reason"] for rec in records if not rec["ok"])
    assert set(reasons) <= BUSINESS_REJECTIONS, reasons
    assert reasons["INSUFFICIENT_FUNDS"] > 20, "the run should race on insufficient funds"
    assert sum(1 for rec in records if "retry_of" in rec) > 10

    # 2. A contested key acted once: one first answer, the same answer replayed to the others.
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("contested"):
            by_key[rec["key"]].append(rec)
    assert len(by_key) == len(contested)
    for key, recs in by_key.items():
        assert len(recs) == WORKERS
        firsts = [r for r in recs if not r["replayed"]]
        assert len(firsts) == 1, f"{key}: {recs}"
        assert {(r["entry_id"], r["reason"]) for r in recs} == {
            (firsts[0]["entry_id"], firsts[0]["reason"])
        }, f"{key}: {recs}"

    # 3. No lost update: each balance is what the accepted answers add up to.
    accepted = [rec for rec in records if rec["ok"] and not rec["replayed"]]
    holds = {rec["entry_id"]: rec for rec in accepted if rec["op"] == "hold"}
    for rec in accepted:
        if rec["op"] == "post":
            add(expected, effects(rec["code"], rec["amounts"], rec["parties"]))
        elif rec["op"] == "commit":
            hold = holds[rec["hold_id"]]
            captured = (rec["amounts"] or hold["amounts"])["amount"]
            add(expected, effects(hold["code"], {"amount": captured}, hold["parties"]))
    actual = {name: app.ledger.balance(fid).posted for name, fid in funds.items()}
    assert set(expected) <= set(funds)
    assert actual == {name: expected.get(name, 0) for name in funds}
    assert open_pending_total(app) == 0, "every hold was closed"

    # 4. Constraints held, money is conserved, the books agree with themselves.
    assert constrained_shortfalls(app) == []
    assert_books_agree(app)
    assert journal_count(app) == setup + len(accepted)
    with app.engine.connect() as conn:
        stored = int(conn.execute(text("SELECT count(*) FROM ledger_requests")).scalar_one())
    assert stored == setup + len({rec["key"] for rec in records})

    retries: Counter[str] = Counter()
    for r in reports:
        retries.update(r["retries"])
    backend = "postgres" if database_url.startswith("postgres") else "sqlite"
    print(
        f"\n[{backend}] {len(records)} requests from {WORKERS} workers, {len(accepted)} accepted,"
        f" rejections {dict(reasons)}, transient retries {dict(retries)},"
        f" worker seconds {[round(r['seconds'], 1) for r in reports]},"
        f" total {time.monotonic() - started:.1f}s"
    )


def test_racing_closes_of_one_hold_and_reversals_of_one_entry(
    app: App, tmp_path: Path, database_url: str
) -> None:
    """Every worker closes the same holds and reverses the same entries with its own keys:
    exactly one wins each; the others get HOLD_CLOSED / ALREADY_REVERSED."""
    n = 24
    owners = [open_party(app, f"owner{i}", (Role.BUYER_BALANCE,)) for i in range(n)]
    payees = [open_party(app, f"payee{i}", (Role.BUYER_BALANCE,)) for i in range(n)]
    hold_ids, entry_ids = [], []
    for i, (owner, payee) in enumerate(zip(owners, payees, strict=True)):
        me = {"buyer": owner.account_id}
        assert app.ledger.post(f"fund-{i}", "4002", CURRENCY, {"amount": 1_000}, parties=me).ok
        hold = app.ledger.hold(f"hold-{i}", "1009", CURRENCY, {"amount": 400}, parties=me)
        moved = app.ledger.post(
            f"move-{i}",
            "8001",
            CURRENCY,
            {"amount": 500},
            parties={"payer": owner.account_id, "payee": payee.account_id},
        )
        assert hold.ok, hold
        assert moved.ok, moved
        hold_ids.append(hold.entry_id)
        entry_ids.append(moved.entry_id)
    before = journal_count(app)

    configs = [
        {"url": database_url, "worker": w, "seed": 7 + w, "holds": hold_ids, "entries": entry_ids}
        for w in range(WORKERS)
    ]
    reports = run_workers(tmp_path, "race", configs)
    errors = [e for r in reports for e in r["errors"]]
    records = [rec for r in reports for rec in r["records"]]
    winners = [rec for rec in records if rec["ok"]]
    losers = Counter(rec["reason"] for rec in records if not rec["ok"])
    assert errors == [], f"{len(errors)} errors, first: {errors[:1]}"
    assert sorted(r["hold_id"] for r in winners if r["op"] in ("commit", "void")) == hold_ids
    assert sorted(r["ref_entry_id"] for r in winners if r["op"] == "reverse") == entry_ids
    assert set(losers) <= {"HOLD_CLOSED", "ALREADY_REVERSED"}, losers
    assert sum(losers.values()) == (WORKERS - 1) * 2 * n
    assert journal_count(app) == before + 2 * n
    for owner, payee in zip(owners, payees, strict=True):
        assert app.ledger.balance(payee.fund_accounts[Role.BUYER_BALANCE]).posted == 0
        owner_balance = app.ledger.balance(owner.fund_accounts[Role.BUYER_BALANCE])
        assert owner_balance.pending_out == 0
        assert owner_balance.posted in (600, 1_000)  # hold committed or voided
    assert constrained_shortfalls(app) == []
    assert_books_agree(app)
