"""A stateful property test of the ledger against the real database, on SQLite and PostgreSQL.

Hypothesis drives a :class:`LedgerMachine` through random sequences of postings, holds, partial
and full captures, voids, reversals, idempotent retries, clock moves, hold expiry, day closes,
account freezes and mixed batches. Every Hypothesis example gets a fresh, seeded database.

The test keeps its own model of the books, written from the posting rules and the documented
semantics (not from the ledger's code): for every balance row the four counters and the version,
every entry and hold, and every stored request outcome. Each request's outcome is predicted before
it is submitted (accepted, or rejected with which reason) and after every step the database is
compared with the model and with the ledger's own invariants:

1. money is conserved per currency (posted and pending debits equal credits; trial balance);
2. no constrained (non-negative) balance has less than zero available;
3. every balance equals the model's, and ``ledger.check()`` finds no break;
4. each account's pending in/out equals the sum of its open holds in the model;
5. a rejected request changes no balance and writes no entry;
6. a retry with the same key and payload returns the first outcome with ``replayed=True`` and
   changes nothing; a different payload under a used key is an ``IDEMPOTENCY_CONFLICT``.
"""

from __future__ import annotations

import dataclasses
import shutil
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from clearhouse.accounts import handlers
from clearhouse.accounts.model import PLATFORM_ACCOUNT_ID, ROLE_DEFAULTS, Role, Status
from clearhouse.bootstrap import build_app
from clearhouse.clock import FixedClock
from clearhouse.config import Settings
from clearhouse.db.schema import balances, fund_accounts, holds, ledger_requests
from clearhouse.db.transaction import run_in_transaction
from clearhouse.ledger import queries
from clearhouse.ledger.eod import DayNotOver
from clearhouse.ledger.model import EntryKind, HoldStatus, Reason, Side
from clearhouse.ledger.requests import (
    SYSTEM_KEY_PREFIX,
    CommitHold,
    InvalidRequest,
    Outcome,
    Post,
    Request,
    Reverse,
    VoidHold,
)
from tests.conftest import BACKENDS, START, open_party, reset_postgres

MAX_MINOR = 2**63 - 1
CLOSE_GRACE = timedelta(minutes=5)
MICROSECOND = timedelta(microseconds=1)
VALID_CURRENCIES = frozenset({"CNY", "USD", "JPY"})  # ISO 4217; JPY has no fund accounts here
SUB_WECHAT, SUB_ICBC = "wechatpay", "icbc"

# --- the posting rules, as the test reads posting_rules.toml -----------------------------------

SlotSpec = tuple[str, Role, str]  # (party, role, sub)


@dataclass(frozen=True)
class LegSpec:
    debit: SlotSpec
    credit: SlotSpec
    amount: str
    optional: bool = False


@dataclass(frozen=True)
class RuleSpec:
    parties: tuple[str, ...]
    legs: tuple[LegSpec, ...]

    @property
    def amount_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(leg.amount for leg in self.legs))


def _slot(text: str) -> SlotSpec:
    party, role, *sub = text.split(".")
    return (party, Role(role), sub[0] if sub else "")


def _leg(debit: str, credit: str, amount: str = "amount", optional: bool = False) -> LegSpec:
    return LegSpec(_slot(debit), _slot(credit), amount, optional)


_CLEARING = f"platform.channel_clearing.{SUB_WECHAT}"
_RESERVE = f"platform.bank_reserve.{SUB_ICBC}"
RULES: dict[str, RuleSpec] = {
    "1002": RuleSpec((), (_leg(_CLEARING, "platform.escrow"),)),
    "1009": RuleSpec(("buyer",), (_leg("buyer.buyer_balance", "platform.escrow"),)),
    "1102": RuleSpec(
        ("merchant",),
        (
            _leg(_CLEARING, "merchant.merchant_settlement", "merchant_amount", optional=True),
            _leg(_CLEARING, "platform.commission_income", "commission", optional=True),
        ),
    ),
    "2001": RuleSpec(
        ("merchant",),
        (
            _leg(
                "platform.escrow", "merchant.merchant_settlement", "merchant_amount", optional=True
            ),
            _leg("platform.escrow", "platform.commission_income", "commission", optional=True),
        ),
    ),
    "3102": RuleSpec(
        ("merchant",),
        (
            _leg("merchant.merchant_settlement", _CLEARING, "merchant_amount", optional=True),
            _leg("platform.commission_income", _CLEARING, "commission", optional=True),
        ),
    ),
    "4002": RuleSpec(("buyer",), (_leg(_CLEARING, "buyer.buyer_balance"),)),
    "5001": RuleSpec(("merchant",), (_leg("merchant.merchant_settlement", _RESERVE),)),
    "5002": RuleSpec(("buyer",), (_leg("buyer.buyer_balance", _RESERVE),)),
    "6002": RuleSpec((), (_leg(_RESERVE, _CLEARING),)),
    "8001": RuleSpec(("payer", "payee"), (_leg("payer.buyer_balance", "payee.buyer_balance"),)),
    "8002": RuleSpec(
        ("merchant",), (_leg("merchant.merchant_settlement", "merchant.merchant_deposit"),)
    ),
    "9001": RuleSpec((), (_leg(_RESERVE, "platform.capital"),)),
}
CODES = sorted(RULES)
UNKNOWN_CODES = ["0000", "9998", "1O02"]
MERCHANT_PARTIES = frozenset({"merchant"})
NORMAL_SIDE = {  # by the chart: assets and expenses are debit-normal, the rest credit-normal
    Role.MERCHANT_SETTLEMENT: Side.CREDIT,
    Role.MERCHANT_DEPOSIT: Side.CREDIT,
    Role.BUYER_BALANCE: Side.CREDIT,
    Role.BUYER_CREDIT: Side.DEBIT,
    Role.BUYER_POINTS: Side.CREDIT,
    Role.COMMISSION_INCOME: Side.CREDIT,
    Role.CHANNEL_FEES: Side.DEBIT,
    Role.CHANNEL_CLEARING: Side.DEBIT,
    Role.ESCROW: Side.CREDIT,
    Role.SUBSIDY: Side.DEBIT,
    Role.SUSPENSE: Side.DEBIT,
    Role.TAX_PAYABLE: Side.CREDIT,
    Role.BANK_RESERVE: Side.DEBIT,
    Role.CAPITAL: Side.CREDIT,
}
POSTED_KINDS = (EntryKind.POSTED, EntryKind.POST_PENDING, EntryKind.REVERSAL)

# --- the model ---------------------------------------------------------------------------------

Row = tuple[int, int]  # (fund account id, shard)
Counters = tuple[
    int, int, int, int
]  # debits posted, credits posted, debits pending, credits pending
ZERO: Counters = (0, 0, 0, 0)


