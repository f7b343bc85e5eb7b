"""Money kernel: exact amounts, currency safety, lossless allocation, single-rounding FX."""

from __future__ import annotations

import dataclasses
import decimal
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearhouse.currencies import CURRENCIES
from clearhouse.errors import (
    AmountOutOfRange,
    CurrencyMismatch,
    InvalidAmount,
    MoneyError,
    UnknownCurrency,
)
from clearhouse.money import (
    MAX_MINOR,
    Currency,
    FxConversion,
    Money,
    Rounding,
    allocate,
    allocate_money,
    convert,
    currency,
)

CODES = sorted(CURRENCIES)
EXPONENTS = sorted({exponent for _, exponent, _ in CURRENCIES.values()})

codes = st.sampled_from(CODES)
amounts = st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR)
roundings = st.sampled_from(list(Rounding))


def _by_exponent(exponent: int) -> list[str]:
    return [code for code in CODES if CURRENCIES[code][1] == exponent]


# --- currencies ----------------------------------------------------------------------------------


def test_currency_lookup() -> None:
    assert currency("CNY") == Currency(code="CNY", numeric="156", exponent=2, name="Yuan Renminbi")
    assert currency("JPY").exponent == 0
    assert currency("KWD").exponent == 3
    assert currency("CLF").exponent == 4


@pytest.mark.parametrize("code", ["cny", "Usd", "XXX", "XAU", "XTS", "", "US", "USDX", " USD"])
def test_unknown_currency_names_the_code(code: str) -> None:
    with pytest.raises(UnknownCurrency, match=repr(code)) as info:
        currency(code)
    assert info.value.code == "UNKNOWN_CURRENCY"


def test_unknown_currency_for_non_string() -> None:
    with pytest.raises(UnknownCurrency):
        currency(840)  # type: ignore[arg-type]
    with pytest.raises(UnknownCurrency):
        currency(["USD"])  # type: ignore[arg-type]


def test_every_exponent_in_the_table_is_covered() -> None:
    # The round-trip properties below sample all codes; make sure the interesting exponents exist.
    assert EXPONENTS == [0, 2, 3, 4]


# --- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.0, 0.5, Decimal(1), "100", True, False, None, Fraction(1)])
def test_amount_must_be_a_plain_int(bad: object) -> None:
    with pytest.raises(InvalidAmount) as info:
        Money(bad, "USD")  # type: ignore[arg-type]
    assert info.value.code == "INVALID_AMOUNT"


def test_amount_range_is_signed_64_bit() -> None:
    assert MAX_MINOR == 9_223_372_036_854_775_807
    assert Money(MAX_MINOR, "USD").amount == MAX_MINOR
    assert Money(-MAX_MINOR, "USD").amount == -MAX_MINOR
    for bad in (MAX_MINOR + 1, -MAX_MINOR - 1, 2**64, -(2**100)):
        with pytest.raises(AmountOutOfRange) as info:
            Money(bad, "USD")
        assert info.value.code == "AMOUNT_OUT_OF_RANGE"


def test_currency_must_be_known() -> None:
    with pytest.raises(UnknownCurrency):
        Money(1, "usd")
    with pytest.raises(UnknownCurrency):
        Money(1, "XAU")


def test_money_is_frozen_and_hashable() -> None:
    m = Money(100, "USD")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.amount = 5  # type: ignore[misc]
    assert {m, Money(100, "USD")} == {m}
    assert not hasattr(m, "__dict__")  # slots
    assert Money.zero("JPY") == Money(0, "JPY")


def test_errors_are_money_errors() -> None:
    for exc in (UnknownCurrency, CurrencyMismatch, AmountOutOfRange, InvalidAmount):
        assert issubclass(exc, MoneyError)


# --- arithmetic and comparison -------------------------------------------------------------------


def test_arithmetic_same_currency() -> None:
    a, b = Money(1234, "CNY"), Money(-34, "CNY")
    assert a + b == Money(1200, "CNY")
    assert a - b == Money(1268, "CNY")
    assert -a == Money(-1234, "CNY")
    assert abs(b) == Money(34, "CNY")
    assert a * 3 == Money(3702, "CNY")
    assert 3 * a == Money(3702, "CNY")
    assert a * -1 == -a
    assert a * 0 == Money.zero("CNY")


