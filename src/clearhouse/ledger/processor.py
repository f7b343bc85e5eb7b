"""One batch of ledger requests, processed inside one database transaction.

The order is fixed: identify (key + payload hash) and answer retries from the stored outcome;
plan each new request into postings (pure, plus reads); lock every balance row the batch touches
in sorted order; apply the plans one by one in memory (pure); write everything in a few
multi-row statements. A rejected request writes only its stored rejection.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Connection

from clearhouse.db.raw import Raw
from clearhouse.errors import UnknownCurrency
from clearhouse.ledger import store
from clearhouse.ledger.model import (
    BalanceRow,
    EntryKind,
    HoldStatus,
    Posting,
    Reason,
    Rejection,
    RowKey,
    Side,
    apply_entry,
    check_postings,
    entry_effects,
)
from clearhouse.ledger.requests import (
    CommitHold,
    Outcome,
    Post,
    Request,
    Reverse,
    VoidHold,
    payload_hash,
    validate_request,
)
from clearhouse.ledger.rules import (
    PLATFORM_PARTY,
    PostingRule,
    PostingRules,
    RenderedLeg,
    Slot,
    render,
)
from clearhouse.money import currency as lookup_currency

FundCache = dict[store.FundKey, store.FundMeta]
FUND_CACHE_LIMIT = 200_000  # fund accounts a process remembers (about 60 MB), plus one batch's


@dataclass(slots=True)
class Context:
    rules: PostingRules
    platform_account_id: str
    # Fund account ids never change once opened, so a process may keep them.
    fund_cache: FundCache = field(default_factory=dict)


@dataclass(slots=True)
class _Plan:
    index: int
    request: Request
    code: str
    kind: EntryKind
    postings: list[Posting]
    released: tuple[Posting, ...] = ()
    ref_entry_id: int | None = None
    expires_at: datetime | None = None
    closes_hold: HoldStatus | None = None


def process(
    conn: Connection,
    requests: Sequence[Request],
    ctx: Context,
    now: datetime,
    *,
    system: bool = False,
) -> list[Outcome]:
    for req in requests:
        validate_request(req, system=system)
    hashes = [payload_hash(r) for r in requests]
    _bound_fund_cache(ctx)
    raw = Raw(conn)
    first_of_key: dict[str, int] = {}
    for i, req in enumerate(requests):
        first_of_key.setdefault(req.key, i)
    # Plan before knowing which keys are retries: the stored outcomes, the fund accounts not yet
    # cached, the row locks and the entry ids then come back in one round trip. A post naming a
    # fund account this process has not seen is planned after that read; a retry's plan is
    # simply dropped.
    candidates = sorted(first_of_key.values())
    early = _plan_early(conn, requests, candidates, ctx, now)
    live = [plan for plan in early.plans.values() if isinstance(plan, _Plan)]
    locked = store.read_for_update(
        raw,
        list(first_of_key),
        [*(p.row for plan in live for p in (*plan.postings, *plan.released)), *early.rows],
        early.slots,
        len(live) + len(early.later),
    )
    ctx.fund_cache.update(locked.funds)
    plans = early.plans
    for i, post in early.later:
        plans[i] = _plan_post(i, post, ctx, now)
    stored, rows, reserved = locked.requests, locked.rows, locked.ids
    outcomes: list[Outcome | None] = [None] * len(requests)
    for i, req in enumerate(requests):
        prior = stored.get(req.key)
        if prior is not None:
            outcomes[i] = _replay(req.key, prior.payload_hash, hashes[i], prior)
    fresh = [i for i in candidates if requests[i].key not in stored]
    new_entries: list[store.NewEntry] = []
    records: list[store.RequestRecord] = []
    entry_of: dict[int, int] = {}
    closed: set[int] = set()  # holds closed / entries reversed earlier in this batch
    for i in fresh:
        plan = plans[i]
        result = plan if isinstance(plan, Rejection) else _apply(plan, rows, closed, now)
        req = requests[i]
        if isinstance(result, Rejection):
            records.append(
                store.RequestRecord(
                    req.key, req.operation, hashes[i], None, result.reason, result.detail
                )
            )
            outcomes[i] = Outcome(req.key, None, result)
            continue
        assert isinstance(plan, _Plan)
        entry_of[i] = len(new_entries)
        new_entries.append(result)
        records.append(
            store.RequestRecord(req.key, req.operation, hashes[i], entry_of[i], None, None)
        )

    ids = reserved[: len(new_entries)]
    store.write(raw, new_entries, ids, records, now)
    for i, position in entry_of.items():
        outcomes[i] = Outcome(requests[i].key, ids[position])
    for i, req in enumerate(requests):
        first = first_of_key[req.key]
        if outcomes[i] is None:
            original = outcomes[first]
            assert original is not None
            if hashes[i] != hashes[first]:
                outcomes[i] = _conflict(req.key)
            else:
                outcomes[i] = Outcome(req.key, original.entry_id, original.rejection, replayed=True)
    return [o for o in outcomes if o is not None]


def _bound_fund_cache(ctx: Context) -> None:
    """Forget every cached fund account once there are too many. Only between batches: a
    batch's plans rely on what it found in the cache. A miss costs no more than a join in the
    lock statement."""
    if len(ctx.fund_cache) >= FUND_CACHE_LIMIT:
        ctx.fund_cache.clear()


def _replay(key: str, stored_hash: bytes, new_hash: bytes, prior: store.StoredRequest) -> Outcome:
    if stored_hash != new_hash:
        return _conflict(key)
    rejection = (
        None if prior.ok else Rejection(prior.reason or Reason.UNBALANCED, prior.detail or "")
    )
    return Outcome(key, prior.entry_id, rejection, replayed=True)


def _conflict(key: str) -> Outcome:
    return Outcome(
        key,
        None,
        Rejection(
            Reason.IDEMPOTENCY_CONFLICT, f"key {key!r} was already used for a different request"
        ),
    )


def _apply(
    plan: _Plan, rows: dict[RowKey, BalanceRow], closed: set[int], now: datetime
) -> store.NewEntry | Rejection:
    if plan.ref_entry_id is not None and plan.ref_entry_id in closed:
        reason = Reason.ALREADY_REVERSED if plan.kind is EntryKind.REVERSAL else Reason.HOLD_CLOSED
        return Rejection(reason, f"entry {plan.ref_entry_id} was closed earlier in this batch")
    effects = entry_effects(plan.kind, plan.postings, plan.released)
    changes = apply_entry(rows, effects, now)
    if isinstance(changes, Rejection):
        return changes
    for ch in changes:
        rows[(ch.after.fund_account_id, ch.after.shard)] = ch.after
    if plan.ref_entry_id is not None:
        closed.add(plan.ref_entry_id)
    req = plan.request
    return store.NewEntry(
        code=plan.code,
        kind=plan.kind,
        ref_entry_id=plan.ref_entry_id,
        memo=req.memo,
        postings=plan.postings,
        changes=changes,
        hold_expires_at=plan.expires_at,
        closes_hold=plan.closes_hold,
    )


@dataclass(slots=True)
class _Early:
    plans: dict[int, _Plan | Rejection]
    later: list[tuple[int, Post]]  # posts that name a fund account not in the cache
    slots: set[store.SlotKey]  # the fund accounts to look up for them
    rows: set[RowKey]  # the rows their cached fund accounts need locked


def _plan_early(
    conn: Connection,
    requests: Sequence[Request],
    fresh: list[int],
    ctx: Context,
    now: datetime,
) -> _Early:
    refs = sorted(
        {
            r.hold_id if isinstance(r, CommitHold | VoidHold) else r.entry_id
            for i in fresh
            if not isinstance(r := requests[i], Post)
        }
    )
    stored_entries = store.load_entries(conn, refs)
    out = _Early({}, [], set(), set())
    for i in fresh:
        req = requests[i]
        if isinstance(req, Post):
            unseen = _unseen_slots(req, ctx)
            if unseen:
                out.later.append((i, req))
                out.slots |= unseen
                out.rows |= _cached_rows(req, ctx)
            else:
                out.plans[i] = _plan_post(i, req, ctx, now)
        elif isinstance(req, CommitHold | VoidHold):
            out.plans[i] = _plan_close(i, req, stored_entries.get(req.hold_id), ctx, now)
        else:
            out.plans[i] = _plan_reverse(i, req, stored_entries.get(req.entry_id))
    return out


def _party_account(slot: Slot, parties: Mapping[str, str], ctx: Context) -> str:
    return ctx.platform_account_id if slot.party == PLATFORM_PARTY else parties[slot.party]


def _bound_slots(req: Post, ctx: Context) -> Iterator[store.SlotKey]:
    """The fund-account slots the post's rule names, for the parties it binds."""
    rule = ctx.rules.get(req.code)
    if rule is None:
        return
    for leg in rule.legs:
        for slot in (leg.debit, leg.credit):
            if slot.party == PLATFORM_PARTY or slot.party in req.parties:
                yield _party_account(slot, req.parties, ctx), slot.role, slot.sub


