"""The command line: scripts get JSON and exit codes; bad input gets a clear error and writes nothing."""

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from clearhouse.cli import app as cli
from clearhouse.db.schema import journal_entries, ledger_requests
from clearhouse.db.transaction import run_in_transaction


@pytest.fixture
def run(database_url):
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(cli, list(args), env={"CLEARHOUSE_DATABASE_URL": database_url})
        return result.exit_code, result.stdout, result.stderr

    code, _, _ = invoke("db", "upgrade", "--json")
    assert code == 0
    return invoke


def counts(app):
    def read(conn):
        return tuple(
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (journal_entries, ledger_requests)
        )

    return run_in_transaction(app.engine, read, readonly=True)


def test_post_balance_and_check_for_scripts(run, app):
    code, out, _ = run(
        "accounts",
        "open",
        "--name",
        "Shop",
        "--login",
        "shop",
        "--kind",
        "company",
        "--kyc",
        "3",
        "--role",
        "merchant_settlement",
        "--json",
    )
    assert code == 0
    shop = json.loads(out)
    code, out, _ = run(
        "ledger",
        "post",
        "--key",
        "p1",
        "--code",
        "1002",
        "--currency",
        "CNY",
        "--amount",
        "amount=128.00",
        "--json",
    )
    assert (code, json.loads(out)["ok"]) == (0, True)
    code, out, _ = run(
        "ledger",
        "post",
        "--key",
        "s1",
        "--code",
        "2001",
        "--currency",
        "CNY",
        "--amount",
        "merchant_amount=121.60",
        "--amount",
        "commission=6.40",
        "--party",
        f"merchant={shop['account_id']}",
        "--json",
    )
    assert code == 0
    code, out, _ = run(
        "ledger",
        "post",
        "--key",
        "s1",
        "--code",
        "2001",
        "--currency",
        "CNY",
        "--amount",
        "merchant_amount=121.60",
        "--amount",
        "commission=6.40",
        "--party",
        f"merchant={shop['account_id']}",
        "--json",
    )
    assert json.loads(out)["replayed"] is True
    fund = shop["fund_accounts"]["merchant_settlement"]
    code, out, _ = run("ledger", "balance", str(fund), "--json")
    assert code == 0
    assert json.loads(out)["balances"][0]["posted"] == 12160
    code, out, _ = run("ledger", "history", str(fund), "--json")
    assert [h["shard_posted"] for h in json.loads(out)["history"]] == [12160]
    code, out, _ = run("ledger", "trial-balance", "--json")
    assert code == 0
    assert json.loads(out)["totals"]["CNY"] == {"debit": 12800, "credit": 12800}
    code, out, _ = run("ledger", "check", "--json")
    assert (code, json.loads(out)) == (0, {"ok": True, "breaks": []})


def test_rejection_exits_one_with_its_reason(run, app):
    code, out, _ = run(
        "ledger",
        "post",
        "--key",
        "bad",
        "--code",
        "0000",
        "--currency",
        "CNY",
        "--amount",
        "amount=1.00",
        "--json",
    )
    assert code == 1
    assert json.loads(out)["reason"] == "UNKNOWN_TRANSACTION_CODE"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--amount", "amount=12.345"], "INVALID_AMOUNT"),
        (["--amount", "amount=1e3"], "INVALID_AMOUNT"),
        (["--amount", "amount"], "BAD_ARGUMENT"),
        (["--amount", "amount=1.00", "--party", "merchant"], "BAD_ARGUMENT"),
        (["--amount", "amount=1.00", "--expires-in", "60"], "BAD_ARGUMENT"),
    ],
)
def test_bad_input_is_named_and_writes_nothing(run, app, args, error):
    before = counts(app)
    code, out, _ = run(
        "ledger", "post", "--key", "k", "--code", "1002", "--currency", "CNY", *args, "--json"
    )
    assert code == 2
    assert json.loads(out)["error"]["code"] == error
    assert counts(app) == before


