"""Internal reconciliation (R7) over the simulated marketplace day, on SQLite and PostgreSQL:
the clean day reports nothing; each planted break is reported with its code, and only that."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from clearhouse.bootstrap import App
from clearhouse.clock import FixedClock
from clearhouse.db.schema import (
    balances,
    ledger_requests,
    payment_attempts,
    payment_intents,
    refunds,
    withdrawals,
)
from clearhouse.reconciliation.internal import BreakCode, InternalReport, reconcile_day
from clearhouse.simulation.gateway_day import run_gateway_day


@contextmanager
def planted(app: App) -> Iterator[Connection]:
    """A transaction whose changes are rolled back after the check has read them."""
    with app.engine.connect() as conn:
        tx = conn.begin()
        try:
            yield conn
        finally:
            tx.rollback()


def days_of(app: App, first: date) -> list[date]:
    last = app.clock.now().astimezone(app.ledger.zone).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def report(conn: Connection, app: App, day: date) -> InternalReport:
    return reconcile_day(conn, day, app.ledger.zone)


def one_key(conn: Connection, pattern: str) -> str:
    key = conn.execute(
        select(ledger_requests.c.key)
        .where(ledger_requests.c.key.like(pattern), ledger_requests.c.status == "ok")
        .order_by(ledger_requests.c.key)
    ).scalar()
    assert key is not None, f"the simulated day has no {pattern} entry"
    return str(key)


def test_the_simulated_day_agrees_and_every_planted_break_is_reported(
    app: App, clock: FixedClock
) -> None:
    first = clock.now().astimezone(app.ledger.zone).date()
    run_gateway_day(app, clock, payments=16, seed=7)
    days = days_of(app, first)

    with app.engine.connect() as conn:
        reports = [report(conn, app, day) for day in days]
    assert all(r.ok for r in reports), [r.counts() for r in reports]
    day = first  # the day the story is told: every kind of record moved money on it
    clean = reports[0]
    families = {t.family for t in clean.totals}
    assert {"payment_paid", "payment_fee", "topup_paid", "withdrawal_hold", "transfer"} <= families
    for total in clean.totals:
        assert (total.records, total.records_amount) == (total.entries, total.entries_amount)
    assert all(debit == credit for debit, credit in clean.trial_balance.values())
    assert json.loads(json.dumps(clean.to_dict()))["ok"] is True
    # Nothing before the day: the scope is the day's records and requests.
    with app.engine.connect() as conn:
        assert report(conn, app, first - timedelta(days=1)).totals == ()

    def check(plant: Callable[[Connection], Any], expected: dict[str, int]) -> InternalReport:
        with planted(app) as conn:
            subject = plant(conn)
            found = report(conn, app, day)
        assert found.counts() == expected, subject
        assert not found.ok
        return found

    # A paid attempt's entry request is gone: the record lacks its entry, and the entry (still
    # in the journal) lacks its request in the ledger's own check.
    def drop_paid_request(conn: Connection) -> str:
        key = one_key(conn, "pay:att_%:paid")
        conn.execute(ledger_requests.delete().where(ledger_requests.c.key == key))
        return key

    found = check(drop_paid_request, {"record_without_entry": 1, "ledger.entry_without_request": 1})
    (missing,) = found.breaks
    assert missing.code is BreakCode.RECORD_WITHOUT_ENTRY
    assert (missing.family, missing.actual) == ("payment_paid", None)
    assert missing.subject == f"pay:{missing.record_id}:paid"
    assert missing.channel is not None
    assert isinstance(missing.expected, int)

    # The fee our order records differs from the fee entry booked.
    def alter_fee(conn: Connection) -> str:
        key = one_key(conn, "pay:att_%:fee")
        attempt_id = key.split(":")[1]
        intent_id = conn.execute(
            select(payment_attempts.c.intent_id).where(payment_attempts.c.id == attempt_id)
        ).scalar_one()
        conn.execute(
            update(payment_intents)
            .where(payment_intents.c.id == intent_id)
            .values(fee=payment_intents.c.fee + 1)
        )
        return key

    (fee,) = check(alter_fee, {"amount_mismatch": 1}).breaks
    assert fee.family == "payment_fee"
    assert isinstance(fee.expected, int)
    assert fee.expected == fee.actual + 1

    # A succeeded attempt set back to closed: its entries are against its state, and its order
    # is paid without a paid attempt.
    def unpay(conn: Connection) -> str:
        key = one_key(conn, "pay:att_%:paid")
        conn.execute(
            update(payment_attempts)
            .where(payment_attempts.c.id == key.split(":")[1])
            .values(status="CLOSED")
        )
        return key

    found = check(unpay, {"entry_against_state": 2, "order_state_mismatch": 1})
    assert {b.family for b in found.breaks} == {"payment_paid", "payment_fee", "order"}

    # The channel was asked for another sum than the order's.
    def alter_attempt_amount(conn: Connection) -> str:
        key = one_key(conn, "pay:att_%:paid")
        conn.execute(
            update(payment_attempts)
            .where(payment_attempts.c.id == key.split(":")[1])
            .values(amount=1)
        )
        return key

    (order,) = check(alter_attempt_amount, {"order_amount_mismatch": 1}).breaks
    assert order.actual == 1
    assert order.family == "order"

    # An entry under a record key whose record does not exist (the request renamed away from
    # its refund): one entry without record, one refund without its entry.
    def orphan(conn: Connection) -> str:
        key = one_key(conn, "refund:%:hold")
        conn.execute(
            update(ledger_requests)
            .where(ledger_requests.c.key == key)
            .values(key="refund:ref_nobody:hold")
        )
        return key

    found = check(orphan, {"entry_without_record": 1, "record_without_entry": 1})
    stray = next(b for b in found.breaks if b.code is BreakCode.ENTRY_WITHOUT_RECORD)
    assert (stray.subject, stray.family, stray.record_id) == (
        "refund:ref_nobody:hold",
        "refund_hold",
        None,
    )

    # A refund the order no longer counts; a withdrawal booked in another currency.
    def forget_refund(conn: Connection) -> str:
        refund_id = conn.execute(select(refunds.c.id).order_by(refunds.c.id).limit(1)).scalar()
        assert refund_id is not None, "the simulated day has no refund"
        intent_id = conn.execute(
            select(refunds.c.intent_id).where(refunds.c.id == refund_id)
        ).scalar_one()
        conn.execute(
            update(payment_intents).where(payment_intents.c.id == intent_id).values(refunded=0)
        )
        return str(refund_id)

    (refunded,) = check(forget_refund, {"order_refunded_mismatch": 1}).breaks
    assert refunded.actual == 0
    assert isinstance(refunded.expected, int)
    assert refunded.expected > 0

    def recurrency(conn: Connection) -> str:
        key = one_key(conn, "wdr:%:paid")
        conn.execute(
            update(withdrawals).where(withdrawals.c.id == key.split(":")[1]).values(currency="USD")
        )
        return key

    found = check(recurrency, {"currency_mismatch": 2})
    assert {(b.expected, b.actual) for b in found.breaks} == {("USD", "CNY")}

    # The books themselves: a balance row that no longer matches its journal.
    def skew_balance(conn: Connection) -> None:
        row = conn.execute(
            select(balances.c.fund_account_id, balances.c.shard)
            .where(balances.c.version > 0)
            .order_by(balances.c.fund_account_id, balances.c.shard)
            .limit(1)
        ).one()
        conn.execute(
            update(balances)
            .where(balances.c.fund_account_id == row.fund_account_id, balances.c.shard == row.shard)
            .values(debits_posted=balances.c.debits_posted + 1)
        )

    found = check(
        skew_balance,
        {
            "ledger.balance_vs_history": 1,
            "ledger.balance_vs_journal": 1,
            "ledger.trial_balance": 1,
        },
    )
    assert found.breaks == ()