def _unseen_slots(req: Post, ctx: Context) -> set[store.SlotKey]:
    return {s for s in _bound_slots(req, ctx) if (*s, req.currency) not in ctx.fund_cache}


def _cached_rows(req: Post, ctx: Context) -> set[RowKey]:
    metas = (ctx.fund_cache.get((*s, req.currency)) for s in _bound_slots(req, ctx))
    return {(m.id, _shard(req, m)) for m in metas if m is not None}


def _shard(req: Post, meta: store.FundMeta) -> int:
    # Spread a sharded account's postings by key: deterministic, so a replay hits the same shard.
    return zlib.crc32(req.key.encode()) % meta.shards


def _plan_post(index: int, req: Post, ctx: Context, now: datetime) -> _Plan | Rejection:
    rule = ctx.rules.get(req.code)
    if rule is None:
        return Rejection(Reason.UNKNOWN_TRANSACTION_CODE, f"no posting rule {req.code!r}")
    try:
        lookup_currency(req.currency)
    except UnknownCurrency:
        return Rejection(Reason.UNKNOWN_CURRENCY, f"{req.currency!r} is not an ISO 4217 currency")
    if req.hold:
        if req.expires_at is not None and req.expires_at <= now:
            return Rejection(Reason.INVALID_EXPIRY, "a hold must expire in the future")
    elif req.expires_at is not None:
        return Rejection(Reason.INVALID_EXPIRY, "only a hold can expire")
    legs = render(rule, req.amounts, req.parties)
    if isinstance(legs, Rejection):
        return legs
    postings = _postings_for(rule, legs, req, ctx)
    if isinstance(postings, Rejection):
        return postings
    bad = check_postings(postings)
    if bad is not None:
        return bad
    kind = EntryKind.PENDING if req.hold else EntryKind.POSTED
    return _Plan(index, req, rule.code, kind, postings, expires_at=req.expires_at)


