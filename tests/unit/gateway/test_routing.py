"""Routing (P5) as properties: limits, circuits, determinism, and a cashier that shows only
what can be paid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from clearhouse.gateway.routing import (
    FIRST_COOL_DOWN,
    MIN_ERRORS_TO_OPEN,
    Candidate,
    Circuit,
    Exclusion,
    Health,
    Limits,
    cashier,
    route,
)

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
METHODS = ["native", "page", "card", "jsapi"]
FAMILIES = ["wechatpay", "alipay", "card", "paypal"]


def opened(now: datetime = T0) -> Health:
    h = Health(T0)
    for _ in range(MIN_ERRORS_TO_OPEN):
        h = h.after_call(False, now)
    return h


@st.composite
def health(draw: st.DrawFn) -> Health:
    h = Health(T0)
    for ok in draw(st.lists(st.booleans(), max_size=12)):
        h = h.after_call(ok, T0)
    for paid in draw(st.lists(st.booleans(), max_size=12)):
        h = h.after_outcome(paid, T0)
    return h


@st.composite
def candidate(draw: st.DrawFn, name: str) -> Candidate:
    card = draw(st.booleans())
    limit = st.none() | st.integers(1, 50_000)
    return Candidate(
        channel=name,
        family=draw(st.sampled_from(FAMILIES)),
        methods=frozenset(draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=3))),
        currencies=frozenset(draw(st.lists(st.sampled_from(["CNY", "USD"]), min_size=1))),
        weight=draw(st.integers(1, 100)),
        fee=draw(st.integers(0, 500)),
        health=draw(health()),
        limits=Limits(single=draw(limit), daily=draw(limit), card_daily=draw(limit)),
        used_today=draw(st.integers(0, 60_000)),
        card_used_today=draw(st.integers(0, 60_000)) if card else None,
        card_signed=draw(st.booleans()) if card else True,
    )


@st.composite
def market(draw: st.DrawFn) -> list[Candidate]:
    names = draw(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True))
    return [draw(candidate(f"ch_{n}")) for n in names]


amounts = st.integers(1, 60_000)
currencies = st.sampled_from(["CNY", "USD"])


@given(market(), st.sampled_from(METHODS), amounts, currencies, st.integers(0, 3), st.text())
def test_never_routes_over_a_limit_to_an_open_circuit_or_an_unsigned_card(
    cands: list[Candidate], method: str, amount: int, currency: str, seed: int, key: str
) -> None:
    decision = route(cands, method, amount, currency, seed, key)
    if decision.chosen is None:
        assert all(c.excluded is not None for c in decision.considered)
        return
    c = next(c for c in cands if c.channel == decision.chosen)
    assert method in c.methods
    assert currency in c.currencies
    assert c.card_signed
    assert c.health.circuit is not Circuit.OPEN
    if c.limits.single is not None:
        assert amount <= c.limits.single
    if c.limits.daily is not None:
        assert c.used_today + amount <= c.limits.daily
    if c.limits.card_daily is not None and c.card_used_today is not None:
        assert c.card_used_today + amount <= c.limits.card_daily
    # Every channel left out says why; every channel in has a positive score.
    for k in decision.considered:
        assert (k.excluded is None) == (k.score > 0)


@given(market(), st.sampled_from(METHODS), amounts, currencies, st.integers(0, 3), st.text())
def test_same_seed_same_decision(
    cands: list[Candidate], method: str, amount: int, currency: str, seed: int, key: str
) -> None:
    first = route(cands, method, amount, currency, seed, key)
    again = route(list(reversed(cands)), method, amount, currency, seed, key)
    assert first == again


@given(market(), amounts, currencies, st.sampled_from([None, *FAMILIES]))
def test_the_cashier_shows_exactly_what_can_be_paid(
    cands: list[Candidate], amount: int, currency: str, last: str | None
) -> None:
    options = cashier(cands, amount, currency, last)
    assert sorted(o.family for o in options) == sorted({c.family for c in cands})
    for o in options:
        members = [c for c in cands if c.family == o.family]
        payable = {
            d.chosen
            for m in METHODS
            for d in [route(members, m, amount, currency, 0, "k")]
            if d.chosen is not None
        }
        assert o.available == bool(payable)
        assert set(o.channels) >= payable
        assert (o.reason is None) == o.available
    # Available first; the last-used method leads when it can be paid.
    flags = [o.available for o in options]
    assert flags == sorted(flags, reverse=True)
    usable_last = [o for o in options if o.last_used and o.available]
    if usable_last:
        assert options[0] is usable_last[0]


def test_traffic_follows_the_scores() -> None:
    h = Health(T0)
    base = Candidate("a", "card", frozenset({"card"}), frozenset({"CNY"}), 3, 10, h, Limits(), 0)
    other = Candidate("b", "card", frozenset({"card"}), frozenset({"CNY"}), 1, 10, h, Limits(), 0)
    picks = [route([base, other], "card", 1000, "CNY", 7, f"k{i}").chosen for i in range(4000)]
    share = picks.count("a") / len(picks)
    assert 0.72 < share < 0.78  # weight 3 : 1, same fee and health


def test_cheaper_and_more_successful_channels_score_higher() -> None:
    good = Health(T0)
    for _ in range(20):
        good = good.after_outcome(True, T0)
    bad = Health(T0)
    for _ in range(20):
        bad = bad.after_outcome(False, T0)
    mk = lambda n, fee, h: Candidate(  # noqa: E731
        n, "card", frozenset({"card"}), frozenset({"CNY"}), 1, fee, h, Limits(), 0
    )
    decision = route(
        [mk("a", 10, good), mk("b", 10, bad), mk("c", 40, good)], "card", 1, "CNY", 0, "k"
    )
    score = {k.channel: k.score for k in decision.considered}
    assert score["a"] > score["c"] > score["b"]


def test_breaker_opens_cools_down_half_opens_and_closes() -> None:
    h = Health(T0)
    for _ in range(MIN_ERRORS_TO_OPEN - 1):
        h = h.after_call(False, T0)
    assert h.circuit is Circuit.CLOSED  # a few timeouts are not an outage
    h = h.after_call(False, T0)
    assert h.circuit is Circuit.OPEN
    assert h.open_until == T0 + FIRST_COOL_DOWN
    assert h.at(T0 + FIRST_COOL_DOWN - timedelta(seconds=1)).circuit is Circuit.OPEN
    later = T0 + FIRST_COOL_DOWN
    assert h.at(later).circuit is Circuit.HALF_OPEN
    again = h.after_call(False, later)  # the trial fails: open for twice as long
    assert again.circuit is Circuit.OPEN
    assert again.open_until == later + 2 * FIRST_COOL_DOWN
    healed = again.after_call(True, later + 2 * FIRST_COOL_DOWN)
    assert healed.circuit is Circuit.CLOSED
    assert healed.openings == 0
    # A mostly healthy channel does not open on the same number of errors.
    busy = Health(T0)
    for _ in range(50):
        busy = busy.after_call(True, T0)
    for _ in range(MIN_ERRORS_TO_OPEN):
        busy = busy.after_call(False, T0)
    assert busy.circuit is Circuit.CLOSED


def test_an_open_circuit_is_skipped_and_named() -> None:
    ok = Candidate(
        "a", "card", frozenset({"card"}), frozenset({"CNY"}), 1, 1, Health(T0), Limits(), 0
    )
    down = Candidate(
        "b", "card", frozenset({"card"}), frozenset({"CNY"}), 100, 1, opened(), Limits(), 0
    )
    decision = route([ok, down], "card", 100, "CNY", 0, "k")
    assert decision.chosen == "a"
    assert decision.reasons == {"b": Exclusion.CIRCUIT_OPEN.value}


def test_errors_fade_with_time() -> None:
    h = Health(T0)
    for _ in range(4):
        h = h.after_call(False, T0)
    # An hour later four half-lives have passed: the old errors count for a quarter of one.
    h = h.after_call(False, T0 + timedelta(hours=1))
    assert h.circuit is Circuit.CLOSED
    assert h.errors < 1_300_000  # millionths
