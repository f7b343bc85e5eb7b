"""Routing against the database: channel health and daily usage read and kept, every decision
stored with its reasons. The choosing itself is pure (``routing.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from clearhouse.clock import Clock
from clearhouse.db.schema import (
    channel_health,
    channel_usage,
    payment_attempts,
    payment_groups,
    payment_intents,
)
from clearhouse.db.schema import routing_decisions as decisions
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.card_model import CardAccess
from clearhouse.gateway.channels.port import PayMethod
from clearhouse.gateway.channels.registry import Channels
from clearhouse.gateway.errors import ChannelNotSupported, NoRoute
from clearhouse.gateway.routing import (
    Candidate,
    Circuit,
    Considered,
    Health,
    Option,
    cashier,
    route,
)
from clearhouse.money import Money


class CardGate(Protocol):
    """Our card store as routing sees it (``gateway.cards.Cards``)."""

    def access(
        self,
        conn: Connection,
        card: str | None,
        names: list[str],
        amount: Money,
        now: datetime,
        *,
        merchant_id: str,
    ) -> CardAccess | None: ...

    def release(self, conn: Connection, card: str, amount: Money, at: datetime) -> None: ...


class Router:
    def __init__(
        self, engine: Engine, clock: Clock, channels: Channels, zone: ZoneInfo, seed: int = 0
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.channels = channels
        self.zone = zone
        self.seed = seed
        # Card payments by our card id: which channels the card is signed on, and the issuer's
        # limit across them (set by the gateway's wiring; None: no card store).
        self.cards: CardGate | None = None

    def day(self, at: datetime) -> date:
        """The business day a payment's usage counts on."""
        return at.astimezone(self.zone).date()

    # --- choosing -----------------------------------------------------------------------------

    def choose(
        self,
        conn: Connection,
        intent_id: str,
        requested: str,
        method: str,
        amount: Money,
        card: str | None,
    ) -> str:
        """Route a new payment inside the transaction that stores it: the decision is kept
        and the chosen channel's daily usage counted, or nothing is (``NoRoute``)."""
        names = self.channels.routable(requested)
        if not names:
            raise ChannelNotSupported(f"channel {requested!r} is not enabled", channel=requested)
        now = self.clock.now()
        access = None
        if self.cards is not None and method == PayMethod.CARD.value:
            taker = _taker(conn, intent_id)
            access = self.cards.access(conn, card, names, amount, now, merchant_id=taker)
        cands = self.candidates(conn, names, amount, card, now, lock=True, access=access)
        decision = route(cands, method, amount.amount, amount.currency, self.seed, intent_id)
        if decision.chosen is None:
            raise NoRoute(
                f"no channel can carry this payment by {requested}/{method} now",
                reasons=decision.reasons,
            )
        conn.execute(
            decisions.insert().values(
                intent_id=intent_id,
                requested=requested,
                method=method,
                chosen=decision.chosen,
                seed=self.seed,
                draw=decision.draw,
                considered=json.dumps([_considered(k) for k in decision.considered]),
                created_at=now,
            )
        )
        self._count(conn, decision.chosen, self.day(now), amount, card, amount.amount)
        return decision.chosen

    def candidates(
        self,
        conn: Connection,
        names: list[str],
        amount: Money,
        card: str | None,
        now: datetime,
        lock: bool = False,
        access: CardAccess | None = None,
    ) -> list[Candidate]:
        """``lock``: hold the usage rows until the commit, so two payments racing for the last
        of a daily limit cannot both fit (PostgreSQL; SQLite writers are serial already).
        ``access``: a card payment's signed channels, with their own limits for the card."""
        day = self.day(now)
        if lock:
            # A row that does not exist cannot be locked: a payment that read "nothing used"
            # would then add to what a racing payment wrote meanwhile, past the limit.
            self._ensure_rows(conn, names, day, amount.currency, card)
        health = {name: self.health(conn, name, now) for name in names}
        used = self._usage(conn, names, day, amount.currency, "", lock)
        card_used = self._usage(conn, names, day, amount.currency, card, lock) if card else {}
        out = []
        for name in names:
            terms = self.channels.get(name).terms
            limits, signed = terms.limits, True
            if access is not None and access.applies_to(name):
                own = access.signed.get(name)
                signed = own is not None
                limits = limits if own is None else own.within(limits)
            out.append(
                Candidate(
                    channel=name,
                    family=terms.family,
                    methods=frozenset(m.value for m in terms.methods),
                    currencies=terms.currencies,
                    weight=terms.weight,
                    fee=terms.fees.fee(amount).amount,
                    health=health[name],
                    limits=limits,
                    used_today=used.get(name, 0),
                    card_used_today=card_used.get(name, 0) if card else None,
                    card_signed=signed,
                )
            )
        return out

    def release(
        self, conn: Connection, channel: str, amount: Money, card: str | None, at: datetime
    ) -> None:
        """Give back the usage of an attempt that failed or closed unpaid."""
        if card and self.cards is not None:
            # The card's usage first: the order ``choose`` takes them in, so no two
            # transactions wait on each other's rows.
            self.cards.release(conn, card, amount, at)
        self._count(conn, channel, self.day(at), amount, card, -amount.amount)

    def _count(
        self, conn: Connection, channel: str, day: date, amount: Money, card: str | None, delta: int
    ) -> None:
        for key in ("", card) if card else ("",):
            where = [
                channel_usage.c.channel == channel,
                channel_usage.c.day == day,
                channel_usage.c.currency == amount.currency,
                channel_usage.c.card == key,
            ]
            done = conn.execute(
                update(channel_usage)
                .where(*where)
                .values(used_minor=channel_usage.c.used_minor + delta)
            )
            if done.rowcount == 0 and delta > 0:
                # A concurrent first use of the same day loses on the primary key and is retried.
                conn.execute(
                    channel_usage.insert().values(
                        channel=channel,
                        day=day,
                        currency=amount.currency,
                        card=key,
                        used_minor=delta,
                    )
                )

    def _ensure_rows(
        self, conn: Connection, names: list[str], day: date, currency: str, card: str | None
    ) -> None:
        rows = [
            {"channel": n, "day": day, "currency": currency, "card": key, "used_minor": 0}
            for n in names
            for key in (("", card) if card else ("",))
        ]
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert(channel_usage).values(rows).on_conflict_do_nothing())

    def _usage(
        self,
        conn: Connection,
        names: list[str],
        day: date,
        currency: str,
        card: str,
        lock: bool = False,
    ) -> dict[str, int]:
        stmt = (
            select(channel_usage.c.channel, channel_usage.c.used_minor)
            .where(
                channel_usage.c.channel.in_(names),
                channel_usage.c.day == day,
                channel_usage.c.currency == currency,
                channel_usage.c.card == card,
            )
            .order_by(channel_usage.c.channel)  # one lock order for every payment
        )
        if lock and conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        return {r.channel: int(r.used_minor) for r in conn.execute(stmt)}

    # --- health -------------------------------------------------------------------------------

    def health(self, conn: Connection, channel: str, now: datetime, lock: bool = False) -> Health:
        stmt = select(channel_health).where(channel_health.c.channel == channel)
        if lock and conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        if row is None:
            return Health(now)
        return Health(
            updated_at=row.updated_at,
            paid=row.paid_e6,
            settled=row.settled_e6,
            calls=row.calls_e6,
            errors=row.errors_e6,
            circuit=Circuit(row.circuit),
            open_until=row.open_until,
            openings=row.openings,
        ).at(now)

    def record_call(self, channel: str, ok: bool) -> None:
        """A call to the channel came back with a usable answer (``ok``) or without one."""
        run_in_transaction(
            self.engine,
            lambda c: self._save(c, channel, lambda h, now: h.after_call(ok, now)),
            retry_integrity=True,
        )

    def record_outcome(self, conn: Connection, channel: str, paid: bool) -> None:
        """An attempt ended (paid, or failed / closed): counted for the success rate."""
        self._save(conn, channel, lambda h, now: h.after_outcome(paid, now))

    def _save(
        self, conn: Connection, channel: str, change: Callable[[Health, datetime], Health]
    ) -> None:
        now = self.clock.now()
        exists = conn.execute(
            select(channel_health.c.channel).where(channel_health.c.channel == channel)
        ).first()
        h = change(self.health(conn, channel, now, lock=True), now)
        values = {
            "paid_e6": h.paid,
            "settled_e6": h.settled,
            "calls_e6": h.calls,
            "errors_e6": h.errors,
            "circuit": h.circuit.value,
            "open_until": h.open_until,
            "openings": h.openings,
            "updated_at": h.updated_at,
        }
        if exists is None:
            conn.execute(channel_health.insert().values(channel=channel, **values))
        else:
            conn.execute(
                update(channel_health).where(channel_health.c.channel == channel).values(values)
            )

    # --- what merchants see -------------------------------------------------------------------

    def decision(self, intent_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(decisions).where(decisions.c.intent_id == intent_id)).first()
        if row is None:
            return None
        return {
            "requested": row.requested,
            "method": row.method,
            "chosen": row.chosen,
            "seed": row.seed,
            "draw": row.draw,
            "considered": json.loads(row.considered),
            "created_at": row.created_at.isoformat(),
        }

    def cashier(self, merchant_id: str, amount: Money, payer_ref: str | None) -> list[Option]:
        """The methods a payer of ``amount`` sees for this merchant, in order."""

        def work(conn: Connection) -> list[Option]:
            now = self.clock.now()
            cands = self.candidates(conn, self.channels.names(), amount, None, now)
            last = self._last_family(conn, merchant_id, payer_ref) if payer_ref else None
            return cashier(cands, amount.amount, amount.currency, last)

        return run_in_transaction(self.engine, work, readonly=True)

    def _last_family(self, conn: Connection, merchant_id: str, payer_ref: str) -> str | None:
        row = conn.execute(
            select(payment_attempts.c.channel)
            .join(
                payment_intents,
                payment_intents.c.succeeded_attempt_id == payment_attempts.c.id,
            )
            .where(
                payment_intents.c.merchant_id == merchant_id,
                payment_intents.c.payer_ref == payer_ref,
                payment_intents.c.paid_at.is_not(None),
            )
            .order_by(payment_intents.c.paid_at.desc())
            .limit(1)
        ).first()
        if row is None or row.channel not in self.channels:
            return None
        return self.channels.get(row.channel).terms.family


def _considered(k: Considered) -> dict[str, Any]:
    d = asdict(k)
    d["excluded"] = None if k.excluded is None else k.excluded.value
    d["circuit"] = k.circuit.value
    return d


def _taker(conn: Connection, intent_id: str) -> str:
    """The merchant that asked for the payment (a combined payment's marketplace): the cards
    it may charge are those of its customers."""
    row = conn.execute(
        select(payment_intents.c.merchant_id, payment_groups.c.merchant_id.label("marketplace"))
        .select_from(
            payment_intents.outerjoin(
                payment_groups, payment_groups.c.id == payment_intents.c.group_id
            )
        )
        .where(payment_intents.c.id == intent_id)
    ).one()
    return str(row.marketplace or row.merchant_id)
