"""Posting rules (L1): a data file maps each transaction code to the legs of its entry.

Business code asks for a code and amounts; it never writes entries by hand. A rule's legs name
their accounts by *slot*: ``party.role`` or ``party.role.sub``. The caller binds each party to an
account id; the ``platform`` party is always the platform's own account.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from clearhouse.accounts.model import ROLE_DEFAULTS, Role
from clearhouse.errors import ConfigurationError
from clearhouse.ledger.model import MAX_MINOR, Reason, Rejection

PLATFORM_PARTY = "platform"
_CODE = re.compile(r"^[0-9]{4}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True, slots=True)
class Slot:
    party: str
    role: Role
    sub: str = ""

    def __str__(self) -> str:
        return f"{self.party}.{self.role}" + (f".{self.sub}" if self.sub else "")


@dataclass(frozen=True, slots=True)
class Leg:
    index: int
    debit: Slot
    credit: Slot
    amount: str  # name of the amount variable
    optional: bool  # an optional leg with amount 0 is left out


@dataclass(frozen=True, slots=True)
class PostingRule:
    code: str
    name: str
    legs: tuple[Leg, ...]

    @property
    def amount_names(self) -> frozenset[str]:
        return frozenset(leg.amount for leg in self.legs)

    @property
    def parties(self) -> frozenset[str]:
        slots = [s for leg in self.legs for s in (leg.debit, leg.credit)]
        return frozenset(s.party for s in slots if s.party != PLATFORM_PARTY)


@dataclass(frozen=True, slots=True)
class RenderedLeg:
    leg: Leg
    amount: int


class PostingRules:
    def __init__(self, rules: Mapping[str, PostingRule]) -> None:
        self._rules = dict(rules)

    def get(self, code: str) -> PostingRule | None:
        return self._rules.get(code)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._rules.values(), key=lambda r: r.code))

    def __len__(self) -> int:
        return len(self._rules)


def render(
    rule: PostingRule, amounts: Mapping[str, int], parties: Mapping[str, str]
) -> list[RenderedLeg] | Rejection:
    """The legs an entry of this rule has for these amounts, or why there can be none."""
    missing_parties = sorted(rule.parties - set(parties))
    if missing_parties:
        return Rejection(Reason.MISSING_PARTY, f"rule {rule.code} needs parties {missing_parties}")
    extra_parties = sorted(set(parties) - rule.parties)
    if extra_parties:
        return Rejection(
            Reason.UNEXPECTED_PARTY, f"rule {rule.code} has no parties {extra_parties}"
        )
    names = rule.amount_names
    missing = sorted(names - set(amounts))
    if missing:
        return Rejection(Reason.MISSING_AMOUNT, f"rule {rule.code} needs amounts {missing}")
    extra = sorted(set(amounts) - names)
    if extra:
        return Rejection(Reason.UNEXPECTED_AMOUNT, f"rule {rule.code} has no amounts {extra}")
    legs: list[RenderedLeg] = []
    for leg in rule.legs:
        value = amounts[leg.amount]
        if value > MAX_MINOR:
            return Rejection(Reason.AMOUNT_TOO_LARGE, f"{leg.amount}={value} exceeds 64 bits")
        if value < 0 or (value == 0 and not leg.optional):
            return Rejection(Reason.AMOUNT_NOT_POSITIVE, f"{leg.amount}={value}")
        if value > 0:
            legs.append(RenderedLeg(leg, value))
    if not legs:
        return Rejection(Reason.AMOUNT_NOT_POSITIVE, f"rule {rule.code}: every amount is zero")
    return legs


def load_rules(text: str | None = None) -> PostingRules:
    if text is None:
        text = (
            resources.files("clearhouse.ledger").joinpath("posting_rules.toml").read_text("utf-8")
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"posting rules: {exc}") from exc
    rules: dict[str, PostingRule] = {}
    for raw in data.get("rule", []):
        rule = _parse_rule(raw)
        if rule.code in rules:
            raise ConfigurationError(f"posting rules: code {rule.code} defined twice")
        rules[rule.code] = rule
    if not rules:
        raise ConfigurationError("posting rules: no rules defined")
    return PostingRules(rules)


def _parse_rule(raw: dict[str, Any]) -> PostingRule:
    code = str(raw.get("code", ""))
    if not _CODE.match(code):
        raise ConfigurationError(f"posting rules: code {code!r} is not four digits")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"posting rules: {code} has no name")
    raw_legs = raw.get("legs")
    if not isinstance(raw_legs, list) or not raw_legs:
        raise ConfigurationError(f"posting rules: {code} has no legs")
    legs = tuple(_parse_leg(code, i, leg) for i, leg in enumerate(raw_legs))
    if len(legs) == 1 and legs[0].optional:
        # An entry whose legs are all optional and all zero is refused when rendered
        # (AMOUNT_NOT_POSITIVE); a sole optional leg could only ever mean that.
        raise ConfigurationError(f"posting rules: {code} has a single leg and it is optional")
    return PostingRule(code=code, name=name, legs=legs)


def _parse_leg(code: str, index: int, raw: dict[str, Any]) -> Leg:
    where = f"posting rules: {code} leg {index}"
    unknown = set(raw) - {"debit", "credit", "amount", "optional"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {sorted(unknown)}")
    amount = raw.get("amount")
    if not isinstance(amount, str) or not _NAME.match(amount):
        raise ConfigurationError(f"{where}: amount must name a variable, got {amount!r}")
    debit = _parse_slot(where, raw.get("debit"))
    credit = _parse_slot(where, raw.get("credit"))
    if debit == credit:
        raise ConfigurationError(f"{where}: debits and credits the same slot {debit}")
    return Leg(index, debit, credit, amount, optional=bool(raw.get("optional", False)))


def _parse_slot(where: str, text: Any) -> Slot:
    parts = text.split(".") if isinstance(text, str) else []
    if len(parts) not in (2, 3) or not all(_NAME.match(p) for p in parts):
        raise ConfigurationError(f"{where}: slot {text!r} is not party.role[.sub]")
    try:
        role = Role(parts[1])
    except ValueError:
        raise ConfigurationError(f"{where}: unknown role {parts[1]!r}") from None
    party = parts[0]
    if ROLE_DEFAULTS[role].platform_only and party != PLATFORM_PARTY:
        raise ConfigurationError(f"{where}: role {role} belongs to the platform, not {party!r}")
    return Slot(party=party, role=role, sub=parts[2] if len(parts) == 3 else "")