@dataclass(frozen=True)
class Fund:
    id: int
    account_id: str
    role: Role
    sub: str
    currency: str
    shards: int
    normal: Side
    non_negative: bool
    chart_code: str


@dataclass(frozen=True)
class MPosting:
    seq: int
    fund: int
    shard: int
    side: Side
    amount: int
    currency: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "fund_account_id": self.fund,
            "shard": self.shard,
            "side": self.side.value,
            "amount": self.amount,
            "currency": self.currency,
        }


@dataclass
class MEntry:
    id: int
    code: str
    kind: EntryKind
    postings: tuple[MPosting, ...]
    ref: int | None
    posted_at: datetime
    memo: str | None
    closed_by: int | None = None  # the reversal of a posted entry, the close of a hold
    hold_status: HoldStatus | None = None
    expires_at: datetime | None = None
    leg_amounts: dict[str, int] = field(default_factory=dict)  # a hold's amount per name


@dataclass(frozen=True)
class Plan:
    kind: EntryKind
    code: str
    postings: tuple[MPosting, ...]
    released: tuple[MPosting, ...] = ()
    ref: int | None = None
    closes: HoldStatus | None = None
    expires_at: datetime | None = None
    leg_amounts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Expect:
    """What one request of a batch must answer."""

    kind: str  # "accept", "reject", "replay" (of a stored outcome), "dup" (of an earlier index)
    reason: Reason | None = None
    plan: Plan | None = None
    changes: dict[Row, Counters] = field(default_factory=dict)  # rows after an accepted entry
    stored: Outcome | None = None
    first: int | None = None


def signed(side: Side, debits: int, credits: int) -> int:
    return debits - credits if side is Side.DEBIT else credits - debits


def available(fund: Fund, c: Counters) -> int:
    pending_out = c[3] if fund.normal is Side.DEBIT else c[2]
    return signed(fund.normal, c[0], c[1]) - pending_out


def effects_of(plan: Plan) -> dict[Row, Counters]:
    out: dict[Row, list[int]] = {}
    if plan.kind is not EntryKind.VOID:
        offset = 2 if plan.kind is EntryKind.PENDING else 0
        for p in plan.postings:
            delta = out.setdefault((p.fund, p.shard), [0, 0, 0, 0])
            delta[offset + (0 if p.side is Side.DEBIT else 1)] += p.amount
    for p in plan.released:
        delta = out.setdefault((p.fund, p.shard), [0, 0, 0, 0])
        delta[2 + (0 if p.side is Side.DEBIT else 1)] -= p.amount
    return {k: (v[0], v[1], v[2], v[3]) for k, v in out.items()}


