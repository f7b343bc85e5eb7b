import pytest

from clearhouse.accounts.limits import load_limits, parse_limits
from clearhouse.accounts.model import (
    KycLevel,
    Limit,
    LimitKind,
    LimitPeriod,
    check_limits,
    mask_id_number,
    normalise_id_number,
)
from clearhouse.errors import ConfigurationError

LIMITS = [
    Limit(KycLevel.CLASS_II, LimitKind.PAYMENT, LimitPeriod.TRANSACTION, "CNY", 1_000_00),
    Limit(KycLevel.CLASS_II, LimitKind.PAYMENT, LimitPeriod.DAY, "CNY", 2_000_00),
    Limit(KycLevel.CLASS_II, LimitKind.PAYMENT, LimitPeriod.YEAR, "CNY", 10_000_00),
]


def test_within_limits():
    used = {LimitPeriod.DAY: 500_00, LimitPeriod.YEAR: 5_000_00}
    assert check_limits(LIMITS, KycLevel.CLASS_II, LimitKind.PAYMENT, "CNY", 1_000_00, used) is None


@pytest.mark.parametrize(
    ("amount", "used", "period"),
    [
        (1_000_01, {}, LimitPeriod.TRANSACTION),
        (600_00, {LimitPeriod.DAY: 1_500_00}, LimitPeriod.DAY),
        (100_00, {LimitPeriod.DAY: 0, LimitPeriod.YEAR: 9_950_00}, LimitPeriod.YEAR),
    ],
)
def test_breaches_name_the_limit(amount, used, period):
    breach = check_limits(LIMITS, KycLevel.CLASS_II, LimitKind.PAYMENT, "CNY", amount, used)
    assert breach is not None
    assert breach.limit.period is period
    assert breach.headroom_minor == max(0, breach.limit.amount_minor - breach.used_minor)


def test_a_level_without_limits_may_move_nothing():
    breach = check_limits(LIMITS, KycLevel.UNVERIFIED, LimitKind.PAYMENT, "CNY", 1, {})
    assert breach is not None
    assert breach.limit.amount_minor == 0


def test_shipped_limits_parse_exactly():
    limits = load_limits()
    class_one = [
        lim for lim in limits if lim.level is KycLevel.CLASS_I and lim.period is LimitPeriod.YEAR
    ]
    assert [lim.amount_minor for lim in class_one] == [1_000_00]


def test_bad_limits_file():
    with pytest.raises(ConfigurationError, match="row 0"):
        parse_limits('[[limit]]\nlevel = 1\nkind = "payment"\ncurrency = "CNY"\nday = "10.001"\n')


def test_id_numbers_are_masked_and_normalised():
    assert mask_id_number("110101199003074578") == "110***********4578"
    assert normalise_id_number(" 11010119900307457x ") == "11010119900307457X"