def test_ordering_same_currency() -> None:
    small, big = Money(-5, "EUR"), Money(7, "EUR")
    assert small < big
    assert small <= big
    assert small <= Money(-5, "EUR")
    assert big > small
    assert big >= small
    assert big >= Money(7, "EUR")
    assert not big < small
    assert sorted([big, small, Money(0, "EUR")]) == [small, Money(0, "EUR"), big]


def test_equality_across_currencies_is_false_not_an_error() -> None:
    assert Money(100, "USD") != Money(100, "EUR")
    assert Money(100, "USD") == Money(100, "USD")
    plain_int: object = 100
    assert Money(100, "USD") != plain_int


@pytest.mark.parametrize(
    "op",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
)
def test_cross_currency_operations_raise(op: object) -> None:
    assert callable(op)
    with pytest.raises(CurrencyMismatch, match="USD and EUR") as info:
        op(Money(1, "USD"), Money(1, "EUR"))
    assert info.value.code == "CURRENCY_MISMATCH"


@pytest.mark.parametrize("factor", [1.5, 2.0, Decimal(2), Fraction(1, 2), True, "2"])
def test_multiplication_only_by_int(factor: object) -> None:
    m = Money(100, "USD")
    with pytest.raises(TypeError):
        m * factor  # type: ignore[operator]
    with pytest.raises(TypeError):
        factor * m  # type: ignore[operator]


def test_money_times_money_and_mixed_types_are_type_errors() -> None:
    m = Money(100, "USD")
    with pytest.raises(TypeError):
        m * m  # type: ignore[operator]
    with pytest.raises(TypeError):
        m + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        m < 1  # type: ignore[operator]  # noqa: B015


def test_overflow_is_detected() -> None:
    top = Money(MAX_MINOR, "USD")
    with pytest.raises(AmountOutOfRange):
        top + Money(1, "USD")
    with pytest.raises(AmountOutOfRange):
        -top - Money(1, "USD")
    with pytest.raises(AmountOutOfRange):
        top * 2
    # The range is symmetric, so negation and abs can never overflow.
    bottom = -top
    assert bottom.amount == -MAX_MINOR
    assert -bottom == top
    assert abs(bottom) == top


@given(a=amounts, b=amounts, code=codes)
def test_add_sub_match_integer_arithmetic(a: int, b: int, code: str) -> None:
    for result, op in ((a + b, Money.__add__), (a - b, Money.__sub__)):
        if abs(result) <= MAX_MINOR:
            assert op(Money(a, code), Money(b, code)) == Money(result, code)
        else:
            with pytest.raises(AmountOutOfRange):
                op(Money(a, code), Money(b, code))


# --- parse / format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "minor"),
    [
        ("12.34", "CNY", 1234),
        ("12", "CNY", 1200),
        ("12.3", "CNY", 1230),
        ("-0.5", "CNY", -50),
        ("-0", "CNY", 0),
        ("0.01", "USD", 1),
        ("100", "JPY", 100),
        ("-100", "JPY", -100),
        ("1.234", "KWD", 1234),
        ("0.001", "BHD", 1),
        ("1.2345", "CLF", 12345),
        ("92233720368547758.07", "USD", MAX_MINOR),
        ("-92233720368547758.07", "USD", -MAX_MINOR),
        ("9223372036854775807", "JPY", MAX_MINOR),
    ],
)
def test_parse_valid(text: str, code: str, minor: int) -> None:
    assert Money.parse(text, code) == Money(minor, code)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("12.345", "CNY"),
        ("12.340", "CNY"),
        ("100.5", "JPY"),
        ("100.0", "JPY"),
        ("1.2345", "KWD"),
        ("1e3", "CNY"),
        ("1E3", "CNY"),
        ("abc", "CNY"),
        ("", "CNY"),
        (" 1", "CNY"),
        ("1 ", "CNY"),
        ("1\n", "CNY"),
        ("1,000", "CNY"),
        ("1_000", "CNY"),
        ("NaN", "CNY"),
        ("Infinity", "CNY"),
        ("-Infinity", "CNY"),
        ("+1", "CNY"),
        ("--1", "CNY"),
        (".5", "CNY"),
        ("5.", "CNY"),
        ("-", "CNY"),
        ("\N{ARABIC-INDIC DIGIT ONE}", "JPY"),
        ("\N{FULLWIDTH DIGIT ONE}", "JPY"),
        ("1" * 65, "JPY"),
    ],
)
def test_parse_invalid(text: str, code: str) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(text, code)


