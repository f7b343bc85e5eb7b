"""Routing (P5), pure: which channel carries a payment, and which methods a cashier shows.

Channel routing scores every channel that could carry the payment and explains every channel it
leaves out. A channel is out when it cannot take the method or currency, when its circuit is
open, or when the amount would pass its per-payment, per-day or per-card limit. Among the rest
the pick is weighted: score = weight x estimated success rate x fee advantage, and the draw is a
hash of (seed, payment key), so the same seed and the same state give the same decision, while
traffic still spreads over the channels in proportion to their scores.

Channel health is a circuit breaker over the channel's recent call errors (timeouts, network
failures, unreadable answers), decayed with a half-life so old trouble fades: it opens when
errors dominate, stays open for a cool-down that doubles on each re-opening, then lets traffic
through again (half-open); the next answer closes it or opens it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

HALF_LIFE = timedelta(minutes=15)
MIN_ERRORS_TO_OPEN = 5  # decayed errors before the breaker may open: one timeout is not an outage
FIRST_COOL_DOWN = timedelta(seconds=30)
MAX_COOL_DOWN = timedelta(minutes=10)
PPM = 1_000_000
ONE = 1_000_000  # counts are kept in millionths of an event: integers that decay smoothly


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # cool-down over: traffic flows, the next answer decides


class Exclusion(StrEnum):
    """Why a channel cannot carry a payment (stable codes, shown through the API)."""

    METHOD = "METHOD_NOT_SUPPORTED"
    CURRENCY = "CURRENCY_NOT_SUPPORTED"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    SINGLE_LIMIT = "OVER_SINGLE_LIMIT"
    DAILY_LIMIT = "OVER_DAILY_LIMIT"
    CARD_LIMIT = "OVER_CARD_LIMIT"
    NOT_SIGNED = "CARD_NOT_SIGNED"


def _decay(value: int, elapsed: timedelta) -> int:
    if elapsed <= timedelta(0) or value == 0:
        return value
    halvings = Decimal(elapsed.total_seconds()) / Decimal(HALF_LIFE.total_seconds())
    return int(Decimal(value) * Decimal(2) ** -halvings)


@dataclass(frozen=True, slots=True)
class Health:
    """A channel's recent record, every count (in millionths) decayed to ``updated_at``."""

    updated_at: datetime
    paid: int = 0  # attempts that ended paid
    settled: int = 0  # attempts that ended at all (paid, failed, closed)
    calls: int = 0  # calls to the channel
    errors: int = 0  # calls without a usable answer
    circuit: Circuit = Circuit.CLOSED
    open_until: datetime | None = None
    openings: int = 0  # consecutive openings without a close: doubles the cool-down

    def at(self, now: datetime) -> Health:
        """The record decayed to ``now``, with an expired cool-down turned half-open."""
        elapsed = now - self.updated_at
        circuit = self.circuit
        if circuit is Circuit.OPEN and self.open_until is not None and now >= self.open_until:
            circuit = Circuit.HALF_OPEN
        return replace(
            self,
            updated_at=max(now, self.updated_at),
            paid=_decay(self.paid, elapsed),
            settled=_decay(self.settled, elapsed),
            calls=_decay(self.calls, elapsed),
            errors=_decay(self.errors, elapsed),
            circuit=circuit,
        )

    def success_ppm(self) -> int:
        """Estimated success rate in parts per million; an unknown channel starts at a half
        (Laplace's rule), so one early failure does not sink it."""
        return PPM * (self.paid + ONE) // (self.settled + 2 * ONE)

    def after_call(self, ok: bool, now: datetime) -> Health:
        """Count one call's outcome and move the breaker."""
        h = self.at(now)
        h = replace(h, calls=h.calls + ONE, errors=h.errors + (0 if ok else ONE))
        if h.circuit is Circuit.HALF_OPEN:
            return _closed(h) if ok else _opened(h, now)
        if (
            h.circuit is Circuit.CLOSED
            and not ok
            and h.errors >= MIN_ERRORS_TO_OPEN * ONE
            and 2 * h.errors >= h.calls  # errors are at least half the calls
        ):
            return _opened(h, now)
        return h

    def after_outcome(self, paid: bool, now: datetime) -> Health:
        """Count one attempt's final outcome for the success rate."""
        h = self.at(now)
        return replace(h, paid=h.paid + (ONE if paid else 0), settled=h.settled + ONE)


def _opened(h: Health, now: datetime) -> Health:
    cool = min(FIRST_COOL_DOWN * (2**h.openings), MAX_COOL_DOWN)
    return replace(h, circuit=Circuit.OPEN, open_until=now + cool, openings=h.openings + 1)


def _closed(h: Health) -> Health:
    # A fresh start: the errors that opened the breaker do not reopen it on the next timeout.
    return replace(h, circuit=Circuit.CLOSED, open_until=None, openings=0, errors=0, calls=0)


@dataclass(frozen=True, slots=True)
class Limits:
    """A channel's caps for one merchant's traffic, in the payment's minor units; None = none."""

    single: int | None = None
    daily: int | None = None
    card_daily: int | None = None  # per card per day on this channel (bank-card channels)


