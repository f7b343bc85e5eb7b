"""A writer process is killed with SIGKILL mid-stream, several times, and restarted.

Atomicity: no entry is partial, every accepted request has its entry and every entry its request,
the balance rows agree with the journal. Durability and idempotency: the restarted writer re-sends
its whole stream and gets every step that was reported committed answered from the stored
outcomes, identically. Then ``clearhouse ledger check`` must agree; and once one balance row is
tampered with, it must not.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from clearhouse.accounts.model import Role
from clearhouse.bootstrap import App
from tests.conftest import open_party
from tests.integration.ledger_worker import CURRENCY

ROOT = Path(__file__).resolve().parents[2]
BATCH = 50  # even steps are batches of BATCH requests, odd steps single requests
FINAL_EXTRA_STEPS = 6
KILLS = 6
TIMEOUT = 120

pytestmark = pytest.mark.slow


def env_for(database_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["COLUMNS"] = "250"  # rich tables: keep each break on one line
    if database_url is not None:
        env["CLEARHOUSE_DATABASE_URL"] = database_url
    return env


def cli_check(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clearhouse", "ledger", "check", *args],
        cwd=ROOT,
        env=env_for(database_url),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def scalar(app: App, sql: str) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def direct_breaks(app: App) -> dict[str, int]:
    """The atomicity invariants counted straight from the tables, not through ledger.check()."""
    queries = {
        "entries_with_fewer_than_2_postings": (
            "SELECT count(*) FROM journal_entries e WHERE"
            " (SELECT count(*) FROM postings p WHERE p.entry_id = e.id) < 2"
        ),
        "unbalanced_entries": (
            "SELECT count(*) FROM (SELECT entry_id FROM postings GROUP BY entry_id, currency"
            " HAVING sum(CASE WHEN side = 'D' THEN amount ELSE -amount END) <> 0) u"
        ),
        "accepted_requests_without_entry": (
            "SELECT count(*) FROM ledger_requests r WHERE r.status = 'ok' AND NOT EXISTS"
            " (SELECT 1 FROM journal_entries e WHERE e.id = r.entry_id)"
        ),
        "entries_without_request": (
            "SELECT count(*) FROM journal_entries e WHERE NOT EXISTS"
            " (SELECT 1 FROM ledger_requests r WHERE r.entry_id = e.id)"
        ),
        "holds_without_entry_kind_pending": (
            "SELECT count(*) FROM holds h JOIN journal_entries e ON e.id = h.entry_id"
            " WHERE e.kind <> 'pending'"
        ),
        # Each balance row's four counters against the postings that must have made them.
        "balance_rows_off_journal": """
            SELECT count(*) FROM balances b LEFT JOIN (
              SELECT p.fund_account_id, p.shard,
                sum(CASE WHEN e.kind IN ('posted','post_pending','reversal') AND p.side = 'D'
                    THEN p.amount ELSE 0 END) AS dp,
                sum(CASE WHEN e.kind IN ('posted','post_pending','reversal') AND p.side = 'C'
                    THEN p.amount ELSE 0 END) AS cp,
                sum(CASE WHEN e.kind = 'pending' AND h.status = 'pending' AND p.side = 'D'
                    THEN p.amount ELSE 0 END) AS dpe,
                sum(CASE WHEN e.kind = 'pending' AND h.status = 'pending' AND p.side = 'C'
                    THEN p.amount ELSE 0 END) AS cpe
              FROM postings p JOIN journal_entries e ON e.id = p.entry_id
              LEFT JOIN holds h ON h.entry_id = e.id
              GROUP BY p.fund_account_id, p.shard
            ) j ON j.fund_account_id = b.fund_account_id AND j.shard = b.shard
            WHERE b.debits_posted <> coalesce(j.dp, 0) OR b.credits_posted <> coalesce(j.cp, 0)
               OR b.debits_pending <> coalesce(j.dpe, 0) OR b.credits_pending <> coalesce(j.cpe, 0)
        """,
        "history_rows_missing": (
            "SELECT count(*) FROM balances b WHERE b.version <>"
            " (SELECT count(*) FROM balance_history h"
            "  WHERE h.fund_account_id = b.fund_account_id AND h.shard = b.shard)"
        ),
    }
    return {name: scalar(app, sql) for name, sql in queries.items()}


def run_writer(
    cfg_path: Path, log: Path, kill_after: int | None, rng: random.Random
) -> tuple[list[dict[str, Any]], int]:
    """Run the writer; with ``kill_after``, SIGKILL it a moment after that many fresh steps
    (0: at a random moment of its start-up or replay). Returns every complete line it printed."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.ledger_worker", "crash", str(cfg_path)],
            cwd=ROOT,
            env=env_for(),
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    try:
        if kill_after == 0:
            time.sleep(rng.uniform(0.2, 1.5))
        elif kill_after is not None:
            fresh = 0
            while fresh < kill_after:
                raw = proc.stdout.readline()
                if not raw:
                    break
                lines.append(json.loads(raw))
                fresh += lines[-1]["fresh"]
            # Land somewhere inside the next step's transaction, or between two of them.
            time.sleep(rng.uniform(0, 0.03))
        if kill_after is not None:
            os.kill(proc.pid, signal.SIGKILL)
        for raw in proc.stdout:  # what it printed before it died: those steps had committed
            if raw.endswith(b"\n"):
                lines.append(json.loads(raw))
        rc = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return lines, rc


