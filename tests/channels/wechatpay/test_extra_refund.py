"""A duplicate payment's second transaction refunded by its transaction_id, over HTTP: the
order's own payment stays refundable, the extra one is refunded at most once in full."""

from __future__ import annotations

from dataclasses import replace

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.port import ChannelStatus
from clearhouse.gateway.channels.wechatpay.adapter import WechatPayAdapter
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.wechatpay.state import WechatPaySandbox
from tests.channels.wechatpay.test_adapter import order, refund_order


def test_an_extra_transaction_is_refunded_by_its_id(
    adapter: WechatPayAdapter, sandbox: WechatPaySandbox, clock: FixedClock
) -> None:
    sandbox.faults = FaultPlan().force(Fault.DUPLICATE_PAYMENT, "att-dup001")
    adapter.pay(order("att-dup001", 1200, clock))
    sandbox.pay("att-dup001")
    [extra] = sandbox.orders["att-dup001"].extra_transactions
    asked = replace(refund_order("rcr-1", "att-dup001", 1200, 1200, url=""), notify_url="")
    asked = replace(asked, channel_txn_id=extra)

    first = adapter.refund(asked)
    assert first.status is ChannelStatus.PENDING  # WeChat answers PROCESSING
    again = adapter.refund(asked)  # the same number: the same refund, settled by now
    assert again.status is ChannelStatus.SUCCEEDED
    assert again.channel_refund_id == first.channel_refund_id
    assert [(r.out_refund_no, r.transaction_id) for r in sandbox.refunds.values()] == [
        ("rcr-1", extra)
    ]
    assert adapter.query_refund("rcr-1", "att-dup001").status is ChannelStatus.SUCCEEDED
    [line] = [e for e in sandbox.journal if e.kind == "REFUND"]
    assert (line.transaction_id, line.amount, line.fee) == (extra, 1200, -7)  # fee returned

    more = adapter.refund(replace(asked, refund_no="rcr-2"))
    assert (more.status, more.error_code) == (ChannelStatus.FAILED, "INVALID_REQUEST")
    # The order's own payment is untouched and still refundable in full.
    paid = sandbox.orders["att-dup001"]
    assert (paid.trade_state, paid.refunded) == ("SUCCESS", 0)
    own = adapter.refund(refund_order("rf-own", "att-dup001", 1200, 1200))
    assert own.status is ChannelStatus.PENDING
    assert sandbox.refunds["rf-own"].transaction_id == ""
