"""The adapter against the served sandbox: every ChannelPort method, faults and notifications."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.port import (
    BadNotification,
    ChannelStatus,
    PayMethod,
    PayOrder,
    RefundOrder,
)
from clearhouse.gateway.channels.wechatpay.adapter import WechatPayAdapter
from clearhouse.gateway.channels.wechatpay.protocol import CHINA_TZ, WechatPayCredentials
from clearhouse.money import Money
from clearhouse.sandbox.faults import NO_FAULTS, Fault
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sandbox.wechatpay.state import WechatPaySandbox
from tests.channels.receiver import ScriptedReceiver
from tests.channels.wechatpay.conftest import parse_bill


def order(attempt_id: str, fen: int, clock: FixedClock, **kw: object) -> PayOrder:
    values: dict[str, object] = {
        "attempt_id": attempt_id,
        "amount": Money(fen, "CNY"),
        "description": "tea",
        "method": PayMethod.NATIVE,
        "notify_url": "https://merchant.example/notify",
        "expires_at": clock.now() + timedelta(minutes=30),
        **kw,
    }
    return PayOrder(**values)  # type: ignore[arg-type]


def refund_order(
    refund_no: str, attempt_id: str, fen: int, total: int, url: str = ""
) -> RefundOrder:
    return RefundOrder(
        refund_no,
        attempt_id,
        Money(fen, "CNY"),
        Money(total, "CNY"),
        "returned",
        url or "https://merchant.example/refund",
    )


def test_pay_query_close(adapter: WechatPayAdapter, clock: FixedClock) -> None:
    created = adapter.pay(order("att-000001", 1200, clock))
    assert created.status is ChannelStatus.PENDING
    assert created.credential is not None
    assert created.credential.startswith("weixin://")
    assert json.loads(created.raw)["code_url"] == created.credential

    pending = adapter.query("att-000001")
    assert (pending.status, pending.amount) == (ChannelStatus.PENDING, Money(1200, "CNY"))
    closed = adapter.close("att-000001")
    assert closed.status is ChannelStatus.CLOSED
    assert adapter.query("att-000001").status is ChannelStatus.CLOSED

    missing = adapter.query("att-missing")
    assert (missing.status, missing.error_code) == (ChannelStatus.FAILED, "ORDER_NOT_EXIST")


def test_jsapi_and_unsupported_requests(adapter: WechatPayAdapter, clock: FixedClock) -> None:
    jsapi = adapter.pay(order("att-jsapi1", 100, clock, method=PayMethod.JSAPI, payer_id="o-abc"))
    assert jsapi.status is ChannelStatus.PENDING
    assert jsapi.credential is not None
    assert jsapi.credential.startswith("wx")
    usd = adapter.pay(order("att-usd001", 100, clock, amount=Money(100, "USD")))
    assert (usd.status, usd.error_code) == (ChannelStatus.FAILED, "UNSUPPORTED_CURRENCY")
    page = adapter.pay(order("att-page01", 100, clock, method=PayMethod.PAGE))
    assert (page.status, page.error_code) == (ChannelStatus.FAILED, "UNSUPPORTED_METHOD")
    bad = adapter.pay(order("short", 100, clock))  # out_trade_no needs 6..32 characters
    assert (bad.status, bad.error_code) == (ChannelStatus.FAILED, "PARAM_ERROR")


def test_paid_order_answers(
    adapter: WechatPayAdapter, sandbox: WechatPaySandbox, clock: FixedClock
) -> None:
    first = order("att-000002", 1200, clock)
    adapter.pay(first)
    again = adapter.pay(first)  # a retry of the same request: the same code_url
    assert again.status is ChannelStatus.PENDING
    changed = adapter.pay(order("att-000002", 1300, clock))
    assert (changed.status, changed.error_code) == (ChannelStatus.UNKNOWN, "INVALID_REQUEST")

    paid = sandbox.pay("att-000002")
    result = adapter.query("att-000002")
    assert result.status is ChannelStatus.SUCCEEDED
    assert result.channel_txn_id == paid["transaction_id"]
    assert result.paid_at == clock.now()
    # Paying or closing a paid order is not a refusal: the caller must look (UNKNOWN).
    assert adapter.pay(first).error_code == "ORDERPAID"
    assert adapter.pay(first).status is ChannelStatus.UNKNOWN
    closing = adapter.close("att-000002")
    assert (closing.status, closing.error_code) == (ChannelStatus.UNKNOWN, "ORDERPAID")


def test_timeout_is_unknown_and_the_state_change_stands(
    adapter: WechatPayAdapter, sandbox: WechatPaySandbox, clock: FixedClock
) -> None:
    sandbox.faults = NO_FAULTS.force(Fault.TIMEOUT, "att-timeout")
    lost = adapter.pay(order("att-timeout", 500, clock))
    assert (lost.status, lost.error_code) == (ChannelStatus.UNKNOWN, "TIMEOUT")
    assert adapter.query("att-timeout").status is ChannelStatus.PENDING  # it was created
    sandbox.pay("att-timeout")
    assert adapter.query("att-timeout").status is ChannelStatus.SUCCEEDED


def test_network_failure_is_unknown(creds: WechatPayCredentials, clock: FixedClock) -> None:
    adapter = WechatPayAdapter(
        creds.merchant_view(), "http://127.0.0.1:9", timeout=0.5, clock=clock
    )
    result = adapter.query("att-000003")
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "NETWORK")
    adapter.close_client()


class _Tamper(httpx.BaseTransport):
    """A man in the middle who turns 100 fen into 900 (same length, signature untouched)."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        try:
            content = response.read().replace(b'"total":100', b'"total":900')
        finally:
            response.close()
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def close(self) -> None:
        self._inner.close()


