"""Reconciliation end to end: parsing, matching at scale, storing. Prints one JSON line.

    python bench/recon.py [--n 1000000] [--big 10000000] [--skip-10m] [--repeat 3]
                          [--seed 7] [--threads 2] [--memory-limit 2GB]
                          [--dir /tmp/recon-bench] [--reuse]

Every part runs in a process of its own, so each peak memory figure is that part's alone, and
``load`` is the machine's one-minute load average just before it (other work on the machine
shows there first).

parse           rows/s of the WeChat Pay trade bill (ALL, plain and gzip) and the Alipay bill
                (zip of GB18030 CSV) at ``--n`` rows, built by ``statements.samples``; best of
                ``--repeat``, generating and compressing not timed
e2e             one WeChat Pay day of ``--n`` rows through every step, each timed:
                parse_s    the bill's bytes to checked statement lines
                ours_s     our side of the day, the same rows in ``ours.OURS`` shape with
                           differences planted (in production ``export_ours`` reads them from
                           the database; that export is not in this figure)
                match_s    every pass, classification, fee and payout checks
                store_s    ``StatementStore.put`` (Parquet + its row in a SQLite database made by
                           the migrations) and the differences written to Parquet
                total_s    the sum; per_type scores the planted differences
                peak_rss_mb the process's high-water mark over these steps, counted from
                           when the bill's bytes were made (they stay resident: its input)
match           ``recon_match.py`` at ``--n`` and at ``--big`` rows a side (lines and records
                of four channels, every difference type planted, payouts): match_s, CPU,
                peak RSS of the matching process, precision and recall per type
machine         cores, Python, DuckDB, pyarrow
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from queue import Empty
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clearhouse.bootstrap import build_app, upgrade_database
from clearhouse.clock import FixedClock
from clearhouse.config import Settings
from clearhouse.reconciliation.matching import MatchConfig, Resources, match
from clearhouse.reconciliation.ours import OURS
from clearhouse.reconciliation.statements import alipay, samples, wechatpay
from clearhouse.reconciliation.store import StatementStore
from recon_match import run as run_matching
from recon_match import score

DAY = date(2024, 3, 1)
# Planted on our side of the e2e day, per million rows, by a hash of the line number.
E2E_PLANTS = [
    ("long", 1000),  # we have no record of the line
    ("long_pending", 500),  # our attempt is still pending
    ("dup", 500),  # our order was paid by another attempt (payments only)
    ("amount", 1000),  # our amount differs
]
E2E_SHORT = 1000  # per million: confirmed records of ours the bill does not have


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _reset_peak() -> None:
    """Start this process's resident-set high-water mark again from what it holds now
    (Linux: so making the inputs is not counted as working on them)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    """The high-water mark as the kernel keeps it for this process (``getrusage`` also keeps
    the mark of exited threads, which a reset does not clear)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _child(queue: Any, fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    queue.put(fn(*args))


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh process (its own memory high-water mark), with the load
    average just before it."""
    load = _load()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue, fn, args))
    child.start()
    while True:
        try:
            figures: dict[str, Any] = queue.get(timeout=1)
            break
        except Empty:
            if not child.is_alive():
                raise SystemExit(f"{fn.__name__} failed with exit code {child.exitcode}") from None
    child.join()
    return {"load": load, **figures}


# -- parsing -----------------------------------------------------------------------------------


def _best(parse: Callable[[], int], repeat: int) -> tuple[float, int]:
    fastest, rows = float("inf"), 0
    for _ in range(repeat):
        began = time.perf_counter()
        rows = parse()
        fastest = min(fastest, time.perf_counter() - began)
    return fastest, rows


def _wechat_rows(data: bytes) -> int:
    return int(wechatpay.parse_trade_bill(data, file="trade.csv", bill_date=DAY).lines.num_rows)


def parse_rates(n: int, repeat: int) -> dict[str, Any]:
    plain = samples.wechat_trade_bill(n, day=DAY)
    zipped = gzip.compress(plain, 6)  # the level the gzip tool and most servers use
    bill = samples.alipay_bill_zip(n, day=DAY)
    out: dict[str, Any] = {"rows": n}
    for name, data in (("wechat_plain", plain), ("wechat_gzip", zipped)):
        seconds, rows = _best(partial(_wechat_rows, data), repeat)
        out[f"{name}_mb"] = round(len(data) / 1e6, 1)
        out[f"{name}_rows_per_s"] = round(rows / seconds)
    seconds, rows = _best(
        lambda: alipay.parse_bill(bill, file="bill.zip", bill_date=DAY).lines.num_rows, repeat
    )
    out["alipay_zip_mb"] = round(len(bill) / 1e6, 1)
    out["alipay_zip_rows_per_s"] = round(rows / seconds)
    return out


