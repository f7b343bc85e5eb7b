"""Ledger client processes for the multi-process tests (run with ``python -m``).

``mix CONFIG``: one of several concurrent workers (test_concurrency). It waits for a go signal,
then runs a seeded random mix of transfers, payments, withdrawals, top-ups, batches, its own
holds, retries of its own keys and a list of keys shared by every worker, and writes a JSON report
of every request it sent and the answer it got.

``race CONFIG``: every worker closes the same shared holds and reverses the same shared entries,
each with its own key; reports the outcomes.

``crash CONFIG``: a writer whose request stream is a pure function of (seed, step, earlier
outcomes). It prints one JSON line per step once the step's transaction committed, so a test can
kill it anywhere and start it again: the restarted writer replays the committed steps (answered
from the stored outcomes) and carries on from the first step that never committed.

Effects are tracked per named account as the change of its posted balance in the account's normal
direction, so the test can recompute every balance from the answers alone.
"""

from __future__ import annotations

import json
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clearhouse.bootstrap import build_app
from clearhouse.config import Settings
from clearhouse.db import transaction
from clearhouse.ledger.requests import CommitHold, Outcome, Post, Request, Reverse, VoidHold

CURRENCY = "CNY"

# --- what each code does to the named accounts' posted balances (normal direction) ------------


def effects(code: str, amounts: Mapping[str, int], parties: Mapping[str, str]) -> dict[str, int]:
    """Posted-balance change per named account for an accepted, non-hold request.

    Names: ``buyer:<account_id>``, merchant, escrow, commission, clearing (WeChat Pay), bank
    (ICBC reserve), capital. Only the codes the workers send are known.
    """
    a = amounts.get("amount", 0)
    match code:
        case "4002":
            return {f"buyer:{parties['buyer']}": a, "clearing": a}
        case "8001":
            return {f"buyer:{parties['payer']}": -a, f"buyer:{parties['payee']}": a}
        case "1002":
            return {"clearing": a, "escrow": a}
        case "2001":
            m, c = amounts["merchant_amount"], amounts.get("commission", 0)
            return {"escrow": -(m + c), "merchant": m, "commission": c}
        case "1009":
            return {f"buyer:{parties['buyer']}": -a, "escrow": a}
        case "5002":
            return {f"buyer:{parties['buyer']}": -a, "bank": -a}
        case "9001":
            return {"bank": a, "capital": a}
    raise ValueError(f"no effects known for code {code}")


def describe(req: Request) -> dict[str, Any]:
    if isinstance(req, Post):
        return {
            "op": "hold" if req.hold else "post",
            "code": req.code,
            "amounts": dict(req.amounts),
            "parties": dict(req.parties),
        }
    if isinstance(req, CommitHold):
        return {"op": "commit", "hold_id": req.hold_id, "amounts": req.amounts}
    if isinstance(req, VoidHold):
        return {"op": "void", "hold_id": req.hold_id}
    return {"op": "reverse", "ref_entry_id": req.entry_id}


def record(req: Request, out: Outcome, **extra: Any) -> dict[str, Any]:
    return {
        "key": req.key,
        **describe(req),
        "ok": out.ok,
        "entry_id": out.entry_id,
        "reason": None if out.reason is None else out.reason.value,
        "replayed": out.replayed,
        **extra,
    }


# --- retry instrumentation ----------------------------------------------------------------------

RETRIES: Counter[str] = Counter()


def _count_retries() -> None:
    """Count the transient errors run_in_transaction retries, by kind (worker-side only).

    Wraps the module's classifier, which run_in_transaction looks up at call time."""
    name = "is_transient" if hasattr(transaction, "is_transient") else "_is_transient"
    original = getattr(transaction, name)

    def counting(exc: Any, *, retry_integrity: bool) -> bool:
        verdict = bool(original(exc, retry_integrity=retry_integrity))
        if verdict:
            orig = getattr(exc, "orig", None) or exc
            kind = getattr(orig, "sqlstate", None) or type(orig).__name__
            if "locked" in str(orig).lower() or "busy" in str(orig).lower():
                kind = "sqlite_busy"
            RETRIES[kind] += 1
        return verdict

    setattr(transaction, name, counting)


def _await_go(cfg: Mapping[str, Any]) -> None:
    Path(cfg["ready_path"]).touch()
    go = Path(cfg["go_path"])
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no go signal")
        time.sleep(0.005)


# --- mix: the concurrent worker ------------------------------------------------------------------