def test_parse_rejects_non_strings_and_unknown_currencies() -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(12.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        Money.parse(Decimal("12.5"), "USD")  # type: ignore[arg-type]
    with pytest.raises(UnknownCurrency):
        Money.parse("1", "XXX")


def test_parse_out_of_range() -> None:
    with pytest.raises(AmountOutOfRange):
        Money.parse("92233720368547758.08", "USD")
    with pytest.raises(AmountOutOfRange):
        Money.parse("9" * 30, "JPY")


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(1234, "CNY"), "12.34 CNY"),
        (Money(100, "JPY"), "100 JPY"),
        (Money(-100, "JPY"), "-100 JPY"),
        (Money(1234, "KWD"), "1.234 KWD"),
        (Money(-5, "USD"), "-0.05 USD"),
        (Money(0, "USD"), "0.00 USD"),
        (Money(1, "CLF"), "0.0001 CLF"),
        (Money(MAX_MINOR, "USD"), "92233720368547758.07 USD"),
    ],
)
def test_format(money: Money, text: str) -> None:
    assert money.format() == text
    assert str(money) == text


def test_to_decimal_is_exact_with_currency_places() -> None:
    assert Money(1234, "CNY").to_decimal().as_tuple() == Decimal("12.34").as_tuple()
    assert Money(0, "KWD").to_decimal().as_tuple() == Decimal("0.000").as_tuple()
    assert Money(-5, "USD").to_decimal().as_tuple() == Decimal("-0.05").as_tuple()
    assert Money(100, "JPY").to_decimal().as_tuple() == Decimal("100").as_tuple()
    assert Money(MAX_MINOR, "CLF").to_decimal() == Decimal("922337203685477.5807")


@given(amount=amounts, code=codes)
def test_parse_format_round_trip_every_currency(amount: int, code: str) -> None:
    money = Money(amount, code)
    text, shown_code = money.format().split(" ")
    assert shown_code == code
    assert Money.parse(text, code) == money
    exponent = CURRENCIES[code][1]
    # Exactly `exponent` decimals are shown, and the value is the exact major amount.
    assert len(text.partition(".")[2]) == exponent
    assert Fraction(money.to_decimal()) == Fraction(amount, 10**exponent)
    assert Decimal(text) == money.to_decimal()


@given(
    exponent=st.sampled_from(EXPONENTS),
    whole=st.integers(min_value=0, max_value=10**12),
    data=st.data(),
)
def test_parse_accepts_any_fraction_up_to_exponent(
    exponent: int, whole: int, data: st.DataObject
) -> None:
    code = data.draw(st.sampled_from(_by_exponent(exponent)))
    places = data.draw(st.integers(min_value=0, max_value=exponent))
    fraction = data.draw(st.text(alphabet="0123456789", min_size=places, max_size=places))
    negative = data.draw(st.booleans())
    text = ("-" if negative else "") + str(whole) + ("." + fraction if fraction else "")
    expected = Fraction(text) * 10**exponent
    assert expected.denominator == 1
    assert Money.parse(text, code).amount == int(expected)


# --- allocate ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weights", "parts"),
    [
        (100, [1, 1, 1], [34, 33, 33]),
        (-100, [1, 1, 1], [-34, -33, -33]),
        (2, [1, 1, 1], [1, 1, 0]),
        (1, [1, 1], [1, 0]),
        (0, [3, 7], [0, 0]),
        (5, [0, 1, 0, 1], [0, 3, 0, 2]),
        (10, [7000, 3000], [7, 3]),
        (101, [3333, 3333, 3334], [34, 33, 34]),
        (1000, [1], [1000]),
        (7, [2, 3, 5], [1, 2, 4]),
    ],
)
def test_allocate_examples(total: int, weights: list[int], parts: list[int]) -> None:
    assert allocate(total, weights) == parts


def test_allocate_leftover_goes_to_largest_remainder() -> None:
    # Exact shares of 10 by (1, 2, 3, 4)/10 are 1, 2, 3, 4; by (1, 1, 5): 1.43, 1.43, 7.14.
    assert allocate(10, [1, 1, 5]) == [2, 1, 7]
    # Shares 0.5, 1.25, 1.25 of 3 by (2, 5, 5): floors 0, 1, 1; remainders .5, .25, .25.
    assert allocate(3, [2, 5, 5]) == [1, 1, 1]
    # Shares 1.25, 1.75 by (5, 7) of 3: the larger remainder (second) gets the unit.
    assert allocate(3, [5, 7]) == [1, 2]


