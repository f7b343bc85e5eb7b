"""A merchant acts only for its own customers and, as a seller, for its marketplace's, on
SQLite and PostgreSQL: another marketplace's account or card answers exactly as an unknown one
would, and trying changes nothing. Checked in the services, below the HTTP routes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from clearhouse.accounts.model import LimitKind
from clearhouse.bootstrap import App
from clearhouse.db.schema import (
    card_bindings,
    journal_entries,
    outbox,
    payment_intents,
    payment_legs,
    wallet_transfers,
    withdrawals,
)
from clearhouse.errors import ClearhouseError
from clearhouse.gateway.model import Settlement
from clearhouse.gateway.payments import mixed_parts
from clearhouse.gateway.service import Gateway
from clearhouse.money import Money
from clearhouse.wallet.topups import TopupRequest
from clearhouse.wallet.transfers import TransferRequest
from clearhouse.wallet.withdrawals import WithdrawalRequest
from tests.fake_channel import FakeChannel
from tests.gateway_support import MerchantFixture, add_merchant
from tests.integration.gateway.test_payments import count, request
from tests.wallet_support import CAPPED, Buyer, add_buyer, available, fund_reserve, used


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


def refusal(action: Callable[[], Any]) -> tuple[str, str, dict[str, Any]]:
    with pytest.raises(ClearhouseError) as refused:
        action()
    return refused.value.code, refused.value.message, refused.value.details


def as_unknown(act: Callable[[str], Any], known: str, unknown: str) -> str:
    """What ``act`` answers for ``known`` is what it answers for an id that does not exist,
    word for word (but the id); returns the code."""
    seen = json.dumps(refusal(lambda: act(known)))
    baseline = json.dumps(refusal(lambda: act(unknown)))
    assert seen.replace(known, unknown) == baseline
    return str(json.loads(seen)[0])


def mixed(order: str, account_id: str, balance: int = 3_000) -> Any:
    parts = [("channel", cny(10_000 - balance), None), ("balance", cny(balance), account_id)]
    legs = mixed_parts(cny(10_000), parts)
    return request(order, 10_000, legs=legs, settlement=Settlement.ESCROW)


def topup(account_id: str, ref: str = "tu-1") -> TopupRequest:
    return TopupRequest(ref, account_id, cny(2_000), "wechatpay", "native")


@pytest.fixture
def seller(app: App, gateway: Gateway, merchant: MerchantFixture) -> MerchantFixture:
    return add_merchant(app, gateway, name="Tea Farm", parent_id=merchant.id)


@pytest.fixture
def elsewhere(app: App, gateway: Gateway) -> MerchantFixture:
    """Another marketplace."""
    return add_merchant(app, gateway, name="Elsewhere")


def state(app: App, channel: FakeChannel, *buyers: Buyer) -> tuple[Any, ...]:
    tables = (payment_intents, payment_legs, wallet_transfers, withdrawals, card_bindings)
    with app.engine.connect() as conn:
        events = conn.execute(select(outbox.c.id)).all()
    return (
        tuple(count(app, t) for t in (*tables, journal_entries)),
        len(events),
        tuple(available(app, b) for b in buyers),
        tuple(used(app, b.customer_id, k) for b in buyers for k in LimitKind),
        list(channel.calls),
    )


def test_another_marketplaces_buyers_are_unknown_and_trying_changes_nothing(
    app, gateway, channel, merchant, elsewhere
):
    fund_reserve(app)
    mine = add_buyer(app, "mine", merchant_id=merchant.id, balance=100_000)
    theirs = add_buyer(app, "theirs", merchant_id=elsewhere.id, balance=100_000, card=CAPPED)
    before = state(app, channel, mine, theirs)
    wallet, them = gateway.wallet, elsewhere.id
    acts: list[tuple[Callable[[str], Any], str, str]] = [
        # see the balance
        (lambda a: wallet.balance(them, a, "CNY"), mine.account_id, "acc_nobody"),
        # top it up
        (lambda a: wallet.topup(them, topup(a)), mine.account_id, "acc_nobody"),
        # move money out of it, or into it from a buyer of their own
        (
            lambda a: wallet.transfers.create(
                them, TransferRequest("t-1", a, theirs.account_id, cny(100))
            ),
            mine.account_id,
            "acc_nobody",
        ),
        (
            lambda a: wallet.transfers.create(
                them, TransferRequest("t-2", theirs.account_id, a, cny(100))
            ),
            mine.account_id,
            "acc_nobody",
        ),
        # withdraw from it; or pay out their buyer's balance to its card
        (
            lambda a: wallet.withdrawals.request(
                them, WithdrawalRequest("w-1", a, mine.card_id, cny(100))
            ),
            mine.account_id,
            "acc_nobody",
        ),
        (
            lambda c: wallet.withdrawals.request(
                them, WithdrawalRequest("w-2", theirs.account_id, c, cny(100))
            ),
            mine.card_id,
            "card_nobody",
        ),
        # pay from it as the balance part of a mixed payment
        (lambda a: gateway.payments.create(them, mixed("m-1", a)), mine.account_id, "acc_nobody"),
    ]
    codes = [as_unknown(act, known, unknown) for act, known, unknown in acts]
    assert codes == ["ACCOUNT_NOT_FOUND"] * 5 + ["CARD_NOT_FOUND", "ACCOUNT_NOT_FOUND"]
    assert state(app, channel, mine, theirs) == before
    # The same requests for their own buyer go through: the refusals were about scope.
    assert wallet.balance(them, theirs.account_id, "CNY")["available"] == 100_000
    assert wallet.withdrawals.request(
        them, WithdrawalRequest("w-3", theirs.account_id, theirs.card_id, cny(100))
    )
    assert available(app, mine) == 100_000


def test_a_seller_acts_for_its_marketplaces_buyers(app, gateway, channel, merchant, seller):
    fund_reserve(app)
    alice = add_buyer(app, "alice", merchant_id=merchant.id, balance=100_000)
    bob = add_buyer(app, "bob", merchant_id=merchant.id, card=CAPPED)
    wallet = gateway.wallet
    assert wallet.balance(seller.id, alice.account_id, "CNY")["available"] == 100_000
    made = wallet.topup(seller.id, topup(bob.account_id))
    assert (made["status"], made["account_id"]) == ("PROCESSING", bob.account_id)
    moved = wallet.transfers.create(
        seller.id, TransferRequest("t-1", alice.account_id, bob.account_id, cny(1_000))
    )
    assert moved["status"] == "COMPLETED"
    out = WithdrawalRequest("w-1", alice.account_id, alice.card_id, cny(2_000))
    assert wallet.withdrawals.request(seller.id, out)["status"] == "REQUESTED"
    paid = gateway.payments.create(seller.id, mixed("m-1", alice.account_id))
    assert paid.status.value == "PROCESSING"
    assert available(app, alice) == 100_000 - 1_000 - 2_000 - 3_000


def test_the_rule_looks_up_to_the_marketplace_never_down_or_across(
    app, gateway, channel, merchant, seller
):
    """A marketplace does not act for a customer only its seller enrolled, nor does one seller
    for another seller's own customer."""
    sibling = add_merchant(app, gateway, name="Tea Cups", parent_id=merchant.id)
    own = add_buyer(app, "own", merchant_id=seller.id, balance=5_000, card=None)
    balance = gateway.wallet.balance
    assert balance(seller.id, own.account_id, "CNY")["available"] == 5_000
    for other in (merchant.id, sibling.id):
        read = lambda a, m=other: balance(m, a, "CNY")  # noqa: E731
        assert as_unknown(read, own.account_id, "acc_nobody") == "ACCOUNT_NOT_FOUND"
