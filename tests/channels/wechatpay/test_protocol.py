"""Signatures, timestamps, AES-GCM resources and credentials of the WeChat Pay v3 protocol."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from clearhouse.gateway.channels.wechatpay import protocol
from clearhouse.gateway.channels.wechatpay.protocol import (
    DecryptError,
    SignatureError,
    WechatPayCredentials,
)

NOW = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


def test_request_signature_round_trip(creds: WechatPayCredentials) -> None:
    body = b'{"mchid":"1900000109"}'
    target = "/v3/pay/transactions/out-trade-no/o-123456?mchid=1900000109"
    header = protocol.build_authorization(creds, "GET", target, body, NOW)
    assert header.startswith('WECHATPAY2-SHA256-RSA2048 mchid="1900000109",nonce_str="')
    auth = protocol.verify_authorization(header, "GET", target, body, creds, NOW)
    assert auth.serial_no == creds.merchant_serial_no
    assert auth.timestamp == str(int(NOW.timestamp()))


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("POST", "/v3/x?mchid=1900000109", b'{"mchid":"1900000109"}'),  # method changed
        ("GET", "/v3/x?mchid=1900000108", b'{"mchid":"1900000109"}'),  # query changed
        ("GET", "/v3/x?mchid=1900000109", b'{"mchid":"1900000108"}'),  # body changed
    ],
)
def test_tampered_request_fails(
    creds: WechatPayCredentials, method: str, target: str, body: bytes
) -> None:
    header = protocol.build_authorization(
        creds, "GET", "/v3/x?mchid=1900000109", b'{"mchid":"1900000109"}', NOW
    )
    with pytest.raises(SignatureError):
        protocol.verify_authorization(header, method, target, body, creds, NOW)


def test_request_from_another_key_or_serial_fails(creds: WechatPayCredentials) -> None:
    other = WechatPayCredentials.generate()
    forged = protocol.build_authorization(
        WechatPayCredentials.from_dict({**other.to_dict(), "mchid": creds.mchid}),
        "GET",
        "/v3/x",
        b"",
        NOW,
    )
    with pytest.raises(SignatureError, match="serial"):
        protocol.verify_authorization(forged, "GET", "/v3/x", b"", creds, NOW)
    same_serial = WechatPayCredentials.from_dict(
        {**other.to_dict(), "mchid": creds.mchid, "merchant_serial_no": creds.merchant_serial_no}
    )
    forged = protocol.build_authorization(same_serial, "GET", "/v3/x", b"", NOW)
    with pytest.raises(SignatureError, match="does not verify"):
        protocol.verify_authorization(forged, "GET", "/v3/x", b"", creds, NOW)


@pytest.mark.parametrize("skew", [timedelta(minutes=5, seconds=1), -timedelta(minutes=6)])
def test_stale_or_future_timestamp_fails(creds: WechatPayCredentials, skew: timedelta) -> None:
    header = protocol.build_authorization(creds, "GET", "/v3/x", b"", NOW)
    with pytest.raises(SignatureError, match="window"):
        protocol.verify_authorization(header, "GET", "/v3/x", b"", creds, NOW + skew)
    # Just inside the window still verifies.
    protocol.verify_authorization(header, "GET", "/v3/x", b"", creds, NOW + timedelta(minutes=5))


def test_malformed_authorization_fails(creds: WechatPayCredentials) -> None:
    for value in [
        "",
        "Bearer x",
        'WECHATPAY2-SHA256-RSA2048 mchid="1"',
        "WECHATPAY2-SHA256-RSA2048 x",
    ]:
        with pytest.raises(SignatureError):
            protocol.verify_authorization(value, "GET", "/v3/x", b"", creds, NOW)


def test_response_signature_round_trip_and_tamper(creds: WechatPayCredentials) -> None:
    body = b'{"code_url":"weixin://wxpay/bizpayurl?pr=abc"}'
    headers = protocol.signed_headers(creds, body, NOW)
    assert headers["Wechatpay-Serial"] == creds.platform_public_key_id
    assert headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    merchant = creds.merchant_view()
    protocol.verify_signed(headers, body, merchant, NOW)
    protocol.verify_signed({k.lower(): v for k, v in headers.items()}, body, merchant, NOW)
    with pytest.raises(SignatureError):
        protocol.verify_signed(headers, body.replace(b"abc", b"abd"), merchant, NOW)
    with pytest.raises(SignatureError, match="window"):
        protocol.verify_signed(headers, body, merchant, NOW + timedelta(minutes=10))
    with pytest.raises(SignatureError, match="unknown key"):
        protocol.verify_signed({**headers, "Wechatpay-Serial": "PUB_KEY_ID_X"}, body, merchant, NOW)
    with pytest.raises(SignatureError, match="missing"):
        protocol.verify_signed({}, body, merchant, NOW)


def test_empty_body_signature_covers_the_final_newline(creds: WechatPayCredentials) -> None:
    headers = protocol.signed_headers(creds, b"", NOW)
    message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n\n".encode()
    assert protocol.rsa_verify(creds.platform_public_key, message, headers["Wechatpay-Signature"])


def test_aes_gcm_round_trip_and_tamper(creds: WechatPayCredentials) -> None:
    resource = protocol.encrypt_resource(
        creds.apiv3_key, '{"a":"支付"}', "transaction", "transaction"
    )
    assert resource["algorithm"] == "AEAD_AES_256_GCM"
    assert len(resource["nonce"]) == 12
    assert protocol.decrypt_resource(creds.apiv3_key, resource) == '{"a":"支付"}'
    sealed = bytearray(base64.b64decode(resource["ciphertext"]))
    sealed[0] ^= 1
    flipped = {**resource, "ciphertext": base64.b64encode(bytes(sealed)).decode()}
    for bad in (
        flipped,
        {**resource, "associated_data": "refund"},
        {**resource, "nonce": "0" * 12},
    ):
        with pytest.raises(DecryptError):
            protocol.decrypt_resource(creds.apiv3_key, bad)
    with pytest.raises(DecryptError):
        protocol.decrypt_resource("k" * 32, resource)
    with pytest.raises(DecryptError, match="algorithm"):
        protocol.decrypt_resource(creds.apiv3_key, {**resource, "algorithm": "AES_CBC"})


def test_credentials_round_trip_and_merchant_view(creds: WechatPayCredentials) -> None:
    data = json.loads(json.dumps(creds.to_dict()))
    assert WechatPayCredentials.from_dict(data) == creds
    merchant = creds.merchant_view()
    assert merchant.platform_private_key is None
    assert "platform_private_key" not in merchant.to_dict()
    assert WechatPayCredentials.from_dict(merchant.to_dict()) == merchant
    assert creds.platform_public_key_id.startswith("PUB_KEY_ID_")
    assert len(creds.apiv3_key) == 32
    with pytest.raises(ValueError, match="platform private key"):
        protocol.signed_headers(merchant, b"", NOW)
    with pytest.raises(ValueError, match="32 ASCII"):
        WechatPayCredentials.from_dict({**data, "apiv3_key": "short"})


def test_times_are_rfc3339_in_china_time() -> None:
    assert protocol.format_time(NOW) == "2026-11-02T09:00:00+08:00"
    assert protocol.parse_time("2026-11-02T09:00:00+08:00") == NOW
    with pytest.raises(ValueError, match="offset"):
        protocol.parse_time("2026-11-02T09:00:00")
