"""Channel routing against the database (SQLite and PostgreSQL): decisions stored, daily and
per-card limits counted and given back, limits holding under concurrent payments."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from clearhouse.bootstrap import App, upgrade_database
from clearhouse.db.schema import channel_usage, payment_intents, routing_decisions
from clearhouse.gateway.channels.port import ChannelStatus, PayMethod
from clearhouse.gateway.channels.registry import TERMS, ChannelTerms
from clearhouse.gateway.errors import NoRoute
from clearhouse.gateway.model import Settlement
from clearhouse.gateway.payments import PaymentRequest
from clearhouse.gateway.routing import Limits
from clearhouse.gateway.service import Gateway
from clearhouse.money import Money
from tests.fake_channel import FakeChannel
from tests.gateway_support import MerchantFixture, add_merchant, make_gateway

CARD = replace(
    TERMS["wechatpay"],
    methods=frozenset({PayMethod.CARD}),
    family="card",
    limits=Limits(single=50_000, daily=30_000, card_daily=25_000),
)


@pytest.fixture
def cards() -> dict[str, FakeChannel]:
    return {"card_a": FakeChannel(name="card_a"), "card_b": FakeChannel(name="card_b")}


@pytest.fixture
def routed(app: App, cards: dict[str, FakeChannel]) -> Iterator[Gateway]:
    upgrade_database(app)
    terms: dict[str, ChannelTerms] = dict.fromkeys(cards, CARD)
    built = make_gateway(app, dict(cards), terms=terms)
    yield built
    built.close()


@pytest.fixture
def shop(app: App, routed: Gateway) -> MerchantFixture:
    return add_merchant(app, routed)


def pay(order: str, amount: int, card: str = "tok_1") -> PaymentRequest:
    return PaymentRequest(
        merchant_order_id=order,
        amount=Money(amount, "CNY"),
        description="Yixing teapot",
        channel="card",
        method="card",
        settlement=Settlement.ESCROW,
        payer_id=card,
    )


def used(app: App, channel: str, card: str = "") -> int:
    with app.engine.connect() as conn:
        value = conn.execute(
            select(func.coalesce(func.sum(channel_usage.c.used_minor), 0)).where(
                channel_usage.c.channel == channel, channel_usage.c.card == card
            )
        ).scalar()
    return int(value or 0)


def test_family_payments_are_routed_with_the_decision_kept(app, routed, shop, cards):
    intent = routed.payments.create(shop.id, pay("o-1", 10_000))
    attempt = routed.payments.attempts(intent.id)[-1]
    decision = routed.router.decision(intent.id)
    assert decision is not None
    assert decision["chosen"] == attempt.channel
    assert {c["channel"] for c in decision["considered"]} == {"card_a", "card_b"}
    assert used(app, attempt.channel) == 10_000
    assert used(app, attempt.channel, "tok_1") == 10_000
    assert cards[attempt.channel].calls == [f"pay {attempt.id}"]


def test_limits_move_traffic_then_refuse_and_failures_give_usage_back(app, routed, shop, cards):
    # 25,000 per card per day per channel; 30,000 per channel per day.
    first = routed.payments.create(shop.id, pay("o-1", 20_000))
    a = routed.payments.attempts(first.id)[-1].channel
    b = "card_b" if a == "card_a" else "card_a"
    second = routed.payments.create(shop.id, pay("o-2", 20_000))
    assert routed.payments.attempts(second.id)[-1].channel == b  # a's card limit is taken
    with pytest.raises(NoRoute) as refused:
        routed.payments.create(shop.id, pay("o-3", 20_000))
    assert refused.value.details["reasons"] == {a: "OVER_DAILY_LIMIT", b: "OVER_DAILY_LIMIT"}
    with pytest.raises(NoRoute):
        routed.payments.create(shop.id, pay("o-3", 60_000, card="tok_2"))  # single limit
    with app.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(payment_intents)).scalar() == 2
        assert conn.execute(select(func.count()).select_from(routing_decisions)).scalar() == 2
    # The first payment fails at the channel: its usage comes back and the card fits again.
    attempt = routed.payments.attempts(first.id)[-1]
    cards[a].state[attempt.id] = ChannelStatus.FAILED
    routed.payments.apply(attempt.id, cards[a].query(attempt.id), "notification")
    assert used(app, a) == 0
    assert used(app, a, "tok_1") == 0
    third = routed.payments.create(shop.id, pay("o-4", 20_000))
    assert routed.payments.attempts(third.id)[-1].channel == a


def test_a_timing_out_channel_is_skipped_once_its_circuit_opens(app, routed, shop, cards, clock):
    cards["card_a"].pay_times_out = True
    cards["card_b"].pay_times_out = True
    refusal: NoRoute | None = None
    for i in range(12):
        try:
            routed.payments.create(shop.id, pay(f"t-{i}", 100, card=f"tok_{i}"))
        except NoRoute as exc:
            refusal = exc
            break
    assert refusal is not None, "the circuits never opened"
    assert set(refusal.details["reasons"].values()) == {"CIRCUIT_OPEN"}
    for fake in cards.values():
        fake.pay_times_out = False
    clock.advance(timedelta(seconds=31))  # cool-down over: half-open, a trial goes through
    healed = routed.payments.create(shop.id, pay("after", 100, card="tok_new"))
    attempt = routed.payments.attempts(healed.id)[-1]
    assert attempt.status.value == "PENDING"
    with app.engine.connect() as conn:
        assert routed.router.health(conn, attempt.channel, clock.now()).circuit.value == "closed"


def test_the_daily_limit_holds_under_concurrent_payments(app, routed, shop):
    # 2 channels x 30,000 a day: at most six payments of 10,000 fit, whatever the interleaving.
    def one(i: int) -> str:
        try:
            routed.payments.create(shop.id, pay(f"c-{i}", 10_000, card=f"tok_{i}"))
            return "ok"
        except NoRoute:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(16)))
    assert outcomes.count("ok") == 6
    assert used(app, "card_a") <= 30_000
    assert used(app, "card_b") <= 30_000