# -- one day end to end ------------------------------------------------------------------------


def _uniform(line_no: np.ndarray, seed: int) -> np.ndarray:
    """A fixed pseudo-random number in [0, 10**6) per line (multiplicative hashing)."""
    mixed = (line_no.astype(np.uint64) + np.uint64(seed)) * np.uint64(0x9E3779B97F4A7C15)
    return ((mixed >> np.uint64(32)) % np.uint64(1_000_000)).astype(np.int64)


def _words(codes: np.ndarray, words: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), words).cast(pa.string())


def _prefixed(prefix: str, values: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(prefix, values, "")


def our_side(lines: pa.Table, seed: int) -> tuple[pa.Table, pa.Table]:
    """Our records of the bill's day with differences planted, built column-wise (Arrow
    kernels and numpy, no row objects); and the planted truth (type, lid, oid) in the
    positions the matcher reports. Records keep the lines' order; the shorts come last."""
    line_no = lines["line_no"].to_numpy()
    u = _uniform(line_no, seed)
    refund = pc.equal(lines["kind"], "refund").to_numpy(zero_copy_only=False)
    cat = np.zeros(len(u), dtype=np.int8)  # 0 normal, then E2E_PLANTS in order
    low = 0
    for code, (_, share) in enumerate(E2E_PLANTS, start=1):
        cat[(u >= low) & (u < low + share)] = code
        low += share
    names = ["normal", *(name for name, _ in E2E_PLANTS)]
    cat[(cat == names.index("dup")) & refund] = 0  # a refund cannot be a second payment
    keep = cat != names.index("long")
    kept = lines.filter(pa.array(keep))
    kc, kr, ku = cat[keep], refund[keep], u[keep]

    # A sample bill's refund refunds the payment on the row before it (``samples``).
    amount = lines["amount"].to_numpy()
    paid = pa.array(np.roll(amount, 1)[keep], mask=~kr)
    attempt = pc.coalesce(kept["parent_ref"], kept["merchant_ref"])
    unconfirmed = pa.array((kc == names.index("long_pending")) | (kc == names.index("dup")))
    status = np.where(kc == names.index("long_pending"), 1, 0)
    status[kc == names.index("dup")] = 2
    shift = np.where(kc == names.index("amount"), 1 + ku % 997, 0)
    null_text = pa.scalar(None, pa.string())
    ts_null = pa.scalar(None, pa.timestamp("us", tz="UTC"))
    paid_by = pc.if_else(
        pa.array(kc == names.index("dup")), _prefixed("other-", attempt), kept["merchant_ref"]
    )
    paid_by = pc.if_else(pc.or_(pa.array(kr), pa.array(status == 1)), null_text, paid_by)
    rows = kept.num_rows
    ours = {
        "channel": _words(np.zeros(rows), ["wechatpay"]),
        "kind": kept["kind"],
        "merchant_ref": kept["merchant_ref"],
        "attempt_id": attempt,
        "refund_id": pc.if_else(pa.array(kr), kept["merchant_ref"], null_text),
        "intent_id": _prefixed("pay_", attempt),
        "merchant_order_id": _prefixed("order-", attempt),
        "channel_txn_id": kept["channel_txn_id"],
        "channel_refund_id": kept["channel_refund_id"],
        "status": _words(status, ["succeeded", "pending", "closed"]),
        "currency": kept["currency"],
        "amount": pc.add(kept["amount"], pa.array(shift)),
        "expected_fee": pc.if_else(unconfirmed, pa.scalar(None, pa.int64()), kept["fee"]),
        "parent_amount": paid,
        "refunded_before": pc.if_else(pa.array(kr), 0, pa.scalar(None, pa.int64())),
        "paid_by_attempt_id": paid_by,
        "fx_rate": pa.nulls(rows, OURS.field("fx_rate").type),
        "created_at": pc.subtract(kept["occurred_at"], pa.scalar(timedelta(minutes=1))),
        "confirmed_at": pc.if_else(
            unconfirmed, ts_null, pc.subtract(kept["occurred_at"], pa.scalar(timedelta(seconds=2)))
        ),
        "business_date": kept["business_date"],
    }
    # Shorts: confirmed payments of ours under references the bill never shows.
    short = pc.and_(pc.invert(pa.array(refund)), pa.array(_uniform(line_no, seed + 1) < E2E_SHORT))
    extra = lines.filter(short)
    ref = _prefixed("short-", extra["merchant_ref"])
    shorts = {
        **{name: pa.nulls(extra.num_rows, OURS.field(name).type) for name in OURS.names},
        "channel": _words(np.zeros(extra.num_rows), ["wechatpay"]),
        "kind": extra["kind"],
        "merchant_ref": ref,
        "attempt_id": ref,
        "intent_id": _prefixed("pay_", ref),
        "merchant_order_id": _prefixed("order-", ref),
        "channel_txn_id": _prefixed("S", extra["channel_txn_id"]),
        "status": _words(np.zeros(extra.num_rows), ["succeeded"]),
        "currency": extra["currency"],
        "amount": extra["amount"],
        "expected_fee": extra["fee"],
        "paid_by_attempt_id": ref,
        "created_at": pc.subtract(extra["occurred_at"], pa.scalar(timedelta(minutes=1))),
        "confirmed_at": pc.subtract(extra["occurred_at"], pa.scalar(timedelta(seconds=2))),
        "business_date": extra["business_date"],
    }
    table = pa.concat_tables(
        [pa.table({name: part[name] for name in OURS.names}).cast(OURS) for part in (ours, shorts)]
    )

    # The truth, by position: lid = line_no - 2 (the bill's detail starts on line 2).
    lid = line_no.astype(np.int64) - 2
    oid = np.full(len(lid), -1, dtype=np.int64)
    oid[keep] = np.arange(rows)
    types = {"long": "LONG", "long_pending": "LONG", "dup": "DUPLICATE_PAYMENT"}
    types["amount"] = "AMOUNT_MISMATCH"
    parts = []
    for name, kind in types.items():
        hit = cat == names.index(name)
        parts.append(
            pa.table(
                {
                    "type": _words(np.zeros(int(hit.sum())), [kind]),
                    "lid": pa.array(lid[hit]),
                    "oid": pa.array(oid[hit], mask=oid[hit] < 0),
                }
            )
        )
    parts.append(
        pa.table(
            {
                "type": _words(np.zeros(extra.num_rows), ["SHORT"]),
                "lid": pa.nulls(extra.num_rows, pa.int64()),
                "oid": pa.array(np.arange(rows, rows + extra.num_rows)),
            }
        )
    )
    return table, pa.concat_tables(parts)


def end_to_end(n: int, seed: int, threads: int, memory_limit: str, root: Path) -> dict[str, Any]:
    work = root / f"e2e-n{n}-s{seed}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = samples.wechat_trade_bill(n, day=DAY)
    # The database the store registers files in, made by the migrations (not timed).
    clock = FixedClock(datetime(2024, 3, 2, 2, 0, tzinfo=UTC))
    app = build_app(Settings(database_url=f"sqlite:///{work / 'clearhouse.db'}"), clock)
    upgrade_database(app)
    store = StatementStore(app.engine, work / "store", clock)
    seconds: dict[str, float] = {}
    _reset_peak()

    started = time.perf_counter()
    statement = wechatpay.parse_trade_bill(data, file="trade_20240301.csv", bill_date=DAY)
    seconds["parse_s"] = time.perf_counter() - started

    started = time.perf_counter()
    ours, truth = our_side(statement.lines, seed)
    seconds["ours_s"] = time.perf_counter() - started

    started = time.perf_counter()
    result = match(
        statement.lines,
        ours,
        MatchConfig(),
        resources=Resources(threads, memory_limit, str(work / "spill")),
    )
    seconds["match_s"] = time.perf_counter() - started

    started = time.perf_counter()
    imported = store.put(statement, "trade_bill", "bench")
    pq.write_table(result.differences, work / "differences.parquet")
    seconds["store_s"] = time.perf_counter() - started
    seconds["total_s"] = sum(seconds.values())

    if imported.already or imported.lines != statement.lines.num_rows:
        raise SystemExit(f"the store did not take the bill: {imported}")
    pq.write_table(truth, work / "truth.parquet")
    app.close()
    return {
        "n": n,
        "lines": statement.lines.num_rows,
        "ours": ours.num_rows,
        **{name: round(value, 3) for name, value in seconds.items()},
        "match_steps_s": result.seconds,
        "differences": result.differences.num_rows,
        "peak_rss_mb": _peak_mb(),
        "per_type": score(work / "differences.parquet", work / "truth.parquet"),
    }


# -- the whole run -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=10_000_000)
    parser.add_argument("--skip-10m", action="store_true", help="no run at --big rows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "recon-bench"))
    parser.add_argument("--reuse", action="store_true", help="match days generated before")
    args = parser.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"machine": machine()}
    figures["parse"] = in_child(parse_rates, args.n, args.repeat)
    figures["e2e"] = in_child(end_to_end, args.n, args.seed, args.threads, args.memory_limit, root)
    sizes = [args.n] if args.skip_10m else [args.n, args.big]
    figures["match"] = {
        str(size): in_child(
            run_matching, size, args.seed, args.threads, args.memory_limit, root, args.reuse
        )
        for size in sizes
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