def test_killed_writer_leaves_no_partial_entry(app: App, tmp_path: Path, database_url: str) -> None:
    buyers = [open_party(app, f"buyer{i}", (Role.BUYER_BALANCE,)) for i in range(6)]
    for b in buyers:
        parties = {"buyer": b.account_id}
        assert app.ledger.post(
            f"seed-{b.account_id}", "4002", CURRENCY, {"amount": 3_000}, parties=parties
        ).ok
    setup_entries = len(buyers)

    cfg = {
        "url": database_url,
        "seed": "crash",
        "batch": BATCH,
        "buyers": [b.account_id for b in buyers],
    }
    cfg_path = tmp_path / "writer.json"
    log = tmp_path / "writer.log"
    rng = random.Random(20261102)

    seen: dict[int, list[list[Any]]] = {}  # step -> outcomes as first reported
    reported_before: set[int] = set()
    kills = 0
    # After each restart, the first step no earlier run reported: "redone" if it had been rolled
    # back (in flight, or not yet begun, at the kill), "unreported" if it had committed but the
    # writer died before printing it.
    first_new: list[str] = []
    per_run: list[int] = []
    for attempt in range(KILLS + 1):
        final = attempt == KILLS
        # A killed run would go on for ever; the last one finishes a few steps past the furthest
        # step any run reported, so it also redoes whichever step was in flight at the last kill.
        steps = max(seen, default=-1) + 1 + FINAL_EXTRA_STEPS if final else 1_000_000
        cfg_path.write_text(json.dumps(cfg | {"steps": steps}))
        kill_after = None if final else rng.choice([0, 1, 2, 4, 8])
        lines, rc = run_writer(cfg_path, log, kill_after, rng)
        if final:
            assert rc == 0, log.read_text()
            assert [line["step"] for line in lines] == list(range(steps))
        else:
            assert rc == -signal.SIGKILL, f"writer ended on its own ({rc}):\n{log.read_text()}"
            kills += 1
        per_run.append(sum(line["fresh"] for line in lines))
        for line in lines:
            step, outcomes = line["step"], line["outcomes"]
            if attempt and step == max(reported_before, default=-1) + 1:
                first_new.append("redone" if line["fresh"] else "unreported")
            answers = [o[:3] for o in outcomes]  # key, entry id, rejection reason
            if step in seen:
                assert answers == seen[step], f"step {step} answered differently after a restart"
            else:
                seen[step] = answers
            if step in reported_before:
                # Reported committed before the kill: it survived and is only replayed now.
                assert all(o[3] for o in outcomes), f"step {step} acted twice"
        reported_before |= {line["step"] for line in lines}
        # After each kill the books already agree: nothing half-written survived it.
        counts = direct_breaks(app)
        assert counts == dict.fromkeys(counts, 0)
        assert app.ledger.check() == []
    assert kills == KILLS

    accepted = {o[0]: o[1] for answers in seen.values() for o in answers if o[2] is None}
    rejected = [o for answers in seen.values() for o in answers if o[2] is not None]
    assert len(accepted) > len(seen), "the stream should be mostly accepted requests"
    assert rejected, "the stream should also run into rejections (insufficient funds)"
    assert scalar(app, "SELECT count(*) FROM journal_entries") == setup_entries + len(accepted)
    assert scalar(app, "SELECT count(*) FROM ledger_requests WHERE status = 'ok'") == (
        setup_entries + len(accepted)
    )
    assert scalar(app, "SELECT count(*) FROM ledger_requests") == setup_entries + sum(
        len(a) for a in seen.values()
    )
    with app.engine.connect() as conn:
        kinds = set(conn.execute(text("SELECT DISTINCT kind FROM journal_entries")).scalars())
    assert {"posted", "pending", "post_pending", "void", "reversal"} <= kinds

    result = cli_check(database_url, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["breaks"] == []
    # PostgreSQL never hands an id out twice: ids a killed transaction had taken stay unused.
    lost_ids = scalar(app, "SELECT max(id) - count(*) FROM journal_entries")
    backend = database_url.split(":", maxsplit=1)[0]
    print(
        f"\n[{backend}] {kills} kills; new steps per run {per_run};"
        f" first step after each restart {first_new}; {len(accepted)} accepted,"
        f" {len(rejected)} rejected; journal ids skipped {lost_ids}"
    )


def test_cli_check_fails_on_a_tampered_balance(app: App, database_url: str) -> None:
    """Negative control: the check can fail, and names the account that is off."""
    buyer = open_party(app, "victim", (Role.BUYER_BALANCE,))
    other = open_party(app, "other", (Role.BUYER_BALANCE,))
    parties = {"buyer": buyer.account_id}
    assert app.ledger.post("t1", "4002", CURRENCY, {"amount": 500}, parties=parties).ok
    assert app.ledger.post(
        "t2",
        "8001",
        CURRENCY,
        {"amount": 200},
        parties={"payer": buyer.account_id, "payee": other.account_id},
    ).ok
    assert cli_check(database_url, "--json").returncode == 0

    fid = buyer.fund_accounts[Role.BUYER_BALANCE]
    with app.engine.begin() as conn:
        changed = conn.execute(
            text(
                "UPDATE balances SET credits_posted = credits_posted + 1"
                " WHERE fund_account_id = :fid AND shard = 0"
            ),
            {"fid": fid},
        ).rowcount
    assert changed == 1
    subject = f"fund account {fid} shard 0"

    result = cli_check(database_url, "--json")
    assert result.returncode != 0, result.stdout
    report = json.loads(result.stdout)
    assert report["breaks"], report
    assert {b["check"] for b in report["breaks"] if b["subject"] == subject} >= {
        "balance_vs_journal"
    }, report

    plain = cli_check(database_url)
    assert plain.returncode != 0
    assert subject in plain.stdout + plain.stderr

    assert any(b.subject == subject for b in app.ledger.check())
