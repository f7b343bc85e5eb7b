"""Likely causes and likely matches for an open difference, learned from history (R9).

Causes. A difference is described by a few coarse features (``Features``): its type, channel,
sign, order of magnitude, age band, whether a reference has the shape of one of our ids, and,
for a bank line, the class its memo reads as (``memos.classify``). Past differences of the same
type were resolved somehow (``recon_differences.resolution``, else their last action). Each
past resolution votes for its cause with ``1 + similarity`` (the weights of the features it
shares with this one, ``FEATURE_WEIGHTS``); every cause seen, and the handling rules' usual
ones for the type (``DEFAULT_CAUSES``), gets one more vote (add-one smoothing, so a new
deployment still gets the rules' answer). A cause's score is its share of all votes in per
mille; ties go to more evidence, then the rules' order, then the name.

Matches. For a LONG (the channel has money we have not confirmed), our unconfirmed attempts of
the same channel and currency; for a SHORT (we confirmed, the channel has not), the channel
lines of open LONG differences of the same channel and currency. Each candidate scores out of
100 (``rank_matches``): up to 40 for the amount (exact 40; within the tolerance 10-39, closer
is more), up to 20 for the time (linear over the window), up to 40 for the reference (exact
40; else the longest shared run of characters over the longer key, when it is at least four
long). References are compared as the fuzzy pass compares them: upper case, letters and
digits only, our id prefixes dropped. Ties go to the smaller amount gap, then the shorter
time gap, then the id.

Everything here is integer arithmetic and sorted with full tie-breaks: the same history gives
the same list. Scores are not money; money stays in integer minor units.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import pyarrow as pa
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection, Row

from clearhouse.db.schema import (
    payment_attempts,
    payment_intents,
    recon_actions,
    recon_differences,
)
from clearhouse.reconciliation.classify import DifferenceType
from clearhouse.reconciliation.errors import ReconCode, ReconError
from clearhouse.reconciliation.memos import MemoClass, classify

__all__ = [
    "DEFAULT_CAUSES",
    "FEATURE_WEIGHTS",
    "MEMO_CLASSES",
    "CauseSuggestion",
    "Features",
    "MatchSuggestion",
    "Record",
    "Resolved",
    "SuggestConfig",
    "Suggestions",
    "age_band",
    "bank_line_class",
    "classify_bank_lines",
    "features",
    "fuzzy_key",
    "looks_ours",
    "magnitude",
    "rank_causes",
    "rank_matches",
    "suggest",
    "suggest_open",
]

# How much each shared feature says about a cause (type is not weighed: only differences of
# the same type are compared at all).
FEATURE_WEIGHTS: Mapping[str, int] = {
    "channel": 4,
    "memo": 4,
    "sign": 2,
    "magnitude": 2,
    "ours_ref": 2,
    "age": 1,
}

# What the handling rules (R5) and the review queue usually end a difference of each type with,
# in the order preferred when history says nothing.
DEFAULT_CAUSES: Mapping[str, tuple[str, ...]] = {
    DifferenceType.LONG: ("mark_paid", "refund"),
    DifferenceType.SHORT: ("resolve_carried", "write_off"),
    DifferenceType.DUPLICATE: ("refund",),
}
_REVIEW_CAUSES = ("confirm", "adjust", "write_off")

_AGE_BANDS = ((0, "0"), (1, "1"), (3, "2-3"), (7, "4-7"))
_OUR_ID = re.compile(r"^(ATT|REF|WDR|WDB|INT|TRF)[0-9A-Z]{26}$")
_NOT_KEY = re.compile(r"[^0-9A-Z]")
_MIN_SHARED_RUN = 4
_OPEN = ("open", "carried")


# --- features -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Features:
    type: str
    channel: str
    sign: int  # -1, 0, 1: the channel's view minus ours
    magnitude: int  # decimal digits of the absolute amount in minor units
    age: str  # an age band in days: 0, 1, 2-3, 4-7, 8+
    ours_ref: bool  # a reference has the shape of one of our ids
    memo: str | None  # a bank line's memo class, None for a channel's line

    def similarity(self, other: Features) -> int:
        return sum(
            w for name, w in FEATURE_WEIGHTS.items() if _get(self, name) == _get(other, name)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "channel": self.channel,
            "sign": self.sign,
            "magnitude": self.magnitude,
            "age": self.age,
            "ours_ref": self.ours_ref,
            "memo": self.memo,
        }


def _get(features: Features, name: str) -> object:
    return getattr(features, name)


def magnitude(amount: int) -> int:
    return len(str(abs(amount))) if amount else 0


def age_band(days: int) -> str:
    for limit, label in _AGE_BANDS:
        if days <= limit:
            return label
    return "8+"


def fuzzy_key(reference: str | None, strip_prefixes: Sequence[str] = ("att", "ref")) -> str:
    """A reference as the fuzzy matching pass keys it (``passes._fuzzy``): upper case, letters
    and digits only, the longest of our id prefixes it starts with dropped."""
    key = _NOT_KEY.sub("", (reference or "").upper())
    for prefix in sorted((p.upper() for p in strip_prefixes if p), key=len, reverse=True):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def looks_ours(reference: str | None) -> bool:
    """Whether a reference, however the channel reformatted it, has our ids' shape (prefix and
    26 base32 characters)."""
    return bool(_OUR_ID.match(_NOT_KEY.sub("", (reference or "").upper())))


def features(
    type_: str,
    channel: str,
    amount: int,
    age_days: int,
    references: Iterable[str | None] = (),
    memo: MemoClass | None = None,
) -> Features:
    return Features(
        type=type_,
        channel=channel,
        sign=(amount > 0) - (amount < 0),
        magnitude=magnitude(amount),
        age=age_band(age_days),
        ours_ref=any(looks_ours(r) for r in references),
        memo=None if memo is None else memo.kind.value,
    )


# --- causes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """One past difference and how it was closed."""

    features: Features
    cause: str


@dataclass(frozen=True, slots=True)
class CauseSuggestion:
    cause: str
    score: int  # per mille of all votes
    evidence: int  # past differences of this type closed this way
    alike: int  # of which every feature was the same as this one's

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "score": self.score,
            "evidence": self.evidence,
            "alike": self.alike,
        }


def rank_causes(
    target: Features, history: Iterable[Resolved], *, limit: int = 5
) -> list[CauseSuggestion]:
    defaults = DEFAULT_CAUSES.get(target.type, _REVIEW_CAUSES)
    full = sum(FEATURE_WEIGHTS.values())
    votes: dict[str, int] = dict.fromkeys(defaults, 1)
    evidence: dict[str, int] = dict.fromkeys(defaults, 0)
    alike: dict[str, int] = dict.fromkeys(defaults, 0)
    for past in history:
        if past.features.type != target.type:
            continue
        sim = target.similarity(past.features)
        votes[past.cause] = votes.get(past.cause, 1) + 1 + sim
        evidence[past.cause] = evidence.get(past.cause, 0) + 1
        alike[past.cause] = alike.get(past.cause, 0) + (sim == full)
    total = sum(votes.values())
    rank = {cause: n for n, cause in enumerate(defaults)}
    order = sorted(
        votes,
        key=lambda c: (-votes[c], -evidence[c], rank.get(c, len(rank)), c),
    )
    return [
        CauseSuggestion(c, int(Fraction(votes[c] * 1000, total)), evidence[c], alike[c])
        for c in order[:limit]
    ]


# --- matches --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One side of a possible match: our record or a channel's line."""

    id: str
    kind: str  # attempt | line
    currency: str
    amount: int
    at: datetime
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SuggestConfig:
    amount_tolerance_bps: int = 100  # of the amount: 1 %
    min_tolerance: int = 100  # minor units, whatever the amount
    time_window: timedelta = timedelta(days=2)
    min_score: int = 30
    limit: int = 5
    strip_prefixes: tuple[str, ...] = ("att", "ref")
    history: int = 5_000  # most recent resolved differences learned from


