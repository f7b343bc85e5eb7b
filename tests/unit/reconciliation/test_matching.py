"""Matching and classification (R3, R4) over small hand-built Arrow tables."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearhouse import fees
from clearhouse.fees import FeeSchedule
from clearhouse.money import Money, Rounding
from clearhouse.reconciliation.classify import (
    DifferenceType,
    LineState,
    MatchPass,
    classify_pair,
    line_state,
)
from clearhouse.reconciliation.fee_sql import (
    REFUND_FAST_BOUND,
    expected_line_fee_expr,
    fee_expr,
    line_fee_check_expr,
    refunded_fee_expr,
)
from clearhouse.reconciliation.matching import (
    DIFFERENCES,
    MATCHED,
    PAYOUTS,
    MatchConfig,
    MatchResult,
    Resources,
    match,
)
from tests.unit.reconciliation.match_support import AT, DAY, line, lines_table, ours, ours_table

T = DifferenceType


def run(lines: list[dict[str, Any]], records: list[dict[str, Any]], **config: Any) -> MatchResult:
    return match(lines_table(lines), ours_table(records), MatchConfig(**config))


def diffs(result: MatchResult) -> list[tuple[str, int | None, int | None]]:
    d = result.differences
    return list(zip(*(d.column(c).to_pylist() for c in ("type", "lid", "oid")), strict=True))


def pairs(result: MatchResult) -> list[tuple[int, int, str]]:
    assert result.matched is not None
    m = result.matched
    return list(zip(*(m.column(c).to_pylist() for c in ("lid", "oid", "pass")), strict=True))


# --- passes -------------------------------------------------------------------------------------


def test_everything_agreeing_is_matched_on_the_reference_with_nothing_to_report():
    result = run(
        [line(merchant_ref="att_1"), line(merchant_ref="att_2", amount=500, fee=3)],
        [ours(merchant_ref="att_2", amount=500, expected_fee=3), ours(merchant_ref="att_1")],
    )
    assert pairs(result) == [(0, 1, "REF"), (1, 0, "REF")]
    assert diffs(result) == []
    assert result.matched is not None
    assert result.matched.schema == MATCHED
    assert result.differences.schema == DIFFERENCES
    assert result.payouts.schema == PAYOUTS
    assert result.counts["matched_ref"] == 2


def test_a_line_without_our_reference_is_matched_on_the_channel_transaction_id():
    result = run(
        [
            line(merchant_ref=None, channel_txn_id="4200001"),
            line(
                kind="refund",
                amount=-2000,
                fee=-12,
                channel_txn_id="4200001",
                channel_refund_id="5030001",
                merchant_ref=None,
            ),
        ],
        [
            ours(merchant_ref="att_1", channel_txn_id="4200001"),
            ours(
                kind="refund",
                merchant_ref="ref_1",
                attempt_id="att_1",
                amount=-2000,
                expected_fee=-12,
                channel_txn_id="4200001",
                channel_refund_id="5030001",
                parent_amount=10_000,
                refunded_before=0,
            ),
        ],
    )
    assert pairs(result) == [(0, 0, "TXN"), (1, 1, "TXN")]
    assert diffs(result) == []


def test_fuzzy_pass_pairs_a_mangled_reference_within_tolerance_and_window():
    result = run(
        [
            line(merchant_ref="ATT-01HZX"),  # case and separator changed
            line(merchant_ref="att01hzy", amount=10_001, fee=60),  # a cent off
            line(merchant_ref="ATT_01HZZ", occurred_at=AT + timedelta(hours=2)),  # too late
            line(merchant_ref="ATT_01HZW", amount=10_050, fee=60),  # beyond tolerance
        ],
        [
            ours(merchant_ref="att_01hzx"),
            ours(merchant_ref="att_01hzy"),
            ours(merchant_ref="att_01hzz"),
            ours(merchant_ref="att_01hzw"),
        ],
        amount_tolerance=5,
        time_window=timedelta(minutes=30),
    )
    assert pairs(result) == [(0, 0, "FUZZY")]
    assert diffs(result) == [
        (T.AMOUNT, 1, 1),  # paired by the tolerance, but the money still differs
        (T.LONG, 2, None),
        (T.LONG, 3, None),
        (T.SHORT, None, 2),
        (T.SHORT, None, 3),
    ]
    amount = result.differences.to_pylist()[0]
    assert (amount["pass"], amount["delta"]) == ("FUZZY", 1)


def test_a_tolerance_pass_never_takes_a_record_the_exact_pass_matched():
    # The second line's fuzzy key is the record's; the record is the first line's already.
    result = run(
        [line(merchant_ref="ATT_1", amount=10_000), line(merchant_ref="att_1")],
        [ours(merchant_ref="att_1")],
        amount_tolerance=100,
    )
    assert pairs(result) == [(1, 0, "REF")]
    assert diffs(result) == [(T.LONG, 0, None)]


def test_a_refund_never_matches_a_payment_nor_a_channel_another():
    result = run(
        [
            # A refund line naming the payment's attempt: not the payment.
            line(kind="refund", merchant_ref="att_1", amount=-10_000, fee=-60),
            line(source="alipay", merchant_ref="att_2"),
        ],
        [ours(merchant_ref="att_1"), ours(merchant_ref="att_2")],
        amount_tolerance=10_000_000,
        time_window=timedelta(days=3),
    )
    assert pairs(result) == []
    assert diffs(result) == [
        (T.LONG, 0, None),
        (T.LONG, 1, None),
        (T.SHORT, None, 0),
        (T.SHORT, None, 1),
    ]


# --- difference types --------------------------------------------------------------------------


def test_long_when_the_channel_has_money_we_have_not_confirmed():
    result = run(
        [line(merchant_ref="att_1"), line(merchant_ref="att_2")],
        [ours(merchant_ref="att_2", status="pending", confirmed_at=None, expected_fee=None)],
    )
    assert diffs(result) == [(T.LONG, 0, None), (T.LONG, 1, 0)]
    pending = result.differences.to_pylist()[1]
    assert (pending["our_status"], pending["pass"]) == ("pending", "REF")


def test_short_when_we_confirmed_and_the_channel_has_not():
    result = run(
        [line(merchant_ref="att_2", status="PROCESSING")],
        [ours(merchant_ref="att_1"), ours(merchant_ref="att_2")],
    )
    assert diffs(result) == [(T.SHORT, 0, 1), (T.SHORT, None, 0)]


def test_duplicate_payment_twice_for_one_attempt_and_for_an_order_paid_already():
    result = run(
        [
            line(merchant_ref="att_1", channel_txn_id="42001"),
            line(merchant_ref="att_1", channel_txn_id="42002", occurred_at=AT + timedelta(1)),
            line(merchant_ref="att_3", channel_txn_id="42003"),
        ],
        [
            ours(merchant_ref="att_1", intent_id="pay_1"),
            ours(merchant_ref="att_2", intent_id="pay_9"),
            # Order pay_9 was paid by att_2; its other attempt att_3 was closed.
            ours(
                merchant_ref="att_3",
                intent_id="pay_9",
                status="closed",
                paid_by_attempt_id="att_2",
                confirmed_at=None,
                expected_fee=None,
            ),
        ],
    )
    assert pairs(result) == [(0, 0, "REF")]
    assert diffs(result) == [
        (T.DUPLICATE, 1, 0),
        (T.DUPLICATE, 2, 2),
        (T.SHORT, None, 1),
    ]


def test_amount_and_status_mismatches():
    result = run(
        [
            line(merchant_ref="att_1", amount=9_999),
            line(merchant_ref="att_2", status="REVOKED"),
        ],
        [ours(merchant_ref="att_1"), ours(merchant_ref="att_2")],
    )
    assert diffs(result) == [(T.AMOUNT, 0, 0), (T.STATUS, 1, 1)]
    amount = result.differences.to_pylist()[0]
    assert (amount["line_amount"], amount["our_amount"], amount["delta"]) == (9_999, 10_000, -1)


def test_fee_mismatch_against_each_schedule_with_its_rounding():
    result = run(
        [
            # WeChat Pay 0.6%: 83 fen is 0.498 fen, not charged; 84 fen is 0.504, one fen.
            line(merchant_ref="att_1", amount=83, fee=0),
            line(merchant_ref="att_2", amount=84, fee=0),
            # Stripe 2.9% + 30: 10.00 USD pays 59 cents.
            line(source="stripe", merchant_ref="att_3", currency="USD", amount=1_000, fee=59),
            # Stripe keeps its fee on a refund: a line giving some back is wrong.
            line(
                source="stripe",
                kind="refund",
                merchant_ref="ref_4",
                currency="USD",
                amount=-1_000,
                fee=-29,
            ),
            # PayPal returns the percentage part and keeps its 49 cents.
            line(
                source="paypal",
                kind="refund",
                merchant_ref="ref_5",
                currency="USD",
                amount=-10_000,
                fee=-349,
            ),
            line(
                source="paypal",
                kind="refund",
                merchant_ref="ref_6",
                currency="USD",
                amount=-10_000,
                fee=-398,
            ),
        ],
        [
            ours(merchant_ref="att_1", amount=83, expected_fee=0),
            ours(merchant_ref="att_2", amount=84, expected_fee=1),
            ours(channel="stripe", merchant_ref="att_3", currency="USD", amount=1_000),
            ours(
                channel="stripe",
                kind="refund",
                merchant_ref="ref_4",
                currency="USD",
                amount=-1_000,
                parent_amount=1_000,
                refunded_before=0,
            ),
            ours(
                channel="paypal",
                kind="refund",
                merchant_ref="ref_5",
                currency="USD",
                amount=-10_000,
                parent_amount=10_000,
                refunded_before=0,
            ),
            ours(
                channel="paypal",
                kind="refund",
                merchant_ref="ref_6",
                currency="USD",
                amount=-10_000,
                parent_amount=10_000,
                refunded_before=0,
            ),
        ],
    )
    assert diffs(result) == [(T.FEE, 1, 1), (T.FEE, 3, 3), (T.FEE, 5, 5)]
    found = {
        d["lid"]: (d["line_fee"], d["expected"], d["delta"]) for d in result.differences.to_pylist()
    }
    assert found == {1: (0, 1, -1), 3: (-29, 0, -29), 5: (-398, -349, -49)}
    assert len(pairs(result)) == 6  # a fee difference does not unmatch the money


def test_partial_refunds_fee_share_uses_what_was_refunded_before():
    # 60 fen on 100.00: 33.33 returns 20 fen (19.998), the rest 40 (as the gateway books it).
    result = run(
        [
            line(kind="refund", merchant_ref="ref_1", amount=-3_333, fee=-20),
            line(kind="refund", merchant_ref="ref_2", amount=-6_667, fee=-40),
        ],
        [
            ours(
                kind="refund",
                merchant_ref="ref_1",
                amount=-3_333,
                parent_amount=10_000,
                refunded_before=0,
            ),
            ours(
                kind="refund",
                merchant_ref="ref_2",
                amount=-6_667,
                parent_amount=10_000,
                refunded_before=3_333,
            ),
        ],
    )
    assert diffs(result) == []


def test_fx_within_one_minor_unit_of_our_rate_matches_beyond_it_differs():
    rate = Decimal("7.1234")
    result = run(
        [
            # 10.00 USD at 7.1234 is 71.234 CNY: 7123 fen on the line agrees.
            line(merchant_ref="att_1", amount=7_123, fee=43),
            line(merchant_ref="att_2", amount=7_124, fee=43),  # within one fen of 71.234
            line(merchant_ref="att_3", amount=7_200, fee=43),
            line(merchant_ref="att_4", amount=7_123, fee=43),  # no rate recorded
        ],
        [
            ours(merchant_ref="att_1", currency="USD", amount=1_000, fx_rate=rate),
            ours(merchant_ref="att_2", currency="USD", amount=1_000, fx_rate=rate),
            ours(merchant_ref="att_3", currency="USD", amount=1_000, fx_rate=rate),
            ours(merchant_ref="att_4", currency="USD", amount=1_000),
        ],
    )
    assert [p[:2] for p in pairs(result)] == [(0, 0), (1, 1)]
    assert diffs(result) == [(T.FX, 2, 2), (T.FX, 3, 3)]
    fx = result.differences.to_pylist()
    assert (fx[0]["expected"], fx[0]["delta"]) == (7_123, 77)
    assert fx[1]["expected"] is None


def test_fx_between_currencies_of_different_exponents():
    # 1,000 JPY at 0.0068 USD per yen is 6.80 USD.
    result = run(
        [line(source="stripe", merchant_ref="att_1", currency="USD", amount=680, fee=50)],
        [
            ours(
                channel="stripe",
                merchant_ref="att_1",
                currency="JPY",
                amount=1_000,
                fx_rate=Decimal("0.0068"),
            )
        ],
    )
    assert diffs(result) == []


def test_payouts_many_to_one_with_the_payout_line_and_the_bank_credit():
    items = [
        line(
            source="stripe",
            merchant_ref=f"att_{i}",
            currency="USD",
            amount=1_000,
            fee=59,
            payout_id="po_1",
        )
        for i in range(3)
    ]
    refund = line(
        source="stripe",
        kind="refund",
        merchant_ref="ref_9",
        currency="USD",
        amount=-500,
        fee=0,
        payout_id="po_1",
    )
    net = 3 * (1_000 - 59) - 500
    heads = [
        line(
            source="stripe",
            kind="payout",
            channel_txn_id="po_1",
            payout_id="po_1",
            currency="USD",
            amount=-net,
            fee=0,
        ),
        # The bank's credit names the payout in its reference.
        line(
            source="bank",
            account="DE00",
            kind="transfer",
            merchant_ref="po_1",
            channel_txn_id="B1",
            currency="USD",
            amount=net,
            fee=0,
        ),
        # A second payout paid out one cent short of its items.
        line(
            source="stripe",
            kind="payout",
            channel_txn_id="po_2",
            payout_id="po_2",
            currency="USD",
            amount=-(1_000 - 59) + 1,
            fee=0,
        ),
        line(
            source="stripe",
            merchant_ref="att_7",
            currency="USD",
            amount=1_000,
            fee=59,
            payout_id="po_2",
        ),
        # A payout whose items are in another report: nothing to check it against here.
        line(
            source="stripe",
            kind="payout",
            channel_txn_id="po_3",
            payout_id="po_3",
            currency="USD",
            amount=-100,
            fee=0,
        ),
    ]
    records = [
        ours(channel="stripe", merchant_ref=f"att_{i}", currency="USD", amount=1_000)
        for i in (0, 1, 2, 7)
    ] + [
        ours(
            channel="stripe",
            kind="refund",
            merchant_ref="ref_9",
            currency="USD",
            amount=-500,
            parent_amount=1_000,
            refunded_before=0,
        ),
    ]
    result = match(lines_table([*items, refund, *heads]), ours_table(records))
    checks = result.payouts.to_pylist()
    assert [(c["lid"], c["payout_id"], c["status"], c["items_count"]) for c in checks] == [
        (4, "po_1", "MATCHED", 4),
        (5, "po_1", "MATCHED", 4),
        (6, "po_2", "MISMATCH", 1),
        (8, "po_3", "UNVERIFIED", 0),
    ]
    assert diffs(result) == [(T.PAYOUT, 6, None)]
    payout = result.differences.to_pylist()[0]
    assert (payout["expected"], payout["delta"], payout["payout_id"]) == (941, -1, "po_2")
    assert len(pairs(result)) == 5


def test_differences_carry_evidence_and_age():
    result = run(
        [line(merchant_ref="att_1", business_date=DAY - timedelta(days=2), line_no=17)],
        [ours(merchant_ref="att_2", business_date=DAY - timedelta(days=1))],
        as_of=DAY,
    )
    long, short = result.differences.to_pylist()
    assert (long["type"], long["line_no"], long["merchant_ref"], long["age_days"]) == (
        "LONG",
        17,
        "att_1",
        2,
    )
    assert (short["type"], short["attempt_id"], short["intent_id"], short["age_days"]) == (
        "SHORT",
        "att_2",
        "pay_att_2",
        1,
    )


# --- classification: the SQL follows the written rules --------------------------------------------


def test_sql_classification_follows_classify_pair_in_every_case():
    cases = list(
        itertools.product(
            ("payment", "refund"),
            (LineState.OK, LineState.PENDING, LineState.FAILED),
            (True, False),  # confirmed
            (True, False),  # amounts agree
            (True, False),  # our order paid by another attempt
        )
    )
    word = {LineState.OK: "SUCCESS", LineState.PENDING: "PROCESSING", LineState.FAILED: "CLOSED"}
    lines, records = [], []
    for i, (kind, state, confirmed, agree, other) in enumerate(cases):
        ref = f"x_{i}"
        amount = 10_000 if kind == "payment" else -10_000
        fee = 60 if kind == "payment" else -60
        lines.append(
            line(
                kind=kind,
                merchant_ref=ref,
                status=word[state],
                amount=amount if agree else amount + 7,
                fee=fee,
            )
        )
        records.append(
            ours(
                kind=kind,
                merchant_ref=ref,
                amount=amount,
                status="succeeded" if confirmed else "closed",
                paid_by_attempt_id=("att_other" if other else ref) if kind == "payment" else None,
                parent_amount=10_000,
                refunded_before=0,
            )
        )
    result = run(lines, records)
    found = {lid: t for t, lid, _ in diffs(result) if t != T.FEE}
    matched = {lid for lid, _, _ in pairs(result)}
    for i, (kind, state, confirmed, agree, other) in enumerate(cases):
        expected = classify_pair(
            kind=kind,
            state=state,
            confirmed=confirmed,
            money_agrees=agree,
            same_currency=True,
            paid_by_other=other,
        )
        assert found.get(i) == expected, cases[i]
        assert (i in matched) == (expected is None), cases[i]


def test_line_status_words():
    assert line_state("wechatpay", "SUCCESS") is LineState.OK
    assert line_state("wechatpay", " refund ") is LineState.OK
    assert line_state("stripe", "charge") is LineState.OK
    assert line_state("wechatpay", None) is LineState.OK
    assert line_state("wechatpay", "revoked") is LineState.FAILED
    assert line_state("alipay", "处理中") is LineState.PENDING
    assert line_state("paypal", "P") is LineState.PENDING
    assert line_state("wechatpay", "P") is LineState.OK  # a one-letter code means nothing there
    assert [t.value for t in DifferenceType] == [
        "LONG",
        "SHORT",
        "DUPLICATE_PAYMENT",
        "AMOUNT_MISMATCH",
        "FEE_MISMATCH",
        "STATUS_MISMATCH",
        "FX_DIFFERENCE",
        "PAYOUT_MISMATCH",
    ]
    assert [p.value for p in MatchPass] == ["REF", "TXN", "FUZZY"]


# --- determinism and inputs ---------------------------------------------------------------------


def _mixed_day(n: int) -> tuple[pa.Table, pa.Table]:
    lines, records = [], []
    for i in range(n):
        ref = f"att_{i:05d}"
        amount = 100 + (i * 7919) % 90_000
        fee = fees.WECHATPAY.fee(Money(amount, "CNY")).amount
        if i % 11 != 3:
            lines.append(
                line(
                    merchant_ref=ref if i % 13 else ref.upper().replace("_", ""),
                    amount=amount + (1 if i % 17 == 5 else 0),
                    fee=fee + (1 if i % 19 == 2 else 0),
                    occurred_at=AT + timedelta(seconds=i),
                )
            )
        if i % 23 == 4:
            lines.append(
                line(
                    merchant_ref=ref,
                    amount=amount,
                    fee=fee,
                    channel_txn_id=f"d{i}",
                    occurred_at=AT + timedelta(seconds=i),
                )
            )
        if i % 29 != 6:
            records.append(
                ours(
                    merchant_ref=ref,
                    amount=amount,
                    expected_fee=fee,
                    confirmed_at=AT + timedelta(seconds=i),
                )
            )
    return lines_table(lines), ours_table(records[::-1])


def test_the_same_inputs_give_the_same_rows_in_the_same_order():
    lines, records = _mixed_day(3_000)
    first = match(lines, records, resources=Resources(threads=1))
    second = match(lines, records, resources=Resources(threads=2))
    third = match(lines, records, resources=Resources(threads=4))
    for other in (second, third):
        assert other.matched is not None
        assert first.matched is not None
        assert other.matched.equals(first.matched)
        assert other.differences.equals(first.differences)
        assert other.payouts.equals(first.payouts)
        assert other.counts == first.counts
    kinds = set(first.differences.column("type").to_pylist())
    assert {T.LONG, T.SHORT, T.DUPLICATE, T.AMOUNT, T.FEE} <= kinds
    assert first.counts["matched_fuzzy"] > 0


def test_parquet_files_give_what_the_tables_give(tmp_path: Path):
    lines, records = _mixed_day(500)
    half = lines.num_rows // 2
    pq.write_table(lines.slice(0, half), tmp_path / "a.parquet")
    pq.write_table(lines.slice(half), tmp_path / "b.parquet")
    pq.write_table(records, tmp_path / "ours.parquet")
    from_files = match(
        [tmp_path / "a.parquet", tmp_path / "b.parquet"],
        tmp_path / "ours.parquet",
        matched_path=tmp_path / "matched.parquet",
    )
    from_tables = match(lines, records)

    # Positions in the second file start at 2**40.
    def unshift(lid: int | None) -> int | None:
        return None if lid is None else (lid - (1 << 40) + half if lid >= 1 << 40 else lid)

    assert from_files.matched is None
    written = pq.read_table(tmp_path / "matched.parquet")
    assert [unshift(x) for x in written.column("lid").to_pylist()] == (
        from_tables.matched.column("lid").to_pylist() if from_tables.matched else None
    )
    assert [unshift(x) for x in from_files.differences.column("lid").to_pylist()] == (
        from_tables.differences.column("lid").to_pylist()
    )


def test_missing_columns_are_refused():
    with pytest.raises(ValueError, match="lacks columns"):
        match(lines_table([line()]).drop_columns(["fee"]), ours_table([ours()]))


# --- the SQL fee is the fee schedule's fee ------------------------------------------------------

_CON = duckdb.connect()
PUBLISHED = [fees.WECHATPAY, fees.ALIPAY, fees.STRIPE, fees.PAYPAL, fees.QUICKPAY]
schedules = st.one_of(
    st.sampled_from(PUBLISHED),
    st.builds(
        FeeSchedule,
        rate=st.decimals(min_value=0, max_value=Decimal("0.2"), places=5),
        fixed=st.integers(min_value=0, max_value=500),
        rounding=st.sampled_from(list(Rounding)),
        refund_returns_fee=st.booleans(),
        refund_keeps_fixed=st.booleans(),
    ),
)
# Everyday amounts (the BIGINT form) and ones far beyond (the HUGEINT form).
amounts = st.one_of(
    st.integers(min_value=0, max_value=REFUND_FAST_BOUND),
    st.integers(min_value=0, max_value=10**12),
)


def _sql(expr: str) -> int:
    row = _CON.execute(f"SELECT CAST({expr} AS HUGEINT)").fetchone()
    assert row is not None
    return int(row[0])


@settings(max_examples=400, deadline=None)
@given(schedules, st.integers(min_value=-(10**15), max_value=2**62))
def test_sql_fee_is_the_schedule_fee(schedule: FeeSchedule, amount: int):
    assert (
        _sql(fee_expr(schedule, f"CAST({amount} AS BIGINT)"))
        == schedule.fee(Money(amount, "CNY")).amount
    )
    # The BIGINT form every line of a day is checked with: a payment line's fee is on its
    # amount's magnitude.
    check = line_fee_check_expr(
        {"x": schedule}, "'x'", "'payment'", f"CAST({amount} AS BIGINT)", "NULL", "NULL", "NULL"
    )
    assert _sql(check) == schedule.fee(Money(abs(amount), "CNY")).amount


@settings(max_examples=400, deadline=None)
@given(schedules, amounts, st.data())
def test_sql_refunded_fee_is_the_schedule_share(schedule: FeeSchedule, paid: int, data: Any):
    before = data.draw(st.integers(min_value=0, max_value=paid))
    refund = data.draw(st.integers(min_value=0, max_value=paid - before))
    fee = schedule.fee(Money(paid, "CNY"))
    expected = schedule.refunded_fee(
        Money(paid, "CNY"), fee, Money(before, "CNY"), Money(refund, "CNY")
    ).amount
    sql = refunded_fee_expr(schedule, f"{paid}::BIGINT", f"{before}::BIGINT", f"{refund}::BIGINT")
    assert _sql(sql) == expected
    # As the matcher asks it of a line: signed as the line carries it.
    line_fee = expected_line_fee_expr(
        {"x": schedule},
        "'x'",
        "'refund'",
        f"{-refund}::BIGINT",
        f"{paid}::BIGINT",
        f"{before}::BIGINT",
        "NULL",
    )
    assert _sql(line_fee) == -expected
    check = line_fee_check_expr(
        {"x": schedule},
        "'x'",
        "'refund'",
        f"{-refund}::BIGINT",
        f"{paid}::BIGINT",
        f"{before}::BIGINT",
        "NULL",
    )
    assert _sql(check) == -expected


def test_refunded_fees_add_up_to_the_whole_fee_over_partial_refunds():
    paid = 10_001
    parts = [3_333, 3_333, 3_335]
    for schedule in PUBLISHED:
        shares, before = [], 0
        for part in parts:
            shares.append(_sql(refunded_fee_expr(schedule, str(paid), str(before), str(part))))
            before += part
        fee = schedule.fee(Money(paid, "CNY")).amount
        kept = schedule.fixed if schedule.refund_keeps_fixed else 0
        assert sum(shares) == (fee - kept if schedule.refund_returns_fee else 0)


def test_no_schedule_falls_back_to_our_booked_fee():
    assert _sql(expected_line_fee_expr({}, "'bank'", "'payment'", "100", "NULL", "NULL", "7")) == 7
    expr = expected_line_fee_expr(
        {"wechatpay": fees.WECHATPAY}, "'bank'", "'payment'", "100", "NULL", "NULL", "7"
    )
    assert _sql(expr) == 7


def test_a_reference_we_hold_twice_pairs_once_and_leaves_the_other_short():
    # Our references are unique in the database; an export that repeats one must still not
    # match one line twice.
    result = run([line(merchant_ref="att_1")], [ours(merchant_ref="att_1")] * 2)
    assert pairs(result) == [(0, 0, "REF")]
    assert diffs(result) == [(T.SHORT, None, 1)]


def test_a_cross_currency_payment_has_its_fee_checked_on_the_line_amount():
    result = run(
        [line(source="stripe", merchant_ref="att_1", currency="USD", amount=680, fee=51)],
        [
            ours(
                channel="stripe",
                merchant_ref="att_1",
                currency="JPY",
                amount=1_000,
                fx_rate=Decimal("0.0068"),
            )
        ],
    )
    assert diffs(result) == [(T.FEE, 0, 0)]
    assert result.differences.to_pylist()[0]["expected"] == 50


def test_status_words_are_read_per_channel_in_sql():
    result = run(
        [
            line(source="paypal", merchant_ref="att_1", currency="USD", status="P", fee=398),
            line(merchant_ref="att_2", status="P"),  # no meaning outside PayPal: moved
        ],
        [
            ours(channel="paypal", merchant_ref="att_1", currency="USD"),
            ours(merchant_ref="att_2"),
        ],
    )
    assert diffs(result) == [(T.SHORT, 0, 0)]
    assert pairs(result) == [(1, 1, "REF")]


def test_empty_inputs_give_empty_answers():
    nothing = run([], [])
    assert nothing.matched is not None
    assert nothing.matched.num_rows == nothing.differences.num_rows == 0
    assert nothing.counts["lines"] == nothing.counts["ours"] == 0
    assert diffs(run([line(merchant_ref="att_1")], [])) == [(T.LONG, 0, None)]
    assert diffs(run([], [ours()])) == [(T.SHORT, None, 0)]
