"""The account system's domain: customers, login accounts, fund accounts and their roles, KYC.

Pure: no database, no I/O. A customer is one real identity; it holds a few login accounts; each
account holds fund accounts, one per role, currency and (optionally) sub-name; every fund account
maps onto a leaf of the chart of accounts (see ``clearhouse.ledger.chart``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

MAX_ACCOUNTS_PER_CUSTOMER = 5  # A2: login accounts one identity may hold
PLATFORM_CUSTOMER_ID = "cus_platform"
PLATFORM_ACCOUNT_ID = "acc_platform"
DEFAULT_HOT_SHARDS = 16


class CustomerKind(StrEnum):
    PERSON = "person"
    COMPANY = "company"
    PLATFORM = "platform"


class Status(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class Role(StrEnum):
    MERCHANT_SETTLEMENT = "merchant_settlement"
    MERCHANT_DEPOSIT = "merchant_deposit"
    BUYER_BALANCE = "buyer_balance"
    BUYER_CREDIT = "buyer_credit"
    BUYER_POINTS = "buyer_points"
    COMMISSION_INCOME = "commission_income"
    CHANNEL_FEES = "channel_fees"
    CHANNEL_CLEARING = "channel_clearing"
    ESCROW = "escrow"
    SUBSIDY = "subsidy"
    SUSPENSE = "suspense"
    TAX_PAYABLE = "tax_payable"
    BANK_RESERVE = "bank_reserve"
    CAPITAL = "capital"


@dataclass(frozen=True, slots=True)
class RoleDefaults:
    platform_only: bool
    non_negative: bool
    # Platform accounts that nearly every entry touches are split into shards so that concurrent
    # entries do not queue on one row lock (docs/adr/0002-hot-accounts.md).
    shards: int


ROLE_DEFAULTS: dict[Role, RoleDefaults] = {
    Role.MERCHANT_SETTLEMENT: RoleDefaults(platform_only=False, non_negative=True, shards=1),
    Role.MERCHANT_DEPOSIT: RoleDefaults(platform_only=False, non_negative=True, shards=1),
    Role.BUYER_BALANCE: RoleDefaults(platform_only=False, non_negative=True, shards=1),
    Role.BUYER_CREDIT: RoleDefaults(platform_only=False, non_negative=True, shards=1),
    Role.BUYER_POINTS: RoleDefaults(platform_only=False, non_negative=True, shards=1),
    Role.COMMISSION_INCOME: RoleDefaults(True, non_negative=False, shards=DEFAULT_HOT_SHARDS),
    Role.CHANNEL_FEES: RoleDefaults(True, non_negative=False, shards=DEFAULT_HOT_SHARDS),
    Role.CHANNEL_CLEARING: RoleDefaults(True, non_negative=False, shards=DEFAULT_HOT_SHARDS),
    Role.ESCROW: RoleDefaults(True, non_negative=False, shards=DEFAULT_HOT_SHARDS),
    Role.SUBSIDY: RoleDefaults(True, non_negative=False, shards=DEFAULT_HOT_SHARDS),
    Role.SUSPENSE: RoleDefaults(True, non_negative=False, shards=1),
    Role.TAX_PAYABLE: RoleDefaults(True, non_negative=False, shards=1),
    Role.BANK_RESERVE: RoleDefaults(True, non_negative=True, shards=1),
    Role.CAPITAL: RoleDefaults(True, non_negative=False, shards=1),
}


class KycLevel(IntEnum):
    """Real-name verification classes: I (weakest) to III (strongest); 0 is not verified."""

    UNVERIFIED = 0
    CLASS_I = 1
    CLASS_II = 2
    CLASS_III = 3


class LimitKind(StrEnum):
    PAYMENT = "payment"
    WITHDRAWAL = "withdrawal"


class LimitPeriod(StrEnum):
    TRANSACTION = "transaction"
    DAY = "day"
    YEAR = "year"


@dataclass(frozen=True, slots=True)
class Limit:
    level: KycLevel
    kind: LimitKind
    period: LimitPeriod
    currency: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class LimitBreach:
    limit: Limit
    used_minor: int
    requested_minor: int

    @property
    def headroom_minor(self) -> int:
        return max(0, self.limit.amount_minor - self.used_minor)


def check_limits(
    limits: list[Limit],
    level: KycLevel,
    kind: LimitKind,
    currency: str,
    amount_minor: int,
    used_by_period: dict[LimitPeriod, int],
) -> LimitBreach | None:
    """The first limit an amount would break for an identity at ``level``, or None.

    ``used_by_period`` is what the identity (all its accounts together) has already moved in the
    current day and year. A level with no limit row for a period is unlimited there; an
    unverified identity has no rows and may move nothing.
    """
    applicable = [
        lim
        for lim in limits
        if lim.level == level and lim.kind == kind and lim.currency == currency
    ]
    if not applicable:
        blocked = Limit(level, kind, LimitPeriod.TRANSACTION, currency, 0)
        return LimitBreach(blocked, used_minor=0, requested_minor=amount_minor)
    for lim in sorted(applicable, key=lambda x: list(LimitPeriod).index(x.period)):
        used = 0 if lim.period == LimitPeriod.TRANSACTION else used_by_period.get(lim.period, 0)
        if used + amount_minor > lim.amount_minor:
            return LimitBreach(lim, used_minor=used, requested_minor=amount_minor)
    return None


def mask_id_number(id_number: str) -> str:
    """Keep the first 3 and last 4 characters, as Chinese payment apps show an ID number."""
    if len(id_number) <= 7:
        return "*" * len(id_number)
    return id_number[:3] + "*" * (len(id_number) - 7) + id_number[-4:]


def normalise_id_number(id_number: str) -> str:
    return "".join(id_number.split()).upper()
