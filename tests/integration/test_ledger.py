"""The ledger against a real database (SQLite and PostgreSQL)."""

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, text

from clearhouse.accounts import handlers
from clearhouse.accounts.model import Role, Status
from clearhouse.db.schema import balances, journal_entries, ledger_requests
from clearhouse.db.transaction import run_in_transaction
from clearhouse.ledger import processor
from clearhouse.ledger.eod import DayNotOver
from clearhouse.ledger.model import Reason
from clearhouse.ledger.requests import CommitHold, InvalidRequest, Post, Reverse, VoidHold
from clearhouse.ledger.service import Ledger
from tests.conftest import open_party, platform_fund

BUYER = (Role.BUYER_BALANCE,)
MERCHANT = (Role.MERCHANT_SETTLEMENT,)


def snapshot(app):
    """Everything a rejected request must leave untouched."""

    def read(conn):
        rows = conn.execute(
            select(balances).order_by(balances.c.fund_account_id, balances.c.shard)
        ).all()
        entries = conn.execute(select(func.count()).select_from(journal_entries)).scalar_one()
        return [tuple(r) for r in rows], entries

    return run_in_transaction(app.engine, read, readonly=True)


def topup(app, buyer, amount, key=None):
    out = app.ledger.post(
        key or f"topup-{buyer.account_id}-{amount}",
        "4002",
        "CNY",
        {"amount": amount},
        parties={"buyer": buyer.account_id},
    )
    assert out.ok, out
    return out


def test_post_replay_and_conflict(app):
    buyer = open_party(app, "li", BUYER)
    first = topup(app, buyer, 500, key="t1")
    again = app.ledger.post(
        "t1", "4002", "CNY", {"amount": 500}, parties={"buyer": buyer.account_id}
    )
    assert again.ok
    assert again.replayed
    assert again.entry_id == first.entry_id
    before = snapshot(app)
    clash = app.ledger.post(
        "t1", "4002", "CNY", {"amount": 501}, parties={"buyer": buyer.account_id}
    )
    assert clash.reason is Reason.IDEMPOTENCY_CONFLICT
    assert snapshot(app) == before
    assert app.ledger.balance(buyer.fund_accounts[Role.BUYER_BALANCE]).posted == 500


def test_a_rejection_is_stored_and_replayed_even_when_it_would_now_succeed(app):
    buyer = open_party(app, "li", BUYER)
    payee = open_party(app, "wang", BUYER)
    pay = {"payer": buyer.account_id, "payee": payee.account_id}
    refused = app.ledger.post("x1", "8001", "CNY", {"amount": 100}, parties=pay)
    assert refused.reason is Reason.INSUFFICIENT_FUNDS
    topup(app, buyer, 1000)
    replay = app.ledger.post("x1", "8001", "CNY", {"amount": 100}, parties=pay)
    assert replay.reason is Reason.INSUFFICIENT_FUNDS
    assert replay.replayed
    assert app.ledger.balance(payee.fund_accounts[Role.BUYER_BALANCE]).posted == 0