def test_unknown_currency_and_bad_dates(run, app):
    code, out, _ = run(
        "ledger",
        "post",
        "--key",
        "k",
        "--code",
        "1002",
        "--currency",
        "ABC",
        "--amount",
        "amount=1",
        "--json",
    )
    assert (code, json.loads(out)["error"]["code"]) == (2, "UNKNOWN_CURRENCY")
    code, out, _ = run("ledger", "close-day", "2026-13-01", "--json")
    assert (code, json.loads(out)["error"]["code"]) == (2, "BAD_ARGUMENT")
    code, out, _ = run("ledger", "balance", "999999", "--json")
    assert (code, json.loads(out)["error"]["code"]) == (2, "UNKNOWN_ACCOUNT")
    code, out, _ = run(
        "accounts", "open", "--name", "x", "--login", "x", "--role", "no_such_role", "--json"
    )
    assert code == 2
    assert counts(app) == (0, 0)


def test_an_operator_enrols_a_customer_with_another_merchant(run, app):
    """Once, and idempotently; an unknown customer or merchant is bad input and writes
    nothing."""
    from clearhouse.db.schema import merchant_customers

    code, out, _ = run("accounts", "open", "--name", "Wang", "--login", "wang", "--json")
    assert code == 0
    customer = json.loads(out)["customer_id"]
    code, out, _ = run("merchants", "create", "--name", "Tea House", "--json")
    assert code == 0
    merchant = json.loads(out)["merchant_id"]
    code, out, _ = run("customers", "enrol", customer, "--merchant", merchant, "--json")
    assert code == 0
    shown = json.loads(out)
    assert (shown["enrolled"], [e["merchant_id"] for e in shown["enrolments"]]) == (
        True,
        [merchant],
    )
    code, out, _ = run("customers", "enrol", customer, "--merchant", merchant, "--json")
    assert (code, json.loads(out)["enrolled"]) == (0, False)
    for who, where, error in [
        ("cus_nobody", merchant, "UNKNOWN_CUSTOMER"),
        (customer, "mer_nobody", "UNKNOWN_MERCHANT"),
    ]:
        code, out, _ = run("customers", "enrol", who, "--merchant", where, "--json")
        assert (code, json.loads(out)["error"]["code"]) == (2, error)
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(merchant_customers)).scalar() == 1


def test_gateway_demo_resolves_every_fault_and_balances(tmp_path):
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    result = runner.invoke(cli, ["demo", "--database-url", db, "--json"])  # the default day
    assert result.exit_code == 0, result.stdout
    facts = json.loads(result.stdout)
    assert facts["books_balance"] is True
    statuses = {s for per in facts["payments"].values() for s in per}
    assert statuses <= {"SUCCEEDED", "COMPLETED", "CLOSED", "FAILED"}  # nothing left open
    # Every channel carried payments (the seed's day); a cart's orders count one each.
    assert set(facts["payments"]) == {
        "wechatpay",
        "alipay",
        "stripe",
        "paypal",
        "quickpay",
        "quickpay_b",
    }
    assert {"card", "cart", "mixed"} <= set(facts["kinds"])
    assert sum(facts["card_payments_routed"].values()) == facts["kinds"]["card"]
    assert facts["movements"] == {"top-up": 3, "transfer": 1, "withdrawal paid": 2}
    assert facts["paid_entries"] == facts["paid_payments"] > 0
    assert facts["webhooks"]["received"] == facts["webhooks"]["verified"] > 0
    assert sum(facts["faults_planted"].values()) > 0


def test_ledger_demo_tells_a_balanced_day(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli, ["demo", "--ledger-only", "--database-url", f"sqlite:///{tmp_path / 'demo.db'}"]
    )
    assert result.exit_code == 0, result.stdout
    assert "books agree" in result.stdout
    assert "INSUFFICIENT_FUNDS" in result.stdout
    assert "(replayed)" in result.stdout
