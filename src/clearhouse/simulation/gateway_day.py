"""A marketplace day through the merchant HTTP API, with the channels' sandboxes injecting
faults: the story behind ``clearhouse demo``.

Everything runs in this process over real HTTP on local ports: the merchant API, the WeChat Pay
and Alipay sandboxes, and a merchant's webhook receiver. One simulated clock drives it all
(signature windows, the channels' notification retry schedules, the poller), so a seed tells
the same story every run.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request, Response
from sqlalchemy import func, select

from clearhouse import ids
from clearhouse.api.app import create_api
from clearhouse.api.client import MerchantClient
from clearhouse.bootstrap import App, gateway_for
from clearhouse.clock import FixedClock
from clearhouse.db.schema import ledger_requests
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.merchants import create_merchant
from clearhouse.gateway.service import Gateway
from clearhouse.outbox.webhooks import SIGNATURE_HEADER, verify_signature
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.runner import SandboxCredentials, Sandboxes
from clearhouse.sandbox.serving import LateBound, ServedApp

SHANGHAI = ZoneInfo("Asia/Shanghai")
PRODUCTS = [
    ("Longjing 250 g", 12_800),
    ("Pu'er cake 357 g", 25_600),
    ("Tieguanyin 125 g", 8_800),
    ("Jasmine pearls 100 g", 6_600),
    ("Gaiwan set", 39_900),
    ("Dian hong 200 g", 9_900),
    ("Sample pack", 1_999),
    ("Yixing clay teapot", 128_000),
]
# Parts per million of attempts meeting each fault: far more than a real channel day, so a
# short demo shows every kind.
DEMO_FAULTS = {
    Fault.TIMEOUT: 50_000,
    Fault.LOST_NOTIFICATION: 80_000,
    Fault.DUPLICATE_NOTIFICATION: 100_000,
    Fault.REORDERED_NOTIFICATION: 80_000,
    Fault.WRONG_FEE: 40_000,
    Fault.LATE_RESULT: 40_000,
    Fault.DUPLICATE_PAYMENT: 20_000,
}
ADAPTER_TIMEOUT_S = 0.3
SANDBOX_SLOW_ANSWER_S = 0.6
TICK = timedelta(minutes=1)


@dataclass
class GatewayDay:
    business_date: date
    payments: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    planted: Counter[str] = field(default_factory=Counter)
    notifications: dict[str, Counter[str]] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)  # API error codes met
    paid_entries: int = 0  # ledger entries booking a payment: one per paid attempt, or a bug
    webhooks_received: int = 0
    webhooks_verified: int = 0


class _Receiver:
    """The merchant's webhook endpoint: keeps what arrives and checks its signature."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.secret = b""
        self.received = 0
        self.verified = 0
        self.app = FastAPI()
        self.app.post("/hooks")(self.hook)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        self.received += 1
        header = request.headers.get(SIGNATURE_HEADER, "")
        if verify_signature(self.secret, body, header, int(self.clock.now().timestamp())):
            self.verified += 1
            return Response(status_code=204)
        return Response(status_code=400)


@contextmanager
def _stack(
    app: App, clock: FixedClock, plan: FaultPlan, receiver: _Receiver
) -> Iterator[tuple[Sandboxes, Gateway, ServedApp, ServedApp]]:
    sandboxes = Sandboxes(
        SandboxCredentials.generate(), clock, plan, timeout_delay_s=SANDBOX_SLOW_ANSWER_S
    )
    apps = sandboxes.apps()
    late = LateBound()
    with ExitStack() as stack:
        wechat = stack.enter_context(ServedApp(apps["wechatpay"]))
        ali = stack.enter_context(ServedApp(apps["alipay"]))
        api = stack.enter_context(ServedApp(late))
        hooks = stack.enter_context(ServedApp(receiver.app))
        document = sandboxes.credentials.merchant_document(
            {"wechatpay": wechat.base_url, "alipay": ali.base_url}
        )
        ports = ports_from_document(document, clock, timeout=ADAPTER_TIMEOUT_S)
        gateway = gateway_for(app, ports, api.base_url)
        late.app = create_api(gateway)
        stack.callback(gateway.close)
        yield sandboxes, gateway, api, hooks


def run_gateway_day(
    app: App, clock: FixedClock, *, payments: int = 48, seed: int = 7
) -> GatewayDay:
    rng = random.Random(seed)
    plan = FaultPlan(seed, dict(DEMO_FAULTS))
    opening = clock.now()
    day = GatewayDay(opening.astimezone(SHANGHAI).date())
    receiver = _Receiver(clock)
    millis = lambda: int(clock.now().timestamp() * 1000)  # noqa: E731
    with ids.seeded(seed, millis), _stack(app, clock, plan, receiver) as stack:
        sandboxes, gateway, api, hooks = stack
        _merchant, key, secret = run_in_transaction(
            app.engine,
            lambda c: create_merchant(
                c,
                app.chart,
                gateway.sealer,
                name="Mingqian Tea House",
                currency="CNY",
                commission_bps=500,
                webhook_url=f"{hooks.base_url}/hooks",
                pii_key=app.settings.pii_key,
                now=clock.now(),
            ),
        )
        receiver.secret = secret.encode()
        with httpx.Client(base_url=api.base_url, timeout=10) as http:
            client = MerchantClient(http, key.key_id, key.secret, lambda: clock.now().timestamp())
            story = _Story(rng, clock, client, sandboxes, gateway, day)
            story.play(opening, payments)
            for payment_id in story.payment_ids:
                day.payments.append(client.get(f"/v1/payments/{payment_id}").json())
            for refund_id in story.refund_ids:
                day.refunds.append(client.get(f"/v1/refunds/{refund_id}").json())
        for view in day.payments:
            attempt_id = view["attempt"]["id"]
            day.planted.update(f.value for f in Fault if plan.hits(f, attempt_id))
        for name, notifier in sandboxes.notifiers.items():
            day.notifications[name] = Counter(log.outcome.split(":")[0] for log in notifier.log)
        day.webhooks_received, day.webhooks_verified = receiver.received, receiver.verified
    with app.engine.connect() as conn:
        day.paid_entries = int(
            conn.execute(
                select(func.count())
                .select_from(ledger_requests)
                .where(ledger_requests.c.key.like("pay:att_%:paid"))
            ).scalar_one()
        )
    return day


