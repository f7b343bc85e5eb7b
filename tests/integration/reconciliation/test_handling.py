"""Handling differences (R5, R6) on SQLite and PostgreSQL: the fixed rules through the real
gateway, suspense, the review queue and the manual actions with their refusals."""

from __future__ import annotations

import json

import pytest

from clearhouse.accounts.model import Role
from clearhouse.db.schema import journal_entries, recon_actions
from clearhouse.gateway.model import AttemptStatus, IntentStatus
from clearhouse.reconciliation import actions as review
from clearhouse.reconciliation.actions import Review
from clearhouse.reconciliation.errors import ReconError
from tests.conftest import platform_fund
from tests.integration.reconciliation.batch_support import (
    DAY,
    actions,
    assert_books_balance,
    count,
    differences,
    line,
    paid,
    pending,
    put_bill,
    reconciler,
    suspense,
)


def clearing(app) -> int:  # type: ignore[no-untyped-def]
    return app.ledger.balance(platform_fund(app, Role.CHANNEL_CLEARING, "wechatpay")).posted


def test_a_long_on_an_order_awaiting_payment_is_marked_paid_through_the_gateway(
    app, gateway, channel, merchant, tmp_path
):
    waiting = pending(gateway, merchant, "order-1", 10_000)
    rec = reconciler(app, tmp_path, gateway.payments)
    put_bill(rec, [line(waiting.id, 10_000, "4200-late")])
    batch = rec.run("wechatpay", DAY, by="scheduler")
    assert batch.counts["differences"]["LONG"] == 1

    [long] = differences(app)
    assert (long["type"], long["status"], long["resolution"]) == ("LONG", "resolved", "mark_paid")
    assert long["suspense_entry_id"] is None
    assert long["amount"] == 10_000
    [marked] = actions(app, long["id"])
    assert (marked["action"], marked["actor"]) == ("mark_paid", "system")
    assert json.loads(marked["evidence"])["line"]["channel_txn_id"] == "4200-late"
    # The gateway's own path: the attempt succeeded with the channel's id, the usual entries.
    [attempt] = gateway.payments.attempts(waiting.intent_id)
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.channel_txn_id == "4200-late"
    intent = gateway.payments.get(merchant.id, waiting.intent_id)
    assert intent.status is IntentStatus.SUCCEEDED
    assert intent.paid_at is not None
    assert intent.paid_at.date() == DAY
    assert clearing(app) == 10_000 - 60
    assert suspense(app) == 0
    assert_books_balance(app)

    # Run again: our records changed (now paid), so a new batch, and it agrees with the bill.
    again = rec.run("wechatpay", DAY, by="scheduler")
    assert again.id != batch.id
    assert sum(again.counts["differences"].values()) == 0
    assert differences(app)[0]["resolution"] == "mark_paid"


def test_without_the_gateway_a_long_waits_for_review_in_suspense(
    app, gateway, channel, merchant, tmp_path
):
    waiting = pending(gateway, merchant, "order-1", 10_000)
    rec = reconciler(app, tmp_path, None)
    put_bill(rec, [line(waiting.id, 10_000, "4200-late")])
    rec.run("wechatpay", DAY, by="scheduler")
    [long] = differences(app)
    assert (long["status"], long["resolution"]) == ("open", None)
    assert actions(app, long["id"])[0]["reason"] == "long: the payment could not be marked paid"
    assert suspense(app) == -10_000  # the channel holds more than we booked
    assert clearing(app) == 10_000
    assert_books_balance(app)


