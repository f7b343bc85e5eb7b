"""The format registry: detection from the bytes, what each parser needs, and the refusals."""

from __future__ import annotations

import hashlib
import zipfile
from datetime import date, timedelta
from io import BytesIO

import pytest

from clearhouse.reconciliation import formats
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from tests.unit.reconciliation.intake_support import (
    DAY,
    STRIPE_ACCOUNT,
    Sample,
    every_format,
    stripe_report,
)

SAMPLES = every_format()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.file)
def test_every_format_is_detected_from_its_bytes_and_parses(sample: Sample) -> None:
    found = formats.detect(sample.data, sample.file)
    assert found.name == sample.fmt
    statement = found.parse(sample.data, sample.file, **sample.args)
    assert statement.source == found.source
    assert statement.lines.num_rows == sample.lines
    # Given the channel instead of the format, the bytes decide among its formats.
    assert formats.resolve(sample.data, sample.file, channel=found.source) is found


def test_each_source_has_its_formats() -> None:
    assert formats.sources() == [
        "alipay",
        "bank",
        "paypal",
        "quickpay",
        "quickpay_b",
        "stripe",
        "wechatpay",
    ]
    assert [f.name for f in formats.of_source("bank")] == ["camt053", "mt940"]
    assert [f.name for f in formats.of_source("wechatpay")] == [
        "wechatpay-trade",
        "wechatpay-fundflow",
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, world\n",
        b"<?xml version='1.0'?><Document xmlns='urn:iso:std:iso:20022:tech:xsd:pain.001'/>",
        b"\x1f\x8bnot really gzip",
        "交易日期,金额\n2024-03-01,1.00\n".encode(),
        b"a,b,c\n1,2,3\n",
        b'{"object": "list"}',
    ],
)
def test_bytes_that_are_no_known_format_are_refused_as_unsupported(data: bytes) -> None:
    with pytest.raises(StatementError) as caught:
        formats.detect(data, "mystery.bin")
    assert caught.value.code is StatementCode.UNSUPPORTED
    assert caught.value.file == "mystery.bin"


def test_a_file_of_another_channel_is_refused_for_the_channel_named() -> None:
    camt = next(s for s in SAMPLES if s.fmt == formats.CAMT053)
    with pytest.raises(StatementError) as caught:
        formats.resolve(camt.data, camt.file, channel="wechatpay")
    assert caught.value.code is StatementCode.UNSUPPORTED
    assert "camt053" in caught.value.message
    with pytest.raises(formats.UnknownFormat) as unknown:
        formats.resolve(camt.data, camt.file, channel="stripe", fmt="camt053")
    assert unknown.value.details["known"] == ["stripe"]


def test_unknown_format_and_channel_names_have_their_own_code() -> None:
    with pytest.raises(formats.UnknownFormat) as caught:
        formats.get("ofx")
    assert caught.value.code == "STATEMENT_UNKNOWN_FORMAT"
    assert "camt053" in caught.value.details["known"]
    with pytest.raises(formats.UnknownFormat):
        formats.resolve(b"anything", "f", channel="quickpay_c")


@pytest.mark.parametrize(
    ("fmt", "args", "missing"),
    [
        (formats.WECHATPAY_TRADE, {}, "business_date"),
        (formats.WECHATPAY_FUNDFLOW, {"business_date": DAY}, "account"),
        (formats.STRIPE, {"account": STRIPE_ACCOUNT}, "business_date"),
        (formats.STRIPE, {"business_date": DAY}, "account"),
    ],
)
def test_a_value_the_file_does_not_state_must_be_given(
    fmt: str, args: dict[str, object], missing: str
) -> None:
    sample = next(s for s in SAMPLES if s.fmt == fmt)
    with pytest.raises(formats.ArgumentMissing) as caught:
        formats.get(fmt).parse(sample.data, sample.file, **args)
    assert caught.value.code == "STATEMENT_ARGUMENT_MISSING"
    assert caught.value.details == {"format": fmt, "argument": missing}


def test_a_report_that_names_no_day_is_told_apart_by_the_day_and_account_given() -> None:
    empty = stripe_report(rows=0)
    stripe = formats.get(formats.STRIPE)

    def digest(day: date, account: str) -> str:
        return stripe.parse(empty, "r.csv", business_date=day, account=account).sha256

    assert digest(DAY, STRIPE_ACCOUNT) == digest(DAY, STRIPE_ACCOUNT)
    assert digest(DAY, STRIPE_ACCOUNT) != digest(DAY + timedelta(days=1), STRIPE_ACCOUNT)
    assert digest(DAY, STRIPE_ACCOUNT) != digest(DAY, "acct_other")
    # Files that name their day keep the digest of their bytes.
    camt = next(s for s in SAMPLES if s.fmt == formats.CAMT053)
    assert formats.get(camt.fmt).parse(camt.data, camt.file).sha256 == (
        hashlib.sha256(camt.data).hexdigest()
    )


def test_an_alipay_detail_csv_outside_its_zip_is_detected() -> None:
    alipay = next(s for s in SAMPLES if s.fmt == formats.ALIPAY)
    with zipfile.ZipFile(BytesIO(alipay.data)) as archive:
        detail = next(n for n in archive.namelist() if "汇总" not in n)
        data = archive.read(detail)
    assert formats.detect(data, detail).name == formats.ALIPAY
    assert formats.get(formats.ALIPAY).parse(data, detail).lines.num_rows == alipay.lines