@dataclass(frozen=True, slots=True)
class MatchSuggestion:
    id: str
    kind: str
    score: int  # out of 100
    amount_delta: int  # the candidate's amount minus the difference's side, minor units
    seconds_apart: int
    points: dict[str, int] = field(default_factory=dict)  # amount, time, reference

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "score": self.score,
            "amount_delta": self.amount_delta,
            "seconds_apart": self.seconds_apart,
            "points": dict(self.points),
        }


def rank_matches(
    target: Record, candidates: Iterable[Record], config: SuggestConfig = SuggestConfig()
) -> list[MatchSuggestion]:
    tolerance = max(
        abs(target.amount) * config.amount_tolerance_bps // 10_000, config.min_tolerance
    )
    window = _micros(config.time_window)
    keys = _keys(target.references, config)
    found = []
    for c in candidates:
        if c.currency != target.currency or c.id == target.id:
            continue
        delta = c.amount - target.amount
        apart = abs(_micros(c.at - target.at))
        points = {
            "amount": _amount_points(abs(delta), tolerance),
            "time": 20 * (window - apart) // window if apart <= window else 0,
            "reference": _reference_points(keys, _keys(c.references, config)),
        }
        score = sum(points.values())
        if score >= config.min_score:
            found.append(MatchSuggestion(c.id, c.kind, score, delta, apart // 1_000_000, points))
    found.sort(key=lambda m: (-m.score, abs(m.amount_delta), m.seconds_apart, m.id))
    return found[: config.limit]


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _amount_points(gap: int, tolerance: int) -> int:
    if gap == 0:
        return 40
    if gap > tolerance:
        return 0
    return 10 + 29 * (tolerance - gap) // tolerance


def _keys(references: Iterable[str], config: SuggestConfig) -> list[str]:
    keys = {fuzzy_key(r, config.strip_prefixes) for r in references if r}
    return sorted(k for k in keys if k)


def _reference_points(ours: Sequence[str], theirs: Sequence[str]) -> int:
    best = 0
    for a in ours:
        for b in theirs:
            if a == b:
                return 40
            run = _shared_run(a, b)
            if run >= _MIN_SHARED_RUN:
                best = max(best, 39 * run // max(len(a), len(b)))
    return best


def _shared_run(a: str, b: str) -> int:
    """The longest run of characters ``a`` and ``b`` share (ids are short: quadratic is fine)."""
    best, previous = 0, [0] * (len(b) + 1)
    for ca in a:
        current = [0] * (len(b) + 1)
        for j, cb in enumerate(b, 1):
            if ca == cb:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


# --- bank memos -----------------------------------------------------------------------------


def bank_line_class(line: Mapping[str, Any]) -> MemoClass | None:
    """What a bank statement line (a ``statements.model.LINES`` row) is, read from its memo and
    references; None for a channel's line."""
    if line.get("source") != "bank":
        return None
    refs = (line.get("merchant_ref"), line.get("channel_txn_id"), line.get("payout_id"))
    return classify(line.get("memo"), refs, kind=line.get("kind"))


MEMO_CLASSES = pa.schema(
    [
        pa.field("line_no", pa.int32(), nullable=False),
        pa.field("memo_kind", pa.string(), nullable=False),  # a memos.MemoKind
        pa.field("memo_channel", pa.string(), nullable=True),
        pa.field("memo_reference", pa.string(), nullable=True),
        pa.field("memo_rule", pa.string(), nullable=False),
    ]
)


def classify_bank_lines(lines: pa.Table) -> pa.Table:
    """The memo class of every line of a bank statement (``LINES``), by line number."""
    rows = lines.select(
        ["line_no", "memo", "merchant_ref", "channel_txn_id", "payout_id", "kind"]
    ).to_pylist()
    found = [
        classify(
            r["memo"], (r["merchant_ref"], r["channel_txn_id"], r["payout_id"]), kind=r["kind"]
        )
        for r in rows
    ]
    return pa.table(
        {
            "line_no": pa.array([r["line_no"] for r in rows], pa.int32()),
            "memo_kind": [m.kind.value for m in found],
            "memo_channel": pa.array([m.channel for m in found], pa.string()),
            "memo_reference": pa.array([m.reference for m in found], pa.string()),
            "memo_rule": [m.rule for m in found],
        },
        schema=MEMO_CLASSES,
    )


# --- reading the database -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suggestions:
    difference_id: str
    type: str
    channel: str
    features: Features
    causes: tuple[CauseSuggestion, ...]
    matches: tuple[MatchSuggestion, ...]
    memo: MemoClass | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "difference_id": self.difference_id,
            "type": self.type,
            "channel": self.channel,
            "features": self.features.to_dict(),
            "causes": [c.to_dict() for c in self.causes],
            "matches": [m.to_dict() for m in self.matches],
            "memo": None
            if self.memo is None
            else {
                "kind": self.memo.kind.value,
                "channel": self.memo.channel,
                "reference": self.memo.reference,
                "rule": self.memo.rule,
            },
        }


def suggest(
    conn: Connection,
    difference_id: str,
    *,
    now: datetime,
    config: SuggestConfig = SuggestConfig(),
) -> Suggestions:
    """Ranked causes and matches for one difference (open or not)."""
    row = conn.execute(
        select(recon_differences).where(recon_differences.c.id == difference_id)
    ).first()
    if row is None:
        raise ReconError(
            ReconCode.DIFFERENCE_NOT_FOUND, f"no difference {difference_id}", id=difference_id
        )
    history = _history(conn, row.type, config)
    return _suggest(conn, row, history, now, config)


def suggest_open(
    conn: Connection,
    *,
    now: datetime,
    channel: str | None = None,
    config: SuggestConfig = SuggestConfig(),
) -> list[Suggestions]:
    """Suggestions for every open (or carried) difference, oldest first."""
    d = recon_differences.c
    query = select(recon_differences).where(d.status.in_(_OPEN))
    if channel is not None:
        query = query.where(d.channel == channel)
    rows = conn.execute(query.order_by(d.first_seen_at, d.id)).all()
    histories: dict[str, list[Resolved]] = {}
    out = []
    for row in rows:
        if row.type not in histories:
            histories[row.type] = _history(conn, row.type, config)
        out.append(_suggest(conn, row, histories[row.type], now, config))
    return out


def _suggest(
    conn: Connection,
    row: Row[Any],
    history: list[Resolved],
    now: datetime,
    config: SuggestConfig,
) -> Suggestions:
    evidence = _evidence(row.evidence)
    line = evidence.get("line") or None
    memo = bank_line_class(line) if line else None
    age = (now.date() - row.business_date).days
    target = _features(row, evidence, age, memo)
    causes = rank_causes(target, history, limit=config.limit)
    matches: list[MatchSuggestion] = []
    if row.type == DifferenceType.LONG and line:
        side = _line_record(row.id, line)
        if side is not None:
            matches = rank_matches(side, _unconfirmed(conn, row, side, config), config)
    elif row.type == DifferenceType.SHORT and evidence.get("ours"):
        side = _ours_record(evidence["ours"])
        if side is not None:
            matches = rank_matches(side, _open_lines(conn, row), config)
    return Suggestions(row.id, row.type, row.channel, target, tuple(causes), tuple(matches), memo)


def _features(
    row: Row[Any], evidence: Mapping[str, Any], age_days: int, memo: MemoClass | None
) -> Features:
    line = evidence.get("line") or {}
    refs = (row.merchant_ref, line.get("merchant_ref"), line.get("memo"))
    return features(row.type, row.channel, int(row.amount), age_days, refs, memo)


def _history(conn: Connection, type_: str, config: SuggestConfig) -> list[Resolved]:
    """The most recent resolved differences of ``type_`` and how each was closed: its
    resolution, else its last action."""
    d, a = recon_differences.c, recon_actions.c
    last_action = (
        select(a.action)
        .where(a.difference_id == d.id)
        .order_by(a.at.desc(), a.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(recon_differences, func.coalesce(d.resolution, last_action).label("cause"))
        .where(and_(d.type == type_, d.status == "resolved"))
        .order_by(d.resolved_at.desc(), d.id)
        .limit(config.history)
    ).all()
    out = []
    for row in rows:
        if row.cause is None:
            continue
        evidence = _evidence(row.evidence)
        line = evidence.get("line") or None
        memo = bank_line_class(line) if line else None
        resolved_at = row.resolved_at or row.first_seen_at
        age = (resolved_at - row.first_seen_at).days
        out.append(Resolved(_features(row, evidence, age, memo), str(row.cause)))
    return out


def _unconfirmed(
    conn: Connection, row: Row[Any], side: Record, config: SuggestConfig
) -> list[Record]:
    """Our attempts of the difference's channel and currency that are not confirmed, made
    within the window of the line."""
    a, i = payment_attempts.c, payment_intents.c
    rows = conn.execute(
        select(
            a.id,
            a.channel_txn_id,
            func.coalesce(a.amount, i.amount).label("amount"),
            a.created_at,
            i.currency,
            i.merchant_order_id,
        )
        .join(payment_intents, i.id == a.intent_id)
        .where(
            a.channel == row.channel,
            i.currency == side.currency,
            a.status != "SUCCEEDED",
            a.created_at >= side.at - config.time_window,
            a.created_at < side.at + config.time_window,
        )
        .order_by(a.id)
    ).all()
    return [
        Record(
            r.id,
            "attempt",
            r.currency,
            int(r.amount),
            r.created_at,
            tuple(x for x in (r.id, r.channel_txn_id, r.merchant_order_id) if x),
        )
        for r in rows
    ]


def _open_lines(conn: Connection, row: Row[Any]) -> list[Record]:
    """The channel lines of open LONG differences of the same channel and currency."""
    d = recon_differences.c
    rows = conn.execute(
        select(d.id, d.evidence)
        .where(
            d.channel == row.channel,
            d.currency == row.currency,
            d.type == DifferenceType.LONG.value,
            d.status.in_(_OPEN),
        )
        .order_by(d.id)
    ).all()
    out = []
    for other in rows:
        line = _evidence(other.evidence).get("line")
        record = _line_record(other.id, line) if line else None
        if record is not None:
            out.append(record)
    return out


def _line_record(record_id: str, line: Mapping[str, Any]) -> Record | None:
    at = _instant(line.get("occurred_at"))
    if at is None or line.get("amount") is None or not line.get("currency"):
        return None
    refs = (line.get("merchant_ref"), line.get("channel_txn_id"), line.get("memo"))
    return Record(
        record_id,
        "line",
        str(line["currency"]),
        int(line["amount"]),
        at,
        tuple(str(r) for r in refs if r),
    )


def _ours_record(ours: Mapping[str, Any]) -> Record | None:
    at = _instant(ours.get("confirmed_at")) or _instant(ours.get("created_at"))
    if at is None or ours.get("amount") is None or not ours.get("currency"):
        return None
    names = ("merchant_ref", "attempt_id", "channel_txn_id", "merchant_order_id")
    return Record(
        str(ours.get("merchant_ref") or ours.get("attempt_id")),
        "ours",
        str(ours["currency"]),
        int(ours["amount"]),
        at,
        tuple(str(ours[n]) for n in names if ours.get(n)),
    )


def _evidence(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
