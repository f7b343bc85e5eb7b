"""Suggestions read from the database (SQLite and PostgreSQL): history of resolved differences,
our unconfirmed attempts for a LONG, open LONG lines for a SHORT."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from clearhouse.bootstrap import App
from clearhouse.db.schema import recon_batches, recon_differences
from clearhouse.db.transaction import run_in_transaction
from clearhouse.reconciliation.errors import ReconError
from clearhouse.reconciliation.suggest import suggest, suggest_open
from tests.gateway_support import MerchantFixture
from tests.integration.gateway.test_payments import request


def add_batch(app: App) -> str:
    now = app.clock.now()
    run_in_transaction(
        app.engine,
        lambda c: c.execute(
            recon_batches.insert().values(
                id="rb_1",
                channel="wechatpay",
                business_date=now.date(),
                inputs_digest="0" * 64,
                status="done",
                totals="{}",
                counts="{}",
                run_by="test",
                started_at=now,
                finished_at=now,
            )
        ),
    )
    return "rb_1"


def add_difference(app: App, id_: str, type_: str, amount: int, **values: Any) -> None:
    now = app.clock.now()
    row = {
        "id": id_,
        "channel": "wechatpay",
        "key": id_,
        "type": type_,
        "business_date": now.date(),
        "status": "open",
        "currency": "CNY",
        "amount": amount,
        "evidence": "{}",
        "alert": False,
        "first_batch_id": "rb_1",
        "last_batch_id": "rb_1",
        "first_seen_at": now,
    } | values
    run_in_transaction(app.engine, lambda c: c.execute(recon_differences.insert().values(row)))


def line(amount: int, at: Any, ref: str | None = None, txn: str = "4200000001") -> str:
    return json.dumps(
        {
            "line": {
                "source": "wechatpay",
                "amount": amount,
                "currency": "CNY",
                "occurred_at": at.isoformat(),
                "merchant_ref": ref,
                "channel_txn_id": txn,
                "memo": None,
            },
            "ours": None,
        }
    )


def test_open_differences_get_learned_causes_and_candidate_records(
    app: App, gateway: Any, merchant: MerchantFixture
) -> None:
    waiting = gateway.payments.create(merchant.id, request("order-1", 12_800))
    attempt = gateway.payments.attempts(waiting.id)[-1]
    now = app.clock.now()
    add_batch(app)
    # History: two LONGs like this one were refunded; one unlike it was marked paid.
    for n in (1, 2):
        add_difference(
            app,
            f"dif_old{n}",
            "LONG",
            12_000,
            status="resolved",
            resolution="refund",
            resolved_at=now,
            evidence=line(12_000, now, ref=attempt.id),
        )
    add_difference(
        app, "dif_old3", "LONG", -5, status="resolved", resolved_at=now, first_seen_at=now
    )
    run_in_transaction(
        app.engine,
        lambda c: c.execute(
            recon_differences.update()
            .where(recon_differences.c.id == "dif_old3")
            .values(resolution="mark_paid")
        ),
    )
    # Open: a LONG whose line names our pending attempt; a SHORT whose counterpart is a LONG
    # line of the same amount an hour later, with no reference.
    add_difference(
        app,
        "dif_long",
        "LONG",
        12_800,
        evidence=line(12_800, now + timedelta(minutes=5), ref=attempt.id.upper()),
    )
    ours = {
        "merchant_ref": "att_01jc5v8k9m2n3p4q5r6s7t8v9w",
        "attempt_id": "att_01jc5v8k9m2n3p4q5r6s7t8v9w",
        "amount": 3_300,
        "currency": "CNY",
        "confirmed_at": now.isoformat(),
    }
    add_difference(
        app, "dif_short", "SHORT", -3_300, evidence=json.dumps({"line": None, "ours": ours})
    )
    add_difference(
        app, "dif_long2", "LONG", 3_300, evidence=line(3_300, now + timedelta(hours=1), txn="42x")
    )

    with app.engine.connect() as conn:
        long_ = suggest(conn, "dif_long", now=now)
        everything = suggest_open(conn, now=now)
        only_alipay = suggest_open(conn, now=now, channel="alipay")
        with pytest.raises(ReconError) as missing:
            suggest(conn, "dif_nobody", now=now)
    assert missing.value.code == "DIFFERENCE_NOT_FOUND"
    assert only_alipay == []

    assert [c.cause for c in long_.causes] == ["refund", "mark_paid"]
    assert [(c.evidence, c.alike) for c in long_.causes] == [(2, 2), (1, 0)]
    assert long_.features.ours_ref
    (match,) = long_.matches
    assert (match.id, match.kind, match.amount_delta) == (attempt.id, "attempt", 0)
    assert match.points["reference"] == 40
    assert match.score >= 99

    by_id = {s.difference_id: s for s in everything}
    assert set(by_id) == {"dif_long", "dif_short", "dif_long2"}
    assert by_id["dif_long"] == long_
    short = by_id["dif_short"]
    assert [c.cause for c in short.causes] == ["resolve_carried", "write_off"]  # no history
    assert [m.id for m in short.matches] == ["dif_long2"]
    assert short.matches[0].points["amount"] == 40
    assert json.loads(json.dumps(short.to_dict()))["matches"][0]["id"] == "dif_long2"
