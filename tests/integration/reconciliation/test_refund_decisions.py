"""Which differences reconciliation refunds to the payer (R5), on SQLite and PostgreSQL: a long
on a closed order is refunded by its own transaction; a long on an order awaiting payment is
still marked paid; a channel the refund port does not cover leaves them in review."""

from __future__ import annotations

from dataclasses import dataclass, field

from clearhouse.gateway.channels.port import ChannelStatus, RefundOrder, RefundResult
from clearhouse.gateway.model import IntentStatus
from clearhouse.reconciliation import handling
from tests.integration.reconciliation.batch_support import (
    DAY,
    actions,
    assert_books_balance,
    differences,
    line,
    paid,
    pending,
    put_bill,
    reconciler,
    suspense,
)


@dataclass
class Port:
    """A channel that takes every refund at once, and remembers what it was asked."""

    channels: frozenset[str] = frozenset({"wechatpay"})
    asked: list[tuple[str, RefundOrder]] = field(default_factory=list)

    def covers(self, channel: str) -> bool:
        return channel in self.channels

    def refund_transaction(self, channel: str, order: RefundOrder) -> RefundResult:
        self.asked.append((channel, order))
        return RefundResult(ChannelStatus.SUCCEEDED, "{}", channel_refund_id="50-1")


def test_a_long_on_a_closed_order_is_refunded_by_its_transaction(
    app, gateway, channel, merchant, tmp_path
):
    closed = pending(gateway, merchant, "order-1", 3_000)
    gateway.payments.close(merchant.id, closed.intent_id)
    waiting = pending(gateway, merchant, "order-2", 2_000)
    port = Port()
    rec = reconciler(app, tmp_path, gateway.payments)
    rec.refunds = port
    put_bill(rec, [line(closed.id, 3_000, "4200-closed"), line(waiting.id, 2_000, "4200-late")])
    rec.run("wechatpay", DAY, by="scheduler")

    found = {d["attempt_id"]: d for d in differences(app)}
    long = found[closed.id]
    assert (long["status"], long["resolution"]) == ("resolved", "refunded")
    assert found[waiting.id]["resolution"] == "mark_paid"  # awaiting payment: not refunded
    [(name, order)] = port.asked
    assert name == "wechatpay"
    assert (order.channel_txn_id, order.attempt_id) == ("4200-closed", closed.id)
    assert (order.refund.amount, order.total.amount) == (3_000, 3_000)
    assert order.refund_no == handling.refund_no(long["id"])
    assert [a["action"] for a in actions(app, long["id"])] == ["refund", "refunded"]
    assert gateway.payments.get(merchant.id, closed.intent_id).status is IntentStatus.CLOSED
    assert suspense(app) == 0
    assert_books_balance(app)
    assert rec.send_refunds() == []
    assert len(port.asked) == 1


def test_an_uncovered_channel_leaves_the_refund_to_review(
    app, gateway, channel, merchant, tmp_path
):
    twice = paid(gateway, channel, merchant, "order-1", 5_000)
    port = Port(channels=frozenset({"alipay"}))
    rec = reconciler(app, tmp_path, gateway.payments)
    rec.refunds = port
    put_bill(
        rec,
        [line(twice.id, 5_000, twice.channel_txn_id), line(twice.id, 5_000, "4200-again")],
    )
    rec.run("wechatpay", DAY, by="scheduler")
    [duplicate] = differences(app)
    assert (duplicate["type"], duplicate["status"]) == ("DUPLICATE_PAYMENT", "open")
    assert "refund to payer required" in actions(app, duplicate["id"])[0]["reason"]
    assert port.asked == []
    assert suspense(app) == -5_000
    assert_books_balance(app)