class _Story:
    """Orders through the day: created through the API, paid (or abandoned) by payers at the
    channels, some refunded, escrow orders completed when delivered."""

    def __init__(
        self,
        rng: random.Random,
        clock: FixedClock,
        client: MerchantClient,
        sandboxes: Sandboxes,
        gateway: Gateway,
        day: GatewayDay,
    ) -> None:
        self.rng, self.clock, self.client = rng, clock, client
        self.sandboxes, self.gateway, self.day = sandboxes, gateway, day
        self.queue: list[tuple[datetime, int, str, dict[str, Any]]] = []
        self.seq = 0
        self.payment_ids: list[str] = []
        self.refund_ids: list[str] = []

    def at(self, when: datetime, kind: str, **data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, kind, data))

    def play(self, opening: datetime, payments: int) -> None:
        for i in range(payments):
            self.at(opening + timedelta(seconds=self.rng.randrange(11 * 3600)), "create", n=i)
        # Two hours past the last order: unpaid orders expire and close, the channels' retries
        # and the poller run out what is still open.
        horizon = opening + timedelta(hours=13)
        now = opening
        while now < horizon:
            now += TICK
            while self.queue and self.queue[0][0] <= now:
                when, _, kind, data = heapq.heappop(self.queue)
                self.clock.set(when)
                getattr(self, f"_{kind}")(**data)
            self.clock.set(now)
            self.sandboxes.run_due()
            self.gateway.poller.run_once()
            self.gateway.webhooks.deliver_due()

    def _create(self, n: int) -> None:
        product, amount = self.rng.choice(PRODUCTS)
        channel = self.rng.choice(["wechatpay", "alipay"])
        escrow = self.rng.random() < 0.7
        response = self.client.post(
            "/v1/payments",
            {
                "merchant_order_id": f"T{n:05d}",
                "amount": amount,
                "currency": "CNY",
                "description": product,
                "channel": channel,
                "method": "native",
                "settlement": "escrow" if escrow else "instant",
            },
        )
        if response.status_code != 201:
            self.day.refusals[response.json()["error"]["code"]] += 1
            return
        view = response.json()
        self.payment_ids.append(view["id"])
        now = self.clock.now()
        # A payer can only pay a code the merchant received; most do within minutes.
        if view["attempt"]["credential"] and self.rng.random() < 0.85:
            delay = timedelta(seconds=self.rng.randrange(20, 600))
            self.at(now + delay, "pay", channel=channel, attempt_id=view["attempt"]["id"])
            roll = self.rng.random()
            if roll < 0.12:
                self.at(now + timedelta(hours=1), "refund", payment_id=view["id"], share=1)
            elif roll < 0.27:
                self.at(now + timedelta(hours=1), "refund", payment_id=view["id"], share=3)
            if escrow and self.rng.random() < 0.6:
                self.at(now + timedelta(hours=1, minutes=30), "complete", payment_id=view["id"])

    def _pay(self, channel: str, attempt_id: str) -> None:
        try:
            self.sandboxes.pay(channel, attempt_id)
        except Exception as exc:  # the order closed first: the payer is told at the channel
            self.day.refusals[f"payer: {type(exc).__name__}"] += 1

    def _refund(self, payment_id: str, share: int) -> None:
        view = self.client.get(f"/v1/payments/{payment_id}").json()
        amount = view["amount"] // share
        response = self.client.post(
            f"/v1/payments/{payment_id}/refunds",
            {"amount": amount, "currency": "CNY", "reason": "returned" if share == 1 else "part"},
        )
        if response.status_code == 201:
            self.refund_ids.append(response.json()["id"])
        else:
            self.day.refusals[response.json()["error"]["code"]] += 1

    def _complete(self, payment_id: str) -> None:
        response = self.client.post(f"/v1/payments/{payment_id}/complete", {})
        if response.status_code != 200:
            self.day.refusals[response.json()["error"]["code"]] += 1


def summary(day: GatewayDay) -> dict[str, Any]:
    """Counts for people and scripts: payments by channel and status, refunds by status."""
    by_channel: dict[str, Counter[str]] = {}
    for view in day.payments:
        by_channel.setdefault(view["attempt"]["channel"], Counter())[view["status"]] += 1
    return {
        "business_date": day.business_date.isoformat(),
        "payments": {ch: dict(c) for ch, c in sorted(by_channel.items())},
        "refunds": dict(Counter(r["status"] for r in day.refunds)),
        "faults_planted": dict(day.planted),
        "notifications": {ch: dict(c) for ch, c in day.notifications.items()},
        "refusals": dict(day.refusals),
        "paid_payments": sum(v["status"] in ("SUCCEEDED", "COMPLETED") for v in day.payments),
        "paid_entries": day.paid_entries,
        "webhooks": {"received": day.webhooks_received, "verified": day.webhooks_verified},
    }
