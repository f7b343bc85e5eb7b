"""The chart of accounts, loaded from ``chart.toml`` and checked whole at load."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

from clearhouse.accounts.model import Role
from clearhouse.errors import ConfigurationError
from clearhouse.ledger.model import Side


class ChartType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    INCOME = "income"
    EXPENSE = "expense"


NORMAL_SIDE: dict[ChartType, Side] = {
    ChartType.ASSET: Side.DEBIT,
    ChartType.EXPENSE: Side.DEBIT,
    ChartType.LIABILITY: Side.CREDIT,
    ChartType.EQUITY: Side.CREDIT,
    ChartType.INCOME: Side.CREDIT,
}


@dataclass(frozen=True, slots=True)
class ChartAccount:
    code: str
    name: str
    type: ChartType
    parent_code: str | None
    is_leaf: bool

    @property
    def normal_side(self) -> Side:
        return NORMAL_SIDE[self.type]


@dataclass(frozen=True, slots=True)
class Chart:
    accounts: dict[str, ChartAccount]
    role_leaf: dict[Role, str]

    def leaf_for(self, role: Role) -> ChartAccount:
        return self.accounts[self.role_leaf[role]]


def load_chart(text: str | None = None) -> Chart:
    if text is None:
        text = resources.files("clearhouse.ledger").joinpath("chart.toml").read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"chart of accounts: {exc}") from exc
    return _build_chart(data)


def _build_chart(data: dict[str, Any]) -> Chart:
    raw = data.get("account", [])
    by_code: dict[str, dict[str, Any]] = {}
    for row in raw:
        code = str(row.get("code", ""))
        if not code or code in by_code:
            raise ConfigurationError(f"chart of accounts: missing or duplicate code {code!r}")
        by_code[code] = row
    parents = {str(r["parent"]) for r in raw if "parent" in r}
    accounts: dict[str, ChartAccount] = {}
    for code, row in by_code.items():
        accounts[code] = ChartAccount(
            code=code,
            name=str(row["name"]),
            type=_type_of(code, by_code),
            parent_code=str(row["parent"]) if "parent" in row else None,
            is_leaf=code not in parents,
        )
    role_leaf: dict[Role, str] = {}
    for role_name, leaf in data.get("roles", {}).items():
        try:
            role = Role(role_name)
        except ValueError:
            raise ConfigurationError(f"chart of accounts: unknown role {role_name!r}") from None
        if leaf not in accounts or not accounts[leaf].is_leaf:
            raise ConfigurationError(
                f"chart of accounts: role {role_name} maps to non-leaf {leaf!r}"
            )
        role_leaf[role] = leaf
    missing = set(Role) - set(role_leaf)
    if missing:
        raise ConfigurationError(f"chart of accounts: roles without a leaf: {sorted(missing)}")
    return Chart(accounts=accounts, role_leaf=role_leaf)


def _type_of(code: str, by_code: dict[str, dict[str, Any]]) -> ChartType:
    """A node's type is its own or its nearest ancestor's; a cycle or orphan is an error."""
    seen: set[str] = set()
    node = code
    while True:
        if node in seen or node not in by_code:
            raise ConfigurationError(f"chart of accounts: {code} has a broken parent chain")
        seen.add(node)
        row = by_code[node]
        if "type" in row:
            try:
                return ChartType(row["type"])
            except ValueError:
                raise ConfigurationError(f"chart of accounts: bad type {row['type']!r}") from None
        if "parent" not in row:
            raise ConfigurationError(f"chart of accounts: root {node} has no type")
        node = str(row["parent"])