@pytest.mark.parametrize(
    "weights",
    [[], [0], [0, 0], [1, -1], [-1, 2], [1.5], [True, 1], [Decimal(1)], ["1"]],
)
def test_allocate_rejects_bad_weights(weights: list[object]) -> None:
    with pytest.raises(InvalidAmount):
        allocate(100, weights)  # type: ignore[arg-type]


@pytest.mark.parametrize("total", [1.0, Decimal(1), True, "1"])
def test_allocate_rejects_non_int_total(total: object) -> None:
    with pytest.raises(InvalidAmount):
        allocate(total, [1, 1])  # type: ignore[arg-type]


def test_allocate_accepts_any_sequence() -> None:
    assert allocate(10, (1, 1)) == [5, 5]
    assert allocate(10, range(1, 3)) == [3, 7]


totals = st.integers(min_value=-(2**62), max_value=2**62)
weight_lists = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30).filter(
    lambda ws: sum(ws) > 0
)


@given(total=totals, weights=weight_lists)
def test_allocate_conserves_total_and_is_within_one_of_exact(
    total: int, weights: list[int]
) -> None:
    parts = allocate(total, weights)
    assert len(parts) == len(weights)
    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, weight_sum)
        assert abs(part - exact) < 1
        # Rounded towards or away from zero, never past the next integer, and signed like total.
        assert math.floor(abs(exact)) <= abs(part) <= math.ceil(abs(exact))
        if weight == 0:
            assert part == 0


