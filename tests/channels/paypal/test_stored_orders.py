"""A PayPal order found again by an adapter that did not create it (after a restart, or in
another worker): the order id is read from the approval link the gateway stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.paypal.protocol import PaypalCredentials, order_id_from_link
from clearhouse.gateway.channels.port import ChannelStatus, RefundOrder
from clearhouse.sandbox.paypal import PaypalSandbox
from clearhouse.sandbox.serving import ServedApp
from tests.channels.paypal.conftest import pay_order, usd

Fresh = Callable[[], PaypalAdapter]


@pytest.fixture
def links() -> dict[str, str]:
    """What the gateway stored: attempt id -> the credential of its create answer."""
    return {}


@pytest.fixture
def fresh(
    creds: PaypalCredentials, clock: FixedClock, served: ServedApp, links: dict[str, str]
) -> Iterator[Fresh]:
    """A new adapter each call, with nothing in memory but the stored links to read."""
    made: list[PaypalAdapter] = []

    def make() -> PaypalAdapter:
        adapter = PaypalAdapter(
            creds.merchant_view(), served.base_url, timeout=0.5, clock=clock, stored_link=links.get
        )
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close_client()


def refund_order(refund_no: str, attempt_id: str, amount: str) -> RefundOrder:
    return RefundOrder(
        refund_no, attempt_id, usd(amount), usd("10.00"), "returned", "https://merchant.example/n"
    )


def test_an_order_is_queried_captured_and_refunded_by_adapters_that_did_not_create_it(
    adapter: PaypalAdapter, sandbox: PaypalSandbox, fresh: Fresh, links: dict[str, str]
) -> None:
    created = adapter.pay(pay_order("att-st-1"))
    assert created.credential is not None
    links["att-st-1"] = created.credential
    adapter.close_client()  # the process that created it is gone

    pending = fresh().query("att-st-1")
    assert (pending.status, pending.channel_txn_id) == (
        ChannelStatus.PENDING,
        created.channel_txn_id,
    )
    sandbox.approve(created.channel_txn_id or "")
    paid = fresh().query("att-st-1")  # approved: this query captures
    assert (paid.status, paid.amount) == (ChannelStatus.SUCCEEDED, usd("10.00"))
    assert len(sandbox.captures) == 1
    assert fresh().query("att-st-1").channel_txn_id == paid.channel_txn_id
    assert len(sandbox.captures) == 1

    refunded = fresh().refund(refund_order("rf-st-1", "att-st-1", "4.00"))
    assert (refunded.status, refunded.amount) == (ChannelStatus.SUCCEEDED, usd("4.00"))
    found = fresh().query_refund("rf-st-1", "att-st-1")  # by our number, on the order
    assert (found.status, found.channel_refund_id) == (
        ChannelStatus.SUCCEEDED,
        refunded.channel_refund_id,
    )
    # Paid, so a close from elsewhere must not call it closed.
    completed = fresh().close("att-st-1")
    assert (completed.status, completed.error_code) == (ChannelStatus.UNKNOWN, "ORDER_COMPLETED")


def test_a_close_by_another_adapter_reads_the_order_and_never_captures_it(
    adapter: PaypalAdapter, sandbox: PaypalSandbox, fresh: Fresh, links: dict[str, str]
) -> None:
    created = adapter.pay(pay_order("att-st-2"))
    links["att-st-2"] = created.credential or ""
    closer = fresh()
    closed = closer.close("att-st-2")
    assert (closed.status, closed.error_code) == (ChannelStatus.CLOSED, None)
    assert closed.channel_txn_id == created.channel_txn_id  # it read the order, not a guess
    sandbox.approve(created.channel_txn_id or "")
    assert closer.query("att-st-2").status is ChannelStatus.CLOSED
    assert not sandbox.captures


def test_without_a_stored_link_the_order_stays_unknown(
    adapter: PaypalAdapter, fresh: Fresh, links: dict[str, str]
) -> None:
    adapter.pay(pay_order("att-st-3"))
    result = fresh().query("att-st-3")
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "ORDER_ID_UNKNOWN")
    links["att-st-4"] = "https://www.paypal.com/checkoutnow"  # a link without an order id
    result = fresh().query("att-st-4")
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "ORDER_ID_UNKNOWN")


@pytest.mark.parametrize(
    ("link", "order_id"),
    [
        ("https://www.paypal.com/checkoutnow?token=5O190127TN364715T", "5O190127TN364715T"),
        ("https://www.sandbox.paypal.com/checkoutnow?token=8AB&useraction=PAY_NOW", "8AB"),
        ("https://www.paypal.com/checkoutnow", None),
        ("https://www.paypal.com/checkoutnow?token=A&token=B", None),
        ("https://www.paypal.com/checkoutnow?token=..%2Fcaptures%2FX", None),
        ("weixin://wxpay/bizpayurl?pr=abc", None),
    ],
)
def test_the_order_id_of_an_approval_link(link: str, order_id: str | None) -> None:
    assert order_id_from_link(link) == order_id