def test_every_rejection_changes_nothing(app):
    buyer = open_party(app, "li", BUYER)
    usd = open_party(app, "usd", BUYER, currency="USD")
    merchant = open_party(app, "shop", MERCHANT)
    topup(app, buyer, 1000)
    cases = [
        (Post("r1", "0000", "CNY", {"amount": 1}), Reason.UNKNOWN_TRANSACTION_CODE),
        (
            Post("r2", "4002", "XYZ", {"amount": 1}, {"buyer": buyer.account_id}),
            Reason.UNKNOWN_CURRENCY,
        ),
        (Post("r3", "4002", "CNY", {"amount": 1}, {"buyer": "acc_nobody"}), Reason.UNKNOWN_ACCOUNT),
        (
            Post("r4", "4002", "CNY", {"amount": 1}, {"buyer": usd.account_id}),
            Reason.CURRENCY_MISMATCH,
        ),
        (Post("r5", "4002", "CNY", {"amount": 1}), Reason.MISSING_PARTY),
        (
            Post("r6", "4002", "CNY", {"amount": 0}, {"buyer": buyer.account_id}),
            Reason.AMOUNT_NOT_POSITIVE,
        ),
        (
            Post("r7", "4002", "CNY", {"amount": -5}, {"buyer": buyer.account_id}),
            Reason.AMOUNT_NOT_POSITIVE,
        ),
        (
            Post("r8", "4002", "CNY", {"amount": 2**63}, {"buyer": buyer.account_id}),
            Reason.AMOUNT_TOO_LARGE,
        ),
        (Post("r9", "4002", "CNY", {}, {"buyer": buyer.account_id}), Reason.MISSING_AMOUNT),
        (
            Post("r10", "4002", "CNY", {"amount": 1, "tip": 1}, {"buyer": buyer.account_id}),
            Reason.UNEXPECTED_AMOUNT,
        ),
        (
            Post("r11", "5002", "CNY", {"amount": 2000}, {"buyer": buyer.account_id}),
            Reason.INSUFFICIENT_FUNDS,
        ),
        (
            Post(
                "r12",
                "2001",
                "CNY",
                {"merchant_amount": 1, "commission": 0},
                {"merchant": merchant.account_id},
                hold=True,
                expires_at=app.clock.now(),
            ),
            Reason.INVALID_EXPIRY,
        ),
        (CommitHold("r13", 999_999), Reason.HOLD_NOT_FOUND),
        (VoidHold("r14", 999_999), Reason.HOLD_NOT_FOUND),
        (Reverse("r15", 999_999), Reason.ENTRY_NOT_FOUND),
    ]
    for req, reason in cases:
        before = snapshot(app)
        out = app.ledger.submit([req])[0]
        assert out.reason is reason, (req, out)
        assert snapshot(app) == before, req
    assert app.ledger.check() == []


def test_invalid_keys_and_types_raise_and_store_nothing(app):
    buyer = open_party(app, "li", BUYER)
    for bad in [
        Post("", "4002", "CNY", {"amount": 1}, {"buyer": buyer.account_id}),
        Post("k" * 129, "4002", "CNY", {"amount": 1}, {"buyer": buyer.account_id}),
        Post("k-float", "4002", "CNY", {"amount": 1.5}, {"buyer": buyer.account_id}),  # type: ignore[dict-item]
        Post("k-bool", "4002", "CNY", {"amount": True}, {"buyer": buyer.account_id}),
    ]:
        with pytest.raises(InvalidRequest):
            app.ledger.submit([bad])

    count = run_in_transaction(
        app.engine,
        lambda c: c.execute(select(func.count()).select_from(ledger_requests)).scalar_one(),
    )
    assert count == 0


def test_holds_capture_partially_and_release_the_rest(app):
    buyer = open_party(app, "li", BUYER)
    fund = buyer.fund_accounts[Role.BUYER_BALANCE]
    topup(app, buyer, 1000)
    app.ledger.post("cap", "9001", "CNY", {"amount": 10_000})
    hold = app.ledger.hold(
        "h1", "5002", "CNY", {"amount": 700}, parties={"buyer": buyer.account_id}
    )
    assert hold.ok
    bal = app.ledger.balance(fund)
    assert (bal.posted, bal.pending_out, bal.available) == (1000, 700, 300)
    # The held money cannot be spent twice.
    assert (
        app.ledger.post(
            "w2", "5002", "CNY", {"amount": 301}, parties={"buyer": buyer.account_id}
        ).reason
        is Reason.INSUFFICIENT_FUNDS
    )
    assert (
        app.ledger.commit_hold("c0", hold.entry_id, {"amount": 701}).reason
        is Reason.HOLD_AMOUNT_EXCEEDED
    )
    assert (
        app.ledger.commit_hold("c1", hold.entry_id, {"amount": 0}).reason
        is Reason.AMOUNT_NOT_POSITIVE
    )
    assert app.ledger.commit_hold("c2", hold.entry_id, {"other": 5}).reason is Reason.MISSING_AMOUNT
    captured = app.ledger.commit_hold("c3", hold.entry_id, {"amount": 400})
    assert captured.ok
    bal = app.ledger.balance(fund)
    assert (bal.posted, bal.pending_out, bal.available) == (600, 0, 600)
    assert app.ledger.void_hold("v1", hold.entry_id).reason is Reason.HOLD_CLOSED
    assert app.ledger.commit_hold("c4", hold.entry_id).reason is Reason.HOLD_CLOSED
    assert app.ledger.reverse("rv", hold.entry_id).reason is Reason.NOT_REVERSIBLE
    assert app.ledger.check() == []


