"""The adapter against the sandbox over real HTTP: every ChannelPort call and its mapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.alipay.adapter import AlipayAdapter
from clearhouse.gateway.channels.alipay.protocol import AlipayCredentials
from clearhouse.gateway.channels.port import ChannelStatus, PayMethod, RefundOrder
from clearhouse.money import Money
from clearhouse.sandbox.alipay import AlipaySandbox, PayerError, create_app
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.serving import ServedApp
from tests.channels.tamper import Tamper

from .conftest import START, cny, order


def refund(refund_no: str, attempt_id: str, amount: str, total: str = "12.34") -> RefundOrder:
    return RefundOrder(refund_no, attempt_id, cny(amount), cny(total), "不想要了", "")


def test_native_pay_query_and_payment(adapter: AlipayAdapter, sandbox: AlipaySandbox) -> None:
    result = adapter.pay(order("o-1"))
    assert result.status is ChannelStatus.PENDING
    assert result.credential
    assert result.credential.endswith("/sandbox/qr/o-1")
    # Nobody scanned the code yet: Alipay answers TRADE_NOT_EXIST, which is still pending.
    unscanned = adapter.query("o-1")
    assert (unscanned.status, unscanned.error_code) == (
        ChannelStatus.PENDING,
        "ACQ.TRADE_NOT_EXIST",
    )
    sandbox.scan("o-1")
    assert adapter.query("o-1").status is ChannelStatus.PENDING
    trade = sandbox.pay("o-1")
    paid = adapter.query("o-1")
    assert paid.status is ChannelStatus.SUCCEEDED
    assert paid.amount == cny("12.34")
    assert paid.paid_at == START
    assert paid.channel_txn_id == trade.trade_no
    # Creating the same order again after payment: the trade is paid, so ask the query.
    again = adapter.pay(order("o-1"))
    assert (again.status, again.error_code) == (ChannelStatus.UNKNOWN, "ACQ.TRADE_HAS_SUCCESS")


def test_refusals_before_any_call(adapter: AlipayAdapter) -> None:
    jsapi = adapter.pay(order("o-2", method=PayMethod.JSAPI))
    assert (jsapi.status, jsapi.error_code) == (ChannelStatus.FAILED, "UNSUPPORTED_METHOD")
    usd = replace(order("o-3"), amount=Money(100, "USD"))
    assert adapter.pay(usd).error_code == "UNSUPPORTED_CURRENCY"


def test_close(adapter: AlipayAdapter, sandbox: AlipaySandbox) -> None:
    adapter.pay(order("scanned"))
    sandbox.scan("scanned")
    assert adapter.close("scanned").status is ChannelStatus.CLOSED
    assert adapter.query("scanned").status is ChannelStatus.CLOSED
    # Unscanned: Alipay does not know it; closed for us, and the code can no longer be paid.
    adapter.pay(order("unscanned"))
    closed = adapter.close("unscanned")
    assert (closed.status, closed.error_code) == (ChannelStatus.CLOSED, "ACQ.TRADE_NOT_EXIST")
    with pytest.raises(PayerError):
        sandbox.pay("unscanned")
    # A paid trade cannot be closed: the answer asks for a query, not a final failure.
    adapter.pay(order("paid"))
    sandbox.pay("paid")
    refused = adapter.close("paid")
    assert (refused.status, refused.error_code) == (ChannelStatus.UNKNOWN, "ACQ.TRADE_STATUS_ERROR")


def test_expired_trade_reads_closed(
    adapter: AlipayAdapter, sandbox: AlipaySandbox, clock: FixedClock
) -> None:
    adapter.pay(order("late"))
    sandbox.scan("late")
    clock.advance(timedelta(minutes=31))
    assert adapter.query("late").status is ChannelStatus.CLOSED
    with pytest.raises(PayerError):
        sandbox.pay("late")


def test_page_pay_builds_a_signed_cashier_url(
    adapter: AlipayAdapter, sandbox: AlipaySandbox, served: ServedApp
) -> None:
    result = adapter.pay(order("page-1", method=PayMethod.PAGE))
    assert result.status is ChannelStatus.PENDING
    assert sandbox.trade("page-1") is None  # no call yet: the buyer's browser makes it
    assert result.credential is not None
    page = httpx.get(result.credential)
    assert page.status_code == 200
    assert "洗衣订单" in page.text
    assert "12.34" in page.text
    assert adapter.query("page-1").status is ChannelStatus.PENDING
    assert httpx.post(f"{served.base_url}/sandbox/orders/page-1/pay").is_success
    assert adapter.query("page-1").status is ChannelStatus.SUCCEEDED


def test_refunds(adapter: AlipayAdapter, sandbox: AlipaySandbox) -> None:
    adapter.pay(order("r-1"))
    sandbox.pay("r-1")
    first = adapter.refund(refund("rf-1", "r-1", "2.34"))
    assert (first.status, first.amount) == (ChannelStatus.SUCCEEDED, cny("2.34"))
    assert first.refunded_at == START
    # A retry with the same refund_no is the same refund: no second money movement.
    retry = adapter.refund(refund("rf-1", "r-1", "2.34"))
    assert (retry.status, retry.amount) == (ChannelStatus.SUCCEEDED, cny("2.34"))
    trade = sandbox.trade("r-1")
    assert trade is not None
    assert trade.refunded == cny("2.34")
    too_much = adapter.refund(refund("rf-2", "r-1", "10.01"))
    assert (too_much.status, too_much.error_code) == (
        ChannelStatus.FAILED,
        "ACQ.REASON_TRADE_REFUND_FEE_ERR",
    )
    found = adapter.query_refund("rf-1", "r-1")
    assert (found.status, found.amount) == (ChannelStatus.SUCCEEDED, cny("2.34"))
    missing = adapter.query_refund("rf-2", "r-1")
    assert (missing.status, missing.error_code) == (ChannelStatus.FAILED, "REFUND_NOT_FOUND")
    rest = adapter.refund(refund("rf-3", "r-1", "10.00"))
    assert rest.status is ChannelStatus.SUCCEEDED
    # Refunded in full the trade reads TRADE_CLOSED, but it was paid: the payment stands.
    assert adapter.query("r-1").status is ChannelStatus.SUCCEEDED
    unknown_trade = adapter.refund(refund("rf-9", "nope", "1.00"))
    assert (unknown_trade.status, unknown_trade.error_code) == (
        ChannelStatus.FAILED,
        "ACQ.TRADE_NOT_EXIST",
    )


def test_refund_after_the_refund_window(
    adapter: AlipayAdapter, sandbox: AlipaySandbox, clock: FixedClock
) -> None:
    adapter.pay(order("old"))
    sandbox.pay("old")
    clock.advance(timedelta(days=91))
    late = adapter.refund(refund("rf-old", "old", "1.00"))
    assert (late.status, late.error_code) == (ChannelStatus.FAILED, "ACQ.TRADE_HAS_FINISHED")
    assert adapter.query("old").status is ChannelStatus.SUCCEEDED  # TRADE_FINISHED


def test_timeout_fault_then_query(
    creds: AlipayCredentials, sandbox: AlipaySandbox, served: ServedApp, clock: FixedClock
) -> None:
    sandbox.faults = FaultPlan().force(Fault.TIMEOUT, "slow")
    impatient = AlipayAdapter(
        creds.merchant_view(), base_url=served.base_url, timeout=0.3, clock=clock
    )
    result = impatient.pay(order("slow"))
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "TIMEOUT")
    sandbox.pay("slow")  # the precreate stood although its answer never arrived
    assert impatient.query("slow").status is ChannelStatus.SUCCEEDED
    impatient.close_client()


@contextmanager
def tampered(
    creds: AlipayCredentials, served: ServedApp, old: bytes, new: bytes
) -> Iterator[AlipayAdapter]:
    with httpx.Client(transport=Tamper(old, new), timeout=5) as client:
        yield AlipayAdapter(creds.merchant_view(), base_url=served.base_url, client=client)


def test_tampered_answer_is_unknown(creds: AlipayCredentials, served: ServedApp) -> None:
    with tampered(creds, served, b'"out_trade_no":"t-1"', b'"out_trade_no":"t-2"') as adapter:
        result = adapter.pay(order("t-1"))
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "BAD_SIGNATURE")
    with tampered(creds, served, b"{", b"[") as garbage:
        assert garbage.query("t-1").error_code == "BAD_RESPONSE"


def test_whitespace_outside_the_signed_object_is_fine(
    creds: AlipayCredentials, served: ServedApp
) -> None:
    with tampered(creds, served, b',"sign":', b' ,\n  "sign" : ') as adapter:
        assert adapter.pay(order("w-1")).status is ChannelStatus.PENDING


def test_wrong_app_key_is_refused_by_the_sandbox(
    creds: AlipayCredentials, served: ServedApp
) -> None:
    other = AlipayCredentials.generate(app_id=creds.app_id)
    impostor = AlipayAdapter(
        AlipayCredentials(
            creds.app_id,
            creds.pid,
            other.app_private_key_pem,
            creds.app_public_key_pem,
            None,
            creds.alipay_public_key_pem,
        ),
        base_url=served.base_url,
    )
    result = impostor.query("x")
    impostor.close_client()
    assert (result.status, result.error_code) == (ChannelStatus.FAILED, "isv.invalid-signature")


def test_network_failure_is_unknown(creds: AlipayCredentials) -> None:
    adapter = AlipayAdapter(creds.merchant_view(), base_url="http://127.0.0.1:9", timeout=1)
    result = adapter.query("o")
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "NETWORK")
    assert adapter.refund(refund("r", "o", "1.00")).status is ChannelStatus.UNKNOWN
    adapter.close_client()


def test_auto_pay(creds: AlipayCredentials, clock: FixedClock) -> None:
    sandbox = AlipaySandbox(creds, clock, auto_pay=True)
    with ServedApp(create_app(sandbox)) as served:
        adapter = AlipayAdapter(creds.merchant_view(), base_url=served.base_url, clock=clock)
        assert adapter.pay(order("auto")).status is ChannelStatus.PENDING
        assert adapter.query("auto").status is ChannelStatus.SUCCEEDED
        adapter.close_client()