def test_money_on_a_closed_order_and_a_duplicate_need_a_refund_to_the_payer(
    app, gateway, channel, merchant, tmp_path
):
    closed = pending(gateway, merchant, "order-1", 3_000)
    gateway.payments.close(merchant.id, closed.intent_id)
    twice = paid(gateway, channel, merchant, "order-2", 5_000)
    rec = reconciler(app, tmp_path, gateway.payments)
    put_bill(
        rec,
        [
            line(closed.id, 3_000, "4200-closed"),
            line(twice.id, 5_000, twice.channel_txn_id),
            line(twice.id, 5_000, "4200-again"),  # the payer paid a second time
        ],
    )
    rec.run("wechatpay", DAY, by="scheduler")
    found = {d["type"]: d for d in differences(app)}
    assert set(found) == {"LONG", "DUPLICATE_PAYMENT"}
    assert found["LONG"]["attempt_id"] == closed.id
    assert found["DUPLICATE_PAYMENT"]["channel_txn_id"] == "4200-again"
    for difference in found.values():
        assert difference["status"] == "open"
        assert difference["suspense_entry_id"] is not None
        assert "refund to payer required" in actions(app, difference["id"])[0]["reason"]
    assert suspense(app) == -8_000
    assert gateway.payments.get(merchant.id, closed.intent_id).status is IntentStatus.CLOSED
    assert_books_balance(app)


def test_mismatches_go_to_review_and_alert_above_the_threshold(
    app, gateway, channel, merchant, tmp_path
):
    big = paid(gateway, channel, merchant, "order-1", 100_000)
    fee_off = paid(gateway, channel, merchant, "order-2", 10_000)
    failed = paid(gateway, channel, merchant, "order-3", 2_000)
    rec = reconciler(app, tmp_path, gateway.payments)
    put_bill(
        rec,
        [
            line(big.id, 160_000, big.channel_txn_id),  # 600.00 more than we booked
            line(fee_off.id, 10_000, fee_off.channel_txn_id, line_fee=61),
            line(failed.id, 2_000, failed.channel_txn_id, status="REVOKED"),
        ],
    )
    rec.run("wechatpay", DAY, by="scheduler")
    found = {d["type"]: d for d in differences(app)}
    assert set(found) == {"AMOUNT_MISMATCH", "FEE_MISMATCH", "STATUS_MISMATCH"}
    amount, fee, status = (found[t] for t in sorted(found))
    assert (amount["amount"], amount["alert"]) == (60_000, True)
    assert (fee["amount"], fee["alert"]) == (-1, False)  # one fen more fee: one less for us
    assert (status["amount"], status["alert"]) == (-2_000, False)
    assert all(d["status"] == "open" for d in found.values())
    assert suspense(app) == -60_000 + 1 + 2_000
    assert_books_balance(app)


def test_manual_actions_record_who_why_and_evidence_and_settle_suspense(
    app, gateway, channel, merchant, tmp_path
):
    a = paid(gateway, channel, merchant, "order-1", 10_000)
    b = paid(gateway, channel, merchant, "order-2", 10_000)
    c = paid(gateway, channel, merchant, "order-3", 3_000)
    rec = reconciler(app, tmp_path, gateway.payments)
    put_bill(
        rec,
        [
            line(a.id, 10_000, a.channel_txn_id, line_fee=65),  # 5 fen too much fee
            line(b.id, 9_000, b.channel_txn_id),  # 10.00 short
            line(c.id, 3_000, c.channel_txn_id, status="REVOKED"),
        ],
    )
    rec.run("wechatpay", DAY, by="scheduler")
    found = {d["type"]: d for d in differences(app)}
    fee, amount, status = (found[t] for t in ("FEE_MISMATCH", "AMOUNT_MISMATCH", "STATUS_MISMATCH"))
    desk = Review(app.engine, app.ledger, app.clock)
    fees_before = app.ledger.balance(platform_fund(app, Role.CHANNEL_FEES, "wechatpay")).posted

    done = desk.write_off(
        fee["id"], actor="alice", reason="channel rounding", evidence={"ticket": "T-1"}
    )
    assert (done.status, done.action) == ("resolved", "write_off")
    assert done.entry_id
    fees_after = app.ledger.balance(platform_fund(app, Role.CHANNEL_FEES, "wechatpay")).posted
    assert fees_after - fees_before == 5  # the extra fee is a channel fee now

    part = desk.adjust(amount["id"], -400, actor="bob", reason="partial credit note")
    assert part.status == "open"
    rest = desk.act(amount["id"], "adjust", amount=-600, actor="bob", reason="the rest")
    assert rest.status == "resolved"
    undone = desk.confirm(status["id"], actor="carol", reason="channel fixed its file")
    assert undone.status == "resolved"
    assert undone.entry_id is not None

    assert suspense(app) == 0
    assert_books_balance(app)
    trail = review.actions_of(app.engine, fee["id"])
    assert [(t["action"], t["actor"]) for t in trail] == [
        ("review", "system"),
        ("write_off", "alice"),
    ]
    assert trail[-1]["evidence"] == {"ticket": "T-1", "written_off": -5}
    assert trail[-1]["reason"] == "channel rounding"
    assert [t["action"] for t in review.actions_of(app.engine, amount["id"])][1:] == [
        "adjust",
        "adjust",
    ]
    resolved = {d["id"]: d["resolution"] for d in differences(app)}
    assert resolved == {fee["id"]: "write_off", amount["id"]: "adjust", status["id"]: "confirm"}


