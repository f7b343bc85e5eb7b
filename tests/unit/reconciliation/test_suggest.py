"""Ranking likely causes and matches for a difference (R9): small inputs, exact orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from clearhouse.reconciliation.memos import MemoKind
from clearhouse.reconciliation.suggest import (
    FEATURE_WEIGHTS,
    Features,
    Record,
    Resolved,
    SuggestConfig,
    age_band,
    bank_line_class,
    classify_bank_lines,
    features,
    fuzzy_key,
    looks_ours,
    magnitude,
    rank_causes,
    rank_matches,
)

AT = datetime(2026, 11, 2, 8, tzinfo=UTC)
OUR_ID = "att_01jc5v8k9m2n3p4q5r6s7t8v9w"


def long_(channel: str = "wechatpay", amount: int = 12_800, age: int = 0) -> Features:
    return features("LONG", channel, amount, age, [OUR_ID])


def test_features_are_coarse_and_read_our_ids_however_reformatted() -> None:
    f = long_()
    assert (f.sign, f.magnitude, f.age, f.ours_ref, f.memo) == (1, 5, "0", True, None)
    assert features("SHORT", "alipay", -5, 9, ["T2026110222001"]).to_dict() == {
        "type": "SHORT",
        "channel": "alipay",
        "sign": -1,
        "magnitude": 1,
        "age": "8+",
        "ours_ref": False,
        "memo": None,
    }
    assert [magnitude(a) for a in (0, 9, -10, 12_800)] == [0, 1, 2, 5]
    assert [age_band(d) for d in (0, 1, 2, 3, 4, 7, 8, 400)] == [
        "0", "1", "2-3", "2-3", "4-7", "4-7", "8+", "8+",
    ]  # fmt: skip
    assert looks_ours("ATT-01JC5V8K9M2N3P4Q5R6S7T8V9W")
    assert not looks_ours("att_short")
    assert fuzzy_key(" att_01jc-5v8k ") == "01JC5V8K"
    assert fuzzy_key("reference-9") == "ERENCE9"  # the longest prefix of ours it starts with


def test_with_no_history_the_rules_usual_causes_come_first_in_their_order() -> None:
    causes = rank_causes(long_(), [])
    assert [(c.cause, c.score, c.evidence) for c in causes] == [
        ("mark_paid", 500, 0),
        ("refund", 500, 0),
    ]
    review = rank_causes(features("FEE_MISMATCH", "alipay", -3, 0), [])
    assert [c.cause for c in review] == ["confirm", "adjust", "write_off"]


def test_similar_past_resolutions_outvote_more_numerous_unlike_ones() -> None:
    target = long_()
    alike = [Resolved(long_(), "refund")] * 2
    # Three past LONGs closed another way, on another channel, sign, size and age, without our
    # reference: each shares only the absent memo with the target.
    unlike = [Resolved(features("LONG", "stripe", -7, 30, ["x"]), "mark_paid")] * 3
    other_type = [Resolved(features("SHORT", "wechatpay", 12_800, 0, [OUR_ID]), "write_off")] * 9
    causes = rank_causes(target, alike + unlike + other_type)
    full = sum(FEATURE_WEIGHTS.values())
    votes_refund = 1 + 2 * (1 + full)
    votes_paid = 1 + 3 * (1 + FEATURE_WEIGHTS["memo"])
    total = votes_refund + votes_paid
    assert [(c.cause, c.evidence, c.alike) for c in causes] == [
        ("refund", 2, 2),
        ("mark_paid", 3, 0),
    ]
    assert [c.score for c in causes] == [votes_refund * 1000 // total, votes_paid * 1000 // total]
    assert "write_off" not in {c.cause for c in causes}  # another type's history is not asked


def test_a_cause_only_history_knows_joins_the_ranking_and_ties_break_by_name() -> None:
    target = features("AMOUNT_MISMATCH", "paypal", 5, 1)
    history = [
        Resolved(features("AMOUNT_MISMATCH", "paypal", 5, 1), "zz_custom"),
        Resolved(features("AMOUNT_MISMATCH", "paypal", 5, 1), "aa_custom"),
    ]
    causes = rank_causes(target, history, limit=4)
    assert [c.cause for c in causes] == ["aa_custom", "zz_custom", "confirm", "adjust"]
    assert rank_causes(target, list(reversed(history)), limit=4) == causes


def record(id_: str, amount: int, minutes: int = 0, *refs: str, currency: str = "CNY") -> Record:
    return Record(id_, "attempt", currency, amount, AT + timedelta(minutes=minutes), refs)


def test_matches_score_amount_time_and_reference_and_rank_deterministically() -> None:
    line = Record("dif_1", "line", "CNY", 12_800, AT, ("ATT01JC5V8K9M2N3P4Q5R6S7T8V9W",))
    candidates = [
        record("att_b", 12_800, 60),  # exact amount, an hour apart, no reference
        record(OUR_ID, 12_700, 600, OUR_ID),  # same reference, 1.00 off, ten hours apart
        record("att_a", 12_800, 60),  # the same as att_b: the id breaks the tie
        record("att_far", 50_000, 60 * 24 * 3),  # nothing agrees: dropped
        record("att_usd", 12_800, 0, currency="USD"),  # another currency: never a candidate
        record("att_off", 99_999, 0),  # only the time agrees: below the minimum score
    ]
    ranked = rank_matches(line, candidates)
    assert [m.id for m in ranked] == [OUR_ID, "att_a", "att_b"]
    best = ranked[0]
    window = timedelta(days=2)
    assert best.points == {
        "amount": 10 + 29 * (128 - 100) // 128,  # tolerance: 1 % of 128.00
        "time": 20 * (window - timedelta(hours=10)) // window,
        "reference": 40,
    }
    assert (best.amount_delta, best.seconds_apart) == (-100, 36_000)
    assert ranked[1].points == {"amount": 40, "time": 19, "reference": 0}
    assert ranked[1].score == ranked[2].score == 59
    assert rank_matches(line, list(reversed(candidates))) == ranked


def test_a_partly_shared_reference_scores_by_its_longest_shared_run() -> None:
    line = Record("dif_1", "line", "CNY", 500, AT, ("4200001234567890",))
    partly = record("att_x", 50_000, 0, "TXN-4200001234-XX")
    too_short = record("att_y", 50_000, 0, "420")
    config = SuggestConfig(min_score=0)
    by_id = {m.id: m for m in rank_matches(line, [partly, too_short], config)}
    assert by_id["att_x"].points["reference"] == 39 * 10 // 16
    assert by_id["att_y"].points["reference"] == 0
    assert rank_matches(line, [partly], SuggestConfig(limit=0)) == []


def test_bank_memos_are_classified_and_channel_lines_are_not() -> None:
    payout = {
        "source": "bank",
        "kind": "credit",
        "memo": "STRIPE TRANSFER po_1QxYz2AbCdEf",
        "merchant_ref": None,
        "channel_txn_id": None,
        "payout_id": None,
    }
    found = bank_line_class(payout)
    assert found is not None
    assert (found.kind, found.channel, found.reference) == (
        MemoKind.CHANNEL_PAYOUT,
        "stripe",
        "po_1QxYz2AbCdEf",
    )
    assert bank_line_class({**payout, "source": "wechatpay"}) is None
    assert long_().memo is None
    assert features("LONG", "bank", 100, 0, [], found).memo == "channel_payout"

    lines = pa.table(
        {
            "line_no": pa.array([1, 2, 3], pa.int32()),
            "memo": ["财付通 结算 1234567890123", "ACCOUNT FEE", "misc"],
            "merchant_ref": [None, None, None],
            "channel_txn_id": [None, None, None],
            "payout_id": [None, None, None],
            "kind": ["credit", "fee", "credit"],
        }
    )
    table = classify_bank_lines(lines).to_pylist()
    assert [(r["line_no"], r["memo_kind"], r["memo_channel"]) for r in table] == [
        (1, "channel_payout", "wechatpay"),
        (2, "bank_fee", None),
        (3, "unknown", None),
    ]
    assert table[0]["memo_reference"] == "1234567890123"
