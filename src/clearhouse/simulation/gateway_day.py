"""A marketplace day through the merchant HTTP API, with the channels' sandboxes injecting
faults: the story behind ``clearhouse demo``.

Everything runs in this process over real HTTP on local ports: the merchant API, every channel
sandbox (WeChat Pay, Alipay, Stripe, PayPal, two quick pay acquirers over one card network),
and the marketplace's webhook receiver. The day mixes QR payments, bank-card payments routed
between the acquirers, combined carts of the marketplace and its seller, mixed payments
(balance + channel), and a shop abroad paid through Stripe and PayPal. One simulated clock
drives it all (signature windows, the channels' retry schedules, the poller), so a seed tells
the same story every run.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request, Response
from sqlalchemy import func, or_, select

from clearhouse import ids
from clearhouse.api.app import create_api
from clearhouse.api.client import MerchantClient
from clearhouse.bootstrap import App, gateway_for
from clearhouse.clock import FixedClock
from clearhouse.db.schema import ledger_requests
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.service import Gateway
from clearhouse.outbox.webhooks import SIGNATURE_HEADER, verify_signature
from clearhouse.sandbox.faults import Fault, FaultPlan, planted_at
from clearhouse.sandbox.runner import CHANNELS, SandboxCredentials, Sandboxes
from clearhouse.sandbox.serving import LateBound, ServedApp
from clearhouse.simulation.cast import Buyer, Merchants, open_buyers, open_merchants
from clearhouse.wallet.bankwire.adapter import bank_from_document

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
    Fault.BILL_AMOUNT: 40_000,
    Fault.BILL_STATUS: 60_000,
    Fault.FX_RATE_DRIFT: 250_000,
}
# The shop abroad charges in USD; its Stripe account settles in Hong Kong dollars, so each
# Stripe payment is converted at a rate the gateway records.
STRIPE_SETTLEMENT = "hkd"
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
    kinds: Counter[str] = field(default_factory=Counter)  # cart, mixed, card
    routed: Counter[str] = field(default_factory=Counter)  # card payments by chosen channel
    movements: Counter[str] = field(default_factory=Counter)  # top-ups, transfers, withdrawals


@dataclass(frozen=True)
class DayStack:
    """What is still up when the day's story is over: the sandboxes (serving their bills), the
    gateway and the channels document that reaches them."""

    sandboxes: Sandboxes
    gateway: Gateway
    document: dict[str, Any]


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
) -> Iterator[tuple[Sandboxes, Gateway, ServedApp, ServedApp, dict[str, Any]]]:
    sandboxes = Sandboxes(
        SandboxCredentials.generate(),
        clock,
        plan,
        timeout_delay_s=SANDBOX_SLOW_ANSWER_S,
        stripe_settlement_currency=STRIPE_SETTLEMENT,
    )
    apps = sandboxes.apps()
    late = LateBound()
    with ExitStack() as stack:
        stack.callback(sandboxes.close)  # last: the notifiers' connections
        served = (*CHANNELS, "bank")
        urls = {name: stack.enter_context(ServedApp(apps[name])).base_url for name in served}
        api = stack.enter_context(ServedApp(late))
        hooks = stack.enter_context(ServedApp(receiver.app))
        sandboxes.notify_to(api.base_url)
        document = sandboxes.credentials.merchant_document(urls)
        ports = ports_from_document(document, clock, timeout=ADAPTER_TIMEOUT_S)
        bank = bank_from_document(document, clock, timeout=ADAPTER_TIMEOUT_S)
        gateway = gateway_for(app, ports, api.base_url, bank=bank)
        late.app = create_api(gateway)
        stack.callback(gateway.close)
        yield sandboxes, gateway, api, hooks, document


def run_gateway_day(
    app: App,
    clock: FixedClock,
    *,
    payments: int = 48,
    seed: int = 7,
    faults: Mapping[Fault, int] | None = None,
    after: Callable[[DayStack], None] | None = None,
) -> GatewayDay:
    """Play the day. ``faults``: parts per million of attempts meeting each (the demo's by
    default). ``after`` runs once the story is told, with the sandboxes still serving (the
    next days' reconciliation pulls their bills)."""
    rng = random.Random(seed)
    plan = FaultPlan(seed, dict(DEMO_FAULTS if faults is None else faults))
    opening = clock.now()
    day = GatewayDay(opening.astimezone(SHANGHAI).date())
    receiver = _Receiver(clock)
    millis = lambda: int(clock.now().timestamp() * 1000)  # noqa: E731
    with ids.seeded(seed, millis), _stack(app, clock, plan, receiver) as stack:
        sandboxes, gateway, api, hooks, document = stack
        cast = open_merchants(app, gateway, f"{hooks.base_url}/hooks")
        receiver.secret = cast.marketplace_webhook_secret.encode()
        with httpx.Client(base_url=api.base_url, timeout=10) as http:
            now = lambda: clock.now().timestamp()  # noqa: E731
            key = cast.marketplace_key
            market = MerchantClient(http, key.key_id, key.secret, now)
            shop = MerchantClient(http, cast.shop_key.key_id, cast.shop_key.secret, now)
            # The cards are bound before the faults switch on: set-up is not the story. The
            # platform's capital is in its bank account, from which withdrawals are paid.
            sandboxes.set_faults(FaultPlan(seed))
            buyers = open_buyers(app, market, sandboxes, cast.marketplace_id)
            sandboxes.set_faults(plan)
            app.ledger.post("capital", "9001", "CNY", {"amount": 10_000_000})
            story = _Story(rng, clock, {"market": market, "shop": shop}, sandboxes, gateway, day)
            story.cast, story.buyers = cast, buyers
            story.play(opening, payments)
            for who, payment_id in story.payment_ids:
                day.payments.append(story.clients[who].get(f"/v1/payments/{payment_id}").json())
            for who, refund_id in story.refund_ids:
                day.refunds.append(story.clients[who].get(f"/v1/refunds/{refund_id}").json())
            for payment_id in story.routed:
                decision = market.get(f"/v1/payments/{payment_id}/routing").json()
                day.routed[decision["chosen"]] += 1
            for withdrawal_id in story.withdrawal_ids:
                status = market.get(f"/v1/withdrawals/{withdrawal_id}").json()["status"]
                day.movements[f"withdrawal {status.lower()}"] += 1
        for view in day.payments:
            attempt_id, channel = view["attempt"]["id"], view["attempt"]["channel"]
            day.planted.update(
                f.value for f in Fault if planted_at(f, channel) and plan.hits(f, attempt_id)
            )
        for name, notifier in sandboxes.notifiers.items():
            day.notifications[name] = Counter(log.outcome.split(":")[0] for log in notifier.log)
        day.webhooks_received, day.webhooks_verified = receiver.received, receiver.verified
        if after is not None:
            after(DayStack(sandboxes, gateway, document))
    with app.engine.connect() as conn:
        day.paid_entries = int(
            conn.execute(
                select(func.count())
                .select_from(ledger_requests)
                .where(
                    or_(
                        ledger_requests.c.key.like("pay:%:paid"),
                        ledger_requests.c.key.like("topup:%:paid"),
                    )
                )
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
        clients: dict[str, MerchantClient],
        sandboxes: Sandboxes,
        gateway: Gateway,
        day: GatewayDay,
    ) -> None:
        self.rng, self.clock, self.clients = rng, clock, clients
        self.sandboxes, self.gateway, self.day = sandboxes, gateway, day
        self.queue: list[tuple[datetime, int, str, dict[str, Any]]] = []
        self.seq = 0
        self.payment_ids: list[tuple[str, str]] = []  # (merchant, payment id)
        self.refund_ids: list[tuple[str, str]] = []
        self.routed: list[str] = []  # card payments routed between the acquirers
        self.withdrawal_ids: list[str] = []
        self.cast: Merchants | None = None
        self.buyers: list[Buyer] = []

    def at(self, when: datetime, kind: str, **data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, kind, data))

    def play(self, opening: datetime, payments: int) -> None:
        # The buyers top up their balances first thing; one pays another back at noon; in the
        # evening two withdraw to their cards, paid in the bank's batches.
        for k, buyer in enumerate(self.buyers):
            self.at(opening + timedelta(minutes=5 + k), "topup", buyer=buyer, n=k)
        self.at(opening + timedelta(hours=3), "transfer")
        for k, buyer in enumerate(self.buyers[:2]):
            self.at(opening + timedelta(hours=10, minutes=k), "withdraw", buyer=buyer, n=k)
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
            if now.minute % 15 == 0:  # the payout bank's batches, as `clearhouse serve` runs them
                self.gateway.wallet.withdrawals.run_batches(now)

    def _create(self, n: int) -> None:
        roll = self.rng.random()
        if roll < 0.40:
            self._qr(n)
        elif roll < 0.55:
            self._card(n)
        elif roll < 0.65:
            self._cart(n)
        elif roll < 0.75:
            self._mixed(n)
        elif roll < 0.88:
            self._abroad(n, "stripe")
        else:
            self._abroad(n, "paypal")

    def _order(self, n: int, **fields: Any) -> dict[str, Any]:
        product, amount = self.rng.choice(PRODUCTS)
        escrow = self.rng.random() < 0.7
        return {
            "merchant_order_id": f"T{n:05d}",
            "amount": amount,
            "currency": "CNY",
            "description": product,
            "channel": self.rng.choice(["wechatpay", "alipay"]),
            "method": "native",
            "settlement": "escrow" if escrow else "instant",
        } | fields

    def _post(self, who: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        response = self.clients[who].post(path, body)
        if response.status_code not in (200, 201):
            self.day.refusals[response.json()["error"]["code"]] += 1
            return None
        return dict(response.json())

    def _qr(self, n: int) -> None:
        view = self._post("market", "/v1/payments", self._order(n))
        if view is not None:
            self._taken("market", view)

    def _card(self, n: int) -> None:
        """A bank-card payment, routed between the acquirers the card is signed on; above the
        channel's exemption the payer confirms with the code the bank texts."""
        buyer = self.rng.choice(self.buyers)
        body = self._order(n, channel="card", method="card", payer_id=buyer.card_id)
        response = self.clients["market"].post("/v1/payments", body)
        if response.status_code == 402:  # VERIFICATION_REQUIRED: the code is sent, then typed
            payment_id = response.json()["error"]["payment_id"]
            sent = self._post("market", f"/v1/payments/{payment_id}/sms", {})
            if sent is None:
                return
            bank = self.sandboxes.quickpay_b if sent["channel"] == "quickpay_b" else None
            code = (bank or self.sandboxes.quickpay).last_sms_code(buyer.phone)
            response = self.clients["market"].post("/v1/payments", body | {"verification": code})
        if response.status_code != 201:
            self.day.refusals[response.json()["error"]["code"]] += 1
            return
        view = response.json()
        self.payment_ids.append(("market", view["id"]))
        self.routed.append(view["id"])
        self.day.kinds["card"] += 1
        self._after_paid("market", view)

    def _cart(self, n: int) -> None:
        """One payment for a cart: an order of the marketplace and one of its seller."""
        assert self.cast is not None
        first, second = self._order(n), self._order(n)
        body = {
            "merchant_group_id": f"C{n:05d}",
            "currency": "CNY",
            "channel": first["channel"],
            "method": "native",
            "settlement": "escrow",
            "orders": [
                {k: first[k] for k in ("merchant_order_id", "amount", "description")},
                {
                    "merchant_order_id": f"S{n:05d}",
                    "amount": second["amount"],
                    "description": second["description"],
                    "merchant_id": self.cast.seller_id,
                },
            ],
        }
        group = self._post("market", "/v1/payment-groups", body)
        if group is None:
            return
        self.day.kinds["cart"] += 1
        views = group["payments"]
        for view in views:
            self.payment_ids.append(("market", view["id"]))
        self._pay_later(views[0]["attempt"], refunds=[("market", v["id"]) for v in views])

    def _mixed(self, n: int) -> None:
        """A third from the buyer's balance, the rest by QR; the balance is refunded first."""
        buyer = self.rng.choice(self.buyers)
        order = self._order(n, settlement="escrow")
        balance = order["amount"] // 3
        order["legs"] = [
            {"method": "channel", "amount": order["amount"] - balance},
            {"method": "balance", "amount": balance, "account_id": buyer.account_id},
        ]
        view = self._post("market", "/v1/payments", order)
        if view is not None:
            self.day.kinds["mixed"] += 1
            self._taken("market", view)

    def _abroad(self, n: int, channel: str) -> None:
        _, amount = self.rng.choice(PRODUCTS)
        body = {
            "merchant_order_id": f"U{n:05d}",
            "amount": amount // 7,  # USD cents, roughly
            "currency": "USD",
            "description": "Tea sampler, shipped abroad",
            "settlement": "instant",
        }
        if channel == "stripe":
            card = "pm_card_chargeDeclined" if self.rng.random() < 0.08 else "pm_card_visa"
            body |= {"channel": "stripe", "method": "card", "payer_id": card}
        else:
            body |= {"channel": "paypal", "method": "page"}
        view = self._post("shop", "/v1/payments", body)
        if view is not None:
            self._taken("shop", view)

    def _taken(self, who: str, view: dict[str, Any]) -> None:
        self.payment_ids.append((who, view["id"]))
        if view["status"] == "PROCESSING":
            self._pay_later(view["attempt"], refunds=[(who, view["id"])])
        else:
            self._after_paid(who, view)

    def _pay_later(self, attempt: dict[str, Any], refunds: list[tuple[str, str]]) -> None:
        # A payer can only pay a code the merchant received; most do within minutes.
        if not attempt["credential"] or self.rng.random() >= 0.85:
            return
        now = self.clock.now()
        delay = timedelta(seconds=self.rng.randrange(20, 600))
        self.at(now + delay, "pay", channel=attempt["channel"], attempt_id=attempt["id"])
        for who, payment_id in refunds:
            self._later_steps(who, payment_id, now)

    def _after_paid(self, who: str, view: dict[str, Any]) -> None:
        if view["status"] == "SUCCEEDED":
            self._later_steps(who, view["id"], self.clock.now())

    def _later_steps(self, who: str, payment_id: str, now: datetime) -> None:
        roll = self.rng.random()
        later = now + timedelta(hours=1)
        if roll < 0.12:
            self.at(later, "refund", who=who, payment_id=payment_id, share=1)
        elif roll < 0.27:
            self.at(later, "refund", who=who, payment_id=payment_id, share=3)
        if self.rng.random() < 0.6:
            self.at(later + timedelta(minutes=30), "complete", who=who, payment_id=payment_id)

    def _topup(self, buyer: Buyer, n: int) -> None:
        """The buyer tops up their balance by QR code, and pays it."""
        body = {
            "topup_id": f"TOP{n:03d}",
            "account_id": buyer.account_id,
            "amount": 300_000,
            "currency": "CNY",
            "channel": "wechatpay",
            "method": "native",
        }
        view = self._post("market", "/v1/topups", body)
        if view is not None:
            self.day.movements["top-up"] += 1
            self.payment_ids.append(("market", view["id"]))
            now = self.clock.now()
            self.at(
                now + timedelta(seconds=30),
                "pay",
                channel="wechatpay",
                attempt_id=view["attempt"]["id"],
            )

    def _transfer(self) -> None:
        payer, payee = self.buyers[0], self.buyers[1]
        body = {
            "transfer_id": "TR001",
            "from_account_id": payer.account_id,
            "to_account_id": payee.account_id,
            "amount": 20_000,
            "currency": "CNY",
            "description": "half of the gift box",
        }
        if self._post("market", "/v1/transfers", body) is not None:
            self.day.movements["transfer"] += 1

    def _withdraw(self, buyer: Buyer, n: int) -> None:
        body = {
            "withdrawal_id": f"WD{n:03d}",
            "account_id": buyer.account_id,
            "card_id": buyer.card_id,
            "amount": 50_000,
            "currency": "CNY",
        }
        view = self._post("market", "/v1/withdrawals", body)
        if view is not None:
            self.withdrawal_ids.append(view["id"])

    def _pay(self, channel: str, attempt_id: str) -> None:
        try:
            self.sandboxes.pay(channel, attempt_id)
        except Exception as exc:  # the order closed first: the payer is told at the channel
            self.day.refusals[f"payer: {type(exc).__name__}"] += 1

    def _refund(self, who: str, payment_id: str, share: int) -> None:
        view = self.clients[who].get(f"/v1/payments/{payment_id}").json()
        amount = view["amount"] // share
        body = {"amount": amount, "currency": view["currency"], "reason": "returned"}
        refund = self._post(who, f"/v1/payments/{payment_id}/refunds", body)
        if refund is not None:
            self.refund_ids.append((who, refund["id"]))

    def _complete(self, who: str, payment_id: str) -> None:
        view = self.clients[who].get(f"/v1/payments/{payment_id}").json()
        if view["settlement"] == "escrow" and view["status"] == "SUCCEEDED":
            self._post(who, f"/v1/payments/{payment_id}/complete", {})


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
        "kinds": dict(day.kinds),
        "card_payments_routed": dict(day.routed),
        "movements": dict(day.movements),
        "paid_payments": sum(v["status"] in ("SUCCEEDED", "COMPLETED") for v in day.payments),
        "paid_entries": day.paid_entries,
        "webhooks": {"received": day.webhooks_received, "verified": day.webhooks_verified},
    }