def _postings_for(
    rule: PostingRule, legs: list[RenderedLeg], req: Post, ctx: Context
) -> list[Posting] | Rejection:
    out: list[Posting] = []
    for rendered in legs:
        for side, slot in ((Side.DEBIT, rendered.leg.debit), (Side.CREDIT, rendered.leg.credit)):
            account = _party_account(slot, req.parties, ctx)
            meta = ctx.fund_cache.get((account, slot.role, slot.sub, req.currency))
            if meta is None:
                others = [
                    m for k, m in ctx.fund_cache.items() if k[:3] == (account, slot.role, slot.sub)
                ]
                if others:
                    return Rejection(
                        Reason.CURRENCY_MISMATCH,
                        f"{slot} ({account}) is held in {others[0].currency}, not {req.currency}",
                    )
                return Rejection(
                    Reason.UNKNOWN_ACCOUNT, f"no {req.currency} fund account for {slot} ({account})"
                )
            seq = rendered.leg.index * 2 + (0 if side is Side.DEBIT else 1)
            out.append(
                Posting(seq, meta.id, _shard(req, meta), side, rendered.amount, req.currency)
            )
    return out


def _plan_close(
    index: int,
    req: CommitHold | VoidHold,
    hold: store.StoredEntry | None,
    ctx: Context,
    now: datetime,
) -> _Plan | Rejection:
    if hold is None or hold.kind is not EntryKind.PENDING:
        return Rejection(Reason.HOLD_NOT_FOUND, f"no hold {req.hold_id}")
    if hold.hold_status is not HoldStatus.PENDING or hold.closed_by is not None:
        return Rejection(Reason.HOLD_CLOSED, f"hold {req.hold_id} is already {hold.hold_status}")
    expired = hold.hold_expires_at is not None and now >= hold.hold_expires_at
    if isinstance(req, VoidHold):
        status = HoldStatus.EXPIRED if expired else HoldStatus.VOIDED
        return _Plan(
            index,
            req,
            hold.code,
            EntryKind.VOID,
            list(hold.postings),
            hold.postings,
            hold.id,
            closes_hold=status,
        )
    if expired:
        return Rejection(
            Reason.HOLD_EXPIRED, f"hold {req.hold_id} expired at {hold.hold_expires_at}"
        )
    postings = list(hold.postings)
    if req.amounts is not None:
        rule = ctx.rules.get(hold.code)
        if rule is None:
            return Rejection(
                Reason.UNKNOWN_TRANSACTION_CODE, f"hold {hold.id} has unknown rule {hold.code}"
            )
        partial = _partial_capture(rule, hold.postings, req.amounts)
        if isinstance(partial, Rejection):
            return partial
        postings = partial
    return _Plan(
        index,
        req,
        hold.code,
        EntryKind.POST_PENDING,
        postings,
        hold.postings,
        hold.id,
        closes_hold=HoldStatus.POSTED,
    )


