"""The wechatpayv3 SDK, unchanged but for its gateway URL, drives the sandbox over real HTTP."""

from __future__ import annotations

import gzip
import hashlib
import json

import httpx
import pytest
from wechatpayv3 import WeChatPay, WeChatPayType

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.wechatpay.protocol import CHINA_TZ, WechatPayCredentials
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sandbox.wechatpay.state import WechatPaySandbox
from tests.channels.wechatpay.conftest import parse_bill


@pytest.fixture
def wxpay(creds: WechatPayCredentials, served: ServedApp) -> WeChatPay:
    merchant = creds.merchant_view()
    client = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=merchant.mchid,
        private_key=merchant.merchant_private_key,
        cert_serial_no=merchant.merchant_serial_no,
        apiv3_key=merchant.apiv3_key,
        appid=merchant.appid,
        notify_url="https://merchant.example/notify",
        public_key=merchant.platform_public_key,
        public_key_id=merchant.platform_public_key_id,
        timeout=(5, 5),
    )
    client._core._gate_way = served.base_url  # the only change: where the SDK sends requests
    return client


def test_native_pay_query_close(wxpay: WeChatPay, sandbox: WechatPaySandbox) -> None:
    code, message = wxpay.pay(
        description="cup of tea",
        out_trade_no="sdk-order-1",
        amount={"total": 1200, "currency": "CNY"},
    )
    assert code == 200
    assert json.loads(message)["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")

    code, message = wxpay.query(out_trade_no="sdk-order-1")
    assert code == 200
    found = json.loads(message)
    assert (found["trade_state"], found["amount"]["total"]) == ("NOTPAY", 1200)

    code, message = wxpay.close(out_trade_no="sdk-order-1")
    assert (code, message) == (204, "")  # signed empty body: the SDK verified it
    assert json.loads(wxpay.query(out_trade_no="sdk-order-1")[1])["trade_state"] == "CLOSED"

    code, message = wxpay.query(out_trade_no="no-such-order")
    assert code == 404
    assert json.loads(message)["code"] == "ORDER_NOT_EXIST"


def test_jsapi_pay_needs_openid(wxpay: WeChatPay) -> None:
    code, message = wxpay.pay(
        description="tea",
        out_trade_no="sdk-jsapi-1",
        amount={"total": 100},
        payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        pay_type=WeChatPayType.JSAPI,
    )
    assert code == 200
    assert json.loads(message)["prepay_id"].startswith("wx")


def test_refund_and_refund_query(wxpay: WeChatPay, sandbox: WechatPaySandbox) -> None:
    wxpay.pay(description="tea", out_trade_no="sdk-order-2", amount={"total": 1000})
    paid = sandbox.pay("sdk-order-2")
    code, message = wxpay.refund(
        out_refund_no="sdk-refund-1",
        amount={"refund": 400, "total": 1000, "currency": "CNY"},
        out_trade_no="sdk-order-2",
        reason="broken cup",
    )
    assert code == 200
    refund = json.loads(message)
    assert (refund["status"], refund["transaction_id"]) == ("PROCESSING", paid["transaction_id"])

    code, message = wxpay.query_refund(out_refund_no="sdk-refund-1")
    assert code == 200
    assert json.loads(message)["status"] == "SUCCESS"  # instant refunds settle after the answer

    code, message = wxpay.refund(
        out_refund_no="sdk-refund-2",
        amount={"refund": 601, "total": 1000, "currency": "CNY"},
        out_trade_no="sdk-order-2",
    )
    assert code == 400
    assert json.loads(message)["code"] == "INVALID_REQUEST"


def test_bills_download_and_match_their_hash(
    wxpay: WeChatPay, sandbox: WechatPaySandbox, clock: FixedClock
) -> None:
    wxpay.pay(description="tea", out_trade_no="sdk-order-3", amount={"total": 84})
    sandbox.pay("sdk-order-3")
    day = clock.now().astimezone(CHINA_TZ).date().isoformat()

    code, message = wxpay.trade_bill(bill_date=day)  # the SDK asks for GZIP by default
    assert code == 200
    descriptor = json.loads(message)
    assert descriptor["hash_type"] == "SHA1"
    code, content = wxpay.download_bill(descriptor["download_url"])
    assert code == 200
    raw = gzip.decompress(content)
    assert hashlib.sha1(raw).hexdigest() == descriptor["hash_value"]
    details, summary = parse_bill(raw)
    assert [(d["商户订单号"], d["应结订单金额"], d["手续费"]) for d in details] == [
        ("sdk-order-3", "0.84", "0.01")
    ]
    assert summary["总交易单数"] == "1"

    code, message = wxpay.fundflow_bill(bill_date=day, tar_type=None)
    assert code == 200
    descriptor = json.loads(message)
    code, content = wxpay.download_bill(descriptor["download_url"])
    assert hashlib.sha1(content).hexdigest() == descriptor["hash_value"]
    details, summary = parse_bill(content)
    assert [(d["业务类型"], d["收支金额(元)"]) for d in details] == [
        ("交易", "0.84"),
        ("扣除交易手续费", "0.01"),
    ]
    assert details[-1]["账户结余(元)"] == "0.83"

    code, message = wxpay.trade_bill(bill_date="2001-01-01")
    assert (code, json.loads(message)["code"]) == (400, "NO_STATEMENT_EXIST")


def test_sdk_callback_accepts_a_sandbox_notification(
    wxpay: WeChatPay, sandbox: WechatPaySandbox
) -> None:
    wxpay.pay(description="tea", out_trade_no="sdk-order-4", amount={"total": 500})
    sandbox.pay("sdk-order-4")
    body, headers = sandbox.payment_notification("sdk-order-4")
    result = wxpay.callback(headers, body)
    assert result is not None
    assert result["event_type"] == "TRANSACTION.SUCCESS"
    assert result["resource"]["out_trade_no"] == "sdk-order-4"
    assert result["resource"]["trade_state"] == "SUCCESS"
    assert wxpay.callback(headers, body.replace(b"TRANSACTION", b"TRANSACTIOM")) is None


def test_unsigned_request_is_refused_with_sign_error(served: ServedApp) -> None:
    response = httpx.get(f"{served.base_url}/v3/pay/transactions/out-trade-no/x?mchid=1")
    assert response.status_code == 401
    assert response.json()["code"] == "SIGN_ERROR"
    assert "Wechatpay-Signature" in response.headers
