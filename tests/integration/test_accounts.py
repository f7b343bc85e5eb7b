from datetime import timedelta

import pytest

from clearhouse.accounts import handlers
from clearhouse.accounts.model import (
    MAX_ACCOUNTS_PER_CUSTOMER,
    PLATFORM_ACCOUNT_ID,
    CustomerKind,
    KycLevel,
    LimitKind,
    LimitPeriod,
    Role,
)
from clearhouse.db.transaction import run_in_transaction
from tests.conftest import open_party


def tx(app, fn):
    return run_in_transaction(app.engine, fn)


def test_one_customer_per_real_identity(app):
    now = app.clock.now()

    def make(number):
        return tx(
            app,
            lambda c: handlers.open_customer(
                c,
                name="Li",
                kind=CustomerKind.PERSON,
                kyc_level=KycLevel.CLASS_II,
                id_number=number,
                pii_key=b"k",
                now=now,
            ),
        )

    make("110101199003074578")
    with pytest.raises(handlers.DuplicateIdentity, match=r"110\*+4578"):
        make(" 110101199003074578 ")


def test_account_limit_per_customer(app):
    party = open_party(app, "li", ())
    for i in range(MAX_ACCOUNTS_PER_CUSTOMER - 1):
        tx(
            app,
            lambda c, i=i: handlers.open_account(
                c, customer_id=party.customer_id, login=f"li-{i}", now=app.clock.now()
            ),
        )
    with pytest.raises(handlers.TooManyAccounts):
        tx(
            app,
            lambda c: handlers.open_account(
                c, customer_id=party.customer_id, login="li-x", now=app.clock.now()
            ),
        )
    with pytest.raises(handlers.DuplicateLogin):
        tx(
            app,
            lambda c: handlers.open_account(
                c, customer_id=party.customer_id, login="li-0", now=app.clock.now()
            ),
        )


def test_fund_account_rules(app):
    party = open_party(app, "li", ())

    def open_fund(**kw):
        return tx(
            app, lambda c: handlers.open_fund_account(c, app.chart, now=app.clock.now(), **kw)
        )

    with pytest.raises(handlers.InvalidFundAccount, match="platform"):
        open_fund(account_id=party.account_id, role=Role.ESCROW, currency="CNY")
    with pytest.raises(handlers.InvalidFundAccount, match="sharded"):
        open_fund(
            account_id=PLATFORM_ACCOUNT_ID,
            role=Role.BANK_RESERVE,
            currency="CNY",
            sub="x",
            shards=4,
        )
    with pytest.raises(handlers.UnknownAccount):
        open_fund(account_id="acc_missing", role=Role.BUYER_BALANCE, currency="CNY")


def test_kyc_limits_are_shared_by_every_account_of_an_identity(app):
    party = open_party(app, "wang", (), kyc=KycLevel.CLASS_I)
    day = app.clock.now().date()

    def reserve(amount, on=day):
        return tx(
            app,
            lambda c: handlers.reserve_limit(
                c,
                customer_id=party.customer_id,
                kind=LimitKind.PAYMENT,
                currency="CNY",
                amount_minor=amount,
                on=on,
            ),
        )

    assert reserve(600_00) is None
    breach = reserve(500_00)
    assert breach is not None
    assert breach.used_minor == 600_00
    # A new day, but class I's yearly limit is 1,000.00 too.
    breach = reserve(500_00, day + timedelta(days=1))
    assert breach is not None
    assert breach.limit.period is LimitPeriod.YEAR
    assert reserve(400_00, day + timedelta(days=1)) is None
    assert reserve(1, day + timedelta(days=2)) is not None
