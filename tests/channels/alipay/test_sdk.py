"""python-alipay-sdk against the sandbox with only its gateway changed: the sandbox speaks the
published protocol closely enough for a third-party client."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from alipay import AliPay

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.alipay.protocol import AlipayCredentials
from clearhouse.sandbox.alipay import AlipaySandbox
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.serving import ServedApp
from tests.channels.receiver import VerifyingReceiver


def sdk(
    creds: AlipayCredentials, served: ServedApp, notify_url: str, key: str | None = None
) -> Any:
    client = AliPay(
        appid=creds.app_id,
        app_notify_url=notify_url,
        app_private_key_string=key or creds.app_private_key_pem,
        alipay_public_key_string=creds.alipay_public_key_pem,
        sign_type="RSA2",
    )
    client._gateway = served.base_url + "/gateway.do"
    return client


@pytest.fixture
def client(creds: AlipayCredentials, served: ServedApp, receiver: VerifyingReceiver) -> Any:
    return sdk(creds, served, receiver.url)


def test_sdk_full_cycle(
    client: Any, served: ServedApp, sandbox: AlipaySandbox, clock: FixedClock
) -> None:
    created = client.api_alipay_trade_precreate(
        subject="测试商品", out_trade_no="s-1", total_amount="88.88"
    )
    assert created["code"] == "10000"
    assert created["qr_code"]
    before = client.api_alipay_trade_query(out_trade_no="s-1")
    assert before["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    assert httpx.get(created["qr_code"]).status_code == 200  # the buyer scans
    assert client.api_alipay_trade_query(out_trade_no="s-1")["trade_status"] == "WAIT_BUYER_PAY"
    assert httpx.post(f"{served.base_url}/sandbox/orders/s-1/pay").json()["fee"] == "0.53"
    paid = client.api_alipay_trade_query(out_trade_no="s-1")
    assert (paid["trade_status"], paid["total_amount"]) == ("TRADE_SUCCESS", "88.88")

    refunded = client.api_alipay_trade_refund("8.88", out_trade_no="s-1", out_request_no="rq-1")
    assert (refunded["fund_change"], refunded["refund_fee"]) == ("Y", "8.88")
    again = client.api_alipay_trade_refund("8.88", out_trade_no="s-1", out_request_no="rq-1")
    assert (again["fund_change"], again["refund_fee"]) == ("N", "8.88")
    found = client.api_alipay_trade_fastpay_refund_query("rq-1", out_trade_no="s-1")
    assert (found["refund_status"], found["refund_amount"]) == ("REFUND_SUCCESS", "8.88")

    client.api_alipay_trade_precreate(subject="另一单", out_trade_no="s-2", total_amount="1.00")
    sandbox.scan("s-2")
    closed = client.api_alipay_trade_close(out_trade_no="s-2")
    assert closed["code"] == "10000"
    assert client.api_alipay_trade_query(out_trade_no="s-2")["trade_status"] == "TRADE_CLOSED"

    too_early = client.server_api(
        "alipay.data.dataservice.bill.downloadurl.query",
        {"bill_type": "trade", "bill_date": "2026-11-02"},
    )
    assert too_early["sub_code"] == "isp.bill_not_exist"
    clock.advance(timedelta(days=1))
    bill = client.server_api(
        "alipay.data.dataservice.bill.downloadurl.query",
        {"bill_type": "trade", "bill_date": "2026-11-02"},
    )
    archive = httpx.get(bill["bill_download_url"])
    assert archive.status_code == 200
    assert archive.content.startswith(b"PK")


def test_sdk_with_the_wrong_key_is_refused(
    creds: AlipayCredentials, served: ServedApp, receiver: VerifyingReceiver
) -> None:
    other = AlipayCredentials.generate()
    client = sdk(creds, served, receiver.url, key=other.app_private_key_pem)
    answer = client.api_alipay_trade_query(out_trade_no="s-9")
    assert (answer["code"], answer["sub_code"]) == ("40002", "isv.invalid-signature")


def test_sdk_verifies_a_sandbox_notification(
    client: Any, sandbox: AlipaySandbox, notifier: Notifier, receiver: VerifyingReceiver
) -> None:
    client.api_alipay_trade_precreate(subject="通知", out_trade_no="s-3", total_amount="3.00")
    sandbox.pay("s-3")
    assert notifier.run_due() == 1
    data = dict(parse_qsl(receiver.bodies[0].decode("utf-8")))
    signature = data.pop("sign")
    assert client.verify(data, signature)
    data["total_amount"] = "300.00"
    assert not client.verify(data, signature)