def test_void_and_expiry(app):
    buyer = open_party(app, "li", BUYER)
    fund = buyer.fund_accounts[Role.BUYER_BALANCE]
    topup(app, buyer, 1000)
    app.ledger.post("cap", "9001", "CNY", {"amount": 10_000})
    voided = app.ledger.hold(
        "h1", "5002", "CNY", {"amount": 300}, parties={"buyer": buyer.account_id}
    )
    assert app.ledger.void_hold("v1", voided.entry_id).ok
    assert app.ledger.balance(fund).available == 1000
    expiring = app.ledger.hold(
        "h2",
        "5002",
        "CNY",
        {"amount": 200},
        parties={"buyer": buyer.account_id},
        expires_at=app.clock.now() + timedelta(minutes=30),
    )
    assert app.ledger.balance(fund).available == 800
    app.clock.advance(timedelta(minutes=31))
    assert app.ledger.commit_hold("c1", expiring.entry_id).reason is Reason.HOLD_EXPIRED
    swept = app.ledger.expire_holds()
    assert [o.ok for o in swept] == [True]
    assert app.ledger.expire_holds() == []
    assert app.ledger.balance(fund).available == 1000
    status = run_in_transaction(
        app.engine,
        lambda c: c.execute(
            text("SELECT status FROM holds WHERE entry_id = :e"), {"e": expiring.entry_id}
        ).scalar_one(),
    )
    assert status == "expired"
    assert app.ledger.check() == []


def test_reversal_links_and_happens_once(app):
    buyer = open_party(app, "li", BUYER)
    fund = buyer.fund_accounts[Role.BUYER_BALANCE]
    entry = topup(app, buyer, 1000)
    reversal = app.ledger.reverse("rv1", entry.entry_id, memo="posted to the wrong buyer")
    assert reversal.ok
    assert app.ledger.balance(fund).posted == 0
    detail = app.ledger.entry(reversal.entry_id)
    assert detail["kind"] == "reversal"
    assert detail["ref_entry_id"] == entry.entry_id
    original = app.ledger.entry(entry.entry_id)
    assert [p["side"] for p in detail["postings"]] == [
        ("C" if p["side"] == "D" else "D") for p in original["postings"]
    ]
    assert app.ledger.reverse("rv2", entry.entry_id).reason is Reason.ALREADY_REVERSED
    assert app.ledger.reverse("rv3", reversal.entry_id).reason is Reason.NOT_REVERSIBLE


def test_reversal_respects_balance_constraints(app):
    buyer = open_party(app, "li", BUYER)
    payee = open_party(app, "wang", BUYER)
    entry = topup(app, buyer, 1000)
    assert app.ledger.post(
        "spend",
        "8001",
        "CNY",
        {"amount": 900},
        parties={"payer": buyer.account_id, "payee": payee.account_id},
    ).ok
    assert app.ledger.reverse("rv", entry.entry_id).reason is Reason.INSUFFICIENT_FUNDS


