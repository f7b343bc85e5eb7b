"""The ledger's public entry point: submit requests, read balances, close days."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from clearhouse.accounts.model import PLATFORM_ACCOUNT_ID
from clearhouse.clock import Clock
from clearhouse.db.schema import holds
from clearhouse.db.transaction import run_in_transaction
from clearhouse.ledger import eod, queries
from clearhouse.ledger.model import HoldStatus
from clearhouse.ledger.processor import Context, process
from clearhouse.ledger.requests import (
    SYSTEM_KEY_PREFIX,
    CommitHold,
    Outcome,
    Post,
    Request,
    Reverse,
    VoidHold,
)
from clearhouse.ledger.rules import PostingRules, load_rules


class Ledger:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        rules: PostingRules | None = None,
        zone: ZoneInfo | None = None,
        platform_account_id: str = PLATFORM_ACCOUNT_ID,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.rules = rules or load_rules()
        self.zone = zone or ZoneInfo("UTC")
        self._ctx = Context(rules=self.rules, platform_account_id=platform_account_id)

    # --- writes -------------------------------------------------------------------------------

    def submit(self, requests: Sequence[Request]) -> list[Outcome]:
        """Process requests in one transaction; one outcome per request, in order.

        A unique-key race (the same key in flight twice, a hold closed twice) rolls the whole
        transaction back and runs it again, when the stored winner answers the loser.
        """
        return self._submit(requests, system=False)

    def submit_in(self, conn: Connection, requests: Sequence[Request]) -> list[Outcome]:
        """Process requests inside the caller's transaction: a payment's state change, its
        entries and its outbox event commit or roll back together. The caller runs the
        transaction with ``run_in_transaction(..., retry_integrity=True)`` so a key race is
        settled as in ``submit``."""
        return process(conn, requests, self._ctx, self.clock.now())

    def _submit(self, requests: Sequence[Request], *, system: bool) -> list[Outcome]:
        if not requests:
            return []
        return run_in_transaction(
            self.engine,
            lambda conn: process(conn, requests, self._ctx, self.clock.now(), system=system),
            retry_integrity=True,
        )

    def post(
        self,
        key: str,
        code: str,
        currency: str,
        amounts: Mapping[str, int],
        *,
        parties: Mapping[str, str] | None = None,
        memo: str | None = None,
    ) -> Outcome:
        return self.submit([Post(key, code, currency, dict(amounts), dict(parties or {}), memo)])[0]

    def hold(
        self,
        key: str,
        code: str,
        currency: str,
        amounts: Mapping[str, int],
        *,
        parties: Mapping[str, str] | None = None,
        expires_at: datetime | None = None,
        memo: str | None = None,
    ) -> Outcome:
        req = Post(
            key,
            code,
            currency,
            dict(amounts),
            dict(parties or {}),
            memo,
            hold=True,
            expires_at=expires_at,
        )
        return self.submit([req])[0]

    def commit_hold(
        self, key: str, hold_id: int, amounts: Mapping[str, int] | None = None
    ) -> Outcome:
        return self.submit([CommitHold(key, hold_id, None if amounts is None else dict(amounts))])[
            0
        ]

    def void_hold(self, key: str, hold_id: int) -> Outcome:
        return self.submit([VoidHold(key, hold_id)])[0]

    def reverse(self, key: str, entry_id: int, memo: str | None = None) -> Outcome:
        return self.submit([Reverse(key, entry_id, memo)])[0]

    def expire_holds(self, limit: int = 1000) -> list[Outcome]:
        """Release holds past their expiry. Keys are derived from the hold, in the system's
        reserved key space, so two sweepers running at once release each hold once and no client
        request can take the key first. A release is never refused for the account's status."""
        now = self.clock.now()
        with self.engine.connect() as conn:
            ids = (
                conn.execute(
                    select(holds.c.entry_id)
                    .where(holds.c.status == HoldStatus.PENDING.value, holds.c.expires_at <= now)
                    .order_by(holds.c.entry_id)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        sweep = [VoidHold(f"{SYSTEM_KEY_PREFIX}expire-hold-{i}", int(i)) for i in ids]
        return self._submit(sweep, system=True)

    # --- reads --------------------------------------------------------------------------------

    def balance(self, fund_account_id: int) -> queries.Balance:
        return run_in_transaction(
            self.engine, lambda c: queries.balance(c, fund_account_id), readonly=True
        )

    def balance_at(self, fund_account_id: int, at: datetime) -> queries.Balance:
        return run_in_transaction(
            self.engine, lambda c: queries.balance_at(c, fund_account_id, at), readonly=True
        )

    def history(self, fund_account_id: int, limit: int = 50) -> list[dict[str, object]]:
        return run_in_transaction(
            self.engine, lambda c: queries.history(c, fund_account_id, limit), readonly=True
        )

    def entry(self, entry_id: int) -> dict[str, object]:
        return run_in_transaction(self.engine, lambda c: queries.entry(c, entry_id), readonly=True)

    # --- end of day ---------------------------------------------------------------------------

    def trial_balance(self) -> list[eod.TrialBalanceLine]:
        return run_in_transaction(self.engine, eod.trial_balance, readonly=True)

    def close_day(self, day: date) -> bool:
        return run_in_transaction(
            self.engine, lambda c: eod.close_day(c, day, self.zone, self.clock.now())
        )

    def check(self) -> list[eod.Break]:
        return run_in_transaction(self.engine, eod.check, readonly=True)