def test_tampered_or_foreign_signature_is_unknown(
    creds: WechatPayCredentials, clock: FixedClock, served: ServedApp, sandbox: WechatPaySandbox
) -> None:
    with httpx.Client(base_url=served.base_url, transport=_Tamper(), timeout=2) as client:
        tampered = WechatPayAdapter(creds.merchant_view(), clock=clock, client=client)
        assert tampered.pay(order("att-000004", 100, clock)).status is ChannelStatus.PENDING
        sandbox.pay("att-000004")
        result = tampered.query("att-000004")  # its amount was altered on the way
        assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "BAD_SIGNATURE")
        assert '"total":900' in result.raw  # kept as evidence, never believed

    stranger = WechatPayCredentials.generate()
    wrong_key = WechatPayCredentials.from_dict(
        {**creds.merchant_view().to_dict(), "platform_public_key": stranger.platform_public_key}
    )
    adapter = WechatPayAdapter(wrong_key, served.base_url, clock=clock)
    result = adapter.query("att-000004")
    assert (result.status, result.error_code) == (ChannelStatus.UNKNOWN, "BAD_SIGNATURE")
    adapter.close_client()


def test_refunds(adapter: WechatPayAdapter, sandbox: WechatPaySandbox, clock: FixedClock) -> None:
    sandbox.instant_refunds = False
    adapter.pay(order("att-000005", 1000, clock))
    sandbox.pay("att-000005")

    first = adapter.refund(refund_order("rf-1", "att-000005", 300, 1000))
    assert (first.status, first.amount) == (ChannelStatus.PENDING, Money(300, "CNY"))
    retry = adapter.refund(refund_order("rf-1", "att-000005", 300, 1000))
    assert retry.channel_refund_id == first.channel_refund_id  # idempotent on out_refund_no
    assert adapter.query_refund("rf-1", "att-000005").status is ChannelStatus.PENDING
    assert sandbox.settle_refunds() == 1
    done = adapter.query_refund("rf-1", "att-000005")
    assert (done.status, done.refunded_at) == (ChannelStatus.SUCCEEDED, clock.now())

    too_much = adapter.refund(refund_order("rf-2", "att-000005", 701, 1000))
    assert (too_much.status, too_much.error_code) == (ChannelStatus.FAILED, "INVALID_REQUEST")
    unknown = adapter.query_refund("rf-none", "att-000005")
    assert (unknown.status, unknown.error_code) == (ChannelStatus.FAILED, "RESOURCE_NOT_EXISTS")
    no_order = adapter.refund(refund_order("rf-3", "att-nothing", 1, 1000))
    assert (no_order.status, no_order.error_code) == (ChannelStatus.FAILED, "RESOURCE_NOT_EXISTS")
    # The payment still queries as succeeded (WeChat says REFUND: "转入退款").
    assert adapter.query("att-000005").status is ChannelStatus.SUCCEEDED


