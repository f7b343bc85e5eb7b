"""The same day matched the straightforward way, in pandas, for comparison. Prints one JSON line.

    python bench/recon_pandas.py --n 1000000 [--seed 7] [--dir /tmp/recon-bench] [--reuse]

Reads the Parquet files ``recon_match.py`` generates (and generates them when missing), then
does what a first reconciliation script does: one outer join of lines and records on reference
and amount. No transaction-id or fuzzy pass, no status, fee, FX or payout checks: everything that
does not join exactly is simply "unmatched". Its time and memory are the floor such a script
starts from; what it cannot tell apart is in ``unmatched_*``.

match_s         reading both files and the join, end to end
match_cpu_s     CPU time (user + system, all threads) this process spent on it: on a shared
                machine a steadier figure than the wall time
peak_rss_mb     this process's resident-set high-water mark
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

import pandas as pd

from recon_match import generate


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "recon-bench"))
    parser.add_argument("--reuse", action="store_true", help="keep data generated before")
    args = parser.parse_args()
    work = Path(args.dir) / f"n{args.n}-s{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    if not (args.reuse and (work / "truth.parquet").exists()):
        child = mp.get_context("spawn").Process(target=generate, args=(args.n, args.seed, work, 2))
        child.start()
        child.join()
        if child.exitcode != 0:
            sys.exit(f"generator failed with exit code {child.exitcode}")
    cpu_before = _cpu_s()
    started = time.perf_counter()
    lines = pd.read_parquet(work / "lines.parquet", columns=["merchant_ref", "amount", "kind"])
    lines = lines[lines["kind"].isin(["payment", "refund"])]
    ours = pd.read_parquet(work / "ours.parquet", columns=["merchant_ref", "amount"])
    joined = lines.merge(ours, on=["merchant_ref", "amount"], how="outer", indicator=True)
    found = joined["_merge"].value_counts()
    match_s = time.perf_counter() - started
    match_cpu_s = _cpu_s() - cpu_before
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "n": args.n,
        "seed": args.seed,
        "pandas": pd.__version__,
        "lines": len(lines),
        "ours": len(ours),
        "match_s": round(match_s, 3),
        "match_cpu_s": round(match_cpu_s, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "matched": int(found.get("both", 0)),
        "unmatched_lines": int(found.get("left_only", 0)),
        "unmatched_ours": int(found.get("right_only", 0)),
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
