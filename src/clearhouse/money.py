"""Money shared kernel: integer minor units, ISO 4217 currencies, exact allocation and FX.

Amounts are ``int`` minor units that fit a signed 64-bit column. Floats never enter: decimal
input is parsed exactly, FX is computed exactly in ``Decimal`` and rounded once, by a named mode,
and every conversion is returned as a record carrying its rate so it can be stored with the
transaction.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from clearhouse.currencies import CURRENCIES
from clearhouse.errors import AmountOutOfRange, CurrencyMismatch, InvalidAmount, UnknownCurrency

__all__ = [
    "MAX_MINOR",
    "Currency",
    "FxConversion",
    "Money",
    "Rounding",
    "allocate",
    "allocate_money",
    "convert",
    "currency",
]

MAX_MINOR = 2**63 - 1
"""Largest absolute amount in minor units; the range is symmetric so negation never overflows."""


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    numeric: str
    exponent: int
    name: str


_BY_CODE: dict[str, Currency] = {
    code: Currency(code, numeric, exponent, name)
    for code, (numeric, exponent, name) in CURRENCIES.items()
}


def currency(code: str) -> Currency:
    """Look up an ISO 4217 currency by its uppercase alphabetic code; no normalisation."""
    # A str check first: an unhashable argument would otherwise escape as a TypeError.
    found = _BY_CODE.get(code) if isinstance(code, str) else None
    if found is None:
        raise UnknownCurrency(f"unknown currency {code!r}", currency=repr(code))
    return found


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True is not an amount.
    return isinstance(value, int) and not isinstance(value, bool)


# ASCII digits only: \d would accept other scripts' digits, which int() happily converts.
_DECIMAL_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
# Generous bound on parse input: 19 integer digits, 4 decimals, sign and point fit easily; it
# stops absurd strings before int() works on them.
_MAX_PARSE_LEN = 64


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of one currency in minor units (cents, fils, yen).

    Equality across currencies is False; ordering and arithmetic across currencies raise
    :class:`CurrencyMismatch`. Results that leave the 64-bit range raise
    :class:`AmountOutOfRange`.
    """

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not _is_int(self.amount):
            raise InvalidAmount(
                f"amount must be int minor units, not {type(self.amount).__name__}",
                amount=repr(self.amount),
            )
        if abs(self.amount) > MAX_MINOR:
            raise AmountOutOfRange(
                f"amount {self.amount} exceeds the signed 64-bit range", amount=str(self.amount)
            )
        currency(self.currency)

    @classmethod
    def zero(cls, currency_code: str) -> Money:
        return cls(0, currency_code)

    @classmethod
    def parse(cls, text: str, currency_code: str) -> Money:
        """Parse a major-unit decimal string exactly: ``"12.34"`` CNY is 1234 minor units.

        Accepted: optional ``-``, ASCII digits, optionally ``.`` and 1..exponent digits. No
        whitespace, ``+``, grouping, exponents, NaN or infinities. More decimal places than the
        currency has are rejected even when they are zeros ("12.340" CNY): the input claims a
        precision the currency cannot hold, which signals a caller bug.
        """
        exponent = currency(currency_code).exponent
        if not isinstance(text, str) or len(text) > _MAX_PARSE_LEN:
            raise InvalidAmount(f"not a decimal amount: {text!r}", text=repr(text))
        match = _DECIMAL_RE.fullmatch(text)
        if match is None:
            raise InvalidAmount(f"not a decimal amount: {text!r}", text=text)
        sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
        if len(fraction) > exponent:
            raise InvalidAmount(
                f"{text!r} has {len(fraction)} decimal places; {currency_code} allows {exponent}",
                text=text,
                currency=currency_code,
            )
        minor = int(whole + fraction.ljust(exponent, "0"))
        return cls(-minor if sign else minor, currency_code)

    @property
    def exponent(self) -> int:
        return currency(self.currency).exponent

    def to_decimal(self) -> Decimal:
        """The amount in major units, exact, with the currency's number of decimal places."""
        sign = 1 if self.amount < 0 else 0
        digits = tuple(int(d) for d in str(abs(self.amount)))
        return Decimal((sign, digits, -self.exponent))

    def format(self) -> str:
        """``"12.34 CNY"``, ``"100 JPY"``, ``"-1.234 KWD"``: fixed decimals, no grouping."""
        exponent = self.exponent
        sign = "-" if self.amount < 0 else ""
        if exponent == 0:
            return f"{sign}{abs(self.amount)} {self.currency}"
        whole, fraction = divmod(abs(self.amount), 10**exponent)
        return f"{sign}{whole}.{fraction:0{exponent}d} {self.currency}"

    def __str__(self) -> str:
        return self.format()

    def _same_currency(self, other: Money, op: str) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(
                f"cannot {op} {self.currency} and {other.currency}",
                left=self.currency,
                right=other.currency,
            )

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount), self.currency)

    def __mul__(self, factor: int) -> Money:
        # Only integer scaling: fractional factors would need a rounding decision, which belongs
        # to allocate() or convert(), never to an operator.
        if not _is_int(factor):
            return NotImplemented
        return Money(self.amount * factor, self.currency)

    def __rmul__(self, factor: int) -> Money:
        return self.__mul__(factor)

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.amount >= other.amount


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` minor units in proportion to ``weights`` without losing or creating a unit.

    Largest-remainder method: every part starts at the floor of its exact share of ``abs(total)``;
    the units left over go one each to the parts with the largest fractional remainders, ties to
    the lower index, so the result is deterministic. A negative total is split as its absolute
    value and negated, so ``allocate(-t, w) == [-p for p in allocate(t, w)]``. Weights are
    non-negative ints with a positive sum (basis points work); a zero weight always gets 0.
    """
    if not _is_int(total):
        raise InvalidAmount(f"total must be int, not {type(total).__name__}", total=repr(total))
    weights = list(weights)
    if not weights:
        raise InvalidAmount("weights must not be empty")
    for w in weights:
        if not _is_int(w) or w < 0:
            raise InvalidAmount(f"weights must be non-negative ints, got {w!r}", weight=repr(w))
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise InvalidAmount("weights must have a positive sum")

    magnitude = abs(total)
    parts: list[int] = []
    remainders: list[int] = []
    for w in weights:
        part, remainder = divmod(magnitude * w, weight_sum)
        parts.append(part)
        remainders.append(remainder)
    leftover = magnitude - sum(parts)
    # leftover * weight_sum == sum(remainders) and each remainder < weight_sum, so fewer than
    # leftover + 1 parts could never absorb it; only parts with a nonzero remainder get a unit.
    by_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in by_remainder[:leftover]:
        parts[i] += 1
    if total < 0:
        parts = [-p for p in parts]

    # Explicit check rather than assert: it must hold under python -O too.
    if sum(parts) != total:
        raise AssertionError(f"allocate({total}, {weights}) produced {parts}")
    return parts


def allocate_money(total: Money, weights: Sequence[int]) -> list[Money]:
    """:func:`allocate` for :class:`Money`; every part is in the total's currency."""
    return [Money(part, total.currency) for part in allocate(total.amount, weights)]


class Rounding(Enum):
    """The rounding modes payments use, by name, so the mode is explicit and storable."""

    HALF_UP = decimal.ROUND_HALF_UP
    HALF_EVEN = decimal.ROUND_HALF_EVEN
    DOWN = decimal.ROUND_DOWN
    UP = decimal.ROUND_UP
    FLOOR = decimal.ROUND_FLOOR
    CEILING = decimal.ROUND_CEILING


@dataclass(frozen=True, slots=True)
class FxConversion:
    """One currency conversion as it happened: store it with the transaction (M3).

    ``rate`` is major units of ``target.currency`` per one major unit of ``source.currency``;
    ``target`` is ``source * rate`` rounded once, with ``rounding``, to target minor units.
    """

    source: Money
    target: Money
    rate: Decimal
    rounding: Rounding


def _check_rate(rate: Decimal | int) -> Decimal:
    if isinstance(rate, Decimal):
        if not rate.is_finite() or rate <= 0:
            raise InvalidAmount(f"rate must be finite and positive, got {rate}", rate=str(rate))
        return rate
    if _is_int(rate):
        if rate <= 0:
            raise InvalidAmount(f"rate must be positive, got {rate}", rate=str(rate))
        return Decimal(rate)
    raise InvalidAmount(
        f"rate must be a Decimal or int (floats never enter money), not {type(rate).__name__}",
        rate=repr(rate),
    )


def convert(
    money: Money, to_currency: str, rate: Decimal | int, rounding: Rounding
) -> FxConversion:
    """Convert ``money`` at ``rate`` and return the full record; ``.target`` is the result.

    The product is computed exactly (the context precision is sized to the operands and inexact
    results trap), scaled by the exponent difference, then rounded once with ``rounding``.
    """
    if not isinstance(money, Money):
        raise TypeError(f"money must be Money, not {type(money).__name__}")
    if not isinstance(rounding, Rounding):
        raise TypeError(f"rounding must be Rounding, not {type(rounding).__name__}")
    exact_rate = _check_rate(rate)
    target_exponent = currency(to_currency).exponent

    # Exact product of two integers' digits needs at most the sum of their digit counts.
    precision = len(str(abs(money.amount))) + len(exact_rate.as_tuple().digits) + 2
    context = decimal.Context(
        prec=precision,
        Emax=decimal.MAX_EMAX,
        Emin=decimal.MIN_EMIN,
        traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow],
    )
    try:
        exact = context.multiply(Decimal(money.amount), exact_rate)
        exact = context.scaleb(exact, Decimal(target_exponent - money.exponent))
    except decimal.DecimalException as exc:
        # Only reachable with rates beyond any real market (exponents near Decimal's limits).
        raise AmountOutOfRange(
            f"{money} at {exact_rate} is outside the computable range", rate=str(exact_rate)
        ) from exc
    if exact.adjusted() >= len(str(MAX_MINOR)):
        raise AmountOutOfRange(
            f"{money} at {exact_rate} does not fit {to_currency} minor units",
            currency=to_currency,
        )
    # The single rounding. It is inexact by design, so it runs outside the trapping context;
    # the result has at most 20 digits, which the precision must cover.
    minor = exact.quantize(
        Decimal(1), rounding=rounding.value, context=decimal.Context(prec=max(precision, 25))
    )
    target = Money(int(minor), to_currency)
    return FxConversion(source=money, target=target, rate=exact_rate, rounding=rounding)
