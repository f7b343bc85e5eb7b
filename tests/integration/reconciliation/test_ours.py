"""Our side of reconciliation exported from a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from clearhouse.gateway.groups import CombinedRequest, Order
from clearhouse.gateway.model import Settlement
from clearhouse.money import Money
from clearhouse.reconciliation.matching import match
from clearhouse.reconciliation.ours import OURS, day_window, export_ours, iter_ours
from clearhouse.reconciliation.statements.model import LINES
from tests.gateway_support import add_merchant
from tests.integration.gateway.test_payments import request, settle_via_notification

DAY = date(2026, 11, 2)  # the tests' clock starts at 09:00 Beijing time on this day


def pay(gateway, channel, merchant, order, amount):  # type: ignore[no-untyped-def]
    intent = gateway.payments.create(merchant.id, request(order, amount))
    settle_via_notification(gateway, channel, gateway.payments.attempts(intent.id)[-1].id)
    return gateway.payments.get(merchant.id, intent.id)


def refund(gateway, channel, merchant, intent, amount):  # type: ignore[no-untyped-def]
    return refund_intent(gateway, channel, merchant, intent.id, amount)


def refund_intent(gateway, channel, merchant, intent_id, amount):  # type: ignore[no-untyped-def]
    made = gateway.refunds.create(merchant.id, intent_id, Money(amount, "CNY"), "returned")
    channel.settle_refund(made.id)
    gateway.refunds.query(made.id)
    return made


def test_a_day_of_payments_and_refunds_exports_as_the_channel_should_show_it(
    app, gateway, channel, merchant, clock
):
    paid = pay(gateway, channel, merchant, "order-1", 10_000)
    first = refund(gateway, channel, merchant, paid, 3_333)
    clock.advance(timedelta(minutes=5))
    second = refund(gateway, channel, merchant, paid, 6_667)
    waiting = gateway.payments.create(merchant.id, request("order-2", 5_000))
    clock.advance(timedelta(days=1))  # the next Beijing day: not in the export
    pay(gateway, channel, merchant, "order-3", 2_000)

    start, end = day_window("wechatpay", DAY)
    assert (start, end) == (
        datetime(2026, 11, 1, 16, tzinfo=UTC),
        datetime(2026, 11, 2, 16, tzinfo=UTC),
    )
    with app.engine.connect() as conn:
        table = export_ours(conn, "wechatpay", start, end)
        batches = list(iter_ours(conn, "wechatpay", start, end, batch_rows=1))
        assert export_ours(conn, "alipay", start, end).num_rows == 0
    assert table.schema == OURS
    assert pa.Table.from_batches(batches, schema=OURS).equals(table)
    assert max(b.num_rows for b in batches) == 1

    attempt = gateway.payments.attempts(paid.id)[-1]
    pending = gateway.payments.attempts(waiting.id)[-1]
    rows = {r["merchant_ref"]: r for r in table.to_pylist()}
    assert set(rows) == {attempt.id, pending.id, first.id, second.id}
    payment = rows[attempt.id]
    assert payment["kind"] == "payment"
    assert payment["status"] == "refunded"  # in full, by the two refunds
    assert (payment["amount"], payment["expected_fee"], payment["currency"]) == (10_000, 60, "CNY")
    assert payment["intent_id"] == paid.id
    assert payment["merchant_order_id"] == "order-1"
    assert payment["paid_by_attempt_id"] == attempt.id
    assert payment["channel_txn_id"] == attempt.channel_txn_id
    assert payment["business_date"] == DAY
    assert payment["confirmed_at"] is not None
    open_ = rows[pending.id]
    assert (open_["status"], open_["expected_fee"], open_["confirmed_at"]) == (
        "pending",
        None,
        None,
    )
    one, two = rows[first.id], rows[second.id]
    assert (one["kind"], one["attempt_id"], one["refund_id"]) == ("refund", attempt.id, first.id)
    # The gateway's own fee shares (20 and 40 fen) and the basis they were prorated on.
    assert (one["amount"], one["expected_fee"], one["refunded_before"]) == (-3_333, -20, 0)
    assert (two["amount"], two["expected_fee"], two["refunded_before"]) == (-6_667, -40, 3_333)
    assert one["parent_amount"] == two["parent_amount"] == 10_000
    assert one["channel_refund_id"] is not None
    assert one["status"] == two["status"] == "succeeded"

    # The channel's bill for the day, as a parser would normalise it: everything matches, and
    # the order still waiting for its payer is no difference.
    def bill_line(r, n):  # type: ignore[no-untyped-def]
        return {
            "source": "wechatpay",
            "account": "1900000109",
            "business_date": DAY,
            "occurred_at": r["confirmed_at"],
            "kind": r["kind"],
            "channel_txn_id": r["channel_txn_id"],
            "channel_refund_id": r["channel_refund_id"],
            "merchant_ref": r["merchant_ref"],
            "parent_ref": r["attempt_id"] if r["kind"] == "refund" else None,
            "status": "SUCCESS",
            "currency": "CNY",
            "amount": r["amount"],
            "fee": r["expected_fee"],
            "net": r["amount"] - r["expected_fee"],
            "payout_id": None,
            "memo": None,
            "line_no": n,
        }

    moved = [r for r in table.to_pylist() if r["confirmed_at"] is not None]
    lines = pa.Table.from_pylist([bill_line(r, n) for n, r in enumerate(moved, 1)], schema=LINES)
    result = match(lines, table)
    assert result.differences.num_rows == 0
    assert result.counts["matched_ref"] == 3


def test_reporting_zone_days_follow_daylight_saving():
    # 1 November 2026 is the day Los Angeles leaves daylight saving time: 25 hours long.
    start, end = day_window("stripe", date(2026, 11, 1))
    assert end - start == timedelta(hours=25)
    assert start == datetime(2026, 11, 1, 7, tzinfo=UTC)
    start, end = day_window("paypal", date(2026, 11, 1), zone="Europe/Berlin")
    assert (start, end - start) == (datetime(2026, 10, 31, 23, tzinfo=UTC), timedelta(hours=24))


def test_a_combined_payment_is_one_channel_order_with_its_orders_fees_added_up(
    app, gateway, channel, merchant
):
    seller = add_merchant(app, gateway, name="Tea Farm", parent_id=merchant.id)
    group = gateway.groups.create(
        merchant.id,
        CombinedRequest(
            "cart-1",
            (
                Order("o-1", Money(6_000, "CNY"), "Pu'er cake"),
                Order("o-2", Money(4_001, "CNY"), "Gaiwan", seller.id),
            ),
            "wechatpay",
            "native",
            Settlement.ESCROW,
        ),
    )
    [order] = channel.orders.values()
    settle_via_notification(gateway, channel, order.attempt_id)
    second = next(p for p in gateway.groups.view(group)["payments"] if p["amount"] == 4_001)
    made = refund_intent(gateway, channel, merchant, second["id"], 2_000)

    with app.engine.connect() as conn:
        table = export_ours(conn, "wechatpay", *day_window("wechatpay", DAY))
    rows = {r["merchant_ref"]: r for r in table.to_pylist()}
    assert set(rows) == {order.attempt_id, made.id}
    payment = rows[order.attempt_id]
    # 0.6% of 100.01 is 60 fen, booked 36 + 24 on the two orders: the channel charged 60.
    assert (payment["amount"], payment["expected_fee"], payment["status"]) == (
        10_001,
        60,
        "succeeded",
    )
    share = rows[made.id]
    assert (share["amount"], share["expected_fee"], share["parent_amount"]) == (-2_000, -12, 10_001)
