"""End-to-end payments through the merchant HTTP API. Prints one JSON line of figures.

    python bench/api.py [--quick] [--skip-postgres] [--profile] [--clients 16] [--rate 150]

The system under test runs in this process, as the issue asks ("sandboxes in-process"): the
merchant API (uvicorn, default loop, real port), both channel sandboxes (uvicorn each) with
``auto_pay`` (the payer pays the moment the order exists) and their notifiers on background
threads delivering to the API's /notify/<channel>. The load generator is a separate process
(httpx clients on threads) so its own CPU is not charged to the server's GIL. Channels 50/50.

A payment is *confirmed* when its intent is SUCCEEDED (ledger entries posted) after the
channel's notification arrived; its instant is the intent's ``updated_at`` (SystemClock, set in
the confirming transaction), read from the database after the phase, so nothing polls during it.

Per database (a temporary SQLite file; a fresh PostgreSQL database, dropped at the end):

mixed_confirmed_per_s   the same closed loop with mixed payments (P12): a third from the payer's
                    balance (a ledger hold taken with the payment, captured with the channel's
                    notification), the rest through the channel
routing_decisions_per_s  route() alone (pure, 4 candidates), and stored: Router.choose in its own
                    transaction (health and usage read, the decision and usage written)
confirmed_per_s     closed loop, --clients threads posting back to back for --seconds after a
                    warm-up: intents confirmed inside the window / window
api_create_per_s    the same window: POST /v1/payments answered 201 / window
backlog_at_end      created (201) before the window closed but not yet confirmed when it did
post_p50_ms / post_p99_ms   open loop at --rate payments/s for --seconds: POST latency from
                    the request's scheduled instant (a late sender counts its lateness)
confirm_p50_ms / confirm_p99_ms   the same payments: scheduled POST -> intent SUCCEEDED
achieved_rate       what the open loop really sent per second (201 answers)
*_cpu_ms_per_payment  server process (API + sandboxes + notifiers), load generator, and the rest
                    of the machine (PostgreSQL, kernel) CPU per confirmed payment, in the window
profile             (--profile) a separate open-loop pass under cProfile with per-thread CPU
                    clocks: server CPU per confirmed payment by component, and crypto calls
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import multiprocessing as mp
import os
import platform
import pstats
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Connection, make_url

from clearhouse.accounts.handlers import Holder, open_holder
from clearhouse.accounts.model import CustomerKind, KycLevel, Role
from clearhouse.api.app import create_api
from clearhouse.api.client import MerchantClient
from clearhouse.bootstrap import App, build_app, gateway_for, upgrade_database
from clearhouse.clock import SystemClock
from clearhouse.config import Settings
from clearhouse.db.schema import merchants, payment_intents
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.channels.registry import Channels
from clearhouse.gateway.customers import enrol
from clearhouse.gateway.merchants import create_merchant
from clearhouse.gateway.router import Router
from clearhouse.gateway.routing import Candidate, Health, Limits, route
from clearhouse.money import Money
from clearhouse.sandbox.runner import CHANNELS, SandboxCredentials, Sandboxes
from clearhouse.sandbox.serving import LateBound, ServedApp

DRAIN_TIMEOUT_S = 60.0
BUYERS = 16


# --- the system under test --------------------------------------------------------------------


@dataclass
class Stack:
    app: App
    base_url: str
    key_id: str
    secret: str
    buyers: tuple[str, ...] = ()  # funded buyer accounts, for mixed payments


@contextlib.contextmanager
def stack(
    url: str,
    credentials: SandboxCredentials,
    notify_interval: float,
    pool_size: int,
    api_workers: int = 0,
) -> Iterator[Stack]:
    """The system under test. ``api_workers`` 0: the API in this process with the sandboxes
    (the issue's setup); N: the API served by ``clearhouse serve --workers N`` beside them."""
    clock = SystemClock()
    app = build_app(Settings(database_url=url), clock, pool_size=pool_size)
    upgrade_database(app)
    sandboxes = Sandboxes(credentials, clock, auto_pay=True)
    apps = sandboxes.apps()
    try:
        with (
            ServedApp(apps["wechatpay"]) as wechat,
            ServedApp(apps["alipay"]) as ali,
            ServedApp(late := LateBound()) as api_server,
        ):
            document = credentials.merchant_document(
                {"wechatpay": wechat.base_url, "alipay": ali.base_url}
            )
            ports = ports_from_document(document, clock)
            gateway = gateway_for(app, ports, api_server.base_url)
            late.app = create_api(gateway)
            # As tests/gateway_support.add_merchant does (the bench must not import tests).
            _, key, _ = run_in_transaction(
                app.engine,
                lambda c: create_merchant(
                    c,
                    app.chart,
                    gateway.sealer,
                    name="Bench Tea House",
                    currency="CNY",
                    commission_bps=500,
                    webhook_url=None,
                    pii_key=b"bench",
                    now=clock.now(),
                ),
            )
            buyers = _funded_buyers(app, BUYERS, key.merchant_id)
            # The notifiers poll their queues; the interval bounds the confirmation latency.
            sandboxes.start(notify_interval)
            try:
                if api_workers:
                    with served_elsewhere(url, document, api_workers) as base_url:
                        yield Stack(app, base_url, key.key_id, key.secret, buyers)
                else:
                    yield Stack(app, api_server.base_url, key.key_id, key.secret, buyers)
            finally:
                sandboxes.stop()
                gateway.close()
    finally:
        app.close()


@contextlib.contextmanager
def served_elsewhere(url: str, document: dict[str, Any], workers: int) -> Iterator[str]:
    """``clearhouse serve --workers N`` on a free port, the sandboxes staying in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        channels = Path(tmp) / "channels.json"
        channels.write_text(json.dumps(document))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = dict(os.environ, CLEARHOUSE_DATABASE_URL=url)
        cmd = [sys.executable, "-m", "clearhouse", "serve", "--port", str(port)]
        cmd += ["--channels", str(channels), "--workers", str(workers)]
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("clearhouse serve did not start")
                time.sleep(0.2)
            yield base_url
        finally:
            server.terminate()
            server.wait(timeout=30)


# --- the load generator (a process of its own) ------------------------------------------------


class Sent(NamedTuple):
    payment_id: str | None
    status: int
    scheduled_wall: float  # when the POST was due (open loop) or sent (closed loop), epoch s
    latency_s: float  # answer - scheduled instant
    in_window: bool


class Cpu(NamedTuple):
    server_s: float
    client_s: float
    machine_s: float


class Phase(NamedTuple):
    sent: list[Sent]
    window: tuple[float, float]  # epoch seconds
    cpu: Cpu  # over the window
    due: int  # open loop: payments scheduled (a saturated server leaves some unsent)


def _payload(
    order: str, n: int, rng: random.Random, buyers: tuple[str, ...] = ()
) -> dict[str, object]:
    amount = rng.randint(300, 100_000)  # integer fen
    body: dict[str, object] = {
        "merchant_order_id": order,
        "amount": amount,
        "currency": "CNY",
        "description": "Oolong gift box",
        "channel": CHANNELS[n % 2],
        "method": "native",
        "settlement": "escrow",
    }
    if buyers:  # a mixed payment: a third from the buyer's balance
        balance = amount // 3
        body["legs"] = [
            {"method": "channel", "amount": amount - balance},
            {"method": "balance", "amount": balance, "account_id": buyers[n % len(buyers)]},
        ]
    return body


def _funded_buyers(app: App, count: int, merchant_id: str) -> tuple[str, ...]:
    """The merchant's buyers, with balances no bench run can spend (10,000,000.00 each)."""
    now = app.clock.now()
    accounts = []

    def buyer(conn: Connection, i: int) -> Holder:
        holder = open_holder(
            conn,
            app.chart,
            name=f"Bench buyer {i}",
            login=f"bench-buyer-{i}-{uuid.uuid4().hex[:6]}",
            kind=CustomerKind.PERSON,
            kyc_level=KycLevel.CLASS_III,
            roles=[Role.BUYER_BALANCE],
            currency="CNY",
            pii_key=b"bench",
            now=now,
        )
        enrol(conn, merchant_id, holder.customer_id, now)
        return holder

    for i in range(count):
        holder = run_in_transaction(app.engine, lambda c, i=i: buyer(c, i))
        app.ledger.post(
            f"bench-top-up-{holder.account_id}",
            "4002",
            "CNY",
            {"amount": 1_000_000_000},
            parties={"buyer": holder.account_id},
        )
        accounts.append(holder.account_id)
    return tuple(accounts)


def _client(base_url: str, key_id: str, secret: str) -> MerchantClient:
    http = httpx.Client(base_url=base_url, timeout=30)
    return MerchantClient(http, key_id, secret)


def _post(
    client: MerchantClient, order: str, n: int, rng: random.Random, buyers: tuple[str, ...] = ()
) -> tuple[int, str | None]:
    try:
        response = client.post("/v1/payments", _payload(order, n, rng, buyers))
    except httpx.HTTPError:
        return 0, None
    pid = response.json().get("id") if response.status_code == 201 else None
    return response.status_code, pid


def _cpu(server_pid: int) -> Cpu:
    fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    server = (int(fields[11]) + int(fields[12])) / tck  # utime + stime
    return Cpu(server, time.process_time(), _machine_busy_seconds())


def _machine_busy_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _window_cpu(server_pid: int, w0: float, w1: float, out: list[Cpu]) -> threading.Thread:
    """Sample CPU at the window's two edges (perf_counter instants) on a thread of its own."""

    def run() -> None:
        for edge in (w0, w1):
            time.sleep(max(0.0, edge - time.perf_counter()))
            out.append(_cpu(server_pid))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def load(
    mode: str,
    base_url: str,
    key_id: str,
    secret: str,
    tag: str,
    threads: int,
    warmup: float,
    seconds: float,
    rate: float,
    server_pid: int,
    results: Any,
    buyers: tuple[str, ...] = (),
) -> None:
    """One phase. ``closed``: each thread posts back to back. ``open``: payment n is due at
    start + n / rate whatever happened before it; thread i sends n = i, i + threads, ..."""
    sent: list[Sent] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.5  # every thread has its client before the first send
    wall0 = time.time() - time.perf_counter()  # perf_counter -> epoch seconds
    w0, w1 = start + warmup, start + warmup + seconds
    total = int((warmup + seconds) * rate)

    def closed_loop(i: int) -> None:
        client, rng, mine, n = _client(base_url, key_id, secret), random.Random(i), [], 0
        time.sleep(max(0.0, start - time.perf_counter()))
        while (t0 := time.perf_counter()) < w1:
            status, pid = _post(client, f"{tag}-{i}-{n}", i + n, rng, buyers)
            t1 = time.perf_counter()
            mine.append(Sent(pid, status, wall0 + t0, t1 - t0, w0 <= t1 < w1))
            n += 1
        with lock:
            sent.extend(mine)

    def open_loop(i: int) -> None:
        client, rng, mine = _client(base_url, key_id, secret), random.Random(i), []
        for n in range(i, total, threads):
            due = start + n / rate
            if time.perf_counter() > w1:
                break  # saturated: what is still due would only measure the queue; counted
            time.sleep(max(0.0, due - time.perf_counter()))
            status, pid = _post(client, f"{tag}-{n}", n, rng)
            mine.append(Sent(pid, status, wall0 + due, time.perf_counter() - due, due >= w0))
        with lock:
            sent.extend(mine)

    cpu: list[Cpu] = []
    sampler = _window_cpu(server_pid, w0, w1, cpu)
    target = closed_loop if mode == "closed" else open_loop
    workers = [threading.Thread(target=target, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sampler.join()
    used = Cpu(*(b - a for a, b in zip(cpu[0], cpu[1], strict=True)))
    results.put(Phase(sent, (wall0 + w0, wall0 + w1), used, total))


def run_phase(
    s: Stack,
    mode: str,
    threads: int,
    warmup: float,
    seconds: float,
    rate: float,
    buyers: tuple[str, ...] = (),
) -> Phase:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    tag = f"{mode}-{uuid.uuid4().hex[:8]}"
    args = (mode, s.base_url, s.key_id, s.secret, tag, threads, warmup, seconds, rate)
    proc = ctx.Process(target=load, args=(*args, os.getpid(), results, buyers))
    proc.start()
    phase: Phase = results.get(timeout=120 + warmup + seconds * 4)
    proc.join()
    return phase


# --- figures ----------------------------------------------------------------------------------


def confirmations(s: Stack, ids: set[str]) -> tuple[dict[str, float], int]:
    """Wait for the notifications still queued, then: payment id -> instant it SUCCEEDED
    (epoch s), and how many never did."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        with s.app.engine.connect() as c:
            pending = c.execute(
                select(func.count()).where(payment_intents.c.status == "PROCESSING")
            ).scalar_one()
        if pending == 0:
            break
        time.sleep(0.25)
    done: dict[str, float] = {}
    with s.app.engine.connect() as c:
        rows = c.execute(
            select(payment_intents.c.id, payment_intents.c.updated_at).where(
                payment_intents.c.status == "SUCCEEDED"
            )
        )
        for pid, updated in rows:
            if pid in ids:
                done[pid] = updated.timestamp()
    return done, len(ids) - len(done)


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def cpu_figures(cpu: Cpu, payments: int, window: float) -> dict[str, float]:
    """CPU in the window, per payment and in cores (server: API + sandboxes + notifiers; rest:
    PostgreSQL, the kernel and anything else on the machine)."""
    per = max(1, payments)
    return {
        "server_cores": round(cpu.server_s / window, 2),
        "machine_cores": round(cpu.machine_s / window, 2),
        "server_cpu_ms_per_payment": round(cpu.server_s * 1000 / per, 2),
        "client_cpu_ms_per_payment": round(cpu.client_s * 1000 / per, 2),
        "rest_cpu_ms_per_payment": round(
            (cpu.machine_s - cpu.server_s - cpu.client_s) * 1000 / per, 2
        ),
    }


def throughput(
    s: Stack, clients: int, warmup: float, seconds: float, buyers: tuple[str, ...] = ()
) -> dict[str, object]:
    phase = run_phase(s, "closed", clients, warmup, seconds, 0.0, buyers)
    w0, w1 = phase.window
    created = [x for x in phase.sent if x.status == 201 and x.payment_id]
    done, unconfirmed = confirmations(s, {x.payment_id for x in created if x.payment_id})
    confirmed = sum(1 for t in done.values() if w0 <= t < w1)
    in_window = [x for x in created if x.in_window]
    backlog = sum(
        1
        for x in created
        if x.scheduled_wall + x.latency_s < w1 and done.get(str(x.payment_id), w1) >= w1
    )
    return {
        "confirmed_per_s": round(confirmed / (w1 - w0), 1),
        "api_create_per_s": round(len(in_window) / (w1 - w0), 1),
        "api_create_p50_ms": ms(pct([x.latency_s for x in in_window], 0.5)),
        "backlog_at_end": backlog,
        "errors": sum(1 for x in phase.sent if x.status != 201),
        "never_confirmed": unconfirmed,
        # Per confirmed payment: the window also holds creates not yet confirmed (backlog).
        **cpu_figures(phase.cpu, confirmed, w1 - w0),
    }


def fixed_rate(
    s: Stack, rate: float, threads: int, warmup: float, seconds: float
) -> dict[str, object]:
    phase = run_phase(s, "open", threads, warmup, seconds, rate)
    measured = [x for x in phase.sent if x.in_window]
    warm = sum(1 for x in phase.sent if not x.in_window)
    ok = [x for x in measured if x.status == 201 and x.payment_id]
    done, unconfirmed = confirmations(s, {x.payment_id for x in ok if x.payment_id})
    confirm = [done[x.payment_id] - x.scheduled_wall for x in ok if x.payment_id in done]
    post = [x.latency_s for x in measured]
    return {
        "rate": rate,
        "achieved_rate": round(len(ok) / (phase.window[1] - phase.window[0]), 1),
        "post_p50_ms": ms(pct(post, 0.5)),
        "post_p99_ms": ms(pct(post, 0.99)),
        "post_max_ms": ms(max(post, default=None)),
        "confirm_p50_ms": ms(pct(confirm, 0.5)),
        "confirm_p99_ms": ms(pct(confirm, 0.99)),
        "errors": len(measured) - len(ok),
        "unsent": phase.due - warm - len(measured),
        "never_confirmed": unconfirmed,
        **cpu_figures(phase.cpu, len(ok), phase.window[1] - phase.window[0]),
    }


# --- profile ----------------------------------------------------------------------------------

# Self time of every function, by where it lives; the first match wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rsa_sign", ("RSAPrivateKey' objects>",)),
    ("rsa_verify", ("RSAPublicKey' objects>",)),
    ("aes_gcm", ("AESGCM' objects>",)),
    ("sqlite_driver", ("sqlite3.",)),
    ("psycopg_driver", ("/psycopg/", "/psycopg_binary/", "psycopg")),
    ("sqlalchemy", ("/sqlalchemy/",)),
    ("ledger", ("/clearhouse/ledger/",)),
    ("channel_adapters", ("/clearhouse/gateway/channels/",)),
    ("sandboxes", ("/clearhouse/sandbox/",)),
    ("api_layer", ("/clearhouse/api/",)),
    ("gateway_other", ("/clearhouse/",)),
    ("http_client", ("/httpx/", "/httpcore/")),
    ("http_server", ("/uvicorn/", "/h11/")),
    ("asgi_framework", ("/starlette/", "/fastapi/", "/anyio/")),
    ("pydantic", ("/pydantic", "pydantic_core")),
    ("json", ("/json/", "_json.")),
    ("event_loop_sockets", ("/asyncio/", "selectors.py", "socket", "select.epoll")),
    ("threading", ("threading.py", "queue.py", "_thread.")),
    ("crypto_other", ("/cryptography/", "hashlib", "hmac", "_hashlib", "base64", "secrets")),
)


def _category(key: tuple[str, int, str]) -> str:
    where = f"{key[0]}:{key[2]}"
    for name, needles in CATEGORIES:
        if any(n in where for n in needles):
            return name
    return "other"


class Profiler:
    """cProfile on every thread started while it is active, each timing with its thread's own
    CPU clock (so a thread waiting for the GIL or for I/O is not charged)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _hook(self, *_: Any) -> None:
        prof = cProfile.Profile(time.thread_time)
        with self._lock:
            self.profiles.append(prof)
        prof.enable()  # replaces this hook for the calling thread

    def __enter__(self) -> Profiler:
        threading.setprofile(self._hook)
        return self

    def __exit__(self, *_: object) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]

    def breakdown(self, confirmed: int, dump: str | None, top: int = 25) -> dict[str, object]:
        stats = pstats.Stats(self.profiles[0])
        for p in self.profiles[1:]:
            stats.add(p)
        if dump:
            stats.dump_stats(dump)  # for pstats / snakeviz: callers, call trees
        table: dict[str, float] = {}
        calls: dict[str, int] = {}
        raw = stats.stats  # type: ignore[attr-defined]
        for key, (_, ncalls, tottime, _, _) in raw.items():
            cat = _category(key)
            table[cat] = table.get(cat, 0.0) + tottime
            if cat in ("rsa_sign", "rsa_verify", "aes_gcm"):
                calls[cat] = calls.get(cat, 0) + ncalls
        total = sum(table.values())
        per = max(1, confirmed)
        hot = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
        print("top functions by self CPU (ms per confirmed payment):", file=sys.stderr)
        for (path, line, name), (_, nc, tt, ct, _) in hot:
            print(
                f"  {tt * 1000 / per:7.3f} self {ct * 1000 / per:7.3f} cum "
                f"{nc / per:6.1f} calls  {name} {Path(path).name}:{line}",
                file=sys.stderr,
            )
        return {
            "profiled_cpu_ms_per_payment": round(total * 1000 / per, 2),
            "ms_per_payment": {
                k: round(v * 1000 / per, 3) for k, v in sorted(table.items(), key=lambda kv: -kv[1])
            },
            "calls_per_payment": {k: round(v / per, 2) for k, v in calls.items()},
        }


def profiled(
    url: str,
    credentials: SandboxCredentials,
    args: argparse.Namespace,
) -> dict[str, object]:
    """The open-loop phase again on a fresh stack, every server thread under the profiler."""
    profiler = Profiler()
    with profiler, stack(url, credentials, args.notify_interval, args.pool_size) as s:
        phase = run_phase(s, "open", args.rate_threads, 0.0, args.rate_seconds, args.rate)
        ids = {x.payment_id for x in phase.sent if x.status == 201 and x.payment_id}
        done, _ = confirmations(s, ids)
    return profiler.breakdown(len(done), args.profile_out)


# --- routing --------------------------------------------------------------------------------


def routing_decisions(app: App, n: int) -> dict[str, object]:
    """Decisions per second: the pure choice, and the stored one (its own transaction each, as
    in a payment's store transaction: health and usage read, decision and usage written)."""
    now = app.clock.now()
    health = Health(now)
    cands = [
        Candidate(
            f"ch_{i}",
            "card",
            frozenset({"card"}),
            frozenset({"CNY"}),
            100,
            50 + i,
            health,
            Limits(single=5_000_000, daily=10**12, card_daily=5_000_000),
            i * 1_000,
            0,
        )
        for i in range(4)
    ]
    t0 = time.perf_counter()
    for i in range(n):
        route(cands, "card", 10_000, "CNY", 7, f"k{i}")
    pure = n / (time.perf_counter() - t0)
    channels = Channels({"wechatpay": _NoChannel(), "alipay": _NoChannel()})  # type: ignore[dict-item]
    router = Router(app.engine, app.clock, channels, app.ledger.zone)
    stored_n = max(1, n // 10)
    intents = _bare_intents(app, stored_n)
    t0 = time.perf_counter()
    for intent_id in intents:
        run_in_transaction(
            app.engine,
            lambda c, i=intent_id: router.choose(
                c, i, "wechatpay", "native", Money(100, "CNY"), None
            ),
        )
    stored = stored_n / (time.perf_counter() - t0)
    return {
        "routing_decisions_per_s": round(pure),
        "stored_routing_decisions_per_s": round(stored, 1),
        "decisions": n,
        "stored_decisions": stored_n,
    }


class _NoChannel:
    """Routing only reads a channel's terms; nothing is sent."""

    name = "none"

    def close_client(self) -> None:
        return None


def _bare_intents(app: App, count: int) -> list[str]:
    """Intents for decisions to belong to (the decision table refers to its payment)."""
    now = app.clock.now()
    with app.engine.begin() as conn:
        merchant = conn.execute(select(merchants.c.id).limit(1)).scalar_one()
        ids = [f"pay_routing_{uuid.uuid4().hex[:16]}" for _ in range(count)]
        conn.execute(
            payment_intents.insert(),
            [
                {
                    "id": i,
                    "merchant_id": merchant,
                    "merchant_order_id": i,
                    "amount": 100,
                    "currency": "CNY",
                    "description": "routing bench",
                    "settlement": "escrow",
                    "commission": 0,
                    "status": "CLOSED",
                    "request_hash": b"0" * 32,
                    "expires_at": now,
                    "refunded": 0,
                    "refund_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ],
        )
    return ids


# --- databases --------------------------------------------------------------------------------


def bench_database(
    url: str, credentials: SandboxCredentials, args: argparse.Namespace
) -> dict[str, object]:
    out: dict[str, object] = {}
    with stack(url, credentials, args.notify_interval, args.pool_size, args.api_workers) as s:
        out["throughput"] = throughput(s, args.clients, args.warmup, args.seconds)
        out["fixed_rate"] = fixed_rate(
            s, args.rate, args.rate_threads, args.warmup, args.rate_seconds
        )
        mixed = throughput(s, args.clients, args.warmup, args.seconds, s.buyers)
        out["mixed"] = {"mixed_confirmed_per_s": mixed.pop("confirmed_per_s"), **mixed}
        out["routing"] = routing_decisions(s.app, args.routing_decisions)
    if args.profile:
        out["profile"] = profiled(url, credentials, args)
    return out


@contextlib.contextmanager
def sqlite_url(_: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


@contextlib.contextmanager
def postgres_url(admin_url: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards (as bench/ledger.py does)."""
    admin = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"clearhouse_apibench_{uuid.uuid4().hex[:8]}"
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()


def machine(admin_url: str | None) -> dict[str, object]:
    info: dict[str, object] = {
        "arch": platform.machine(),
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        # The host is shared: what else was running when the run began.
        "loadavg_1m_at_start": os.getloadavg()[0],
    }
    if admin_url:
        eng = create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"))
        with eng.connect() as c:
            info["postgres"] = c.execute(text("SHOW server_version")).scalar_one()
        eng.dispose()
    return info


def source() -> str:
    """The commit measured, and whether src/ differed from it (others edit the tree)."""
    root = Path(__file__).resolve().parent.parent

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], check=False, cwd=root, capture_output=True, text=True)
        return done.stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "src")
    except OSError:
        return "unknown"
    return head + ("+dirty src" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per phase (smoke)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "CLEARHOUSE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--seconds", type=float, default=20.0, help="throughput window")
    parser.add_argument("--warmup", type=float, default=3.0, help="excluded from every window")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop client threads")
    parser.add_argument("--rate", type=float, default=150.0, help="open-loop payments per second")
    parser.add_argument("--rate-seconds", type=float, default=20.0)
    parser.add_argument("--rate-threads", type=int, default=32, help="open-loop sender threads")
    parser.add_argument(
        "--notify-interval", type=float, default=0.01, help="sandbox notifiers' polling, s"
    )
    parser.add_argument("--pool-size", type=int, default=5, help="the API's database pool")
    parser.add_argument(
        "--api-workers",
        type=int,
        default=0,
        help="0: the API in the bench process (the issue's setup); N: clearhouse serve --workers N",
    )
    parser.add_argument("--routing-decisions", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true", help="add a profiled open-loop pass")
    parser.add_argument("--profile-out", help="also write the merged pstats to this file")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rate_seconds, args.warmup = 3.0, 3.0, 1.0
    credentials = SandboxCredentials.generate()  # RSA key generation: once per run
    figures: dict[str, object] = {
        "machine": machine(None if args.skip_postgres else args.pg_url),
        "source": source(),
        "setup": {
            "process": (
                f"API in clearhouse serve --workers {args.api_workers}; sandboxes + notifiers "
                "in the bench process; load in another"
                if args.api_workers
                else "API + both sandboxes + notifiers in one process; load in another"
            ),
            "clients": args.clients,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "rate_seconds": args.rate_seconds,
            "notify_interval_s": args.notify_interval,
            "pool_size": args.pool_size,
        },
    }
    for name, url_of in (("sqlite", sqlite_url), ("postgres", postgres_url)):
        if name == "postgres" and args.skip_postgres:
            continue
        try:
            with url_of(args.pg_url) as url:
                figures[name] = bench_database(url, credentials, args)
        except Exception as exc:  # one database failing still reports the other's figures
            figures[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
