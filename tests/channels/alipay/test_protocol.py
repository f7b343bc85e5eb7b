"""RSA2 signing, sign strings, the exact-substring rule for answers, credentials and values."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from clearhouse.gateway.channels.alipay import protocol
from clearhouse.gateway.channels.alipay.protocol import AlipayCredentials, BadAnswer
from clearhouse.money import Money


def test_sign_verify_round_trip(creds: AlipayCredentials) -> None:
    key = creds.require_app_private_key()
    sign = protocol.sign_rsa2("a=1&b=中文", key)
    assert protocol.verify_rsa2("a=1&b=中文", sign, creds.app_public_key_pem)
    assert not protocol.verify_rsa2("a=1&b=中文 ", sign, creds.app_public_key_pem)
    assert not protocol.verify_rsa2("a=1&b=中文", sign, creds.alipay_public_key_pem)
    assert not protocol.verify_rsa2("a=1&b=中文", "not base64!", creds.app_public_key_pem)


def test_request_sign_string_keeps_sign_type_and_drops_sign_and_empties() -> None:
    params = {"sign": "x", "sign_type": "RSA2", "b": "2", "a": "1", "empty": ""}
    assert protocol.request_sign_string(params) == "a=1&b=2&sign_type=RSA2"
    assert protocol.notification_sign_string(params) == "a=1&b=2"


def test_signed_request_verifies_and_tampering_fails(creds: AlipayCredentials) -> None:
    params = {"app_id": creds.app_id, "method": "alipay.trade.query", "biz_content": "{}"}
    signed = protocol.sign_request(params, creds.require_app_private_key())
    assert protocol.verify_request(signed, creds.app_public_key_pem)
    assert not protocol.verify_request(
        {**signed, "biz_content": '{"a":1}'}, creds.app_public_key_pem
    )
    note = protocol.sign_notification(
        {"a": "1", "sign_type": "RSA2"}, creds.require_app_private_key()
    )
    assert protocol.verify_notification({**note, "sign_type": "RSA"}, creds.app_public_key_pem)


def test_top_level_members_returns_exact_text() -> None:
    raw = '{ "x_response" : {"msg":"a}{\\"b","n":[1, {"c":2}]} ,\n"sign":"s=="}'
    members = protocol.top_level_members(raw)
    assert members == {"x_response": '{"msg":"a}{\\"b","n":[1, {"c":2}]}', "sign": '"s=="'}
    with pytest.raises(ValueError, match="duplicated"):
        protocol.top_level_members('{"a":1,"a":2}')
    with pytest.raises(ValueError, match="trailing"):
        protocol.top_level_members('{"a":1} x')


def test_read_answer_verifies_the_exact_signed_text(creds: AlipayCredentials) -> None:
    key = creds.require_alipay_private_key()
    body = protocol.build_answer("alipay_trade_query_response", {"code": "10000", "m": "好"}, key)
    assert protocol.read_answer(body, "alipay.trade.query", creds.alipay_public_key_pem) == {
        "code": "10000",
        "m": "好",
    }
    # Spacing outside the signed object does not matter; re-serialising it would.
    spaced = body.replace(',"sign":', ' ,\n "sign" : ')
    assert protocol.read_answer(spaced, "alipay.trade.query", creds.alipay_public_key_pem)
    envelope = json.loads(body)
    reserialised = json.dumps(envelope)  # ASCII escapes and spaces: a different text
    with pytest.raises(BadAnswer) as caught:
        protocol.read_answer(reserialised, "alipay.trade.query", creds.alipay_public_key_pem)
    assert caught.value.kind == "BAD_SIGNATURE"
    unsigned = protocol.build_answer("alipay_trade_query_response", {"code": "10000"}, None)
    with pytest.raises(BadAnswer, match="BAD_SIGNATURE"):
        protocol.read_answer(unsigned, "alipay.trade.query", creds.alipay_public_key_pem)
    with pytest.raises(BadAnswer, match="BAD_RESPONSE"):
        protocol.read_answer("<html>", "alipay.trade.query", creds.alipay_public_key_pem)


def test_credentials_round_trip_and_merchant_view(creds: AlipayCredentials) -> None:
    assert AlipayCredentials.from_dict(json.loads(json.dumps(creds.to_dict()))) == creds
    merchant = creds.merchant_view()
    assert merchant.alipay_private_key_pem is None
    assert merchant.app_private_key_pem == creds.app_private_key_pem
    assert creds.app_id.isdigit()
    assert creds.pid.startswith("2088")
    assert len(creds.pid) == 16


def test_bare_base64_keys_become_pem(creds: AlipayCredentials) -> None:
    def bare(pem: str) -> str:
        return "".join(line for line in pem.splitlines() if not line.startswith("-----"))

    public = protocol.to_pem(bare(creds.app_public_key_pem), public=True)
    private = protocol.to_pem(bare(creds.require_app_private_key()), public=False)
    sign = protocol.sign_rsa2("x", private)
    assert protocol.verify_rsa2("x", sign, public)


def test_times_are_beijing_wall_clock() -> None:
    instant = datetime(2026, 11, 2, 16, 30, tzinfo=UTC)
    assert protocol.format_time(instant) == "2026-11-03 00:30:00"
    assert protocol.parse_time("2026-11-03 00:30:00") == instant
    assert protocol.parse_time("2026-11-03 00:30:00.250").microsecond == 250_000


def test_amounts_are_exact_yuan_strings() -> None:
    assert protocol.format_amount(Money(1234, "CNY")) == "12.34"
    assert protocol.format_amount(Money(-5, "CNY")) == "-0.05"
    assert protocol.parse_amount("0.1") == Money(10, "CNY")
    with pytest.raises(ValueError, match="CNY"):
        protocol.format_amount(Money(100, "USD"))
