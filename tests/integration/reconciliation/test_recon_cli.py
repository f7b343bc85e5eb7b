"""``clearhouse recon`` for scripts: import, run, status and resolve answer JSON with exit codes;
bad input gets a stable code and changes nothing; the same file or the same run twice is one."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from clearhouse.bootstrap import App
from clearhouse.cli import app as cli
from clearhouse.db.schema import recon_actions, recon_batches, statement_files
from clearhouse.reconciliation.statements import samples

DAY = date(2024, 3, 1)
Run = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture
def run(database_url: str, tmp_path: Path) -> Run:
    runner = CliRunner()
    env = {"CLEARHOUSE_DATABASE_URL": database_url, "CLEARHOUSE_RECON_DIR": str(tmp_path)}

    def invoke(*args: str) -> tuple[int, dict[str, Any]]:
        result = runner.invoke(cli, list(args), env=env)
        return result.exit_code, json.loads(result.stdout) if result.stdout else {}

    assert invoke("db", "upgrade", "--json")[0] == 0
    return invoke


def count(app: App, table: Any) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_import_run_status_resolve(run: Run, app: App, tmp_path: Path) -> None:
    bill = tmp_path / "tradebill.csv"
    bill.write_bytes(samples.wechat_trade_bill(30, day=DAY))
    args = ("recon", "import", str(bill), "--channel", "wechatpay", "--date", DAY.isoformat())
    code, out = run(*args, "--by", "ops", "--json")
    assert code == 0
    (imported,) = out["imported"]
    assert (imported["format"], imported["lines"], imported["already"]) == (
        "wechatpay-trade",
        30,
        False,
    )
    code, out = run(*args, "--by", "ops", "--json")  # the same file again: nothing changes
    assert (code, out["imported"][0]["already"]) == (0, True)
    assert count(app, statement_files) == 1

    # No records of ours for that day: every line that moved money is long.
    code, out = run("recon", "run", "--channel", "wechatpay", "--date", "2024-03-01", "--json")
    assert code == 0
    (batch,) = out["batches"]
    longs = [d for d in out["differences"] if d["type"] == "LONG"]
    assert longs
    assert batch["counts"]["differences"]["LONG"] == len(longs)
    assert all(d["line_amount"] is not None and d["our_amount"] is None for d in longs)
    assert all(d["channel_txn_id"] for d in longs)
    code, again = run("recon", "run", "--channel", "wechatpay", "--date", "2024-03-01", "--json")
    assert (code, again["batches"][0]["id"], again["batches"][0]["already"]) == (
        0,
        batch["id"],
        True,
    )
    assert count(app, recon_batches) == 1

    code, status = run(
        "recon", "status", "--channel", "wechatpay", "--as-of", "2024-03-04", "--json"
    )
    assert code == 0
    assert {d["id"] for d in status["open"]} == {d["id"] for d in longs}
    assert all(d["age_days"] == 3 for d in status["open"])

    target = longs[0]["id"]
    actions_before = count(app, recon_actions)
    code, out = run("recon", "resolve", target, "--action", "write_off", "--reason", "", "--json")
    assert (code, out["error"]["code"]) == (2, "REASON_REQUIRED")
    assert count(app, recon_actions) == actions_before  # refused: nothing recorded
    resolve = ("recon", "resolve", target, "--action", "write_off", "--by", "alice")
    code, out = run(*resolve, "--reason", "test order", "--evidence", '{"ticket": 7}', "--json")
    assert (code, out["status"], out["action"]) == (0, "resolved", "write_off")
    assert out["entry_id"] is not None  # the suspense cleared through a posting rule
    code, out = run(*resolve, "--reason", "again", "--json")
    assert (code, out["error"]["code"]) == (2, "DIFFERENCE_RESOLVED")
    code, status = run("recon", "status", "--channel", "wechatpay", "--json")
    assert target not in {d["id"] for d in status["open"]}


def test_bad_input_changes_nothing(run: Run, app: App, tmp_path: Path) -> None:
    code, out = run("recon", "run", "--date", "2024-13-01", "--json")
    assert (code, out["error"]["code"]) == (2, "INVALID_DATE")
    broken = tmp_path / "tradebill.csv"
    broken.write_bytes(samples.wechat_trade_bill(5, day=DAY)[:-40])  # the summary cut off
    code, out = run(
        "recon", "import", str(broken), "--channel", "wechatpay", "--date", "2024-03-01", "--json"
    )
    assert code == 2
    assert out["error"]["code"].startswith("STATEMENT_")
    assert "tradebill.csv" in out["error"]["message"]
    code, out = run(
        "recon", "resolve", "rcd_nope", "--action", "confirm", "--reason", "x", "--json"
    )
    assert (code, out["error"]["code"]) == (2, "DIFFERENCE_NOT_FOUND")
    assert count(app, statement_files) == count(app, recon_batches) == 0
