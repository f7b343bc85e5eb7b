"""A duplicate payment's extra trade refunded by its trade_no, over HTTP: the order's own trade
stays refundable, the extra one is refunded at most once in full."""

from __future__ import annotations

from dataclasses import replace

from clearhouse.gateway.channels.alipay.adapter import AlipayAdapter
from clearhouse.gateway.channels.port import ChannelStatus
from clearhouse.sandbox.alipay.simulator import AlipaySandbox
from clearhouse.sandbox.faults import Fault, FaultPlan
from tests.channels.alipay.conftest import cny, order
from tests.channels.alipay.test_adapter import refund


def test_an_extra_trade_is_refunded_by_its_trade_no(
    adapter: AlipayAdapter, sandbox: AlipaySandbox
) -> None:
    sandbox.faults = FaultPlan().force(Fault.DUPLICATE_PAYMENT, "dup-1")
    adapter.pay(order("dup-1"))
    trade = sandbox.pay("dup-1")
    [extra] = trade.extras
    asked = replace(refund("rcr-1", "dup-1", "12.34"), channel_txn_id=extra)

    done = adapter.refund(asked)
    assert (done.status, done.amount) == (ChannelStatus.SUCCEEDED, cny("12.34"))
    again = adapter.refund(asked)  # the same number: found, no money moves
    assert again.status is ChannelStatus.SUCCEEDED
    refunds = sandbox.state.refunds
    assert [(r.out_request_no, r.trade_no) for r in refunds.values()] == [("rcr-1", extra)]
    assert trade.extras[extra] == cny("12.34")
    lines = [x for day in sandbox.state.journal.values() for x in day if x.kind == "退款"]
    assert [(x.trade_no, x.amount) for x in lines] == [(extra, cny("-12.34"))]

    more = adapter.refund(replace(asked, refund_no="rcr-2"))
    assert (more.status, more.error_code) == (
        ChannelStatus.FAILED,
        "ACQ.REASON_TRADE_REFUND_FEE_ERR",
    )
    # The order's own trade is untouched and still refundable in full.
    assert (trade.status, trade.refunded) == ("TRADE_SUCCESS", cny("0.00"))
    own = adapter.refund(refund("rf-own", "dup-1", "12.34"))
    assert own.status is ChannelStatus.SUCCEEDED
    assert trade.status == "TRADE_CLOSED"
