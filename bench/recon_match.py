"""Reconciliation matching at scale. Prints one JSON line of figures; ``bench/recon.py`` runs
it as one part of the whole reconciliation benchmark (and ``recon_pandas.py`` reuses its day).

    python bench/recon_match.py --n 1000000 [--seed 7] [--threads 2] [--memory-limit 2GB]
                                [--dir /tmp/recon-bench] [--reuse]

Generates one day of N channel statement lines and N of our records (four channels, a tenth
refunds, Stripe lines paid out in payouts of about 500 items) with differences of every type
planted at known rows, writes them as Parquet, then matches them in this process with
``reconciliation.matching`` and checks the differences found against the planted truth.

generate_s      building the data (a child process; not part of the matching figures)
match_s         reading both Parquet files, every pass, classification, fee and payout checks,
                and writing the matched pairs to Parquet: end to end
match_cpu_s     CPU time (user + system, all threads) this process spent on it: on a shared
                machine a steadier figure than the wall time
peak_rss_mb     this process's resident-set high-water mark (the generator runs in a child)
per_type        precision and recall of each difference type against the planted rows
steps_s         wall time of each step of the matcher (``MatchResult.seconds``)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from clearhouse.reconciliation.fee_sql import expected_line_fee_expr
from clearhouse.reconciliation.matching import MatchConfig, Resources, default_schedules, match

# Planted categories: per million rows, by a hash of the row number, in this order.
PLANTS = [
    ("long", 1000),  # a line, no record
    ("short", 1000),  # a confirmed record, no line
    ("long_pending", 500),  # a line; our attempt still pending
    ("dup_line", 500),  # the channel lists the payment twice (two transaction ids)
    ("dup_attempt", 500),  # a payment for an attempt of an order another attempt paid
    ("amount", 1000),  # the line's amount differs
    ("fee", 1000),  # the line's fee is one minor unit off the schedule
    ("status", 500),  # the channel says REVOKED; we hold it succeeded
    ("short_pending", 500),  # the channel has it PROCESSING; we hold it succeeded
    ("fx_bad", 500),  # EUR at our rate is off the USD line by two cents
    ("fx_ok", 500),  # EUR at our rate within a cent of the USD line: no difference
    # The line's reference upper-cased without its separator, and we never stored the
    # channel's id (its answer was lost): paired by the fuzzy pass, no difference.
    ("fuzzy", 1000),
    ("txn", 1000),  # the line has no reference, only the channel's id: no difference
]
PAYOUT_ITEMS = 2048  # row numbers per payout; a quarter of them are Stripe lines
PAYOUT_BAD_EVERY = 50  # one payout in fifty is paid out off its items' sum
DAY_START_UTC = "2026-11-01 16:00:00+00"  # 2026-11-02 00:00 Beijing
FX_RATE = "1.085"


def _categories() -> str:
    branches, low = [], 0
    for name, share in PLANTS:
        branches.append(f"WHEN u < {low + share} THEN '{name}'")
        low += share
    return f"CASE {' '.join(branches)} ELSE 'normal' END"


def generate(n: int, seed: int, out: Path, threads: int) -> None:
    """Write lines.parquet, ours.parquet and truth.parquet for ``n`` rows into ``out``."""
    con = duckdb.connect(config={"threads": threads, "memory_limit": "8GB"})
    con.execute("SET enable_progress_bar = false")
    fee = expected_line_fee_expr(
        default_schedules(), "channel", "kind", "line_amount", "parent", "before", "NULL"
    )
    ours_fee = expected_line_fee_expr(
        default_schedules(), "channel", "kind", "amount", "parent", "before", "NULL"
    )
    con.execute(
        f"""
        CREATE TABLE base AS
        SELECT i, hash(i, {seed}) AS h0, hash(i, {seed} + 1) AS h1, hash(i, {seed} + 2) AS h2,
               hash(i, {seed} + 3) AS h3, hash(i, {seed} + 7) % 1000000 AS u
        FROM range({n}) t(i);
        CREATE TABLE r1 AS
        SELECT *, {_categories()} AS cat FROM base;
        CREATE TABLE r2 AS
        SELECT *,
          CASE WHEN cat IN ('fx_bad', 'fx_ok') THEN 'stripe'
               ELSE ['wechatpay', 'alipay', 'stripe', 'paypal'][1 + (h1 % 4)::INTEGER] END
              AS channel,
          CASE WHEN cat IN ('dup_attempt', 'fx_bad', 'fx_ok') THEN 'payment'
               WHEN h2 % 10 = 0 THEN 'refund' ELSE 'payment' END AS kind,
          lower(lpad(to_hex(h0), 16, '0') || lpad(to_hex(h3 % 1099511627776), 10, '0')) AS tail
        FROM r1;
        CREATE TABLE rec AS
        SELECT *,
          CASE kind WHEN 'payment' THEN 'att_' ELSE 'ref_' END || tail AS ref,
          CASE kind WHEN 'payment' THEN 100 + (h3 % 500000)::BIGINT
                    ELSE 100 + (h3 % 50000)::BIGINT END AS a,
          TIMESTAMPTZ '{DAY_START_UTC}' + to_microseconds((h1 % 86400000000)::BIGINT) AS ts
        FROM r2;
        CREATE TABLE full_rec AS
        SELECT *,
          CASE WHEN kind = 'refund' THEN 2 * a + (h1 % 1000)::BIGINT END AS parent,
          CASE WHEN kind = 'refund' THEN CASE WHEN h2 % 3 = 0 THEN a // 2 ELSE 0 END END
              AS before,
          CASE WHEN kind = 'payment' THEN a ELSE -a END AS amount,
          CASE WHEN cat IN ('fx_bad', 'fx_ok') THEN 'EUR'
               WHEN channel IN ('stripe', 'paypal') THEN 'USD' ELSE 'CNY' END AS our_currency,
          CASE WHEN channel IN ('stripe', 'paypal') THEN 'USD' ELSE 'CNY' END AS line_currency
        FROM rec;
        CREATE TABLE g AS
        SELECT *,
          CASE WHEN cat = 'amount' THEN amount + 1 + (h2 % 1000)::BIGINT
               WHEN cat = 'fx_ok' THEN (a * 1085 + 500) // 1000
               WHEN cat = 'fx_bad' THEN (a * 1085 + 500) // 1000 + 2
               ELSE amount END AS line_amount
        FROM full_rec;
        """
    )
    con.execute(
        f"""
        CREATE TABLE items AS
        SELECT i, 0 AS variant, channel AS source, 'acct-' || channel AS account,
               DATE '2026-11-02' AS business_date, ts AS occurred_at, kind,
               CASE WHEN kind = 'payment' THEN 'T' || i ELSE 'P' || i END AS channel_txn_id,
               CASE WHEN kind = 'refund' THEN 'R' || i END AS channel_refund_id,
               CASE WHEN cat = 'txn' THEN NULL
                    WHEN cat = 'fuzzy' THEN upper(replace(ref, '_', '')) ELSE ref END
                   AS merchant_ref,
               CASE WHEN kind = 'refund' THEN 'att_' || tail END AS parent_ref,
               CASE cat WHEN 'status' THEN 'REVOKED' WHEN 'short_pending' THEN 'PROCESSING'
                        ELSE 'SUCCESS' END AS status,
               line_currency AS currency, line_amount AS amount,
               CAST({fee} AS BIGINT) + CASE WHEN cat = 'fee' THEN 1 ELSE 0 END AS fee,
               CASE WHEN channel = 'stripe' THEN 'po_' || (i // {PAYOUT_ITEMS}) END AS payout_id,
               NULL::VARCHAR AS memo
        FROM g WHERE cat <> 'short'
        UNION ALL
        SELECT i, 1, channel, 'acct-' || channel, DATE '2026-11-02',
               ts + INTERVAL 1 SECOND, kind, 'D' || i,
               CASE WHEN kind = 'refund' THEN 'RD' || i END, ref,
               CASE WHEN kind = 'refund' THEN 'att_' || tail END, 'SUCCESS',
               line_currency, line_amount, CAST({fee} AS BIGINT),
               CASE WHEN channel = 'stripe' THEN 'po_' || (i // {PAYOUT_ITEMS}) END, NULL
        FROM g WHERE cat = 'dup_line';
        CREATE TABLE payout_lines AS
        SELECT min(i) AS i, 2 AS variant, 'stripe' AS source, 'acct-stripe' AS account,
               DATE '2026-11-02' AS business_date,
               TIMESTAMPTZ '{DAY_START_UTC}' + INTERVAL 86399 SECOND AS occurred_at,
               'payout' AS kind, payout_id AS channel_txn_id, NULL AS channel_refund_id,
               NULL AS merchant_ref, NULL AS parent_ref, 'SUCCESS' AS status,
               'USD' AS currency,
               -sum(amount - fee)::BIGINT
                 + CASE WHEN hash(payout_id, {seed}) % {PAYOUT_BAD_EVERY} = 0
                        THEN 1 + (hash(payout_id) % 100)::BIGINT ELSE 0 END AS amount,
               0::BIGINT AS fee, payout_id, NULL AS memo
        FROM items WHERE payout_id IS NOT NULL GROUP BY payout_id;
        CREATE TABLE all_lines AS
        SELECT *, row_number() OVER (ORDER BY occurred_at, i, variant) - 1 AS lid
        FROM (SELECT * FROM items UNION ALL SELECT * FROM payout_lines);
        """
    )
    con.execute(
        f"""
        CREATE TABLE all_ours AS
        SELECT i, channel, kind, ref AS merchant_ref,
               CASE WHEN kind = 'payment' THEN ref ELSE 'att_' || tail END AS attempt_id,
               CASE WHEN kind = 'refund' THEN ref END AS refund_id,
               'pay_' || tail AS intent_id, 'order-' || i AS merchant_order_id,
               CASE WHEN cat = 'fuzzy' THEN NULL WHEN kind = 'payment' THEN 'T' || i
                    ELSE 'P' || i END AS channel_txn_id,
               CASE WHEN kind = 'refund' AND cat <> 'fuzzy' THEN 'R' || i END
                   AS channel_refund_id,
               CASE cat WHEN 'long_pending' THEN 'pending' WHEN 'dup_attempt' THEN 'closed'
                        ELSE 'succeeded' END AS status,
               our_currency AS currency, amount,
               CASE WHEN cat IN ('long_pending', 'dup_attempt') THEN NULL
                    ELSE CAST({ours_fee} AS BIGINT) END AS expected_fee,
               parent AS parent_amount, before AS refunded_before,
               CASE WHEN kind = 'refund' THEN NULL WHEN cat = 'dup_attempt' THEN 'att_other' || i
                    WHEN cat = 'long_pending' THEN NULL ELSE ref END AS paid_by_attempt_id,
               CASE WHEN cat IN ('fx_bad', 'fx_ok') THEN {FX_RATE}::DECIMAL(38, 12) END
                   AS fx_rate,
               ts - INTERVAL 60 SECOND AS created_at,
               CASE WHEN cat IN ('long_pending', 'dup_attempt') THEN NULL
                    ELSE ts - INTERVAL 2 SECOND END AS confirmed_at,
               DATE '2026-11-02' AS business_date,
               row_number() OVER (ORDER BY ref) - 1 AS oid
        FROM g WHERE cat <> 'long';
        """
    )
    con.execute(
        f"""
        CREATE TABLE truth AS
        WITH lpos AS (SELECT i, variant, lid FROM all_lines),
             opos AS (SELECT i, oid FROM all_ours)
        SELECT t.type, l.lid, o.oid
        FROM (SELECT i, cat,
                CASE cat WHEN 'long' THEN 'LONG' WHEN 'long_pending' THEN 'LONG'
                         WHEN 'short' THEN 'SHORT' WHEN 'short_pending' THEN 'SHORT'
                         WHEN 'dup_line' THEN 'DUPLICATE_PAYMENT'
                         WHEN 'dup_attempt' THEN 'DUPLICATE_PAYMENT'
                         WHEN 'amount' THEN 'AMOUNT_MISMATCH' WHEN 'fee' THEN 'FEE_MISMATCH'
                         WHEN 'status' THEN 'STATUS_MISMATCH' WHEN 'fx_bad' THEN 'FX_DIFFERENCE'
                    END AS type,
                CASE cat WHEN 'dup_line' THEN 1 ELSE 0 END AS variant
              FROM g) t
        LEFT JOIN lpos l ON l.i = t.i AND l.variant = t.variant
        LEFT JOIN opos o ON o.i = t.i
        WHERE t.type IS NOT NULL
        UNION ALL
        SELECT 'PAYOUT_MISMATCH', lid, NULL FROM all_lines
        WHERE variant = 2 AND hash(payout_id, {seed}) % {PAYOUT_BAD_EVERY} = 0;
        """
    )
    line_cols = (
        "source, account, business_date, occurred_at, kind, channel_txn_id, channel_refund_id, "
        "merchant_ref, parent_ref, status, currency, amount, fee, amount - fee AS net, "
        "payout_id, memo, (lid + 1)::INTEGER AS line_no"
    )
    con.execute(
        f"COPY (SELECT {line_cols} FROM all_lines ORDER BY lid) "
        f"TO '{out / 'lines.parquet'}' (FORMAT parquet)"
    )
    con.execute(
        f"COPY (SELECT * EXCLUDE (i, oid) FROM all_ours ORDER BY oid) "
        f"TO '{out / 'ours.parquet'}' (FORMAT parquet)"
    )
    con.execute(f"COPY truth TO '{out / 'truth.parquet'}' (FORMAT parquet)")
    con.close()


def score(differences_path: Path, truth_path: Path) -> dict[str, dict[str, float | int]]:
    """Precision and recall per type: a difference counts when its type, line and record are
    the planted ones (a missing side must be missing in both)."""
    con = duckdb.connect()
    rows = con.execute(
        f"""
        WITH found AS (SELECT DISTINCT type, lid, oid FROM read_parquet('{differences_path}')),
             truth AS (SELECT DISTINCT type, lid, oid FROM read_parquet('{truth_path}')),
             hit AS (SELECT f.type, count(*) AS n FROM found f JOIN truth t
                     ON f.type = t.type AND f.lid IS NOT DISTINCT FROM t.lid
                    AND f.oid IS NOT DISTINCT FROM t.oid GROUP BY f.type),
             types AS (SELECT type FROM found UNION SELECT type FROM truth)
        SELECT ty.type, coalesce((SELECT count(*) FROM found WHERE type = ty.type), 0),
               coalesce((SELECT count(*) FROM truth WHERE type = ty.type), 0),
               coalesce((SELECT n FROM hit WHERE type = ty.type), 0)
        FROM types ty ORDER BY ty.type
        """
    ).fetchall()
    con.close()
    out: dict[str, dict[str, float | int]] = {}
    for kind, found, planted, hits in rows:
        out[kind] = {
            "found": found,
            "planted": planted,
            "precision": round(hits / found, 6) if found else 1.0,
            "recall": round(hits / planted, 6) if planted else 1.0,
        }
    return out


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generated(n: int, seed: int, root: Path, threads: int, reuse: bool) -> tuple[Path, float]:
    """The folder holding the day of ``n`` rows, generated unless ``reuse`` finds it there;
    and the seconds generating took. The generator runs in a child process, so its memory is
    never counted as the matcher's."""
    work = root / f"n{n}-s{seed}"
    work.mkdir(parents=True, exist_ok=True)
    if reuse and (work / "truth.parquet").exists():
        return work, 0.0
    started = time.perf_counter()
    child = mp.get_context("spawn").Process(target=generate, args=(n, seed, work, threads))
    child.start()
    child.join()
    if child.exitcode != 0:
        sys.exit(f"generator failed with exit code {child.exitcode}")
    return work, time.perf_counter() - started


def run(
    n: int, seed: int, threads: int, memory_limit: str, root: Path, reuse: bool
) -> dict[str, Any]:
    """Generate (or reuse) the day, match it in this process and score it: the figures."""
    work, generate_s = generated(n, seed, root, threads, reuse)
    spill = work / "spill"
    spill.mkdir(exist_ok=True)
    config = MatchConfig(amount_tolerance=0)  # loads the channels' fee schedules
    cpu_before = cpu_s()
    started = time.perf_counter()
    result = match(
        work / "lines.parquet",
        work / "ours.parquet",
        config,
        resources=Resources(threads, memory_limit, str(spill)),
        matched_path=work / "matched.parquet",
    )
    match_s = time.perf_counter() - started
    match_cpu_s = cpu_s() - cpu_before
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pq.write_table(result.differences, work / "differences.parquet")
    return {
        "n": n,
        "seed": seed,
        "threads": threads,
        "memory_limit": memory_limit,
        "lines": result.counts["lines"],
        "ours": result.counts["ours"],
        "generate_s": round(generate_s, 2),
        "match_s": round(match_s, 3),
        "match_cpu_s": round(match_cpu_s, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "matched": sum(v for k, v in result.counts.items() if k.startswith("matched_")),
        "differences": result.differences.num_rows,
        "counts": result.counts,
        "steps_s": result.seconds,
        "per_type": score(work / "differences.parquet", work / "truth.parquet"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "recon-bench"))
    parser.add_argument("--reuse", action="store_true", help="keep data generated before")
    args = parser.parse_args()
    figures = run(args.n, args.seed, args.threads, args.memory_limit, Path(args.dir), args.reuse)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
