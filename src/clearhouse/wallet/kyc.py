"""KYC limits (A1) on every movement of a buyer's balance, per identity: every account of one
customer draws on the same limits. A movement reserves its amount when it is accepted (the
usage rows are locked, so racing movements of one identity cannot both fit into the last of a
limit) and releases it if the money never moved, in the window it was counted in."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Connection

from clearhouse.accounts.handlers import release_limit, reserve_limit
from clearhouse.accounts.model import LimitKind, Role, Status
from clearhouse.db.schema import accounts, customers, fund_accounts
from clearhouse.money import Money
from clearhouse.wallet.errors import AccountNotActive, AccountNotFound, KycLimitExceeded


def limit_day(at: datetime, zone: ZoneInfo) -> date:
    """The day a movement counts in: the platform's business day (the ledger's zone)."""
    return at.astimezone(zone).date()


def reserve(conn: Connection, customer_id: str, kind: LimitKind, amount: Money, day: date) -> None:
    breach = reserve_limit(
        conn,
        customer_id=customer_id,
        kind=kind,
        currency=amount.currency,
        amount_minor=amount.amount,
        on=day,
    )
    if breach is not None:
        raise KycLimitExceeded(
            f"{amount} is over the identity's {breach.limit.period.value} {kind.value} limit "
            f"of {Money(breach.limit.amount_minor, amount.currency)}",
            kind=kind.value,
            period=breach.limit.period.value,
            limit=breach.limit.amount_minor,
            headroom=breach.headroom_minor,
        )


def release(conn: Connection, customer_id: str, kind: LimitKind, amount: Money, day: date) -> None:
    release_limit(
        conn,
        customer_id=customer_id,
        kind=kind,
        currency=amount.currency,
        amount_minor=amount.amount,
        on=day,
    )


def buyer_balance(
    conn: Connection, account_id: str, currency: str, *, active: bool = True
) -> tuple[str, int]:
    """The customer and the buyer-balance fund account of an account, or the reason it cannot
    move money (``active``: the account, its customer and the balance must be active)."""
    row = conn.execute(
        select(
            accounts.c.customer_id,
            accounts.c.status.label("account_status"),
            customers.c.status.label("customer_status"),
        )
        .join(customers, customers.c.id == accounts.c.customer_id)
        .where(accounts.c.id == account_id)
    ).first()
    if row is None:
        raise AccountNotFound(f"no account {account_id!r}", account_id=account_id)
    fund = conn.execute(
        select(fund_accounts.c.id, fund_accounts.c.status).where(
            fund_accounts.c.account_id == account_id,
            fund_accounts.c.role == Role.BUYER_BALANCE.value,
            fund_accounts.c.currency == currency,
            fund_accounts.c.sub == "",
        )
    ).first()
    if fund is None:
        other = conn.execute(
            select(fund_accounts.c.currency).where(
                fund_accounts.c.account_id == account_id,
                fund_accounts.c.role == Role.BUYER_BALANCE.value,
            )
        ).first()
        raise AccountNotFound(
            f"account {account_id!r} holds no {currency} balance",
            code=None if other is None else "CURRENCY_MISMATCH",
            account_id=account_id,
        )
    states = {row.account_status, row.customer_status, fund.status}
    if active and states != {Status.ACTIVE.value}:
        raise AccountNotActive(f"account {account_id!r} is not active", account_id=account_id)
    return str(row.customer_id), int(fund.id)


def owner(conn: Connection, account_id: str) -> str:
    """The customer an account belongs to, whatever its state."""
    found = conn.execute(
        select(accounts.c.customer_id).where(accounts.c.id == account_id)
    ).scalar_one_or_none()
    if found is None:
        raise AccountNotFound(f"no account {account_id!r}", account_id=account_id)
    return str(found)
