"""The same day matched the straightforward way, in pandas, for comparison. Prints one JSON line.

    python bench/recon_pandas.py --n 1000000 [--seed 7] [--dir /tmp/recon-bench] [--reuse]
                                 [--loops]

Reads the Parquet files ``recon_match.py`` generates (and generates them when missing), then
does what a first reconciliation script does: one outer join of lines and records on reference
and amount. No transaction-id or fuzzy pass, no status, fee, FX or payout checks: everything that
does not join exactly is simply "unmatched". Its time and memory are the floor such a script
starts from; what it cannot tell apart is in ``unmatched_*``. ``--loops`` does the same join
as plain Python instead: a dict of records by (reference, amount), one loop over the lines.

match_s         reading both files and the join, end to end
match_cpu_s     CPU time (user + system, all threads) this process spent on it: on a shared
                machine a steadier figure than the wall time
peak_rss_mb     this process's resident-set high-water mark
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from recon_match import cpu_s, generated


def pandas_join(work: Path) -> dict[str, int]:
    lines = pd.read_parquet(work / "lines.parquet", columns=["merchant_ref", "amount", "kind"])
    lines = lines[lines["kind"].isin(["payment", "refund"])]
    ours = pd.read_parquet(work / "ours.parquet", columns=["merchant_ref", "amount"])
    joined = lines.merge(ours, on=["merchant_ref", "amount"], how="outer", indicator=True)
    found = joined["_merge"].value_counts()
    return {
        "lines": len(lines),
        "ours": len(ours),
        "matched": int(found.get("both", 0)),
        "unmatched_lines": int(found.get("left_only", 0)),
        "unmatched_ours": int(found.get("right_only", 0)),
    }


def python_join(work: Path) -> dict[str, int]:
    lines = pq.read_table(work / "lines.parquet", columns=["merchant_ref", "amount", "kind"])
    ours = pq.read_table(work / "ours.parquet", columns=["merchant_ref", "amount"])
    waiting: dict[tuple[str, int], int] = {}
    for ref, amount in zip(
        ours["merchant_ref"].to_pylist(), ours["amount"].to_pylist(), strict=True
    ):
        waiting[ref, amount] = waiting.get((ref, amount), 0) + 1
    matched = unmatched = seen = 0
    for ref, amount, kind in zip(
        lines["merchant_ref"].to_pylist(),
        lines["amount"].to_pylist(),
        lines["kind"].to_pylist(),
        strict=True,
    ):
        if kind not in ("payment", "refund"):
            continue
        seen += 1
        left = waiting.get((ref, amount), 0)
        if left:
            waiting[ref, amount] = left - 1
            matched += 1
        else:
            unmatched += 1
    return {
        "lines": seen,
        "ours": ours.num_rows,
        "matched": matched,
        "unmatched_lines": unmatched,
        "unmatched_ours": sum(waiting.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "recon-bench"))
    parser.add_argument("--reuse", action="store_true", help="keep data generated before")
    parser.add_argument("--loops", action="store_true", help="plain Python instead of pandas")
    args = parser.parse_args()
    work, _ = generated(args.n, args.seed, Path(args.dir), 2, args.reuse)
    cpu_before = cpu_s()
    started = time.perf_counter()
    counts = python_join(work) if args.loops else pandas_join(work)
    match_s = time.perf_counter() - started
    match_cpu_s = cpu_s() - cpu_before
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "n": args.n,
        "seed": args.seed,
        "engine": "python" if args.loops else f"pandas {pd.__version__}",
        "match_s": round(match_s, 3),
        "match_cpu_s": round(match_cpu_s, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        **counts,
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