class Books:
    """The model: what the ledger must hold after every accepted request."""

    def __init__(self, funds: dict[int, Fund], last_at: dict[Row, datetime]) -> None:
        self.funds = funds
        self.by_slot = {(f.account_id, f.role, f.sub, f.currency): f.id for f in funds.values()}
        self.rows: dict[Row, Counters] = {
            (f.id, s): ZERO for f in funds.values() for s in range(f.shards)
        }
        self.versions: dict[Row, int] = dict.fromkeys(self.rows, 0)
        # Each row's history: (at, counters after) per change. A row's times never go backwards:
        # a change is stamped max(the row's last change, now).
        self.last_at = dict(last_at)
        self.history: dict[Row, list[tuple[datetime, Counters]]] = {row: [] for row in self.rows}
        self.status: dict[int, Status] = dict.fromkeys(funds, Status.ACTIVE)
        self.entries: dict[int, MEntry] = {}
        self.requests: dict[str, tuple[Request, Outcome]] = {}  # the stored first outcome per key
        self.closed_days: set[date] = set()

    # --- predicting ---------------------------------------------------------------------------

    def predict(
        self, requests: list[Request], now: datetime
    ) -> tuple[list[Expect], dict[Row, Counters], dict[Row, int]]:
        """Each request's expected answer, and the rows after the batch (one transaction)."""
        rows, versions = dict(self.rows), dict(self.versions)
        closed: set[int] = set()
        first_of: dict[str, int] = {}
        expects: list[Expect] = []
        for i, req in enumerate(requests):
            if req.key in self.requests:
                prior_req, prior = self.requests[req.key]
                if prior_req == req:
                    expects.append(Expect("replay", stored=prior))
                else:
                    expects.append(Expect("reject", Reason.IDEMPOTENCY_CONFLICT))
                continue
            if req.key in first_of:
                first = first_of[req.key]
                if requests[first] == req:
                    expects.append(Expect("dup", first=first))
                else:
                    expects.append(Expect("reject", Reason.IDEMPOTENCY_CONFLICT))
                continue
            first_of[req.key] = i
            plan = self.plan(req, now)
            if isinstance(plan, Reason):
                expects.append(Expect("reject", plan))
                continue
            if plan.ref is not None and plan.ref in closed:
                reason = (
                    Reason.ALREADY_REVERSED
                    if plan.kind is EntryKind.REVERSAL
                    else Reason.HOLD_CLOSED
                )
                expects.append(Expect("reject", reason))
                continue
            applied = self.apply(plan, rows)
            if isinstance(applied, Reason):
                expects.append(Expect("reject", applied))
                continue
            for row, counters in applied.items():
                rows[row] = counters
                versions[row] += 1
            if plan.ref is not None:
                closed.add(plan.ref)
            expects.append(Expect("accept", plan=plan, changes=applied))
        return expects, rows, versions

    def plan(self, req: Request, now: datetime) -> Plan | Reason:
        if isinstance(req, Post):
            return self.plan_post(req, now)
        if isinstance(req, CommitHold | VoidHold):
            return self.plan_close(req, now)
        return self.plan_reverse(req)

    def plan_post(self, req: Post, now: datetime) -> Plan | Reason:
        spec = RULES.get(req.code)
        if spec is None:
            return Reason.UNKNOWN_TRANSACTION_CODE
        if req.currency not in VALID_CURRENCIES:
            return Reason.UNKNOWN_CURRENCY
        if req.expires_at is not None and (not req.hold or req.expires_at <= now):
            return Reason.INVALID_EXPIRY
        if set(spec.parties) - set(req.parties):
            return Reason.MISSING_PARTY
        if set(req.parties) - set(spec.parties):
            return Reason.UNEXPECTED_PARTY
        if set(spec.amount_names) - set(req.amounts):
            return Reason.MISSING_AMOUNT
        if set(req.amounts) - set(spec.amount_names):
            return Reason.UNEXPECTED_AMOUNT
        legs: list[tuple[int, LegSpec, int]] = []
        for index, leg in enumerate(spec.legs):
            value = req.amounts[leg.amount]
            if value > MAX_MINOR:
                return Reason.AMOUNT_TOO_LARGE
            if value < 0 or (value == 0 and not leg.optional):
                return Reason.AMOUNT_NOT_POSITIVE
            if value > 0:
                legs.append((index, leg, value))
        if not legs:
            return Reason.AMOUNT_NOT_POSITIVE
        spread = zlib.crc32(req.key.encode())
        postings: list[MPosting] = []
        for index, leg, value in legs:
            for side, (party, role, sub) in ((Side.DEBIT, leg.debit), (Side.CREDIT, leg.credit)):
                account = PLATFORM_ACCOUNT_ID if party == "platform" else req.parties[party]
                fid = self.by_slot.get((account, role, sub, req.currency))
                if fid is None:
                    elsewhere = any(k[:3] == (account, role, sub) for k in self.by_slot)
                    return Reason.CURRENCY_MISMATCH if elsewhere else Reason.UNKNOWN_ACCOUNT
                shard = spread % self.funds[fid].shards
                seq = index * 2 + (0 if side is Side.DEBIT else 1)
                postings.append(MPosting(seq, fid, shard, side, value, req.currency))
        kind = EntryKind.PENDING if req.hold else EntryKind.POSTED
        names = {leg.amount: value for _, leg, value in legs}
        return Plan(kind, req.code, tuple(postings), expires_at=req.expires_at, leg_amounts=names)

    def plan_close(self, req: CommitHold | VoidHold, now: datetime) -> Plan | Reason:
        hold = self.entries.get(req.hold_id)
        if hold is None or hold.kind is not EntryKind.PENDING:
            return Reason.HOLD_NOT_FOUND
        if hold.hold_status is not HoldStatus.PENDING:
            return Reason.HOLD_CLOSED
        expired = hold.expires_at is not None and now >= hold.expires_at
        if isinstance(req, VoidHold):
            status = HoldStatus.EXPIRED if expired else HoldStatus.VOIDED
            return Plan(
                EntryKind.VOID, hold.code, hold.postings, hold.postings, hold.id, closes=status
            )
        if expired:
            return Reason.HOLD_EXPIRED
        postings = hold.postings
        if req.amounts is not None:
            if set(hold.leg_amounts) - set(req.amounts):
                return Reason.MISSING_AMOUNT
            if set(req.amounts) - set(hold.leg_amounts):
                return Reason.UNEXPECTED_AMOUNT
            legs = RULES[hold.code].legs
            captured = []
            for p in hold.postings:
                value = req.amounts[legs[p.seq // 2].amount]
                if value < 0:
                    return Reason.AMOUNT_NOT_POSITIVE
                if value > p.amount:
                    return Reason.HOLD_AMOUNT_EXCEEDED
                if value > 0:
                    captured.append(dataclasses.replace(p, amount=value))
            if not captured:
                return Reason.AMOUNT_NOT_POSITIVE
            postings = tuple(captured)
        return Plan(
            EntryKind.POST_PENDING,
            hold.code,
            postings,
            hold.postings,
            hold.id,
            closes=HoldStatus.POSTED,
        )

    def plan_reverse(self, req: Reverse) -> Plan | Reason:
        original = self.entries.get(req.entry_id)
        if original is None:
            return Reason.ENTRY_NOT_FOUND
        if original.kind not in (EntryKind.POSTED, EntryKind.POST_PENDING):
            return Reason.NOT_REVERSIBLE
        if original.closed_by is not None:
            return Reason.ALREADY_REVERSED
        swapped = tuple(
            dataclasses.replace(p, side=Side.CREDIT if p.side is Side.DEBIT else Side.DEBIT)
            for p in original.postings
        )
        return Plan(EntryKind.REVERSAL, original.code, swapped, ref=original.id)

    def apply(self, plan: Plan, rows: dict[Row, Counters]) -> dict[Row, Counters] | Reason:
        """The rows an entry changes, after it; or why it may not change them."""
        out: dict[Row, Counters] = {}
        for row, delta in sorted(effects_of(plan).items()):
            before = rows[row]
            after = tuple(a + b for a, b in zip(before, delta, strict=True))
            assert all(v >= 0 for v in after), f"model error: {row} {after}"
            if any(v > MAX_MINOR for v in after):
                return Reason.BALANCE_OVERFLOW
            fund = self.funds[row[0]]
            lowers = available(fund, after) < available(fund, before)
            status = self.status[fund.id]
            # Giving back what a hold set aside is refused by no status.
            release_only = delta[0] == delta[1] == 0 and max(delta[2], delta[3]) <= 0
            if release_only:
                pass
            elif status is Status.CLOSED or (lowers and status is Status.FROZEN):
                return Reason.ACCOUNT_NOT_ACTIVE
            if lowers and fund.non_negative and available(fund, after) < 0:
                return Reason.INSUFFICIENT_FUNDS
            out[row] = after
        return out

    # --- reading the model ----------------------------------------------------------------------

    def fund_counters(self, fid: int, rows: dict[Row, Counters] | None = None) -> Counters:
        rows = self.rows if rows is None else rows
        parts = [rows[(fid, s)] for s in range(self.funds[fid].shards)]
        return (
            sum(c[0] for c in parts),
            sum(c[1] for c in parts),
            sum(c[2] for c in parts),
            sum(c[3] for c in parts),
        )

    def chart_totals_fit(self, rows: dict[Row, Counters]) -> bool:
        """Whether every chart account's posted debit and credit totals, per currency, fit in
        64 bits (each balance row alone always does: the ledger refuses an overflow)."""
        totals: dict[tuple[str, str], list[int]] = {}
        for (fid, _), c in rows.items():
            fund = self.funds[fid]
            t = totals.setdefault((fund.chart_code, fund.currency), [0, 0])
            t[0] += c[0]
            t[1] += c[1]
        return all(d <= MAX_MINOR and c <= MAX_MINOR for d, c in totals.values())

    def record_history(self, changes: dict[Row, Counters], now: datetime) -> None:
        for row, counters in changes.items():
            self.last_at[row] = max(self.last_at[row], now)
            self.history[row].append((self.last_at[row], counters))

    def balance_at(self, fid: int, at: datetime) -> Counters:
        total = ZERO
        for shard in range(self.funds[fid].shards):
            past = [c for t, c in self.history[(fid, shard)] if t <= at]
            if past:
                total = tuple(a + b for a, b in zip(total, past[-1], strict=True))  # type: ignore[assignment]
        return total

    def fund_version(self, fid: int) -> int:
        return sum(self.versions[(fid, s)] for s in range(self.funds[fid].shards))

    def open_holds(self) -> list[MEntry]:
        return [
            e
            for e in self.entries.values()
            if e.kind is EntryKind.PENDING and e.hold_status is HoldStatus.PENDING
        ]


# --- the machine -------------------------------------------------------------------------------

SMALL = st.integers(1, 5_000)
ODD_AMOUNTS = [0, -1, -(2**63), MAX_MINOR + 1, 2**64, 10**30]  # all invalid but 0 when optional
HUGE_AMOUNTS = [MAX_MINOR, MAX_MINOR - 1, 2**62]  # valid, but the counters may overflow
POST_FAULTS = [
    "code",
    "currency",
    "wrong party",
    "missing party",
    "extra party",
    "odd amount",
    "huge amount",
    "huge amount",
    "missing amount",
    "extra amount",
    "expiry",
]


class LedgerMachine(RuleBasedStateMachine):
    new_database: Callable[[], str]  # set by the test: a fresh, migrated, seeded database URL

    def __init__(self) -> None:
        super().__init__()
        self.clock = FixedClock(START)
        self.app = build_app(Settings(database_url=type(self).new_database()), self.clock)
        self.ledger = self.app.ledger
        self.counter = 0
        self._open_parties()
        self.books = Books(self._load_funds(), self._load_last_at())
        self.last_entry_id = 0

    def teardown(self) -> None:
        self.app.close()

    # --- set-up -------------------------------------------------------------------------------

    def _open_parties(self) -> None:
        app, now = self.app, self.clock.now()
        run_in_transaction(
            app.engine,
            lambda c: handlers.ensure_platform(c, app.chart, app.rules, "USD", now),
        )
        m0 = open_party(app, "m0", (Role.MERCHANT_SETTLEMENT, Role.MERCHANT_DEPOSIT))
        m1 = open_party(app, "m1", (Role.MERCHANT_SETTLEMENT,))
        b0 = open_party(app, "b0", (Role.BUYER_BALANCE,))
        b1 = open_party(app, "b1", (Role.BUYER_BALANCE,))
        b2 = open_party(app, "b2", (Role.BUYER_BALANCE,))

        def usd(conn: Connection) -> None:
            for account, role in (
                (m0.account_id, Role.MERCHANT_SETTLEMENT),
                (b0.account_id, Role.BUYER_BALANCE),
                (b1.account_id, Role.BUYER_BALANCE),
            ):
                handlers.open_fund_account(
                    conn, app.chart, account_id=account, role=role, currency="USD", now=now
                )

        run_in_transaction(app.engine, usd)
        self.merchants = [m0.account_id, m1.account_id]
        self.buyers = [b0.account_id, b1.account_id, b2.account_id]

    def _load_funds(self) -> dict[int, Fund]:
        def read(conn: Connection) -> list[Any]:
            return list(conn.execute(select(fund_accounts).order_by(fund_accounts.c.id)))

        funds: dict[int, Fund] = {}
        for r in run_in_transaction(self.app.engine, read, readonly=True):
            role = Role(r.role)
            defaults = ROLE_DEFAULTS[role]
            fund = Fund(
                id=int(r.id),
                account_id=r.account_id,
                role=role,
                sub=r.sub,
                currency=r.currency,
                shards=defaults.shards,
                normal=NORMAL_SIDE[role],
                non_negative=defaults.non_negative,
                chart_code=self.app.chart.leaf_for(role).code,
            )
            # The accounts were opened as the roles say: constrained ones unsharded.
            assert (int(r.shards), bool(r.non_negative), r.normal_side, r.chart_code) == (
                fund.shards,
                fund.non_negative,
                fund.normal.value,
                fund.chart_code,
            ), r
            assert not (fund.non_negative and fund.shards > 1)
            funds[fund.id] = fund
        roles = {(f.account_id == PLATFORM_ACCOUNT_ID, f.role, f.currency) for f in funds.values()}
        assert (True, Role.BANK_RESERVE, "USD") in roles
        assert (False, Role.BUYER_BALANCE, "USD") in roles
        assert funds[self._fund(self.buyers[0], Role.BUYER_BALANCE, funds)].non_negative
        return funds

    def _load_last_at(self) -> dict[Row, datetime]:
        def read(conn: Connection) -> dict[Row, datetime]:
            rows = conn.execute(
                select(balances.c.fund_account_id, balances.c.shard, balances.c.last_at)
            )
            return {(int(r.fund_account_id), int(r.shard)): r.last_at for r in rows}

        return run_in_transaction(self.app.engine, read, readonly=True)

    def _fund(
        self, account: str, role: Role, funds: dict[int, Fund], currency: str = "CNY", sub: str = ""
    ) -> int:
        return next(
            f.id
            for f in funds.values()
            if (f.account_id, f.role, f.currency, f.sub) == (account, role, currency, sub)
        )

    # --- drawing requests -------------------------------------------------------------------------

    def new_key(self) -> str:
        self.counter += 1
        return f"k{self.counter}"

    def draw_post(self, data: st.DataObject, *, hold: bool) -> Post:
        """A well-formed request seven times in ten; else one with a single fault."""
        fault = None
        if data.draw(st.integers(0, 9), label="faulty?") >= 7:
            fault = data.draw(st.sampled_from(POST_FAULTS), label="fault")
        code = data.draw(st.sampled_from(CODES), label="code")
        spec = RULES[code]
        if fault == "code":
            code = data.draw(st.sampled_from(UNKNOWN_CODES), label="unknown code")
        currency = data.draw(st.sampled_from(["CNY", "CNY", "CNY", "USD"]), label="currency")
        if fault == "currency":
            currency = data.draw(st.sampled_from(["JPY", "ZZZ", "cny", ""]), label="currency")
        parties = {
            name: data.draw(
                st.sampled_from(self.merchants if name in MERCHANT_PARTIES else self.buyers),
                label=name,
            )
            for name in spec.parties
        }
        if fault == "wrong party" and parties:
            name = data.draw(st.sampled_from(sorted(parties)))
            parties[name] = data.draw(
                st.sampled_from([self.buyers[0], self.merchants[1], "acc_nobody"])
            )
        elif fault == "missing party" and parties:
            parties.pop(data.draw(st.sampled_from(sorted(parties))))
        elif fault == "extra party":
            parties["stranger"] = self.buyers[0]
        amounts: dict[str, int] = {}
        for leg in spec.legs:
            zero = leg.optional and data.draw(st.booleans(), label=f"no {leg.amount}?")
            amounts[leg.amount] = 0 if zero else data.draw(SMALL, label=leg.amount)
        if fault in ("odd amount", "huge amount"):
            name = data.draw(st.sampled_from(sorted(amounts)))
            odd = ODD_AMOUNTS if fault == "odd amount" else HUGE_AMOUNTS
            amounts[name] = data.draw(st.sampled_from(odd), label=name)
        elif fault == "missing amount":
            amounts.pop(data.draw(st.sampled_from(sorted(amounts))))
        elif fault == "extra amount":
            amounts["tip"] = 1
        now = self.clock.now()
        expires_at = None
        if hold and data.draw(st.booleans(), label="expires?"):
            expires_at = now + timedelta(seconds=data.draw(st.integers(1, 4 * 3_600)))
        if fault == "expiry":
            # A hold must expire in the future; a posting cannot expire at all.
            expires_at = now - timedelta(seconds=data.draw(st.integers(0, 60)))
            if not hold:
                expires_at += timedelta(hours=1)
        memo = data.draw(st.sampled_from([None, None, None, "memo", "备注"]), label="memo")
        return Post(self.new_key(), code, currency, amounts, parties, memo, hold, expires_at)

    def client_keys(self) -> list[str]:
        """Keys a client may resubmit: the sweeper's reserved keys are refused at the door."""
        return sorted(k for k in self.books.requests if not k.startswith(SYSTEM_KEY_PREFIX))

    def draw_hold_id(self, data: st.DataObject) -> int:
        """Mostly an open hold; else any entry or an id that names nothing."""
        open_ids = sorted(e.id for e in self.books.open_holds())
        any_ids = sorted(self.books.entries)
        pick = data.draw(st.integers(0, 9), label="which entry")
        if open_ids and pick < 7:
            return data.draw(st.sampled_from(open_ids), label="open hold")
        if any_ids and pick < 9:
            return data.draw(st.sampled_from(any_ids), label="entry")
        return data.draw(st.sampled_from([self.last_entry_id + 1, 10**9]), label="bogus")

    def draw_capture(self, data: st.DataObject, hold_id: int) -> dict[str, int] | None:
        hold = self.books.entries.get(hold_id)
        if hold is None or not hold.leg_amounts or data.draw(st.booleans(), label="whole?"):
            return None
        amounts = {
            name: data.draw(st.integers(0, held), label=f"capture {name}")
            for name, held in hold.leg_amounts.items()
        }
        fault = data.draw(st.integers(0, 9), label="capture fault")
        name = data.draw(st.sampled_from(sorted(amounts)))
        if fault == 0:
            amounts[name] = hold.leg_amounts[name] + 1
        elif fault == 1:
            amounts[name] = -1
        elif fault == 2:
            del amounts[name]
        elif fault == 3:
            amounts["tip"] = 1
        elif fault == 4:
            amounts = dict.fromkeys(amounts, 0)
        return amounts

    def draw_entry_id(self, data: st.DataObject) -> int:
        reversible = sorted(
            e.id
            for e in self.books.entries.values()
            if e.kind in (EntryKind.POSTED, EntryKind.POST_PENDING) and e.closed_by is None
        )
        pick = data.draw(st.integers(0, 9), label="which entry")
        if reversible and pick < 6:
            return data.draw(st.sampled_from(reversible), label="reversible")
        if self.books.entries and pick < 9:
            return data.draw(st.sampled_from(sorted(self.books.entries)), label="entry")
        return data.draw(st.sampled_from([self.last_entry_id + 1, 10**9]), label="bogus")

    def draw_request(self, data: st.DataObject) -> Request:
        kind = data.draw(
            st.sampled_from(
                ["post", "post", "hold", "commit", "void", "reverse", "retry", "other"]
            ),
            label="request kind",
        )
        if kind in ("post", "hold"):
            return self.draw_post(data, hold=kind == "hold")
        if kind in ("commit", "void"):
            hold_id = self.draw_hold_id(data)
            if kind == "void":
                return VoidHold(self.new_key(), hold_id)
            return CommitHold(self.new_key(), hold_id, self.draw_capture(data, hold_id))
        if kind == "reverse":
            return Reverse(self.new_key(), self.draw_entry_id(data))
        if not self.client_keys():
            return self.draw_post(data, hold=False)
        key = data.draw(st.sampled_from(self.client_keys()), label="old key")
        old = self.books.requests[key][0]
        return old if kind == "retry" else different(old)

    # --- submitting ---------------------------------------------------------------------------

    def submit(
        self, requests: list[Request], call: Callable[[], list[Outcome]] | None = None
    ) -> list[Outcome]:
        """Submit (through ``call`` if given), check every outcome against the model's
        prediction, then move the model."""
        now = self.clock.now()
        expects, rows, versions = self.books.predict(requests, now)
        if not self.books.chart_totals_fit(rows):
            # Known bug (see test_chart_totals_beyond_64_bits below): the ledger accepts entries
            # that take a chart account's total past 2**63 - 1, after which the trial balance,
            # check() and close_day() fail. Keep the books below that; each row may still
            # overflow, which the ledger must refuse.
            event("skipped: a chart total would pass 64 bits")
            return []
        before = self.db_state()
        outcomes = call() if call is not None else self.ledger.submit(requests)
        assert [o.key for o in outcomes] == [r.key for r in requests], (requests, outcomes)
        new_ids: list[int] = []
        for req, out, exp in zip(requests, outcomes, expects, strict=True):
            event(f"{req.operation} {exp.kind} {out.reason or ''}".strip())
            if exp.kind == "replay":
                assert exp.stored is not None
                assert out == dataclasses.replace(exp.stored, replayed=True), (req, out, exp)
            elif exp.kind == "dup":
                assert exp.first is not None
                assert out == dataclasses.replace(outcomes[exp.first], replayed=True), (req, out)
            elif exp.kind == "reject":
                assert (out.ok, out.reason, out.entry_id, out.replayed) == (
                    False,
                    exp.reason,
                    None,
                    False,
                ), (req, out)
            else:
                assert (out.ok, out.replayed) == (True, False), (req, out, exp)
                assert out.entry_id is not None
                assert out.entry_id > max([self.last_entry_id, *new_ids]), "ids must grow"
                new_ids.append(out.entry_id)
            if exp.kind in ("accept", "reject") and exp.reason is not Reason.IDEMPOTENCY_CONFLICT:
                self.books.requests[req.key] = (req, out)
            if exp.kind == "accept":
                assert exp.plan is not None
                assert out.entry_id is not None
                self.record_entry(out.entry_id, exp.plan, req, now)
                self.books.record_history(exp.changes, now)
        if not new_ids:  # 5./6. nothing accepted: nothing may have changed
            assert self.db_state() == before
            assert rows == self.books.rows
        self.books.rows, self.books.versions = rows, versions
        for entry_id in new_ids:
            self.check_entry(entry_id)
        if new_ids:
            self.last_entry_id = new_ids[-1]
        return outcomes

    def single(self, req: Request) -> Outcome | None:
        outcomes = self.submit([req], lambda: [self.call_single(req)])
        return outcomes[0] if outcomes else None

    def call_single(self, req: Request) -> Outcome:
        """A single request through the Ledger's convenience methods where they fit."""
        led = self.ledger
        if isinstance(req, Post) and req.memo is None:
            if req.hold:
                return led.hold(
                    req.key,
                    req.code,
                    req.currency,
                    req.amounts,
                    parties=req.parties,
                    expires_at=req.expires_at,
                )
            if req.expires_at is None:
                return led.post(req.key, req.code, req.currency, req.amounts, parties=req.parties)
        if isinstance(req, CommitHold) and req.memo is None:
            return led.commit_hold(req.key, req.hold_id, req.amounts)
        if isinstance(req, VoidHold) and req.memo is None:
            return led.void_hold(req.key, req.hold_id)
        if isinstance(req, Reverse):
            return led.reverse(req.key, req.entry_id, req.memo)
        return led.submit([req])[0]

    def record_entry(self, entry_id: int, plan: Plan, req: Request, now: datetime) -> None:
        books = self.books
        entry = MEntry(
            id=entry_id,
            code=plan.code,
            kind=plan.kind,
            postings=plan.postings,
            ref=plan.ref,
            posted_at=now,
            memo=req.memo,
        )
        if plan.kind is EntryKind.PENDING:
            entry.hold_status = HoldStatus.PENDING
            entry.expires_at = plan.expires_at
            entry.leg_amounts = plan.leg_amounts
        books.entries[entry_id] = entry
        if plan.ref is not None:
            target = books.entries[plan.ref]
            target.closed_by = entry_id
            if plan.closes is not None:
                target.hold_status = plan.closes

    def check_entry(self, entry_id: int) -> None:
        entry = self.books.entries[entry_id]
        stored = self.ledger.entry(entry_id)
        assert stored == {
            "id": entry_id,
            "code": entry.code,
            "kind": entry.kind.value,
            "ref_entry_id": entry.ref,
            "posted_at": entry.posted_at.isoformat(),
            "memo": entry.memo,
            "postings": [p.as_dict() for p in sorted(entry.postings, key=lambda p: p.seq)],
        }

    def db_state(self) -> tuple[Any, ...]:
        """Everything a request could change, but the request log."""

        def read(conn: Connection) -> tuple[Any, ...]:
            balances = [
                (b.fund_account_id, b.counters, b.version) for b in queries.all_balances(conn)
            ]
            hold_rows = sorted(tuple(r) for r in conn.execute(select(holds)))
            return (balances, hold_rows, queries.entry_count(conn))

        return run_in_transaction(self.app.engine, read, readonly=True)

    # --- rules --------------------------------------------------------------------------------

    @initialize(data=st.data())
    def fund_the_parties(self, data: st.DataObject) -> None:
        """Top up every buyer and settle to every merchant, so that spending can succeed."""
        requests: list[Request] = []
        topped: dict[tuple[str, str], int] = {}
        for currency in ("CNY", "USD"):
            for buyer in self.buyers:
                amount = topped[(buyer, currency)] = data.draw(SMALL, label="top-up")
                requests.append(
                    Post(self.new_key(), "4002", currency, {"amount": amount}, {"buyer": buyer})
                )
            for merchant in self.merchants:
                amounts = {"merchant_amount": data.draw(SMALL), "commission": 0}
                requests.append(
                    Post(self.new_key(), "1102", currency, amounts, {"merchant": merchant})
                )
        # Some holds to capture, void and expire from the first step: on the platform (never
        # short of funds), on a buyer's balance, one expiring and one not.
        now = self.clock.now()
        for buyer in self.buyers[:2]:
            expires = now + timedelta(minutes=data.draw(st.integers(1, 240), label="expiry"))
            amount = {"amount": data.draw(SMALL, label="held")}
            requests.append(
                Post(self.new_key(), "1002", "CNY", amount, hold=True, expires_at=expires)
            )
            amount = {"amount": data.draw(st.integers(1, topped[(buyer, "CNY")]), label="held")}
            requests.append(
                Post(
                    self.new_key(),
                    "8001",
                    "CNY",
                    amount,
                    {"payer": buyer, "payee": self.buyers[2]},
                    hold=True,
                )
            )
        expects = self.books.predict(requests, now)[0]
        # Parties without an account in a currency are rejected; everyone else is funded.
        assert [e.kind for e in expects].count("accept") == 12
        self.submit(requests)

    @rule(data=st.data())
    def post(self, data: st.DataObject) -> None:
        self.single(self.draw_post(data, hold=False))

    @rule(data=st.data())
    def hold(self, data: st.DataObject) -> None:
        self.single(self.draw_post(data, hold=True))

    @precondition(
        lambda self: any(e.kind is EntryKind.PENDING for e in self.books.entries.values())
    )
    @rule(data=st.data())
    def commit_hold(self, data: st.DataObject) -> None:
        hold_id = self.draw_hold_id(data)
        self.single(CommitHold(self.new_key(), hold_id, self.draw_capture(data, hold_id)))

    @precondition(
        lambda self: any(e.kind is EntryKind.PENDING for e in self.books.entries.values())
    )
    @rule(data=st.data())
    def void_hold(self, data: st.DataObject) -> None:
        self.single(VoidHold(self.new_key(), self.draw_hold_id(data)))

    @precondition(lambda self: bool(self.books.entries))
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        self.single(Reverse(self.new_key(), self.draw_entry_id(data)))

    @precondition(lambda self: bool(self.client_keys()))
    @rule(data=st.data())
    def retry_same_payload(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.client_keys()), label="old key")
        req, first = self.books.requests[key]
        assert self.single(req) == dataclasses.replace(first, replayed=True)

    @precondition(lambda self: bool(self.client_keys()))
    @rule(data=st.data())
    def retry_other_payload(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.client_keys()), label="old key")
        out = self.single(different(self.books.requests[key][0]))
        assert out is not None
        assert out.reason is Reason.IDEMPOTENCY_CONFLICT

    @rule(data=st.data())
    def batch(self, data: st.DataObject) -> None:
        requests = [self.draw_request(data) for _ in range(data.draw(st.integers(1, 5)))]
        if data.draw(st.booleans(), label="repeat a key in the batch?"):
            again = data.draw(st.sampled_from(requests), label="repeated")
            same = data.draw(st.booleans(), label="same payload?")
            requests.insert(
                data.draw(st.integers(0, len(requests))), again if same else different(again)
            )
        self.submit(requests)

    @rule(data=st.data())
    def unidentifiable_batch(self, data: st.DataObject) -> None:
        """A request that cannot be identified fails the whole batch: nothing is stored."""
        good = [self.draw_request(data) for _ in range(data.draw(st.integers(0, 2)))]
        now = self.clock.now()
        bad = data.draw(
            st.sampled_from(
                [
                    Post(self.new_key(), "1002", "CNY", {"amount": True}),
                    Post(self.new_key(), "1002", "CNY", {"amount": 1.5}),
                    Post(
                        self.new_key(), "4002", "CNY", {"amount": "10"}, {"buyer": self.buyers[0]}
                    ),
                    Post(
                        self.new_key(),
                        "1002",
                        "CNY",
                        {"amount": 5},
                        hold=True,
                        expires_at=now.replace(tzinfo=None) + timedelta(hours=1),
                    ),
                    CommitHold(self.new_key(), 1, {"amount": 1.0}),
                    Post("", "1002", "CNY", {"amount": 5}),
                    Post("   ", "1002", "CNY", {"amount": 5}),
                    Reverse("x" * 129, 1),
                    Reverse(self.new_key(), 0),
                    VoidHold(self.new_key(), -1),
                    Post(SYSTEM_KEY_PREFIX + self.new_key(), "1002", "CNY", {"amount": 5}),
                ]
            ),
            label="unidentifiable",
        )
        requests = [*good]
        requests.insert(data.draw(st.integers(0, len(good))), bad)
        before = self.db_state()
        with pytest.raises(InvalidRequest):
            self.ledger.submit(requests)
        assert self.db_state() == before
        # The good requests were not stored: alone, they are answered as new.
        if good:
            self.submit(good)

    @rule(data=st.data())
    def advance_clock(self, data: st.DataObject) -> None:
        now = self.clock.now()
        expiries = sorted(
            {e.expires_at for e in self.books.open_holds() if e.expires_at and e.expires_at > now}
        )
        if expiries and data.draw(st.booleans(), label="to the instant a hold expires?"):
            self.clock.set(data.draw(st.sampled_from(expiries), label="expiry"))
        else:
            self.clock.advance(timedelta(minutes=data.draw(st.integers(1, 6 * 60), label="min")))

    @rule(data=st.data())
    def expire_holds(self, data: st.DataObject) -> None:
        """The sweeper voids exactly the holds that are due, under keys derived from them."""
        now = self.clock.now()
        later = [
            e.expires_at for e in self.books.open_holds() if e.expires_at and e.expires_at > now
        ]
        if later and data.draw(st.booleans(), label="at the instant the next hold expires?"):
            self.clock.set(min(later))  # due from this very instant
        for _ in range(2):  # the second sweep finds only what the first could not release
            now = self.clock.now()
            due = sorted(
                e.id
                for e in self.books.open_holds()
                if e.expires_at is not None and e.expires_at <= now
            )
            self.submit(
                [VoidHold(f"{SYSTEM_KEY_PREFIX}expire-hold-{i}", i) for i in due],
                self.ledger.expire_holds,
            )

    @precondition(
        lambda self: any(
            f.account_id != PLATFORM_ACCOUNT_ID and self.books.status[f.id] is not Status.CLOSED
            for f in self.books.funds.values()
        )
    )
    @rule(data=st.data())
    def set_status(self, data: st.DataObject) -> None:
        """Freeze, unfreeze or close a party's fund account. Closing is for good: a closed
        account takes nothing but the release of its holds, so a due hold still expires
        (test_nothing_stops_a_due_hold_from_expiring, below)."""
        party_funds = sorted(
            f.id
            for f in self.books.funds.values()
            if f.account_id != PLATFORM_ACCOUNT_ID and self.books.status[f.id] is not Status.CLOSED
        )
        fid = data.draw(st.sampled_from(party_funds), label="fund account")
        status = data.draw(
            st.sampled_from([Status.ACTIVE, Status.FROZEN, Status.FROZEN, Status.CLOSED])
        )
        run_in_transaction(
            self.app.engine, lambda c: handlers.set_fund_account_status(c, fid, status)
        )
        self.books.status[fid] = status

    @rule(days_back=st.integers(0, 3))
    def close_day(self, days_back: int) -> None:
        now = self.clock.now()
        day = now.date() - timedelta(days=days_back)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)
        if now < end + CLOSE_GRACE:
            with pytest.raises(DayNotOver):
                self.ledger.close_day(day)
            return
        assert self.ledger.close_day(day) is (day not in self.books.closed_days)
        self.books.closed_days.add(day)

    @rule(data=st.data())
    def balance_at(self, data: st.DataObject) -> None:
        """A past balance is the sum of each shard's last change at or before that instant."""
        changed = sorted({fid for (fid, _), h in self.books.history.items() if h})
        fid = data.draw(st.sampled_from(changed or sorted(self.books.funds)), label="fund")
        shards = range(self.books.funds[fid].shards)
        stamps = sorted({t for s in shards for t, _ in self.books.history[(fid, s)]})
        at = data.draw(st.sampled_from([START, self.clock.now(), *stamps]), label="instant")
        at += data.draw(st.sampled_from([timedelta(0), -MICROSECOND, MICROSECOND]), label="+/-")
        assert self.ledger.balance_at(fid, at).counters.as_tuple() == self.books.balance_at(fid, at)
        # After the last change, the past balance is the current one.
        latest = max([self.clock.now(), *(self.books.last_at[(fid, s)] for s in shards)])
        assert self.ledger.balance_at(fid, latest) == self.ledger.balance(fid)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def books_agree_with_the_model(self) -> None:
        books = self.books

        def read(conn: Connection) -> tuple[Any, ...]:
            return (
                queries.all_balances(conn),
                {
                    int(r.entry_id): (r.status, r.closed_by_entry_id)
                    for r in conn.execute(select(holds))
                },
                {
                    r.key: (r.status, r.reason, r.entry_id)
                    for r in conn.execute(select(ledger_requests))
                },
                queries.entry_count(conn),
            )

        balances, hold_rows, request_rows, entry_count = run_in_transaction(
            self.app.engine, read, readonly=True
        )
        assert {b.fund_account_id for b in balances} == set(books.funds)
        posted: dict[str, list[int]] = {}
        pending_out = dict.fromkeys(books.funds, 0)
        pending_in = dict.fromkeys(books.funds, 0)
        for hold in books.open_holds():
            for p in hold.postings:
                fund = books.funds[p.fund]
                out_side = Side.CREDIT if fund.normal is Side.DEBIT else Side.DEBIT
                (pending_out if p.side is out_side else pending_in)[p.fund] += p.amount
        for b in balances:
            fund = books.funds[b.fund_account_id]
            counters = b.counters.as_tuple()
            # 3. every balance is the model's
            assert counters == books.fund_counters(fund.id), (fund, counters)
            assert b.version == books.fund_version(fund.id), fund
            assert (b.currency, b.role, b.normal_side) == (
                fund.currency,
                fund.role.value,
                fund.normal,
            )
            # 2. constrained balances never go below zero
            if fund.non_negative:
                assert b.available >= 0, (fund, b)
                assert b.available == available(fund, counters)
            # 4. holds add up
            assert (b.pending_out, b.pending_in) == (pending_out[fund.id], pending_in[fund.id])
            totals = posted.setdefault(b.currency, [0, 0, 0, 0])
            for i, v in enumerate(counters):
                totals[i] += v
        # 1. money is conserved per currency, posted and pending
        for currency, (dp, cp, dpe, cpe) in posted.items():
            assert dp == cp, f"{currency} posted debits {dp} != credits {cp}"
            assert dpe == cpe, f"{currency} pending debits {dpe} != credits {cpe}"
        # ... and the trial balance says the same, line by line
        expected_lines: dict[tuple[str, str], int] = {}
        for fund in books.funds.values():
            c = books.fund_counters(fund.id)
            line = (fund.chart_code, fund.currency)
            expected_lines[line] = expected_lines.get(line, 0) + c[0] - c[1]
        lines = self.ledger.trial_balance()
        assert {(ln.chart_code, ln.currency): (ln.debit, ln.credit) for ln in lines} == {
            k: (max(net, 0), max(-net, 0)) for k, net in expected_lines.items()
        }
        by_currency: dict[str, list[int]] = {}
        for ln in lines:
            t = by_currency.setdefault(ln.currency, [0, 0])
            t[0] += ln.debit
            t[1] += ln.credit
        assert all(d == c for d, c in by_currency.values()), by_currency
        # The journal, holds and request log are the model's.
        assert entry_count == len(books.entries)
        assert hold_rows == {
            e.id: (e.hold_status.value, e.closed_by)
            for e in books.entries.values()
            if e.kind is EntryKind.PENDING
        }
        assert request_rows == {
            key: ("ok", None, out.entry_id) if out.ok else ("rejected", out.reason.value, None)
            for key, (_, out) in books.requests.items()
        }
        # 3. the ledger's own end-of-day check finds the books consistent
        assert self.ledger.check() == []