def test_batch_mixes_outcomes_and_handles_duplicates_inside_it(app):
    buyer = open_party(app, "li", BUYER)
    topup(app, buyer, 1000)
    app.ledger.post("cap", "9001", "CNY", {"amount": 10_000})
    hold = app.ledger.hold("h", "5002", "CNY", {"amount": 100}, parties={"buyer": buyer.account_id})
    party = {"buyer": buyer.account_id}
    out = app.ledger.submit(
        [
            Post("b1", "5002", "CNY", {"amount": 600}, party),
            Post("b2", "5002", "CNY", {"amount": 600}, party),  # only 300 left after b1
            Post(
                "b1", "5002", "CNY", {"amount": 600}, party
            ),  # same key, same payload: b1's outcome
            Post("b1", "5002", "CNY", {"amount": 1}, party),  # same key, other payload
            CommitHold("b3", hold.entry_id),
            VoidHold("b4", hold.entry_id),  # the hold was closed earlier in this batch
        ]
    )
    assert [o.reason for o in out] == [
        None,
        Reason.INSUFFICIENT_FUNDS,
        None,
        Reason.IDEMPOTENCY_CONFLICT,
        None,
        Reason.HOLD_CLOSED,
    ]
    assert out[2].replayed
    assert out[2].entry_id == out[0].entry_id
    assert app.ledger.balance(buyer.fund_accounts[Role.BUYER_BALANCE]).posted == 300
    assert app.ledger.check() == []


def test_a_process_that_has_never_seen_the_accounts_resolves_them_in_the_batch(app):
    """A new process knows no fund account: the batch looks them up with its locks, plans the
    posts that needed them afterwards, and still tells every rejection apart."""
    buyer = open_party(app, "li", BUYER)
    usd = open_party(app, "usd", BUYER, currency="USD")
    topup(app, buyer, 1000)
    app.ledger.post("cap", "9001", "CNY", {"amount": 10_000})  # the bank reserve pays out
    cold = Ledger(app.engine, app.clock)
    party = {"buyer": buyer.account_id}
    out = cold.submit(
        [
            Post("c1", "4002", "CNY", {"amount": 500}, party),  # into the sharded clearing account
            Post("c2", "5002", "CNY", {"amount": 1400}, party),  # needs c1's 500
            Post("c3", "5002", "CNY", {"amount": 200}, party),  # only 100 left
            Post("c4", "4002", "CNY", {"amount": 1}, {"buyer": usd.account_id}),
            Post("c5", "4002", "CNY", {"amount": 1}, {"buyer": "acc_nobody"}),
        ]
    )
    assert [o.reason for o in out] == [
        None,
        None,
        Reason.INSUFFICIENT_FUNDS,
        Reason.CURRENCY_MISMATCH,
        Reason.UNKNOWN_ACCOUNT,
    ]
    assert cold.balance(buyer.fund_accounts[Role.BUYER_BALANCE]).posted == 100
    # The same requests through the warm ledger replay the stored outcomes.
    again = app.ledger.submit([Post("c3", "5002", "CNY", {"amount": 200}, party)])
    assert again[0].replayed
    assert again[0].reason is Reason.INSUFFICIENT_FUNDS
    assert app.ledger.check() == []


def test_the_fund_account_cache_stays_bounded(app, monkeypatch):
    monkeypatch.setattr(processor, "FUND_CACHE_LIMIT", 3)
    buyers = [open_party(app, f"b{i}", BUYER) for i in range(6)]
    for i, buyer in enumerate(buyers):
        topup(app, buyer, 100 + i)
        # Each top-up adds the buyer and the clearing account; the limit applies between batches.
        assert len(app.ledger._ctx.fund_cache) <= 3 + 2
    posted = [app.ledger.balance(b.fund_accounts[Role.BUYER_BALANCE]).posted for b in buyers]
    assert posted == [100 + i for i in range(6)]
    assert app.ledger.check() == []


