"""The wallet over real HTTP end to end, on SQLite and PostgreSQL: a real-name buyer binds a
card through quick pay, tops up through the WeChat Pay sandbox (a signed, encrypted
notification books 4002), withdraws to the card, and the payout bank sandbox pays the same
card on the same card network."""

from __future__ import annotations

from sqlalchemy import select

from clearhouse.accounts import handlers
from clearhouse.accounts.model import Role
from clearhouse.db.schema import journal_entries
from clearhouse.db.transaction import run_in_transaction
from clearhouse.sandbox.bank import create_app
from clearhouse.sandbox.serving import ServedApp
from clearhouse.wallet.bankwire.adapter import BankAdapter
from tests.card_support import DEBIT
from tests.integration.gateway.live_stack import Stack, credentials, customer, stack
from tests.wallet_support import fund_reserve

__all__ = ["credentials", "customer", "stack"]


def open_balance(stack: Stack, customer_id: str) -> str:
    now = stack.clock.now()

    def work(conn):  # type: ignore[no-untyped-def]
        account = handlers.open_account(conn, customer_id=customer_id, login="zhang", now=now)
        handlers.open_fund_account(
            conn,
            stack.app.chart,
            account_id=account,
            role=Role.BUYER_BALANCE,
            currency="CNY",
            now=now,
        )
        return account

    return str(run_in_transaction(stack.app.engine, work))


def test_topup_by_wechat_pay_then_withdrawal_to_the_bound_card(stack, customer):
    zhang = customer(DEBIT)
    account = open_balance(stack, zhang)
    card = stack.bind_card(zhang, DEBIT)
    made = stack.client.post(
        "/v1/topups",
        {
            "topup_id": "tu-live",
            "account_id": account,
            "amount": 80_000,
            "currency": "CNY",
            "channel": "wechatpay",
            "method": "native",
        },
    )
    assert made.status_code == 201, made.text
    stack.pay_and_notify("wechatpay", made.json()["attempt"]["id"])
    assert stack.payment(made.json()["id"])["status"] == "SUCCEEDED"
    balance = stack.client.get(f"/v1/accounts/{account}/balance").json()
    assert (balance["posted"], balance["available"]) == (80_000, 80_000)

    fund_reserve(stack.app)
    asked = stack.client.post(
        "/v1/withdrawals",
        {
            "withdrawal_id": "w-live",
            "account_id": account,
            "card_id": card["id"],
            "amount": 30_000,
            "currency": "CNY",
        },
    )
    assert asked.status_code == 201, asked.text
    bank = stack.sandboxes.bank
    network_card = bank.issuers.card(DEBIT.card_no)
    assert network_card is not None
    before = network_card.balance.amount
    with ServedApp(create_app(bank)) as served:
        adapter = BankAdapter(bank.credentials, served.base_url, timeout=5.0, clock=stack.clock)
        withdrawals = stack.gateway.wallet.withdrawals
        withdrawals.bank = adapter
        try:
            assert withdrawals.run_batches().paid == 1
        finally:
            adapter.close()
            withdrawals.bank = None
    done = stack.client.get(f"/v1/withdrawals/{asked.json()['id']}").json()
    assert done["status"] == "PAID"
    assert network_card.balance.amount == before + 30_000
    balance = stack.client.get(f"/v1/accounts/{account}/balance").json()
    assert (balance["posted"], balance["available"]) == (50_000, 50_000)
    with stack.app.engine.connect() as conn:
        codes = list(conn.execute(select(journal_entries.c.code)).scalars())
    assert codes.count("4002") == 1
    assert codes.count("5002") == 2  # the hold, and its capture
    assert stack.app.ledger.check() == []
