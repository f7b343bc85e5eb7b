"""Reconciliation batches (R8) on SQLite and PostgreSQL: idempotent runs, superseding runs, the
carry-over of shorts and their break."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from clearhouse.db.schema import journal_entries, recon_actions, recon_batches, recon_differences
from clearhouse.reconciliation import actions as review
from clearhouse.reconciliation.errors import ReconError
from tests.integration.reconciliation.batch_support import (
    DAY,
    actions,
    assert_books_balance,
    count,
    differences,
    line,
    paid,
    put_bill,
    reconciler,
    suspense,
)


def test_the_same_inputs_are_the_same_batch_and_change_nothing(
    app, gateway, channel, merchant, tmp_path
):
    one = paid(gateway, channel, merchant, "order-1", 10_000)
    two = paid(gateway, channel, merchant, "order-2", 2_500)
    rec = reconciler(app, tmp_path, gateway.payments)
    put_bill(rec, [line(one.id, 10_000, "4200-1")])

    batch = rec.run("wechatpay", DAY, by="ops")
    assert not batch.already
    assert batch.totals == {
        "lines": {"CNY": {"count": 1, "amount": 10_000, "fee": 60}},
        "ours": {"CNY": {"count": 2, "confirmed": 2, "amount": 12_500}},
    }
    assert batch.counts["differences"]["SHORT"] == 1
    assert sum(batch.counts["differences"].values()) == 1
    assert batch.counts["matching"]["matched_ref"] == 1
    [short] = differences(app)
    assert (short["type"], short["status"], short["attempt_id"]) == ("SHORT", "carried", two.id)
    assert (short["amount"], short["currency"]) == (-2_500, "CNY")
    assert short["first_batch_id"] == short["last_batch_id"] == batch.id
    assert suspense(app) == 2_500  # parked: the channel holds less than we booked

    before = {t.name: count(app, t) for t in (recon_batches, recon_differences, recon_actions)}
    before["entries"] = count(app, journal_entries)
    again = rec.run("wechatpay", DAY, by="someone-else")
    assert again.already
    assert (again.id, again.inputs_digest, again.run_by) == (batch.id, batch.inputs_digest, "ops")
    assert again.totals == batch.totals
    assert again.counts == batch.counts
    after = {t.name: count(app, t) for t in (recon_batches, recon_differences, recon_actions)}
    after["entries"] = count(app, journal_entries)
    assert after == before
    assert_books_balance(app)


def test_a_reissued_bill_makes_a_batch_that_supersedes_and_resolves_what_is_gone(
    app, gateway, channel, merchant, tmp_path
):
    one = paid(gateway, channel, merchant, "order-1", 10_000)
    two = paid(gateway, channel, merchant, "order-2", 2_500)
    rec = reconciler(app, tmp_path, gateway.payments)
    put_bill(rec, [line(one.id, 10_000, "4200-1")])
    first = rec.run("wechatpay", DAY, by="ops")
    [short] = differences(app)

    # The channel re-issues the day's bill with the missing line.
    put_bill(rec, [line(one.id, 10_000, "4200-1"), line(two.id, 2_500, "4200-2")], tag="-v2")
    second = rec.run("wechatpay", DAY, by="ops")
    assert second.id != first.id
    assert not second.already
    assert sum(second.counts["differences"].values()) == 0
    assert second.totals["lines"]["CNY"] == {"count": 2, "amount": 12_500, "fee": 75}
    with app.engine.connect() as conn:
        rows = conn.execute(select(recon_batches).order_by(recon_batches.c.started_at)).all()
    assert {r.id: r.superseded_by for r in rows} == {first.id: second.id, second.id: None}

    [gone] = differences(app)
    assert (gone["id"], gone["status"], gone["resolution"]) == (short["id"], "resolved", "rerun")
    rerun = actions(app, short["id"])[-1]
    assert (rerun["action"], rerun["actor"], rerun["batch_id"]) == ("rerun", "system", second.id)
    assert rerun["entry_id"] is not None  # the parking reversed
    assert suspense(app) == 0
    assert_books_balance(app)

    # The status shows the current batch only, and nothing open.
    report = review.status(app.engine, "wechatpay", as_of=DAY)
    assert [b.id for b in report.batches] == [second.id]
    assert report.open == []


def test_a_cut_off_short_is_resolved_when_the_next_days_bill_shows_it(
    app, gateway, channel, merchant, clock, tmp_path
):
    early = paid(gateway, channel, merchant, "order-1", 10_000)
    late = paid(gateway, channel, merchant, "order-2", 4_000)
    rec = reconciler(app, tmp_path, gateway.payments)
    put_bill(rec, [line(early.id, 10_000, "4200-1")])
    rec.run("wechatpay", DAY, by="scheduler")
    [short] = differences(app)
    assert short["status"] == "carried"
    assert short["attempt_id"] == late.id
    assert [a["action"] for a in actions(app, short["id"])] == ["carry"]

    clock.advance(timedelta(days=1))
    day2 = DAY + timedelta(days=1)
    # The channel booked it after its cut-off: it is on the next day's bill.
    put_bill(rec, [line(late.id, 4_000, "4200-2", day=day2)], day=day2)
    batch = rec.run("wechatpay", day2, by="scheduler")
    assert sum(batch.counts["differences"].values()) == 0
    [settled] = differences(app)
    assert (settled["status"], settled["resolution"]) == ("resolved", "resolve_carried")
    assert settled["resolved_at"] is not None
    assert [a["action"] for a in actions(app, short["id"])] == ["carry", "resolve_carried"]
    assert suspense(app) == 0
    assert_books_balance(app)


def test_a_short_still_missing_after_the_carry_days_breaks_into_review(
    app, gateway, channel, merchant, clock, tmp_path
):
    missing = paid(gateway, channel, merchant, "order-1", 60_000)
    rec = reconciler(app, tmp_path, gateway.payments, carry_days=2)
    put_bill(rec, [])
    rec.run("wechatpay", DAY, by="scheduler")
    for days in (1, 2):
        put_bill(rec, [], day=DAY + timedelta(days=days))
        rec.run("wechatpay", DAY + timedelta(days=days), by="scheduler")
        [short] = differences(app)
        assert short["attempt_id"] == missing.id
        if days == 1:
            assert (short["status"], short["alert"]) == ("carried", False)
    assert (short["status"], short["alert"]) == ("open", True)  # 600.00 is above 500.00
    assert [a["action"] for a in actions(app, short["id"])] == ["carry", "break"]
    assert suspense(app) == 60_000  # still parked while it is reviewed
    report = review.status(app.engine, "wechatpay", as_of=DAY + timedelta(days=5))
    [still] = report.open
    assert (still.id, still.age_days, still.our_amount) == (short["id"], 5, 60_000)
    assert report.to_dict()["alerts"] == 1
    assert_books_balance(app)


def test_a_day_without_a_statement_is_refused(app, gateway, tmp_path):
    rec = reconciler(app, tmp_path, gateway.payments)
    with pytest.raises(ReconError) as refused:
        rec.run("wechatpay", DAY, by="ops")
    assert refused.value.code == "STATEMENT_MISSING"
    with pytest.raises(ReconError) as nobody:
        rec.run("wechatpay", DAY, by=" ")
    assert nobody.value.code == "ACTOR_REQUIRED"
    assert count(app, recon_batches) == 0