def test_refused_actions_have_codes_and_change_nothing(app, gateway, channel, merchant, tmp_path):
    a = paid(gateway, channel, merchant, "order-1", 10_000)
    rec = reconciler(app, tmp_path, gateway.payments)
    put_bill(rec, [line(a.id, 9_000, a.channel_txn_id)])
    rec.run("wechatpay", DAY, by="scheduler")
    [open_] = differences(app)
    desk = Review(app.engine, app.ledger, app.clock)
    desk.confirm(open_["id"], actor="alice", reason="explained")
    before = (count(app, recon_actions), count(app, journal_entries), differences(app))

    def refused(code: str, call) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(ReconError) as caught:
            call()
        assert caught.value.code == code

    refused("DIFFERENCE_RESOLVED", lambda: desk.write_off(open_["id"], actor="a", reason="r"))
    refused("DIFFERENCE_NOT_FOUND", lambda: desk.confirm("rcd_nope", actor="a", reason="r"))
    refused("ACTOR_REQUIRED", lambda: desk.confirm(open_["id"], actor=" ", reason="r"))
    refused("REASON_REQUIRED", lambda: desk.confirm(open_["id"], actor="a", reason=""))
    refused("INVALID_ADJUSTMENT", lambda: desk.adjust(open_["id"], 0, actor="a", reason="r"))
    refused("INVALID_RECON_ACTION", lambda: desk.act(open_["id"], "shred", actor="a", reason="r"))
    assert (count(app, recon_actions), count(app, journal_entries), differences(app)) == before


def test_an_adjustment_must_fit_what_is_left_and_a_rerun_is_recorded(
    app, gateway, channel, merchant, tmp_path
):
    a = paid(gateway, channel, merchant, "order-1", 10_000)
    rec = reconciler(app, tmp_path, gateway.payments)
    put_bill(rec, [line(a.id, 9_000, a.channel_txn_id)])
    batch = rec.run("wechatpay", DAY, by="scheduler")
    [open_] = differences(app)
    desk = Review(app.engine, app.ledger, app.clock)
    for wrong in (500, -1_001):  # the other sign; more than the 10.00 it is short
        with pytest.raises(ReconError) as caught:
            desk.adjust(open_["id"], wrong, actor="a", reason="r")
        assert caught.value.code == "INVALID_ADJUSTMENT"
    desk.adjust(open_["id"], -300, actor="a", reason="part")

    done = review.rerun(rec, actor="dave", reason="check again", difference_id=open_["id"])
    assert done.batch is not None
    assert done.batch.id == batch.id
    assert done.batch.already
    assert done.status == "open"
    [last] = actions(app, open_["id"])[-1:]
    assert (last["action"], last["actor"], last["batch_id"]) == ("rerun", "dave", batch.id)

    # Fixed by a re-issued bill: the re-run resolves it, undoing parking and adjustment alike.
    put_bill(rec, [line(a.id, 10_000, a.channel_txn_id)], tag="-v2")
    fixed = review.rerun(
        rec, actor="dave", reason="bill re-issued", channel="wechatpay", business_date=DAY
    )
    assert fixed.batch is not None
    assert not fixed.batch.already
    [gone] = differences(app)
    assert (gone["status"], gone["resolution"]) == ("resolved", "rerun")
    assert suspense(app) == 0
    assert_books_balance(app)
    report = review.status(app.engine, as_of=DAY).to_dict()
    assert report["open"] == []
    assert [b["id"] for b in report["batches"]] == [fixed.batch.id]