def test_refund_after_a_year_is_refused(
    adapter: WechatPayAdapter, sandbox: WechatPaySandbox, clock: FixedClock
) -> None:
    adapter.pay(order("att-000006", 1000, clock))
    sandbox.pay("att-000006")
    clock.advance(timedelta(days=366))
    late = adapter.refund(refund_order("rf-late", "att-000006", 100, 1000))
    assert (late.status, late.error_code) == (ChannelStatus.FAILED, "INVALID_REQUEST")
    assert "期限" in late.raw


def test_notifications_are_delivered_retried_and_parsed(
    adapter: WechatPayAdapter,
    sandbox: WechatPaySandbox,
    notifier: Notifier,
    receiver: ScriptedReceiver,
    clock: FixedClock,
) -> None:
    adapter.pay(order("att-000007", 800, clock, notify_url=receiver.url))
    receiver.answers = [500]  # the merchant fails the first delivery
    sandbox.pay("att-000007")
    assert notifier.run_due() == 0
    clock.advance(timedelta(seconds=14))
    assert notifier.run_due() == 0  # not due before the 15 s retry
    clock.advance(timedelta(seconds=1))
    assert notifier.run_due() == 1
    assert [log.outcome for log in notifier.log] == ["refused: 500", "acked"]

    (h1, b1), (h2, b2) = receiver.received
    assert json.loads(b1)["id"] == json.loads(b2)["id"]  # a retry, signed afresh
    assert h1["wechatpay-nonce"] != h2["wechatpay-nonce"]
    note = adapter.parse_notification(h2, b2)
    assert note.attempt_id == "att-000007"
    assert note.payment is not None
    assert (note.payment.status, note.payment.amount) == (
        ChannelStatus.SUCCEEDED,
        Money(800, "CNY"),
    )
    assert json.loads(note.raw)["trade_state"] == "SUCCESS"

    adapter.refund(refund_order("rf-7", "att-000007", 800, 800, url=receiver.url))
    assert notifier.run_due() == 1
    refund_note = adapter.parse_notification(*receiver.received[-1])
    assert refund_note.refund_no == "rf-7"
    assert refund_note.refund is not None
    assert refund_note.refund.status is ChannelStatus.SUCCEEDED

    assert adapter.ack(True).status_code in (200, 204)
    failed = adapter.ack(False)
    assert (failed.status_code, json.loads(failed.body)["code"]) == (500, "FAIL")


def test_duplicate_and_lost_notifications(
    adapter: WechatPayAdapter,
    sandbox: WechatPaySandbox,
    notifier: Notifier,
    receiver: ScriptedReceiver,
    clock: FixedClock,
) -> None:
    sandbox.faults = NO_FAULTS.force(Fault.DUPLICATE_NOTIFICATION, "att-dup001").force(
        Fault.LOST_NOTIFICATION, "att-lost01"
    )
    for attempt in ("att-dup001", "att-lost01"):
        adapter.pay(order(attempt, 300, clock, notify_url=receiver.url))
        sandbox.pay(attempt)
    assert notifier.run_due() == 2
    notes = [adapter.parse_notification(h, b) for h, b in receiver.received]
    assert [n.attempt_id for n in notes] == ["att-dup001", "att-dup001"]
    assert notes[0].payment == notes[1].payment  # the same event twice: the caller dedups
    assert adapter.query("att-lost01").status is ChannelStatus.SUCCEEDED  # only a query tells