def test_hot_accounts_spread_over_shards_and_add_up(app):
    buyers = [open_party(app, f"b{i}", BUYER) for i in range(3)]
    for i in range(40):
        topup(app, buyers[i % 3], 10 + i, key=f"t{i}")
    clearing = platform_fund(app, Role.CHANNEL_CLEARING, "wechatpay")
    shards = run_in_transaction(
        app.engine,
        lambda c: c.execute(
            text("SELECT count(*) FROM balances WHERE fund_account_id = :f AND version > 0"),
            {"f": clearing},
        ).scalar_one(),
    )
    assert shards > 1
    assert app.ledger.balance(clearing).posted == sum(10 + i for i in range(40))
    assert app.ledger.check() == []


def test_balance_at_any_past_moment_and_history(app):
    buyer = open_party(app, "li", BUYER)
    fund = buyer.fund_accounts[Role.BUYER_BALANCE]
    moments = []
    for i, amount in enumerate([100, 250, 75]):
        app.clock.advance(timedelta(minutes=10))
        topup(app, buyer, amount, key=f"t{i}")
        moments.append(app.clock.now())
    before_all = moments[0] - timedelta(seconds=1)
    assert app.ledger.balance_at(fund, before_all).posted == 0
    assert app.ledger.balance_at(fund, moments[0]).posted == 100
    assert app.ledger.balance_at(fund, moments[1] + timedelta(minutes=5)).posted == 350
    assert app.ledger.balance_at(fund, moments[2]).posted == 425
    rows = app.ledger.history(fund)
    assert [r["shard_posted"] for r in rows] == [425, 350, 100]


def test_frozen_account_takes_money_in_but_not_out(app):
    buyer = open_party(app, "li", BUYER)
    payee = open_party(app, "wang", BUYER)
    topup(app, buyer, 1000)
    run_in_transaction(
        app.engine,
        lambda c: handlers.set_fund_account_status(
            c, buyer.fund_accounts[Role.BUYER_BALANCE], Status.FROZEN
        ),
    )
    pay = {"payer": buyer.account_id, "payee": payee.account_id}
    assert (
        app.ledger.post("p1", "8001", "CNY", {"amount": 10}, parties=pay).reason
        is Reason.ACCOUNT_NOT_ACTIVE
    )
    assert topup(app, buyer, 5).ok


def test_close_day_rolls_up_and_check_catches_tampering(app):
    buyer = open_party(app, "li", BUYER)
    topup(app, buyer, 1000)
    day = app.clock.now().date()
    with pytest.raises(DayNotOver):
        app.ledger.close_day(day)
    app.clock.advance(timedelta(days=1))
    assert app.ledger.close_day(day) is True
    assert app.ledger.close_day(day) is False
    assert app.ledger.check() == []
    assert app.ledger.close_day(date(2020, 1, 1)) is True  # an empty day closes with no lines

    def tamper(sql):
        run_in_transaction(app.engine, lambda c: c.execute(text(sql)))

    fund = buyer.fund_accounts[Role.BUYER_BALANCE]
    tamper(
        f"UPDATE balances SET credits_posted = credits_posted + 1 WHERE fund_account_id = {fund}"
    )
    found = {b.check for b in app.ledger.check()}
    assert {"balance_vs_journal", "balance_vs_history", "trial_balance"} <= found
    tamper(
        f"UPDATE balances SET credits_posted = credits_posted - 1 WHERE fund_account_id = {fund}"
    )
    assert app.ledger.check() == []
    tamper("UPDATE gl_daily SET debit_total = debit_total + 7")
    assert {b.check for b in app.ledger.check()} == {"general_ledger"}
    tamper("UPDATE gl_daily SET debit_total = debit_total - 7")
    tamper("UPDATE balance_history SET entry_id = 999999 WHERE version = 1")
    assert "history_without_entry" in {b.check for b in app.ledger.check()}
    tamper("UPDATE postings SET amount = amount + 1 WHERE seq = 0")
    found = {b.check for b in app.ledger.check()}
    assert {"entry_balanced", "balance_vs_journal", "general_ledger"} <= found
