"""Top-ups through a channel and transfers between buyer balances, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clearhouse.accounts.handlers import set_fund_account_status
from clearhouse.accounts.model import KycLevel, LimitKind, Role, Status
from clearhouse.db.schema import journal_entries, outbox, payment_intents, wallet_transfers
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.errors import InvalidPayment, RefundRefused
from clearhouse.money import Money
from clearhouse.wallet.errors import WalletError
from clearhouse.wallet.topups import TopupRequest
from clearhouse.wallet.transfers import TransferRequest
from tests.conftest import open_party, platform_fund
from tests.gateway_support import enrol
from tests.integration.gateway.test_payments import count, settle_via_notification
from tests.wallet_support import add_buyer, available, posted, used


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


def topup(account_id: str, amount: int = 20_000, ref: str = "tu-1") -> TopupRequest:
    return TopupRequest(ref, account_id, cny(amount), "wechatpay", "native")


def codes(app) -> list[str]:  # type: ignore[no-untyped-def]
    with app.engine.connect() as conn:
        return list(
            conn.execute(select(journal_entries.c.code).order_by(journal_entries.c.id)).scalars()
        )


# --- top-ups ----------------------------------------------------------------------------------


def test_a_topup_through_a_channel_credits_the_buyer_with_4002(app, gateway, channel, merchant):
    buyer = add_buyer(app, merchant_id=merchant.id, card=None)
    shown = gateway.wallet.topup(merchant.id, topup(buyer.account_id))
    assert (shown["purpose"], shown["account_id"], shown["status"]) == (
        "topup",
        buyer.account_id,
        "PROCESSING",
    )
    assert shown["commission"] == 0
    assert used(app, buyer.customer_id, LimitKind.PAYMENT) == 20_000  # counted when accepted
    assert available(app, buyer) == 0
    # A retry is the same top-up, not a second one.
    assert gateway.wallet.topup(merchant.id, topup(buyer.account_id))["id"] == shown["id"]
    settle_via_notification(gateway, channel, shown["attempt"]["id"])
    assert posted(app, buyer) == 20_000
    assert codes(app) == ["4002", "1202"]  # the balance, then the channel's fee; no commission
    fee = gateway.payments.get(merchant.id, shown["id"]).fee
    assert fee == cny(120)  # 0.6%
    assert app.ledger.balance(platform_fund(app, Role.CHANNEL_FEES, "wechatpay")).posted == 120
    with pytest.raises(RefundRefused) as refused:
        gateway.refunds.create(merchant.id, shown["id"], cny(100), "no")
    assert refused.value.code == "TOPUP_NOT_REFUNDABLE"
    assert used(app, buyer.customer_id, LimitKind.PAYMENT) == 20_000
    assert app.ledger.check() == []


def test_a_topup_that_closes_gives_its_kyc_usage_back(app, gateway, channel, merchant):
    buyer = add_buyer(app, merchant_id=merchant.id, card=None)
    shown = gateway.wallet.topup(merchant.id, topup(buyer.account_id))
    closed = gateway.payments.close(merchant.id, shown["id"])
    assert closed.status.value == "CLOSED"
    assert used(app, buyer.customer_id, LimitKind.PAYMENT) == 0
    assert posted(app, buyer) == 0
    assert codes(app) == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": 1_000_001}, "KYC_LIMIT_EXCEEDED"),  # class II: 10,000.00 a day
        ({"account_id": "acc_nobody"}, "ACCOUNT_NOT_FOUND"),
        ({"amount": 0}, "INVALID_AMOUNT"),
    ],
)
def test_bad_topups_store_nothing(app, gateway, channel, merchant, change, code):
    buyer = add_buyer(app, merchant_id=merchant.id, card=None)
    fields = {"account_id": buyer.account_id, "amount": 20_000} | change
    with pytest.raises((WalletError, InvalidPayment)) as refused:
        gateway.wallet.topup(merchant.id, topup(str(fields["account_id"]), int(fields["amount"])))
    assert refused.value.code == code
    assert count(app, payment_intents) == 0
    assert channel.orders == {}
    assert used(app, buyer.customer_id, LimitKind.PAYMENT) == 0


# --- transfers --------------------------------------------------------------------------------


def transfer(payer: str, payee: str, amount: int = 3_000, ref: str = "t-1") -> TransferRequest:
    return TransferRequest(ref, payer, payee, cny(amount), "split the tea")


def test_a_transfer_moves_at_once_and_is_idempotent(app, gateway, merchant):
    alice = add_buyer(app, "alice", merchant_id=merchant.id, balance=10_000, card=None)
    bob = add_buyer(app, "bob", merchant_id=merchant.id, card=None)
    made = gateway.wallet.transfers.create(merchant.id, transfer(alice.account_id, bob.account_id))
    assert made["status"] == "COMPLETED"
    assert (posted(app, alice), posted(app, bob)) == (7_000, 3_000)
    assert codes(app)[-1] == "8001"
    assert used(app, alice.customer_id, LimitKind.PAYMENT) == 3_000
    again = gateway.wallet.transfers.create(merchant.id, transfer(alice.account_id, bob.account_id))
    assert again == made
    assert (posted(app, alice), posted(app, bob)) == (7_000, 3_000)
    with pytest.raises(WalletError) as refused:
        gateway.wallet.transfers.create(
            merchant.id, transfer(alice.account_id, bob.account_id, amount=3_001)
        )
    assert refused.value.code == "DUPLICATE_TRANSFER"
    with app.engine.connect() as conn:
        types = list(conn.execute(select(outbox.c.type)).scalars())
    assert types == ["transfer.completed"]
    assert app.ledger.check() == []


def test_bad_transfers_get_a_code_and_change_nothing(app, gateway, merchant):
    alice = add_buyer(app, "alice", merchant_id=merchant.id, balance=2_000_000, card=None)
    bob = add_buyer(app, "bob", merchant_id=merchant.id, card=None)
    dollars = add_buyer(app, "dollars", merchant_id=merchant.id, card=None, currency="USD")
    frozen = add_buyer(app, "frozen", merchant_id=merchant.id, card=None)
    run_in_transaction(
        app.engine, lambda c: set_fund_account_status(c, frozen.fund_id, Status.FROZEN)
    )
    weak = add_buyer(
        app, "weak", merchant_id=merchant.id, balance=5_000, card=None, kyc=KycLevel.UNVERIFIED
    )
    cases = [
        (transfer(alice.account_id, alice.account_id), "SAME_ACCOUNT"),
        (transfer(alice.account_id, "acc_nobody"), "ACCOUNT_NOT_FOUND"),
        (transfer(alice.account_id, dollars.account_id), "CURRENCY_MISMATCH"),
        (transfer(alice.account_id, frozen.account_id), "ACCOUNT_NOT_ACTIVE"),
        (transfer(bob.account_id, alice.account_id), "INSUFFICIENT_BALANCE"),
        (transfer(alice.account_id, bob.account_id, amount=1_000_001), "KYC_LIMIT_EXCEEDED"),
        (transfer(weak.account_id, bob.account_id, amount=100), "KYC_LIMIT_EXCEEDED"),
        (transfer(alice.account_id, bob.account_id, amount=-5), "INVALID_AMOUNT"),
    ]
    entries = count(app, journal_entries)
    for req, code in cases:
        with pytest.raises(WalletError) as refused:
            gateway.wallet.transfers.create(merchant.id, req)
        assert refused.value.code == code, req
    assert count(app, journal_entries) == entries
    assert count(app, wallet_transfers) == 0
    assert (posted(app, alice), posted(app, bob)) == (2_000_000, 0)
    assert used(app, alice.customer_id, LimitKind.PAYMENT) == 0
    assert used(app, bob.customer_id, LimitKind.PAYMENT) == 0


def test_kyc_limits_are_shared_by_every_account_of_one_identity(app, gateway, merchant):
    from tests.wallet_support import second_account

    alice = add_buyer(app, "alice", merchant_id=merchant.id, balance=800_000, card=None)
    other = second_account(app, alice, balance=800_000)
    bob = open_party(app, "bob", (Role.BUYER_BALANCE,))
    enrol(app, merchant.id, bob.customer_id)
    create = gateway.wallet.transfers.create
    create(merchant.id, transfer(alice.account_id, bob.account_id, 600_000, "a"))
    with pytest.raises(WalletError) as refused:
        create(merchant.id, transfer(other, bob.account_id, 400_001, "b"))
    assert (refused.value.code, refused.value.details["headroom"]) == (
        "KYC_LIMIT_EXCEEDED",
        400_000,
    )
    create(merchant.id, transfer(other, bob.account_id, 400_000, "c"))
    assert used(app, alice.customer_id, LimitKind.PAYMENT) == 1_000_000