def test_bad_notifications_are_refused(
    adapter: WechatPayAdapter, sandbox: WechatPaySandbox, clock: FixedClock
) -> None:
    adapter.pay(order("att-000008", 300, clock))
    sandbox.pay("att-000008")
    body, headers = sandbox.payment_notification("att-000008")
    assert adapter.parse_notification(headers, body).attempt_id == "att-000008"
    bad_signature = {**headers, "Wechatpay-Signature": headers["Wechatpay-Signature"][::-1]}
    envelope = json.loads(body)
    envelope["resource"]["associated_data"] = "refund"
    cases = [
        (headers, body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCEED")),
        (bad_signature, body),
        ({k: v for k, v in headers.items() if k != "Wechatpay-Nonce"}, body),
    ]
    for bad_headers, bad_body in cases:
        with pytest.raises(BadNotification):
            adapter.parse_notification(bad_headers, bad_body)
    clock.advance(timedelta(minutes=6))  # a replay after the window
    with pytest.raises(BadNotification):
        adapter.parse_notification(headers, body)


def test_fees_round_half_up_and_show_in_the_bill(
    adapter: WechatPayAdapter, sandbox: WechatPaySandbox, clock: FixedClock
) -> None:
    # 0.6 %: 83 fen -> 0.498 -> 0; 84 -> 0.504 -> 1; 250 -> 1.5 -> 2; 1000 -> 6 (+1 WRONG_FEE).
    sandbox.faults = NO_FAULTS.force(Fault.WRONG_FEE, "att-fee1000")
    for attempt, fen in [
        ("att-fee83", 83),
        ("att-fee84", 84),
        ("att-fee250", 250),
        ("att-fee1000", 1000),
    ]:
        adapter.pay(order(attempt, fen, clock))
        sandbox.pay(attempt)
    # A partial refund returns its pro-rata share of the fee: 2 * 100 / 250 = 0.8 -> 1 fen.
    assert (
        adapter.refund(refund_order("rf-fee", "att-fee250", 100, 250)).status
        is ChannelStatus.PENDING
    )

    details, summary = parse_bill(
        adapter.download_bill("tradebill", clock.now().astimezone(CHINA_TZ).date())
    )
    fees = {(d["商户订单号"], d["交易状态"]): d["手续费"] for d in details}
    assert fees == {
        ("att-fee83", "SUCCESS"): "0.00",
        ("att-fee84", "SUCCESS"): "0.01",
        ("att-fee250", "SUCCESS"): "0.02",
        ("att-fee1000", "SUCCESS"): "0.07",
        ("att-fee250", "REFUND"): "-0.01",
    }
    refund_row = next(d for d in details if d["交易状态"] == "REFUND")
    payment_row = next(
        d for d in details if d["商户订单号"] == "att-fee250" and d["交易状态"] == "SUCCESS"
    )
    assert refund_row["微信订单号"] == payment_row["微信订单号"]
    assert (refund_row["商户退款单号"], refund_row["退款金额"]) == ("rf-fee", "1.00")
    assert summary == {
        "总交易单数": "5",
        "应结订单总金额": "14.17",
        "退款总金额": "1.00",
        "充值券退款总金额": "0.00",
        "手续费总金额": "0.09",
        "订单总金额": "14.17",
        "申请退款总金额": "1.00",
    }


def test_late_result_and_duplicate_payment_in_bills(
    adapter: WechatPayAdapter, sandbox: WechatPaySandbox, clock: FixedClock
) -> None:
    sandbox.faults = NO_FAULTS.force(Fault.LATE_RESULT, "att-late01").force(
        Fault.DUPLICATE_PAYMENT, "att-twice1"
    )
    for attempt in ("att-late01", "att-twice1"):
        adapter.pay(order(attempt, 500, clock))
        sandbox.pay(attempt)
    today = clock.now().astimezone(CHINA_TZ).date()
    details, _ = parse_bill(adapter.download_bill("tradebill", today))
    assert [d["商户订单号"] for d in details] == ["att-twice1", "att-twice1"]
    first, second = (d["微信订单号"] for d in details)
    assert first != second
    assert adapter.query("att-twice1").channel_txn_id == first  # the query shows the first

    late, _ = parse_bill(adapter.download_bill("tradebill", today + timedelta(days=1)))
    assert [d["商户订单号"] for d in late] == ["att-late01"]
    assert late[0]["交易时间"].endswith("00:00:05")


def test_control_routes_and_auto_pay(
    adapter: WechatPayAdapter, sandbox: WechatPaySandbox, served: ServedApp, clock: FixedClock
) -> None:
    adapter.pay(order("att-http01", 100, clock))
    paid = httpx.post(f"{served.base_url}/sandbox/orders/att-http01/pay")
    assert paid.json()["trade_state"] == "SUCCESS"
    again = httpx.post(f"{served.base_url}/sandbox/orders/att-http01/pay")
    assert (again.status_code, again.json()["code"]) == (400, "ORDERPAID")

    plan = {"seed": 7, "rates_ppm": {"timeout": 1000}, "forced": {"wrong_fee": ["att-x"]}}
    assert httpx.put(f"{served.base_url}/sandbox/faults", json=plan).status_code == 200
    assert httpx.get(f"{served.base_url}/sandbox/faults").json() == plan
    assert sandbox.faults.hits(Fault.WRONG_FEE, "att-x")
    bad = httpx.put(f"{served.base_url}/sandbox/faults", json={"forced": {"nope": []}})
    assert bad.status_code == 400

    sandbox.faults, sandbox.auto_pay = NO_FAULTS, True
    adapter.pay(order("att-auto01", 100, clock))
    assert adapter.query("att-auto01").status is ChannelStatus.SUCCEEDED