def different(req: Request) -> Request:
    """A request under the same key asking for something else."""
    memo = (req.memo or "") + "!"
    if isinstance(req, Post):
        return dataclasses.replace(req, memo=memo)
    if isinstance(req, VoidHold):
        return Reverse(req.key, req.hold_id)
    return VoidHold(req.key, req.hold_id if isinstance(req, CommitHold) else req.entry_id)


# --- running it --------------------------------------------------------------------------------

RUNS = {
    "sqlite": {"max_examples": 40, "stateful_step_count": 25},
    "postgres": {"max_examples": 20, "stateful_step_count": 20},
}


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Callable[[], str]]]:
    """The backend's name and a factory of fresh databases, one per Hypothesis example."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        made: list[Path] = []

        def fresh_sqlite() -> str:
            for old in made:  # one example's database at a time
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{old}{suffix}").unlink(missing_ok=True)
            path = tmp_path / f"example-{len(made)}.db"
            shutil.copyfile(template, path)
            made.append(path)
            return f"sqlite:///{path}"

        yield "sqlite", fresh_sqlite
        return
    url: str = request.getfixturevalue("pg_url")

    def fresh_postgres() -> str:
        reset_postgres(url)
        return url

    yield "postgres", fresh_postgres


def test_ledger_state_machine(backend: tuple[str, Callable[[], str]]) -> None:
    name, factory = backend
    machine = type(
        f"LedgerMachine_{name}", (LedgerMachine,), {"new_database": staticmethod(factory)}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            **RUNS[name],
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


# --- known bugs the machine steers around, pinned as examples -----------------------------------


def test_chart_totals_beyond_64_bits(app: Any, clock: FixedClock) -> None:
    """Each balance row stays within 64 bits, but a chart account's total over its rows (here
    two shards of the WeChat Pay clearing account) need not. The ledger must then either refuse
    the entry or still produce its trial balance, check and day close."""
    keys = ["big-0"]
    keys.append(
        next(
            f"big-{i}"
            for i in range(1, 100)
            if zlib.crc32(f"big-{i}".encode()) % 16 != zlib.crc32(b"big-0") % 16
        )
    )
    accepted = sum(app.ledger.post(k, "1002", "CNY", {"amount": MAX_MINOR}).ok for k in keys)
    totals: dict[str, tuple[int, int]] = {}
    for line in app.ledger.trial_balance():
        d, c = totals.get(line.currency, (0, 0))
        totals[line.currency] = (d + line.debit, c + line.credit)
    assert totals["CNY"] == (accepted * MAX_MINOR, accepted * MAX_MINOR)
    assert app.ledger.check() == []
    clock.advance(timedelta(days=1))
    assert app.ledger.close_day(START.date()) is True
    assert app.ledger.check() == []


@pytest.mark.parametrize("blocker", ["client key", "refused sweep"])
def test_nothing_stops_a_due_hold_from_expiring(app: Any, clock: FixedClock, blocker: str) -> None:
    buyer = open_party(app, "buyer", (Role.BUYER_BALANCE,))
    fund = buyer.fund_accounts[Role.BUYER_BALANCE]
    payee = open_party(app, "payee", (Role.BUYER_BALANCE,))
    parties = {"payer": buyer.account_id, "payee": payee.account_id}
    assert app.ledger.post(
        "top-up", "4002", "CNY", {"amount": 100}, parties={"buyer": buyer.account_id}
    ).ok
    expires = clock.now() + timedelta(minutes=1)
    hold = app.ledger.hold("h", "8001", "CNY", {"amount": 40}, parties=parties, expires_at=expires)
    assert hold.ok
    assert app.ledger.balance(fund).pending_out == 40
    clock.advance(timedelta(minutes=2))
    if blocker == "client key":
        # The sweep's keys are reserved: a client cannot take one first.
        with pytest.raises(InvalidRequest):
            app.ledger.post(f"clearhouse:expire-hold-{hold.entry_id}", "1002", "CNY", {"amount": 1})
        assert app.ledger.post(f"expire-hold-{hold.entry_id}", "1002", "CNY", {"amount": 1}).ok
    else:  # the account is closed during one sweep, then reopened

        def set_status(status: Status) -> None:
            run_in_transaction(
                app.engine, lambda c: handlers.set_fund_account_status(c, fund, status)
            )

        set_status(Status.CLOSED)  # a release is not refused for the account's status
    app.ledger.expire_holds()
    assert app.ledger.balance(fund).pending_out == 0
    assert app.ledger.commit_hold("late capture", hold.entry_id).reason is Reason.HOLD_CLOSED


@pytest.mark.parametrize(
    "request_",
    [
        Reverse("r-huge", 2**63),
        VoidHold("v-huge", 2**63),
        CommitHold("c-huge", -(2**63) - 1),
        Reverse("r-text", "1"),  # type: ignore[arg-type]
        Post("m-long", "1002", "CNY", {"amount": 1}, memo="x" * 201),
    ],
    ids=["reverse-2**63", "void-2**63", "commit--2**63-1", "reverse-str-id", "memo-201"],
)
def test_fields_the_database_cannot_hold_are_refused_alike(app: Any, request_: Request) -> None:
    """A request whose fields do not fit the schema (ids outside 64 bits, a text id, a memo
    longer than its 200-character column) must be refused as InvalidRequest, never stored, on
    both databases; today it reaches the driver, which fails or (SQLite) silently accepts."""
    with pytest.raises(InvalidRequest):
        app.ledger.submit([request_])
    count = run_in_transaction(
        app.engine, lambda c: c.execute(text("SELECT count(*) FROM ledger_requests")).scalar_one()
    )
    assert count == 0
