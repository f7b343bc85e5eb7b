import pytest

from clearhouse.accounts.model import Role
from clearhouse.errors import ConfigurationError
from clearhouse.ledger.model import Reason, Rejection
from clearhouse.ledger.rules import load_rules, render


def test_shipped_rules_load_and_name_their_amounts():
    rules = load_rules()
    settle = rules.get("2001")
    assert settle is not None
    assert settle.amount_names == {"merchant_amount", "commission"}
    assert settle.parties == {"merchant"}
    paid = rules.get("1001")
    assert paid is not None
    assert paid.legs[0].debit.role is Role.CHANNEL_CLEARING
    assert paid.legs[0].debit.sub == "quickpay"
    assert len(rules) >= 20


def rule_text(legs: str, code: str = "1234") -> str:
    return f'[[rule]]\ncode = "{code}"\nname = "x"\nlegs = [{legs}]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            rule_text(
                '{ debit = "platform.escrow", credit = "merchant.merchant_settlement", amount = "a" }',
                code="12",
            ),
            "four digits",
        ),
        (
            rule_text('{ debit = "platform.nothing", credit = "platform.escrow", amount = "a" }'),
            "unknown role",
        ),
        (
            rule_text('{ debit = "merchant.escrow", credit = "platform.capital", amount = "a" }'),
            "belongs to the platform",
        ),
        (
            rule_text('{ debit = "platform.escrow", credit = "platform.escrow", amount = "a" }'),
            "same slot",
        ),
        (
            rule_text('{ debit = "platform.escrow", credit = "platform.capital", amount = "A b" }'),
            "name a variable",
        ),
        (
            rule_text(
                '{ debit = "platform.escrow", credit = "platform.capital", amount = "a", extra = 1 }'
            ),
            "unknown keys",
        ),
        (
            rule_text(
                '{ debit = "platform.escrow", credit = "platform.capital", amount = "a", optional = true }'
            ),
            "single leg and it is optional",
        ),
        (
            rule_text('{ debit = "escrow", credit = "platform.capital", amount = "a" }'),
            "party.role",
        ),
        ("[[rule]]\ncode = '1234'\nname = 'x'\nlegs = []\n", "no legs"),
        (
            rule_text('{ debit = "platform.escrow", credit = "platform.capital", amount = "a" }')
            * 2,
            "defined twice",
        ),
        ("this is not toml = [", "posting rules"),
    ],
)
def test_bad_rule_files_are_refused_at_load(text, message):
    with pytest.raises(ConfigurationError, match=message):
        load_rules(text)


def test_render_checks_parties_and_amounts():
    rule = load_rules().get("2001")
    assert rule is not None
    ok = render(rule, {"merchant_amount": 95, "commission": 5}, {"merchant": "acc"})
    assert not isinstance(ok, Rejection)
    assert [leg.amount for leg in ok] == [95, 5]
    # Optional commission of zero drops the leg.
    no_commission = render(rule, {"merchant_amount": 95, "commission": 0}, {"merchant": "acc"})
    assert not isinstance(no_commission, Rejection)
    assert len(no_commission) == 1
    cases = [
        ({"merchant_amount": 95, "commission": 5}, {}, Reason.MISSING_PARTY),
        (
            {"merchant_amount": 95, "commission": 5},
            {"merchant": "a", "buyer": "b"},
            Reason.UNEXPECTED_PARTY,
        ),
        ({"merchant_amount": 95}, {"merchant": "a"}, Reason.MISSING_AMOUNT),
        (
            {"merchant_amount": 95, "commission": 5, "tip": 1},
            {"merchant": "a"},
            Reason.UNEXPECTED_AMOUNT,
        ),
        ({"merchant_amount": 0, "commission": 0}, {"merchant": "a"}, Reason.AMOUNT_NOT_POSITIVE),
        ({"merchant_amount": 95, "commission": -1}, {"merchant": "a"}, Reason.AMOUNT_NOT_POSITIVE),
        ({"merchant_amount": 2**63, "commission": 0}, {"merchant": "a"}, Reason.AMOUNT_TOO_LARGE),
    ]
    for amounts, parties, reason in cases:
        found = render(rule, amounts, parties)
        assert isinstance(found, Rejection), (amounts, parties)
        assert found.reason is reason
    # Every leg optional: a commission that takes the whole amount leaves one leg.
    only_commission = render(rule, {"merchant_amount": 0, "commission": 5}, {"merchant": "a"})
    assert not isinstance(only_commission, Rejection)
    assert [(leg.leg.amount, leg.amount) for leg in only_commission] == [("commission", 5)]
