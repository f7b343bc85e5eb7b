"""Opening customers, accounts and fund accounts; the platform's own accounts; KYC usage.

Each function runs inside the caller's transaction (a SQLAlchemy connection) and commits nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.engine import Connection

from clearhouse.accounts.limits import load_limits
from clearhouse.accounts.model import (
    MAX_ACCOUNTS_PER_CUSTOMER,
    PLATFORM_ACCOUNT_ID,
    PLATFORM_CUSTOMER_ID,
    ROLE_DEFAULTS,
    CustomerKind,
    KycLevel,
    Limit,
    LimitBreach,
    LimitKind,
    LimitPeriod,
    Role,
    Status,
    check_limits,
    mask_id_number,
    normalise_id_number,
)
from clearhouse.db.schema import (
    accounts,
    balances,
    chart_accounts,
    customers,
    fund_accounts,
    limit_usage,
)
from clearhouse.errors import ClearhouseError
from clearhouse.ids import new_id
from clearhouse.ledger.chart import Chart
from clearhouse.ledger.rules import PLATFORM_PARTY, PostingRules
from clearhouse.money import currency as lookup_currency


class AccountError(ClearhouseError):
    code = "ACCOUNT_ERROR"


class DuplicateIdentity(AccountError):
    code = "DUPLICATE_IDENTITY"


class TooManyAccounts(AccountError):
    code = "TOO_MANY_ACCOUNTS"


class DuplicateLogin(AccountError):
    code = "DUPLICATE_LOGIN"


class UnknownCustomer(AccountError):
    code = "UNKNOWN_CUSTOMER"


class UnknownAccount(AccountError):
    code = "UNKNOWN_ACCOUNT"


class InvalidFundAccount(AccountError):
    code = "INVALID_FUND_ACCOUNT"


@dataclass(frozen=True, slots=True)
class FundAccountRef:
    id: int
    account_id: str
    role: Role
    currency: str
    sub: str


def seed_chart(conn: Connection, chart: Chart) -> None:
    """Insert chart accounts that are missing; refuse a chart that contradicts the stored one."""
    stored = {row.code: row for row in conn.execute(select(chart_accounts))}
    # Parents first, so the self-referencing foreign key holds row by row.
    for acc in sorted(chart.accounts.values(), key=lambda a: (a.parent_code is not None, a.code)):
        row = stored.get(acc.code)
        if row is None:
            conn.execute(
                insert(chart_accounts).values(
                    code=acc.code,
                    name=acc.name,
                    type=acc.type.value,
                    normal_side=acc.normal_side.value,
                    parent_code=acc.parent_code,
                    is_leaf=acc.is_leaf,
                )
            )
        elif row.type != acc.type.value or row.normal_side != acc.normal_side.value:
            raise AccountError(
                f"chart account {acc.code} is stored as {row.type}; data says {acc.type}"
            )


def id_number_digest(id_number: str, pii_key: bytes) -> bytes:
    """The keyed digest an identity is stored and found by (never the ID number itself)."""
    normal = normalise_id_number(id_number)
    return hmac.new(pii_key, normal.encode(), hashlib.sha256).digest()


def find_identity(conn: Connection, id_number: str, pii_key: bytes) -> str | None:
    """The customer holding this ID number, if any."""
    found = conn.execute(
        select(customers.c.id).where(
            customers.c.id_number_digest == id_number_digest(id_number, pii_key)
        )
    ).scalar_one_or_none()
    return None if found is None else str(found)


def open_customer(
    conn: Connection,
    *,
    name: str,
    kind: CustomerKind,
    kyc_level: KycLevel,
    id_number: str | None,
    pii_key: bytes,
    now: datetime,
    customer_id: str | None = None,
) -> str:
    digest = masked = None
    if id_number is not None:
        normal = normalise_id_number(id_number)
        digest = id_number_digest(normal, pii_key)
        masked = mask_id_number(normal)
        if conn.execute(
            select(customers.c.id).where(customers.c.id_number_digest == digest)
        ).first():
            raise DuplicateIdentity(f"a customer with ID number {masked} already exists")
    cid = customer_id or new_id("cus")
    conn.execute(
        insert(customers).values(
            id=cid,
            kind=kind.value,
            name=name,
            id_number_digest=digest,
            id_number_masked=masked,
            kyc_level=int(kyc_level),
            status=Status.ACTIVE.value,
            created_at=now,
        )
    )
    return cid


def open_account(
    conn: Connection, *, customer_id: str, login: str, now: datetime, account_id: str | None = None
) -> str:
    if conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first() is None:
        raise UnknownCustomer(f"no customer {customer_id}")
    if conn.execute(select(accounts.c.id).where(accounts.c.login == login)).first() is not None:
        raise DuplicateLogin(f"login {login!r} is taken")
    held = conn.execute(select(accounts.c.id).where(accounts.c.customer_id == customer_id)).all()
    if len(held) >= MAX_ACCOUNTS_PER_CUSTOMER:
        raise TooManyAccounts(
            f"customer {customer_id} already holds {len(held)} accounts "
            f"(limit {MAX_ACCOUNTS_PER_CUSTOMER})"
        )
    aid = account_id or new_id("acc")
    conn.execute(
        insert(accounts).values(
            id=aid, customer_id=customer_id, login=login, status=Status.ACTIVE.value, created_at=now
        )
    )
    return aid


def open_fund_account(
    conn: Connection,
    chart: Chart,
    *,
    account_id: str,
    role: Role,
    currency: str,
    now: datetime,
    sub: str = "",
    non_negative: bool | None = None,
    shards: int | None = None,
) -> int:
    """Open a fund account and its balance rows (one per shard); return its id."""
    lookup_currency(currency)
    if conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first() is None:
        raise UnknownAccount(f"no account {account_id}")
    defaults = ROLE_DEFAULTS[role]
    if defaults.platform_only and account_id != PLATFORM_ACCOUNT_ID:
        raise InvalidFundAccount(f"role {role} belongs to the platform account only")
    constrained = defaults.non_negative if non_negative is None else non_negative
    n_shards = defaults.shards if shards is None else shards
    if constrained and n_shards > 1:
        raise InvalidFundAccount("a non-negative account cannot be sharded (ADR 0002)")
    leaf = chart.leaf_for(role)
    fid = conn.execute(
        insert(fund_accounts)
        .values(
            account_id=account_id,
            role=role.value,
            currency=currency,
            sub=sub,
            chart_code=leaf.code,
            normal_side=leaf.normal_side.value,
            non_negative=constrained,
            shards=n_shards,
            status=Status.ACTIVE.value,
            created_at=now,
        )
        .returning(fund_accounts.c.id)
    ).scalar_one()
    conn.execute(
        insert(balances),
        [
            {
                "fund_account_id": fid,
                "shard": shard,
                "debits_posted": 0,
                "credits_posted": 0,
                "debits_pending": 0,
                "credits_pending": 0,
                "version": 0,
                "last_at": now,
            }
            for shard in range(n_shards)
        ],
    )
    return int(fid)


@dataclass(frozen=True, slots=True)
class Holder:
    customer_id: str
    account_id: str
    fund_accounts: dict[Role, int]


def open_holder(
    conn: Connection,
    chart: Chart,
    *,
    name: str,
    login: str,
    kind: CustomerKind,
    kyc_level: KycLevel,
    roles: Sequence[Role],
    currency: str,
    pii_key: bytes,
    now: datetime,
    id_number: str | None = None,
) -> Holder:
    """The usual opening: a customer with one account holding one fund account per role."""
    cid = open_customer(
        conn,
        name=name,
        kind=kind,
        kyc_level=kyc_level,
        id_number=id_number,
        pii_key=pii_key,
        now=now,
    )
    aid = open_account(conn, customer_id=cid, login=login, now=now)
    funds = {
        role: open_fund_account(conn, chart, account_id=aid, role=role, currency=currency, now=now)
        for role in roles
    }
    return Holder(cid, aid, funds)


def ensure_platform(
    conn: Connection, chart: Chart, rules: PostingRules, currency: str, now: datetime
) -> None:
    """Create the platform customer, its account and every platform fund account the posting
    rules name, in ``currency``. Safe to run again: what exists is left alone."""
    if (
        conn.execute(select(customers.c.id).where(customers.c.id == PLATFORM_CUSTOMER_ID)).first()
        is None
    ):
        conn.execute(
            insert(customers).values(
                id=PLATFORM_CUSTOMER_ID,
                kind=CustomerKind.PLATFORM.value,
                name="Platform",
                kyc_level=int(KycLevel.CLASS_III),
                status=Status.ACTIVE.value,
                created_at=now,
            )
        )
        conn.execute(
            insert(accounts).values(
                id=PLATFORM_ACCOUNT_ID,
                customer_id=PLATFORM_CUSTOMER_ID,
                login="platform",
                status=Status.ACTIVE.value,
                created_at=now,
            )
        )
    slots = {
        (slot.role, slot.sub)
        for rule in rules
        for leg in rule.legs
        for slot in (leg.debit, leg.credit)
        if slot.party == PLATFORM_PARTY
    }
    existing = {
        (Role(r.role), r.sub)
        for r in conn.execute(
            select(fund_accounts.c.role, fund_accounts.c.sub).where(
                fund_accounts.c.account_id == PLATFORM_ACCOUNT_ID,
                fund_accounts.c.currency == currency,
            )
        )
    }
    for role, sub in sorted(slots - existing):
        open_fund_account(
            conn,
            chart,
            account_id=PLATFORM_ACCOUNT_ID,
            role=role,
            currency=currency,
            sub=sub,
            now=now,
        )


def find_fund_account(
    conn: Connection, account_id: str, role: Role, currency: str, sub: str = ""
) -> int | None:
    return conn.execute(
        select(fund_accounts.c.id).where(
            fund_accounts.c.account_id == account_id,
            fund_accounts.c.role == role.value,
            fund_accounts.c.currency == currency,
            fund_accounts.c.sub == sub,
        )
    ).scalar_one_or_none()


def set_fund_account_status(conn: Connection, fund_account_id: int, status: Status) -> None:
    result = conn.execute(
        update(fund_accounts)
        .where(fund_accounts.c.id == fund_account_id)
        .values(status=status.value)
    )
    if result.rowcount != 1:
        raise InvalidFundAccount(f"no fund account {fund_account_id}")


def reserve_limit(
    conn: Connection,
    *,
    customer_id: str,
    kind: LimitKind,
    currency: str,
    amount_minor: int,
    on: date,
    limits: list[Limit] | None = None,
) -> LimitBreach | None:
    """Check an amount against the identity's KYC limits and, if it fits, count it as used.

    Usage is kept per customer, so every account of one identity draws on the same limits (A1).
    The usage rows are locked before they are read, so concurrent movements of one identity
    cannot both fit into the same headroom.
    """
    level = conn.execute(
        select(customers.c.kyc_level).where(customers.c.id == customer_id)
    ).scalar_one_or_none()
    if level is None:
        raise UnknownCustomer(f"no customer {customer_id}")
    u = limit_usage.c
    windows = {LimitPeriod.DAY: on, LimitPeriod.YEAR: date(on.year, 1, 1)}

    def where(period: LimitPeriod) -> list[ColumnElement[bool]]:
        return [
            u.customer_id == customer_id,
            u.kind == kind.value,
            u.period == period.value,
            u.period_start == windows[period],
            u.currency == currency,
        ]

    used: dict[LimitPeriod, int] = {}
    for period, start in windows.items():
        stmt = select(u.used_minor).where(*where(period))
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        value = conn.execute(stmt).scalar_one_or_none()
        if value is None:
            # A concurrent first use of the same window loses on the primary key and is retried.
            conn.execute(
                insert(limit_usage).values(
                    customer_id=customer_id,
                    kind=kind.value,
                    period=period.value,
                    period_start=start,
                    currency=currency,
                    used_minor=0,
                )
            )
            value = 0
        used[period] = int(value)
    all_limits = load_limits() if limits is None else limits
    breach = check_limits(all_limits, KycLevel(level), kind, currency, amount_minor, used)
    if breach is not None:
        return breach
    for period in windows:
        conn.execute(
            update(limit_usage).where(*where(period)).values(used_minor=u.used_minor + amount_minor)
        )
    return None


def release_limit(
    conn: Connection,
    *,
    customer_id: str,
    kind: LimitKind,
    currency: str,
    amount_minor: int,
    on: date,
) -> None:
    """Give back usage that ``reserve_limit`` counted on ``on`` for a movement that did not
    happen (a withdrawal the bank refused, a top-up that failed), so money that never moved
    does not use up the identity's limits. The windows are those of the reservation's day."""
    assert amount_minor > 0
    u = limit_usage.c
    for period, start in ((LimitPeriod.DAY, on), (LimitPeriod.YEAR, date(on.year, 1, 1))):
        result = conn.execute(
            update(limit_usage)
            .where(
                u.customer_id == customer_id,
                u.kind == kind.value,
                u.period == period.value,
                u.period_start == start,
                u.currency == currency,
                u.used_minor >= amount_minor,
            )
            .values(used_minor=u.used_minor - amount_minor)
        )
        if result.rowcount != 1:
            raise AccountError(
                f"no {kind.value} usage of {amount_minor} to release for {customer_id} "
                f"({period.value} of {start})"
            )
