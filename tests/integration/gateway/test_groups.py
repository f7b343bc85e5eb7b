"""Combined payments (P11) and mixed payments (P12) on SQLite and PostgreSQL, against a fake of
our channel port."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from clearhouse.accounts.model import Role
from clearhouse.bootstrap import App
from clearhouse.db.schema import journal_entries, payment_groups, payment_intents, payment_legs
from clearhouse.gateway.channels.port import ChannelStatus
from clearhouse.gateway.errors import DuplicateOrder, InvalidPayment, RefundRefused
from clearhouse.gateway.groups import CombinedRequest, Order
from clearhouse.gateway.legs import LegMethod, LegRequest
from clearhouse.gateway.model import IntentStatus, Settlement
from clearhouse.gateway.payments import PaymentRequest, mixed_channel_part, mixed_parts
from clearhouse.gateway.service import Gateway
from clearhouse.money import Money
from tests.conftest import Party, open_party, platform_fund
from tests.gateway_support import MerchantFixture, add_merchant, enrol
from tests.integration.gateway.test_payments import count, request, settle_via_notification


def cny(amount: int) -> Money:
    return Money(amount, "CNY")


def combined(ref: str, *orders: Order) -> CombinedRequest:
    return CombinedRequest(ref, orders, "wechatpay", "native", Settlement.ESCROW)


@pytest.fixture
def seller(app: App, gateway: Gateway, merchant: MerchantFixture) -> MerchantFixture:
    return add_merchant(app, gateway, name="Tea Farm", parent_id=merchant.id)


def test_one_channel_payment_for_orders_of_two_sellers(app, gateway, channel, merchant, seller):
    group = gateway.groups.create(
        merchant.id,
        combined(
            "cart-1",
            Order("o-1", cny(6_000), "Pu'er cake"),
            Order("o-2", cny(4_001), "Gaiwan", seller.id),
        ),
    )
    assert group.amount == cny(10_001)
    assert len(channel.orders) == 1  # one channel order for the whole cart
    [order] = channel.orders.values()
    assert order.amount == cny(10_001)
    settle_via_notification(gateway, channel, order.attempt_id)
    shown = gateway.groups.view(group)
    assert shown["status"] == "SUCCEEDED"
    first, second = sorted(shown["payments"], key=lambda p: p["amount"], reverse=True)
    # 0.6% of 100.01 = 60.006 -> 60 fen, shared 36 / 24 by amount (largest remainder).
    assert (first["fee"], second["fee"]) == (36, 24)
    assert first["attempt"]["id"] == second["attempt"]["id"] == order.attempt_id
    # Recorded per order: each its own escrow entry, the fee split with them.
    assert count(app, journal_entries) == 4
    assert app.ledger.balance(platform_fund(app, Role.ESCROW)).posted == 10_001
    # Refundable per order, by the marketplace for its seller's order; the channel sees the
    # cart's total and returns its fee share on the cart's basis.
    refund = gateway.refunds.create(merchant.id, second["id"], cny(2_000), "chipped lid")
    [sent] = channel.refunds.values()
    assert (sent.refund, sent.total) == (cny(2_000), cny(10_001))
    assert refund.fee_returned == cny(12)  # 60 x 2000/10001 = 11.998 -> 12
    channel.settle_refund(refund.id)
    gateway.refunds.apply(refund.id, channel.query_refund(refund.id, order.attempt_id), "query")
    assert app.ledger.check() == []


def test_a_combined_payment_is_idempotent_and_refuses_strangers(
    app, gateway, channel, merchant, seller
):
    cart = combined("cart-2", Order("a", cny(100), "a"), Order("b", cny(200), "b", seller.id))
    first = gateway.groups.create(merchant.id, cart)
    again = gateway.groups.create(merchant.id, cart)
    assert again.id == first.id
    assert len(channel.orders) == 1
    with pytest.raises(DuplicateOrder):
        gateway.groups.create(
            merchant.id, combined("cart-2", Order("a", cny(101), "a"), Order("b", cny(1), "b"))
        )
    stranger = add_merchant(app, gateway, name="Elsewhere")
    groups_before, intents_before = count(app, payment_groups), count(app, payment_intents)
    with pytest.raises(InvalidPayment) as refused:
        gateway.groups.create(
            merchant.id,
            combined("cart-3", Order("c", cny(100), "c"), Order("d", cny(1), "d", stranger.id)),
        )
    assert refused.value.code == "NOT_A_SELLER"
    assert (count(app, payment_groups), count(app, payment_intents)) == (
        groups_before,
        intents_before,
    )
    assert len(channel.orders) == 1


# --- mixed payments --------------------------------------------------------------------------


@pytest.fixture
def buyer(app: App, merchant: MerchantFixture) -> Party:
    party = open_party(app, "buyer", (Role.BUYER_BALANCE,))
    enrol(app, merchant.id, party.customer_id)
    app.ledger.post("top-up", "4002", "CNY", {"amount": 5_000}, parties={"buyer": party.account_id})
    return party


def mixed(buyer: Party, order: str = "m-1", **kw: object) -> PaymentRequest:
    parts = [
        ("channel", cny(6_000), None),
        ("balance", cny(3_000), buyer.account_id),
        ("subsidy", cny(1_000), None),
    ]
    return request(order, 10_000, legs=mixed_parts(cny(10_000), parts), **kw)


def balance_of(app: App, buyer: Party) -> tuple[int, int]:
    found = app.ledger.balance(buyer.fund_accounts[Role.BUYER_BALANCE])
    return found.posted, found.available


def test_mixed_payment_holds_the_balance_then_takes_it_with_the_channel(
    app, gateway, channel, merchant, buyer
):
    intent = gateway.payments.create(merchant.id, mixed(buyer))
    [order] = channel.orders.values()
    assert order.amount == cny(6_000)  # the channel carries only its part
    assert balance_of(app, buyer) == (5_000, 2_000)  # held, not yet taken
    settle_via_notification(gateway, channel, order.attempt_id)
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.SUCCEEDED
    assert balance_of(app, buyer) == (2_000, 2_000)
    assert app.ledger.balance(platform_fund(app, Role.ESCROW)).posted == 10_000
    assert app.ledger.check() == []


def test_mixed_payment_whose_channel_part_fails_moves_no_money(
    app, gateway, channel, merchant, buyer
):
    intent = gateway.payments.create(merchant.id, mixed(buyer))
    [order] = channel.orders.values()
    channel.state[order.attempt_id] = ChannelStatus.FAILED
    gateway.payments.apply(order.attempt_id, channel.query(order.attempt_id), "notification")
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.FAILED
    assert balance_of(app, buyer) == (5_000, 5_000)
    assert app.ledger.balance(platform_fund(app, Role.ESCROW)).posted == 0
    with app.engine.connect() as conn:
        assert set(conn.execute(select(payment_legs.c.status)).scalars()) == {"voided"}
    assert app.ledger.check() == []


def test_mixed_payment_whose_balance_part_lapsed_gives_the_channel_part_back(
    app, gateway, channel, merchant, buyer, clock
):
    deadline = clock.now() + timedelta(minutes=5)
    intent = gateway.payments.create(merchant.id, mixed(buyer, expires_at=deadline))
    [order] = channel.orders.values()
    clock.advance(timedelta(days=2))  # the payer pays long after; the balance hold has lapsed
    settle_via_notification(gateway, channel, order.attempt_id)
    assert gateway.payments.get(merchant.id, intent.id).status is IntentStatus.FAILED
    gateway.poller.run_once()  # sends the compensating refund of the channel's part
    [refund] = channel.refunds.values()
    assert refund.refund == cny(6_000)
    channel.settle_refund(refund.refund_no)
    gateway.refunds.apply(
        refund.refund_no, channel.query_refund(refund.refund_no, order.attempt_id), "query"
    )
    assert balance_of(app, buyer) == (5_000, 5_000)
    assert app.ledger.balance(platform_fund(app, Role.ESCROW)).posted == 0
    assert app.ledger.check() == []


def test_mixed_refunds_go_to_the_balance_first_and_never_return_the_subsidy(
    app, gateway, channel, merchant, buyer
):
    intent = gateway.payments.create(merchant.id, mixed(buyer))
    [order] = channel.orders.values()
    settle_via_notification(gateway, channel, order.attempt_id)
    first = gateway.refunds.create(merchant.id, intent.id, cny(2_000), "one tin")
    assert first.status.value == "SUCCEEDED"  # all to the balance: no channel call
    assert channel.refunds == {}
    assert balance_of(app, buyer) == (4_000, 4_000)
    second = gateway.refunds.create(merchant.id, intent.id, cny(5_000), "the rest")
    [sent] = channel.refunds.values()
    assert (sent.refund, sent.total) == (cny(4_000), cny(6_000))  # 1,000 went to the balance
    channel.settle_refund(second.id)
    gateway.refunds.apply(second.id, channel.query_refund(second.id, order.attempt_id), "query")
    assert balance_of(app, buyer) == (5_000, 5_000)
    # The payer paid 9,000 (the platform's 1,000 subsidy is not theirs): 2,000 are left.
    with pytest.raises(RefundRefused) as refused:
        gateway.refunds.create(merchant.id, intent.id, cny(2_001), "more")
    assert refused.value.code == "REFUND_EXCEEDS_REFUNDABLE"
    assert refused.value.details["refundable"] == 2_000
    assert app.ledger.check() == []


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ([("channel", 6_000), ("balance", 3_000)], "LEGS_DO_NOT_ADD_UP"),
        ([("balance", 10_000)], "INVALID_PAYMENT_LEG"),
        ([("channel", 1_000), ("balance", 9_000)], "INSUFFICIENT_BALANCE"),
        ([("channel", 9_000), ("balance", 0), ("subsidy", 1_000)], "INVALID_PAYMENT_LEG"),
    ],
)
def test_bad_mixed_payments_change_nothing(app, gateway, channel, merchant, buyer, parts, code):
    entries = count(app, journal_entries)
    priced = [(m, cny(a), buyer.account_id if m == "balance" else None) for m, a in parts]

    def attempt() -> None:
        legs = mixed_parts(cny(10_000), priced)
        gateway.payments.create(merchant.id, request("bad", 10_000, legs=legs))

    with pytest.raises(InvalidPayment) as refused:
        attempt()
    assert refused.value.code == code
    assert count(app, payment_intents) == 0
    assert count(app, journal_entries) == entries
    assert balance_of(app, buyer) == (5_000, 5_000)
    assert channel.calls == []


@pytest.mark.parametrize(
    ("settlement", "part"),
    [
        (Settlement.ESCROW, LegRequest(LegMethod.BALANCE, cny(50))),  # whose balance?
        (Settlement.ESCROW, LegRequest(LegMethod.SUBSIDY, cny(50), "acc_x")),
        (Settlement.INSTANT, LegRequest(LegMethod.SUBSIDY, cny(50))),  # parts meet in escrow
        (Settlement.ESCROW, LegRequest(LegMethod.SUBSIDY, Money(50, "USD"))),
    ],
)
def test_malformed_parts_are_refused(settlement: Settlement, part: LegRequest) -> None:
    req = PaymentRequest("x", cny(100), "d", "wechatpay", "native", settlement, legs=(part,))
    with pytest.raises(InvalidPayment) as refused:
        mixed_channel_part(req)
    assert refused.value.code == "INVALID_PAYMENT_LEG"
