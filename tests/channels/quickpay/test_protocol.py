"""Signing over the digest of the sorted string, field encryption, customerInfo, answers that
must verify, credentials and values."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from clearhouse.errors import ConfigurationError
from clearhouse.gateway.channels.quickpay import protocol as qp
from clearhouse.gateway.channels.quickpay.adapter import CardElements
from clearhouse.gateway.channels.quickpay.protocol import BadAnswer, QuickpayCredentials
from clearhouse.money import Money


def test_sign_string_sorts_and_drops_signature_and_empties() -> None:
    params = {"b": "2", "signature": "x", "a": "1", "empty": "", "certId": "7"}
    assert qp.sign_string(params) == "a=1&b=2&certId=7"


def test_sign_verify_round_trip(creds: QuickpayCredentials) -> None:
    key = creds.require_merchant_key()
    signed = qp.sign({"merId": creds.mer_id, "txnAmt": "100", "customerNm": "张三"}, "6", key)
    assert (signed["certId"], signed["signMethod"]) == ("6", "01")
    assert qp.verify(signed, creds.merchant_public_key_pem)
    assert not qp.verify({**signed, "txnAmt": "101"}, creds.merchant_public_key_pem)
    assert not qp.verify({**signed, "certId": "8"}, creds.merchant_public_key_pem)
    assert not qp.verify({**signed, "signMethod": "02"}, creds.merchant_public_key_pem)
    assert not qp.verify({**signed, "signature": "not base64!"}, creds.merchant_public_key_pem)
    assert not qp.verify(signed, creds.channel_public_key_pem)
    # An empty field does not change the signature (it is not in the sign string).
    assert qp.verify({**signed, "reqReserved": ""}, creds.merchant_public_key_pem)


def test_signature_is_over_the_hex_digest(creds: QuickpayCredentials) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    signed = qp.sign({"a": "1"}, "6", creds.require_merchant_key())
    digest = hashlib.sha256(qp.sign_string(signed).encode()).hexdigest().encode()
    public = serialization.load_pem_public_key(creds.merchant_public_key_pem.encode())
    public.verify(  # type: ignore[union-attr, call-arg]
        base64.b64decode(signed["signature"]), digest, padding.PKCS1v15(), hashes.SHA256()
    )


def test_encryption_is_randomised_and_needs_the_private_key(creds: QuickpayCredentials) -> None:
    one = qp.encrypt("6219990000000000010", creds.encrypt_public_key_pem)
    two = qp.encrypt("6219990000000000010", creds.encrypt_public_key_pem)
    assert one != two
    assert creds.encrypt_private_key_pem is not None
    assert qp.decrypt(one, creds.encrypt_private_key_pem) == "6219990000000000010"
    assert creds.channel_private_key_pem is not None
    with pytest.raises(ValueError, match="Decryption failed"):
        qp.decrypt(one, creds.channel_private_key_pem)
    with pytest.raises(ValueError, match="not an encrypted field"):
        qp.decrypt("%%%", creds.encrypt_private_key_pem)


def test_customer_info_hides_the_sensitive_part(creds: QuickpayCredentials) -> None:
    sensitive = {"certifId": "110101199003070017", "cvn2": "281", "expired": "3012"}
    blob = qp.pack_customer_info(
        {"customerNm": "李四", "certifTp": "01"}, sensitive, creds.encrypt_public_key_pem
    )
    text = base64.b64decode(blob).decode()
    assert text.startswith("{customerNm=李四&certifTp=01&encryptedInfo=")
    assert "281" not in text.split("encryptedInfo=")[0]
    assert "cvn2" not in text
    assert creds.encrypt_private_key_pem is not None
    assert qp.unpack_customer_info(blob, creds.encrypt_private_key_pem) == {
        "customerNm": "李四",
        "certifTp": "01",
        **sensitive,
    }
    with pytest.raises(ValueError, match="may not contain"):
        qp.pack_customer_info({"customerNm": "a&b"}, {}, creds.encrypt_public_key_pem)
    with pytest.raises(ValueError, match="not braced"):
        qp.unpack_customer_info(base64.b64encode(b"no braces").decode(), "unused")


def test_read_signed(creds: QuickpayCredentials) -> None:
    channel_key, _ = creds.require_channel_keys()
    answer = qp.sign({"merId": creds.mer_id, "respCode": "00"}, creds.channel_cert_id, channel_key)
    raw = qp.encode_form(answer)
    assert qp.read_signed(raw, creds)["respCode"] == "00"
    with pytest.raises(BadAnswer, match="BAD_SIGNATURE"):
        qp.read_signed(raw.replace("respCode=00", "respCode=01"), creds)
    other = qp.sign({"merId": "1", "respCode": "00"}, creds.channel_cert_id, channel_key)
    with pytest.raises(BadAnswer, match="another merchant"):
        qp.read_signed(qp.encode_form(other), creds)
    merchant = qp.sign({"merId": creds.mer_id, "respCode": "00"}, creds.channel_cert_id,
                       creds.require_merchant_key())  # fmt: skip
    with pytest.raises(BadAnswer, match="BAD_SIGNATURE"):
        qp.read_signed(qp.encode_form(merchant), creds)
    with pytest.raises(BadAnswer, match="BAD_RESPONSE"):
        qp.read_signed("<html>", creds)
    with pytest.raises(BadAnswer, match="BAD_RESPONSE"):
        qp.read_signed("respCode=00&respCode=01", creds)


def test_credentials_round_trip_and_merchant_view(creds: QuickpayCredentials) -> None:
    assert QuickpayCredentials.from_dict(json.loads(json.dumps(creds.to_dict()))) == creds
    merchant = creds.merchant_view()
    assert merchant.channel_private_key_pem is None
    assert merchant.encrypt_private_key_pem is None
    assert merchant.require_merchant_key() == creds.merchant_private_key_pem
    with pytest.raises(ConfigurationError):
        merchant.require_channel_keys()
    assert len(creds.mer_id) == 15
    with pytest.raises(ConfigurationError, match="mer_id"):
        QuickpayCredentials.from_dict({})


def test_values() -> None:
    assert qp.format_fen(Money(1234, "CNY")) == "1234"
    assert qp.parse_fen("1234") == Money(1234, "CNY")
    for bad in ("-1", "01", "1.00", "", "\uff11"):  # the last a full-width digit one
        with pytest.raises(ValueError, match="not an amount"):
            qp.parse_fen(bad)
    with pytest.raises(ValueError, match="CNY"):
        qp.format_fen(Money(1, "USD"))
    assert qp.mask_card("6219990000000000010") == "621999*********0010"
    assert qp.mask_phone("13800000001") == "138****0001"
    assert qp.expiry_to_wire("1230") == "3012"
    assert qp.expiry_from_wire("3012") == "1230"
    instant = qp.parse_time("20261103003000")
    assert qp.format_time(instant) == "20261103003000"
    assert qp.business_day(instant).isoformat() == "2026-11-03"
    assert qp.code_name("71") == "SMS_CODE_WRONG"
    assert qp.code_name("42") == "RESP_42"


def test_card_elements_repr_masks_everything() -> None:
    card = CardElements(
        "李四", "310101198805050028", "6259990000000007", "13800000002", "1230", "281"
    )
    for shown in (repr(card), str(card), f"{card}", f"{[card]}"):
        for secret in (
            "李四",
            "310101198805050028",
            "6259990000000007",
            "13800000002",
            "1230",
            "281",
        ):
            assert secret not in shown
    assert "0007" in repr(card)