@dataclass(frozen=True, slots=True)
class Candidate:
    channel: str
    family: str  # what the payer sees: "wechatpay", "alipay", "card", "paypal"
    methods: frozenset[str]
    currencies: frozenset[str]
    weight: int  # relative share of traffic among equals
    fee: int  # what this channel would charge on the payment
    health: Health
    limits: Limits
    used_today: int  # minor units already routed today (not failed)
    card_used_today: int | None = None  # this card on this channel today; None: not a card
    card_signed: bool = True  # the payer's card is signed on this channel (card payments)


@dataclass(frozen=True, slots=True)
class Considered:
    channel: str
    excluded: Exclusion | None
    success_ppm: int
    fee: int
    weight: int
    score: int  # 0 when excluded
    circuit: Circuit


@dataclass(frozen=True, slots=True)
class Decision:
    chosen: str | None
    considered: tuple[Considered, ...]
    draw: int  # the seeded draw that picked among the scores

    @property
    def reasons(self) -> dict[str, str]:
        return {c.channel: c.excluded.value for c in self.considered if c.excluded is not None}


def exclusion(c: Candidate, method: str | None, amount: int, currency: str) -> Exclusion | None:
    """Why ``c`` cannot carry the payment, or None; ``method`` None: any of its methods."""
    if method is not None and method not in c.methods:
        return Exclusion.METHOD
    if currency not in c.currencies:
        return Exclusion.CURRENCY
    if not c.card_signed:
        return Exclusion.NOT_SIGNED
    if c.health.circuit is Circuit.OPEN:
        return Exclusion.CIRCUIT_OPEN
    if c.limits.single is not None and amount > c.limits.single:
        return Exclusion.SINGLE_LIMIT
    if c.limits.daily is not None and c.used_today + amount > c.limits.daily:
        return Exclusion.DAILY_LIMIT
    if (
        c.card_used_today is not None
        and c.limits.card_daily is not None
        and c.card_used_today + amount > c.limits.card_daily
    ):
        return Exclusion.CARD_LIMIT
    return None


def route(
    candidates: Sequence[Candidate], method: str, amount: int, currency: str, seed: int, key: str
) -> Decision:
    """Pick the channel for a payment of ``amount`` by ``method``; ``key`` identifies the
    payment (the same key and seed always draw the same number)."""
    ordered = sorted(candidates, key=lambda c: c.channel)
    eligible = [c for c in ordered if exclusion(c, method, amount, currency) is None]
    cheapest = min((c.fee for c in eligible), default=0)
    considered: list[Considered] = []
    for c in ordered:
        out = exclusion(c, method, amount, currency)
        success = c.health.success_ppm()
        # Fee advantage in thousandths: the cheapest eligible channel gets 1000.
        score = 0 if out is not None else c.weight * success * (cheapest + 1) * 1000 // (c.fee + 1)
        considered.append(
            Considered(c.channel, out, success, c.fee, c.weight, score, c.health.circuit)
        )
    total = sum(k.score for k in considered)
    draw = _draw(seed, key, total)
    chosen = None
    running = 0
    for k in considered:
        running += k.score
        if k.score > 0 and draw < running:
            chosen = k.channel
            break
    return Decision(chosen, tuple(considered), draw)


def _draw(seed: int, key: str, total: int) -> int:
    if total <= 0:
        return 0
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


# --- guided routing: the cashier ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One method (channel family) the cashier shows, available or not, with why."""

    family: str
    available: bool
    channels: tuple[str, ...]  # the channels that could carry it now
    success_ppm: int  # best among those channels (0 if none)
    fee: int | None  # lowest among them
    reason: str | None  # why not available: the first channel's exclusion
    last_used: bool


def cashier(
    candidates: Sequence[Candidate], amount: int, currency: str, last_family: str | None
) -> list[Option]:
    """The methods to show, in order: the payer's last method first if it is available, then
    the available ones by success rate (higher first) and fee (lower first), then the ones
    that cannot be used now, each with its reason. A family is available exactly when
    ``route`` would pick one of its channels for one of their methods."""
    options: list[Option] = []
    for family in sorted({c.family for c in candidates}):
        members = sorted((c for c in candidates if c.family == family), key=lambda c: c.channel)
        verdicts = [(c, exclusion(c, None, amount, currency)) for c in members]
        open_ = [c for c, out in verdicts if out is None]
        reasons = [out for _c, out in verdicts if out is not None]
        options.append(
            Option(
                family=family,
                available=bool(open_),
                channels=tuple(c.channel for c in open_),
                success_ppm=max((c.health.success_ppm() for c in open_), default=0),
                fee=min((c.fee for c in open_), default=None),
                reason=None if open_ else reasons[0].value,
                last_used=family == last_family,
            )
        )
    return sorted(
        options,
        key=lambda o: (
            not o.available,
            not (o.available and o.last_used),
            -o.success_ppm,
            o.fee if o.fee is not None else 0,
            o.family,
        ),
    )