@given(total=totals, weights=weight_lists)
def test_allocate_is_deterministic_and_sign_symmetric(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert allocate(total, list(weights)) == parts
    assert allocate(-total, weights) == [-p for p in parts]


@given(
    total=totals,
    weights=weight_lists,
    scale=st.integers(min_value=2, max_value=1000),
)
def test_allocate_depends_only_on_weight_ratios(total: int, weights: list[int], scale: int) -> None:
    assert allocate(total, [w * scale for w in weights]) == allocate(total, weights)


@given(total=totals, weights=weight_lists)
def test_allocate_bumps_exactly_the_largest_remainders(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    weight_sum = sum(weights)
    magnitude = abs(total)
    bumped: list[tuple[Fraction, int]] = []
    kept: list[tuple[Fraction, int]] = []
    for i, (part, weight) in enumerate(zip(parts, weights, strict=True)):
        share = Fraction(magnitude * weight, weight_sum)
        remainder = share - math.floor(share)
        (bumped if abs(part) > math.floor(share) else kept).append((remainder, i))
    # Every bumped part beats every kept part: larger remainder, or equal and lower index.
    for rb, ib in bumped:
        for rk, ik in kept:
            assert (rb, -ib) > (rk, -ik)


def test_allocate_money() -> None:
    parts = allocate_money(Money(-1001, "KWD"), [1, 1])
    assert parts == [Money(-501, "KWD"), Money(-500, "KWD")]
    assert allocate_money(Money(MAX_MINOR, "USD"), [1, 1]) == [
        Money(MAX_MINOR // 2 + 1, "USD"),
        Money(MAX_MINOR // 2, "USD"),
    ]


@given(amount=amounts, code=codes, weights=weight_lists)
def test_allocate_money_conserves(amount: int, code: str, weights: list[int]) -> None:
    total = Money(amount, code)
    parts = allocate_money(total, weights)
    assert all(p.currency == code for p in parts)
    assert sum(parts, Money.zero(code)) == total


# --- rounding and conversion ---------------------------------------------------------------------


def test_rounding_maps_to_decimal_modes() -> None:
    assert {r.name: r.value for r in Rounding} == {
        "HALF_UP": decimal.ROUND_HALF_UP,
        "HALF_EVEN": decimal.ROUND_HALF_EVEN,
        "DOWN": decimal.ROUND_DOWN,
        "UP": decimal.ROUND_UP,
        "FLOOR": decimal.ROUND_FLOOR,
        "CEILING": decimal.ROUND_CEILING,
    }


def test_convert_returns_the_record() -> None:
    source = Money.parse("100.00", "USD")
    record = convert(source, "CNY", Decimal("7.1234"), Rounding.HALF_UP)
    assert record == FxConversion(
        source=source,
        target=Money.parse("712.34", "CNY"),
        rate=Decimal("7.1234"),
        rounding=Rounding.HALF_UP,
    )


@pytest.mark.parametrize(
    ("source", "to", "rate", "rounding", "target"),
    [
        # 123.45 USD * 7.1234 = 879.383733 CNY
        (Money(12345, "USD"), "CNY", "7.1234", Rounding.HALF_UP, Money(87938, "CNY")),
        (Money(12345, "USD"), "CNY", "7.1234", Rounding.CEILING, Money(87939, "CNY")),
        # 12345 JPY * 0.0020123 = 24.8418435 KWD: exponent 0 -> 3
        (Money(12345, "JPY"), "KWD", "0.0020123", Rounding.HALF_UP, Money(24842, "KWD")),
        (Money(12345, "JPY"), "KWD", "0.0020123", Rounding.DOWN, Money(24841, "KWD")),
        (Money(1000, "JPY"), "KWD", "0.002", Rounding.DOWN, Money(2000, "KWD")),
        # 1.234 KWD * 497.3 = 613.6682 JPY: exponent 3 -> 0
        (Money(1234, "KWD"), "JPY", "497.3", Rounding.HALF_UP, Money(614, "JPY")),
        (Money(1234, "KWD"), "JPY", "497.3", Rounding.FLOOR, Money(613, "JPY")),
        # 1.2345 CLF * 39000.5 = 48146.11725 CLP: exponent 4 -> 0
        (Money(12345, "CLF"), "CLP", "39000.5", Rounding.HALF_EVEN, Money(48146, "CLP")),
        (Money(12345, "CLF"), "CLP", "39000.5", Rounding.CEILING, Money(48147, "CLP")),
        # int rate
        (Money(250, "USD"), "JPY", 150, Rounding.HALF_UP, Money(375, "JPY")),
        # rounding to zero and the smallest unit
        (Money(1, "JPY"), "USD", "0.0001", Rounding.HALF_UP, Money(0, "USD")),
        (Money(1, "JPY"), "USD", "0.0001", Rounding.UP, Money(1, "USD")),
        (Money(-1, "JPY"), "USD", "0.0001", Rounding.FLOOR, Money(-1, "USD")),
    ],
)
def test_convert_examples(
    source: Money, to: str, rate: str | int, rounding: Rounding, target: Money
) -> None:
    exact_rate = Decimal(rate) if isinstance(rate, str) else rate
    assert convert(source, to, exact_rate, rounding).target == target


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        # 1.00 USD * rate -> EUR cents: 12.5, 13.5, -12.5, -13.5 are exact ties.
        (
            "0.125",
            {"HALF_UP": 13, "HALF_EVEN": 12, "DOWN": 12, "UP": 13, "FLOOR": 12, "CEILING": 13},
        ),
        (
            "0.135",
            {"HALF_UP": 14, "HALF_EVEN": 14, "DOWN": 13, "UP": 14, "FLOOR": 13, "CEILING": 14},
        ),
        (
            "0.1250000000000000000000000000001",
            {"HALF_UP": 13, "HALF_EVEN": 13, "DOWN": 12, "UP": 13, "FLOOR": 12, "CEILING": 13},
        ),
    ],
)
def test_convert_tie_cases(rate: str, expected: dict[str, int]) -> None:
    for rounding in Rounding:
        up = convert(Money(100, "USD"), "EUR", Decimal(rate), rounding).target.amount
        assert up == expected[rounding.name], rounding
    # Negative amounts: the mirror image, with FLOOR and CEILING swapped.
    mirrored = {"FLOOR": "CEILING", "CEILING": "FLOOR"}
    for rounding in Rounding:
        down = convert(Money(-100, "USD"), "EUR", Decimal(rate), rounding).target.amount
        assert down == -expected[mirrored.get(rounding.name, rounding.name)], rounding


def test_convert_is_exact_beyond_default_decimal_precision() -> None:
    # The product has 56 significant digits; the default 28-digit context would round it to
    # `amount` before the named rounding, and UP would then wrongly return `amount`.
    amount = 9_000_000_000_000_000_001
    rate = Decimal("1.0000000000000000000000000000000000001")
    assert decimal.getcontext().prec < 56
    up = convert(Money(amount, "JPY"), "JPY", rate, Rounding.UP)
    assert up.target.amount == amount + 1
    down = convert(Money(amount, "JPY"), "JPY", rate, Rounding.DOWN)
    assert down.target.amount == amount
    # A tie far below the default precision's reach is still seen as a tie.
    half = Decimal("0.5")
    assert convert(Money(amount, "JPY"), "JPY", half, Rounding.HALF_EVEN).target.amount == (
        4_500_000_000_000_000_000
    )
    assert convert(Money(amount, "JPY"), "JPY", half, Rounding.HALF_UP).target.amount == (
        4_500_000_000_000_000_001
    )


def _reference_round(exact: Fraction, rounding: Rounding) -> int:
    floor, ceil = math.floor(exact), math.ceil(exact)
    toward_zero = floor if exact >= 0 else ceil
    away = ceil if exact >= 0 else floor
    if floor == ceil:
        return floor
    result = {
        Rounding.DOWN: toward_zero,
        Rounding.UP: away,
        Rounding.FLOOR: floor,
        Rounding.CEILING: ceil,
    }.get(rounding)
    if result is not None:
        return result
    fraction = exact - floor
    if fraction != Fraction(1, 2):
        return floor if fraction < Fraction(1, 2) else ceil
    if rounding is Rounding.HALF_UP:
        return away
    return floor if floor % 2 == 0 else ceil


rates = st.builds(
    lambda coefficient, exponent: Decimal(f"{coefficient}E{exponent}"),
    st.integers(min_value=1, max_value=10**12),
    st.integers(min_value=-16, max_value=4),
)


@given(
    amount=st.integers(min_value=-(10**15), max_value=10**15),
    source=codes,
    target=codes,
    rate=rates,
    rounding=roundings,
)
def test_convert_matches_exact_fraction_reference(
    amount: int, source: str, target: str, rate: Decimal, rounding: Rounding
) -> None:
    shift = CURRENCIES[target][1] - CURRENCIES[source][1]
    exact = Fraction(amount) * Fraction(rate) * Fraction(10) ** shift
    expected = _reference_round(exact, rounding)
    if abs(expected) > MAX_MINOR:
        with pytest.raises(AmountOutOfRange):
            convert(Money(amount, source), target, rate, rounding)
        return
    record = convert(Money(amount, source), target, rate, rounding)
    assert record.target == Money(expected, target)
    assert record.source == Money(amount, source)
    assert record.rate == rate
    assert record.rounding is rounding
    assert abs(record.target.amount - exact) < 1


@given(amount=amounts, data=st.data(), rounding=roundings)
def test_convert_rate_one_same_exponent_is_identity(
    amount: int, data: st.DataObject, rounding: Rounding
) -> None:
    exponent = data.draw(st.sampled_from(EXPONENTS))
    source = data.draw(st.sampled_from(_by_exponent(exponent)))
    target = data.draw(st.sampled_from(_by_exponent(exponent)))
    ones: list[Decimal | int] = [Decimal(1), Decimal("1.000000"), Decimal("1E0"), 1]
    rate = data.draw(st.sampled_from(ones))
    record = convert(Money(amount, source), target, rate, rounding)
    assert record.target == Money(amount, target)


@pytest.mark.parametrize(
    "rate",
    [
        1.0,
        7.1234,
        True,
        "7.1234",
        None,
        Fraction(1),
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        Decimal(0),
        Decimal("-0"),
        Decimal("-1.5"),
        0,
        -3,
    ],
)
def test_convert_rejects_bad_rates(rate: object) -> None:
    with pytest.raises(InvalidAmount):
        convert(Money(100, "USD"), "EUR", rate, Rounding.HALF_UP)  # type: ignore[arg-type]


def test_convert_rejects_bad_arguments() -> None:
    with pytest.raises(UnknownCurrency):
        convert(Money(100, "USD"), "usd", Decimal(1), Rounding.HALF_UP)
    with pytest.raises(TypeError):
        convert(Money(100, "USD"), "EUR", Decimal(1), decimal.ROUND_HALF_UP)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        convert(100, "EUR", Decimal(1), Rounding.HALF_UP)  # type: ignore[arg-type]


def test_convert_out_of_range() -> None:
    with pytest.raises(AmountOutOfRange):
        convert(Money(MAX_MINOR, "USD"), "EUR", Decimal(2), Rounding.DOWN)
    with pytest.raises(AmountOutOfRange):
        convert(Money(MAX_MINOR, "JPY"), "KWD", Decimal(1), Rounding.DOWN)
    with pytest.raises(AmountOutOfRange):
        convert(Money(1, "USD"), "EUR", Decimal("1E+999999999999999999"), Rounding.DOWN)
    # Just inside: the largest amount at rate 1 with a shrinking exponent.
    record = convert(Money(MAX_MINOR, "KWD"), "JPY", Decimal(1), Rounding.DOWN)
    assert record.target == Money(MAX_MINOR // 1000, "JPY")