def _partial_capture(
    rule: PostingRule, held: Sequence[Posting], amounts: Mapping[str, int]
) -> list[Posting] | Rejection:
    names = {rule.legs[p.seq // 2].amount for p in held}
    if missing := sorted(names - set(amounts)):
        return Rejection(Reason.MISSING_AMOUNT, f"capture needs amounts {missing}")
    if extra := sorted(set(amounts) - names):
        return Rejection(Reason.UNEXPECTED_AMOUNT, f"hold has no amounts {extra}")
    out: list[Posting] = []
    for p in held:
        name = rule.legs[p.seq // 2].amount
        value = amounts[name]
        if value < 0:
            return Rejection(Reason.AMOUNT_NOT_POSITIVE, f"{name}={value}")
        if value > p.amount:
            return Rejection(
                Reason.HOLD_AMOUNT_EXCEEDED, f"{name}={value} exceeds the {p.amount} held"
            )
        if value > 0:
            out.append(Posting(p.seq, p.fund_account_id, p.shard, p.side, value, p.currency))
    if not out:
        return Rejection(Reason.AMOUNT_NOT_POSITIVE, "a capture of nothing: void the hold instead")
    return out


def _plan_reverse(
    index: int, req: Reverse, original: store.StoredEntry | None
) -> _Plan | Rejection:
    if original is None:
        return Rejection(Reason.ENTRY_NOT_FOUND, f"no entry {req.entry_id}")
    if original.kind not in (EntryKind.POSTED, EntryKind.POST_PENDING):
        return Rejection(Reason.NOT_REVERSIBLE, f"entry {original.id} is a {original.kind} entry")
    if original.closed_by is not None:
        return Rejection(
            Reason.ALREADY_REVERSED, f"entry {original.id} was reversed by {original.closed_by}"
        )
    swapped = [
        Posting(p.seq, p.fund_account_id, p.shard, p.side.opposite, p.amount, p.currency)
        for p in original.postings
    ]
    return _Plan(index, req, original.code, EntryKind.REVERSAL, swapped, ref_entry_id=original.id)
