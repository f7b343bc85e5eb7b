"""KYC limits (A1), loaded from ``kyc_limits.toml``."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

from clearhouse.accounts.model import KycLevel, Limit, LimitKind, LimitPeriod
from clearhouse.errors import ConfigurationError, MoneyError
from clearhouse.money import Money


@cache
def load_limits() -> list[Limit]:
    text = resources.files("clearhouse.accounts").joinpath("kyc_limits.toml").read_text("utf-8")
    return parse_limits(text)


def parse_limits(text: str) -> list[Limit]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"KYC limits: {exc}") from exc
    limits: list[Limit] = []
    for i, row in enumerate(data.get("limit", [])):
        try:
            level = KycLevel(row["level"])
            kind = LimitKind(row["kind"])
            currency = str(row["currency"])
            for period in LimitPeriod:
                if period.value in row:
                    amount = Money.parse(str(row[period.value]), currency).amount
                    limits.append(Limit(level, kind, period, currency, amount))
        except (KeyError, ValueError, MoneyError) as exc:
            raise ConfigurationError(f"KYC limits: row {i}: {exc}") from exc
    return limits