class Mix:
    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg["seed"])
        self.app = build_app(Settings(database_url=cfg["url"]), pool_size=1)
        self.buyers: list[str] = cfg["buyers"]
        self.merchant: str = cfg["merchant"]
        self.wid: int = cfg["worker"]
        self.n = 0
        self.records: list[dict[str, Any]] = []
        self.sent: list[tuple[Request, Outcome]] = []  # candidates for a retry
        self.open_holds: list[tuple[int, str, int]] = []  # (hold id, buyer, amount)
        self.retry_mismatches: list[str] = []

    def key(self, what: str) -> str:
        self.n += 1
        return f"w{self.wid}-{what}-{self.n}"

    def submit(self, reqs: list[Request], **extra: Any) -> list[Outcome]:
        outs = self.app.ledger.submit(reqs)
        for req, out in zip(reqs, outs, strict=True):
            self.records.append(record(req, out, **extra))
            if not extra:
                self.sent.append((req, out))
        return outs

    def two_buyers(self) -> tuple[str, str]:
        payer, payee = self.rng.sample(self.buyers, 2)
        return payer, payee

    def amount(self) -> int:
        # Buyers start with a few thousand: many requests ask for more than is left.
        return self.rng.choice([self.rng.randint(1, 500), self.rng.randint(500, 4_000)])

    def transfer(self) -> Post:
        payer, payee = self.two_buyers()
        return Post(
            self.key("xfer"),
            "8001",
            CURRENCY,
            {"amount": self.amount()},
            {"payer": payer, "payee": payee},
        )

    def buyer_post(self, code: str, what: str) -> Post:
        buyer = self.rng.choice(self.buyers)
        return Post(self.key(what), code, CURRENCY, {"amount": self.amount()}, {"buyer": buyer})

    def order(self) -> None:
        amount = self.rng.randint(100, 50_000)
        (paid,) = self.submit([Post(self.key("pay"), "1002", CURRENCY, {"amount": amount})])
        if paid.ok:
            commission = amount // 20
            self.submit(
                [
                    Post(
                        self.key("settle"),
                        "2001",
                        CURRENCY,
                        {"merchant_amount": amount - commission, "commission": commission},
                        {"merchant": self.merchant},
                    )
                ]
            )

    def batch(self) -> None:
        makers = [
            self.transfer,
            lambda: self.buyer_post("1009", "bpay"),
            lambda: self.buyer_post("5002", "wd"),
            lambda: Post(self.key("bpay1002"), "1002", CURRENCY, {"amount": 100}),
        ]
        reqs = [self.rng.choice(makers)() for _ in range(self.rng.randint(4, 10))]
        self.submit(reqs)

    def hold(self) -> None:
        buyer = self.rng.choice(self.buyers)
        amount = self.rng.randint(1, 2_000)
        req = Post(
            self.key("hold"), "1009", CURRENCY, {"amount": amount}, {"buyer": buyer}, hold=True
        )
        (out,) = self.submit([req])
        if out.ok:
            assert out.entry_id is not None
            self.open_holds.append((out.entry_id, buyer, amount))

    def close_hold(self) -> None:
        hold_id, _buyer, amount = self.open_holds.pop(self.rng.randrange(len(self.open_holds)))
        choice = self.rng.random()
        req: Request
        if choice < 0.4:
            req = CommitHold(self.key("commit"), hold_id)
        elif choice < 0.7:
            req = CommitHold(self.key("pcommit"), hold_id, {"amount": self.rng.randint(1, amount)})
        else:
            req = VoidHold(self.key("void"), hold_id)
        (out,) = self.submit([req])
        if not out.ok:
            raise AssertionError(f"closing own hold {hold_id} was rejected: {out}")

    def retry(self) -> None:
        req, first = self.rng.choice(self.sent)
        (again,) = self.app.ledger.submit([req])
        self.records.append(record(req, again, retry_of=req.key))
        same = (again.entry_id, again.reason) == (first.entry_id, first.reason)
        if not (again.replayed and same):
            self.retry_mismatches.append(f"{req.key}: first {first}, again {again}")

    def contested(self, spec: Mapping[str, Any]) -> None:
        req = Post(spec["key"], spec["code"], CURRENCY, spec["amounts"], spec["parties"])
        (out,) = self.app.ledger.submit([req])
        self.records.append(record(req, out, contested=True))

    def run(self) -> dict[str, Any]:
        contested = list(self.cfg["contested"])
        ops = self.cfg["ops"]
        # The first half opens every worker's run in the same order, so the same key is in flight
        # in several processes at once; the rest is spread through the run in a private order.
        head, tail = contested[: len(contested) // 2], contested[len(contested) // 2 :]
        self.rng.shuffle(tail)
        spots = sorted(self.rng.sample(range(len(head), ops), len(tail)))
        contested_at = dict(enumerate(head)) | dict(zip(spots, tail, strict=True))
        errors: list[str] = []
        _await_go(self.cfg)
        started = time.monotonic()
        for i in range(ops):
            try:
                if i in contested_at:
                    self.contested(contested_at[i])
                    continue
                r = self.rng.random()
                if r < 0.30:
                    self.submit([self.transfer()])
                elif r < 0.42:
                    self.order()
                elif r < 0.50:
                    self.submit([self.buyer_post("1009", "bpay")])
                elif r < 0.60:
                    self.submit([self.buyer_post("5002", "wd")])
                elif r < 0.65:
                    buyer = self.rng.choice(self.buyers)
                    amount = self.rng.randint(1, 3_000)
                    self.submit(
                        [
                            Post(
                                self.key("topup"),
                                "4002",
                                CURRENCY,
                                {"amount": amount},
                                {"buyer": buyer},
                            )
                        ]
                    )
                elif r < 0.75:
                    self.batch()
                elif r < 0.83:
                    self.hold()
                elif r < 0.91 and self.open_holds:
                    self.close_hold()
                elif self.sent:
                    self.retry()
            except Exception:
                errors.append(traceback.format_exc())
        while self.open_holds:  # leave no hold open: every buyer's pending ends at zero
            try:
                self.close_hold()
            except Exception:
                errors.append(traceback.format_exc())
        return {
            "worker": self.wid,
            "records": self.records,
            "errors": errors,
            "retry_mismatches": self.retry_mismatches,
            "retries": dict(RETRIES),
            "seconds": time.monotonic() - started,
        }


def run_race(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Close every shared hold and reverse every shared entry, in a worker-specific order."""
    rng = random.Random(cfg["seed"])
    app = build_app(Settings(database_url=cfg["url"]), pool_size=1)
    wid = cfg["worker"]
    jobs: list[Request] = []
    for hold_id in cfg["holds"]:
        if rng.random() < 0.5:
            jobs.append(CommitHold(f"w{wid}-close-{hold_id}", hold_id))
        else:
            jobs.append(VoidHold(f"w{wid}-close-{hold_id}", hold_id))
    jobs += [Reverse(f"w{wid}-rev-{e}", e) for e in cfg["entries"]]
    records, errors = [], []
    _await_go(cfg)
    for req in jobs:  # the same order in every worker: they collide on each one
        try:
            (out,) = app.ledger.submit([req])
            records.append(record(req, out))
        except Exception:
            errors.append(f"{req}: {traceback.format_exc()}")
    app.close()
    return {"worker": wid, "records": records, "errors": errors, "retries": dict(RETRIES)}


# --- crash: the restartable writer ---------------------------------------------------------------


def crash_writer(cfg: Mapping[str, Any]) -> None:
    """Run steps 0..steps-1; print one JSON line per committed step; exit 0 at the end."""
    app = build_app(Settings(database_url=cfg["url"]), pool_size=1)
    seed, buyers = cfg["seed"], cfg["buyers"]
    open_holds: list[int] = []
    reversible: list[int] = []
    for step in range(cfg["steps"]):
        rng = random.Random(f"{seed}:{step}")
        size = cfg["batch"] if step % 2 == 0 else 1
        reqs: list[Request] = []
        closing: set[int] = set()
        for i in range(size):
            key = f"{seed}-s{step}-r{i}"
            r = rng.random()
            if r < 0.12 and len(open_holds) > len(closing):
                hold_id = rng.choice([h for h in open_holds if h not in closing])
                closing.add(hold_id)
                reqs.append(
                    CommitHold(key, hold_id) if rng.random() < 0.6 else VoidHold(key, hold_id)
                )
            elif r < 0.16 and reversible:
                reqs.append(Reverse(key, reversible.pop(rng.randrange(len(reversible)))))
            elif r < 0.35:
                buyer = rng.choice(buyers)
                amount = rng.randint(1, 800)
                reqs.append(
                    Post(key, "1009", CURRENCY, {"amount": amount}, {"buyer": buyer}, hold=True)
                )
            elif r < 0.65:
                payer, payee = rng.sample(buyers, 2)
                amount = rng.randint(1, 1_500)
                reqs.append(
                    Post(
                        key, "8001", CURRENCY, {"amount": amount}, {"payer": payer, "payee": payee}
                    )
                )
            elif r < 0.80:
                buyer = rng.choice(buyers)
                reqs.append(
                    Post(key, "4002", CURRENCY, {"amount": rng.randint(1, 900)}, {"buyer": buyer})
                )
            else:
                reqs.append(Post(key, "1002", CURRENCY, {"amount": rng.randint(1, 9_000)}))
        outs = app.ledger.submit(reqs)
        for req, out in zip(reqs, outs, strict=True):
            if isinstance(req, CommitHold | VoidHold) and out.ok:
                open_holds.remove(req.hold_id)
            elif isinstance(req, Post) and req.hold and out.ok:
                assert out.entry_id is not None
                open_holds.append(out.entry_id)
            elif isinstance(req, Post) and req.code == "8001" and out.ok:
                assert out.entry_id is not None
                reversible.append(out.entry_id)
        line = {
            "step": step,
            "fresh": not all(o.replayed for o in outs),
            "outcomes": [
                [o.key, o.entry_id, o.reason and o.reason.value, o.replayed] for o in outs
            ],
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    app.close()


def main(argv: list[str]) -> int:
    mode, config = argv
    cfg = json.loads(Path(config).read_text())
    _count_retries()
    if mode == "crash":
        crash_writer(cfg)
        return 0
    if mode == "mix":
        report = Mix(cfg).run()
    elif mode == "race":
        report = run_race(cfg)
    else:
        raise SystemExit(f"unknown mode {mode}")
    Path(cfg["out_path"]).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
