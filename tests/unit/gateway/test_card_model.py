"""The pure card rules: elements checked before anything is sent, names matched, the issuer's
limit as the smallest known, channel limits tightened by a card's own; and which adapter a
channels document entry makes."""

from __future__ import annotations

import pytest

from clearhouse.clock import FixedClock
from clearhouse.errors import ConfigurationError
from clearhouse.gateway.card_model import (
    CardAccess,
    InvalidCard,
    IssuerLimits,
    SignedLimits,
    check_elements,
    issuer_refusal,
    known_issuer_limits,
    luhn_ok,
    same_name,
)
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.channels.quickpay.adapter import QuickpayAdapter
from clearhouse.gateway.channels.quickpay.protocol import QuickpayCredentials
from clearhouse.gateway.routing import Limits
from tests.conftest import START

GOOD = ("张三", "110101199003070017", "6219990000000000010", None, None, None)


def test_luhn():
    assert luhn_ok("6219990000000000010")
    assert luhn_ok("6259990000000007")
    assert not luhn_ok("6219990000000000011")


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (0, " ", "holder_name"),
        (0, "张三&certifId=1", "holder_name"),  # would break the wire's customerInfo
        (0, "张" * 61, "holder_name"),
        (1, "11010119900307001", "id_number"),
        (1, "1101011990030700AB", "id_number"),
        (2, "6219990000000000011", "card_number"),
        (2, "621999000000", "card_number"),
        (3, "1380000000", "phone"),
        (4, "1330", "expiry"),
        (5, "12", "cvv"),
    ],
)
def test_elements_that_cannot_be_right(index: int, value: str, field: str) -> None:
    given: list[str | None] = list(GOOD)
    given[index] = value
    if index == 4:
        given[5] = "123"
    if index == 5:
        given[4] = "1230"
    with pytest.raises(InvalidCard) as refused:
        check_elements(*given)  # type: ignore[arg-type]
    assert refused.value.details == {"field": field}
    assert len(value) < 4 or value not in refused.value.message  # named, never repeated


def test_a_credit_card_gives_both_expiry_and_cvv_or_neither():
    check_elements(*GOOD[:4], "1230", "941")
    with pytest.raises(InvalidCard):
        check_elements(*GOOD[:4], "1230", None)
    with pytest.raises(InvalidCard):
        check_elements(*GOOD[:4], None, "941")


def test_names_match_without_spacing_and_case():
    assert same_name("Li  Si ", "li si")
    assert same_name("张三", "张三")
    assert not same_name("张三", "张三丰")


def test_the_issuers_limit_is_the_smallest_known():
    assert known_issuer_limits([]) == IssuerLimits(None, None)
    assert known_issuer_limits([(5_000, 3_000), (None, 2_000), (4_000, None)]) == IssuerLimits(
        4_000, 2_000
    )
    limits = IssuerLimits(5_000, 3_000)
    assert issuer_refusal(limits, 0, 5_001) == "single"
    assert issuer_refusal(limits, 2_000, 1_001) == "daily"
    assert issuer_refusal(limits, 2_000, 1_000) is None
    assert issuer_refusal(IssuerLimits(None, None), 10**9, 10**9) is None


def test_a_cards_own_limits_tighten_the_channels():
    terms = Limits(single=5_000_000, daily=500_000_000, card_daily=5_000_000)
    assert SignedLimits(200_000, 1_000_000).within(terms) == Limits(
        single=200_000, daily=500_000_000, card_daily=1_000_000
    )
    assert SignedLimits(None, None).within(terms) == terms
    assert SignedLimits(1, 2).within(Limits()) == Limits(single=1, card_daily=2)
    access = CardAccess(False, {}, frozenset({"quickpay"}))
    assert access.applies_to("quickpay")
    assert not access.applies_to("stripe")  # a card token of Stripe's own
    assert CardAccess(True, {}, frozenset()).applies_to("stripe")  # our card: nowhere else


def test_a_document_entry_names_its_adapter():
    creds = QuickpayCredentials.generate().merchant_view().to_dict()
    entry = {"base_url": "http://127.0.0.1:9", "credentials": creds}
    clock = FixedClock(START)
    ports = ports_from_document(
        {"quickpay": entry, "quickpay_b": entry, "other": entry | {"kind": "quickpay"}}, clock
    )
    assert {name: type(port) for name, port in ports.items()} == dict.fromkeys(
        ("quickpay", "quickpay_b", "other"), QuickpayAdapter
    )
    assert [port.name for port in ports.values()] == ["quickpay", "quickpay_b", "other"]
    with pytest.raises(ConfigurationError):
        ports_from_document({"wechat_2": entry | {"kind": "wechatpay"}}, clock)
