"""Scheduled pulls against the real sandboxes served over HTTP, built from the same channels
document ``clearhouse serve`` reads, into the store on SQLite and PostgreSQL: every channel's day
stored once, retries with backoff after 5xx and timeouts, not ready before the expected time,
the missing alert after it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from clearhouse.bootstrap import App
from clearhouse.clock import FixedClock
from clearhouse.db.schema import statement_files
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.channels.port import PayMethod, PayOrder, RefundOrder
from clearhouse.gateway.channels.quickpay import CardElements
from clearhouse.gateway.channels.quickpay.adapter import QuickpayAdapter
from clearhouse.money import Money
from clearhouse.reconciliation import formats
from clearhouse.reconciliation.pull import MISSING_CODE, Puller, PullStatus, Retry
from clearhouse.reconciliation.store import StatementStore
from clearhouse.sandbox.quickpay import TEST_CARDS
from clearhouse.sandbox.runner import SandboxCredentials, Sandboxes
from clearhouse.sandbox.serving import ServedApp

BEIJING = ZoneInfo("Asia/Shanghai")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
SERVED = ("wechatpay", "alipay", "stripe", "paypal", "bank")
RETRY = Retry(attempts=3, first_delay=1.0, factor=2.0)
VISA = "pm_card_visa"


class Flaky:
    """An ASGI wrapper that answers the next requests to a path as planned: ``"500"`` (a bare
    server error) or ``"slow"`` (the real answer, after the client has given up)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.plan: dict[str, list[str]] = {}
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            self.seen.append(path)
            todo = next((v for k, v in self.plan.items() if path.startswith(k) and v), None)
            action = todo.pop(0) if todo else None
            if action == "500":
                await send({"type": "http.response.start", "status": 500, "headers": []})
                await send({"type": "http.response.body", "body": b"upstream failed"})
                return
            if action == "slow":
                await asyncio.sleep(1.0)
        await self.app(scope, receive, send)


@dataclass
class Stack:
    sandboxes: Sandboxes
    flaky: dict[str, Flaky]
    document: dict[str, Any]
    store: StatementStore
    puller: Puller
    sleeps: list[float]


@pytest.fixture(scope="module")
def credentials() -> SandboxCredentials:
    return SandboxCredentials.generate()


@pytest.fixture
def stack(
    app: App, clock: FixedClock, credentials: SandboxCredentials, tmp_path: Path
) -> Iterator[Stack]:
    sandboxes = Sandboxes(credentials, clock, timeout_delay_s=1.0)
    apps = sandboxes.apps()
    flaky = {name: Flaky(apps[name]) for name in SERVED}
    with ExitStack() as stack:
        urls = {name: stack.enter_context(ServedApp(flaky[name])).base_url for name in SERVED}
        document = credentials.merchant_document(urls)
        store = StatementStore(app.engine, tmp_path / "recon", clock)
        sleeps: list[float] = []
        puller = Puller.from_document(
            store, document, clock, timeout=0.5, retry=RETRY, sleep=sleeps.append
        )
        yield Stack(sandboxes, flaky, document, store, puller, sleeps)
        puller.close()
        sandboxes.close()


def beijing_day(clock: FixedClock) -> date:
    return clock.now().astimezone(BEIJING).date()


def pay_in_china(stack: Stack, clock: FixedClock) -> None:
    """One paid order at WeChat Pay and one at Alipay, and a credit at the bank, now."""
    ports = ports_from_document(stack.document, clock)
    for channel, attempt in (("wechatpay", "att-w1"), ("alipay", "att-a1")):
        order = PayOrder(
            attempt,
            Money(12_800, "CNY"),
            "tea",
            PayMethod.NATIVE,
            "https://shop.example/notify",
            clock.now() + timedelta(hours=1),
        )
        assert ports[channel].pay(order).error_code is None
        stack.sandboxes.pay(channel, attempt)
    for port in ports.values():
        port.close_client()  # type: ignore[attr-defined]
    stack.sandboxes.bank.receive(Money(50_000, "CNY"), "Alipay", "payout 0301")


def rows(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(statement_files)).scalar_one())


def test_every_channel_pulls_its_day_once(app: App, clock: FixedClock, stack: Stack) -> None:
    pay_in_china(stack, clock)
    china_day = beijing_day(clock)
    stripe = ports_from_document(stack.document, clock)["stripe"]
    stripe_pay = PayOrder(
        "att-s1", Money(1_234, "USD"), "tea", PayMethod.CARD, "", clock.now(), "pm_card_visa"
    )
    paid = stripe.pay(stripe_pay)
    assert paid.error_code is None
    stripe.close_client()  # type: ignore[attr-defined]
    # Stripe's day is the day the payment was made in the reporting zone, not its payout's.
    stripe_day = clock.now().astimezone(LOS_ANGELES).date()
    clock.advance(timedelta(days=2))
    payout = stack.sandboxes.stripe.run_payout("usd", clock.now().date())
    assert payout is not None
    # Past every channel's expected time for both days.
    clock.set(
        datetime.combine(max(china_day, stripe_day) + timedelta(days=2), datetime.min.time(), UTC)
    )

    assert stack.puller.channels() == ["alipay", "bank", "paypal", "stripe", "wechatpay"]
    days = {"wechatpay": china_day, "alipay": china_day, "bank": china_day}
    days |= {"stripe": stripe_day, "paypal": stripe_day}
    lines = {
        formats.WECHATPAY_TRADE: 1,
        formats.WECHATPAY_FUNDFLOW: 2,  # the payment and its fee
        formats.ALIPAY: 1,
        formats.STRIPE: 1,
        formats.PAYPAL_STL: 0,  # a quiet day is a report too
        formats.CAMT053: 1,
    }
    for channel, day in days.items():
        result = stack.puller.pull(channel, day)
        assert result.status is PullStatus.STORED, result.to_dict()
        assert not result.alert
        for doc in result.documents:
            assert doc.attempts == 1
            assert doc.imported is not None
            assert doc.imported.lines == lines[doc.fmt], doc
    stored = rows(app)
    assert stored == len(lines)
    stripe_lines = stack.store.read(stack.store.current("stripe", stripe_day))
    assert stripe_lines.column("merchant_ref").to_pylist() == ["att-s1"]
    assert stripe_lines.column("channel_txn_id").to_pylist() == [paid.channel_txn_id]
    assert stripe_lines.column("kind").to_pylist() == ["payment"]
    assert stripe_lines.column("payout_id").to_pylist() == [payout["id"]]

    # A second pull asks nothing and changes nothing; a refresh fetches the same bytes again.
    for channel, day in days.items():
        again = stack.puller.pull(channel, day)
        assert again.status is PullStatus.ALREADY
        assert {d.attempts for d in again.documents} == {0}
    seen = len(stack.flaky["wechatpay"].seen)
    refreshed = stack.puller.pull("wechatpay", china_day, refresh=True)
    assert refreshed.status is PullStatus.ALREADY
    assert all(d.imported is not None and d.imported.already for d in refreshed.documents)
    assert len(stack.flaky["wechatpay"].seen) > seen
    assert rows(app) == stored
    assert stack.sleeps == []


def test_stripe_pulls_the_activity_of_its_reporting_day(
    app: App, clock: FixedClock, stack: Stack
) -> None:
    """Each line lands on the day its balance transaction was created in Los Angeles, with
    the ids that link it to our attempt (a refund to ours and its payment's)."""
    stripe = ports_from_document(stack.document, clock)["stripe"]
    evening = clock.now().astimezone(LOS_ANGELES)
    first_day = evening.date()
    next_midnight = datetime.combine(first_day + timedelta(days=1), datetime.min.time())
    pays: dict[str, str | None] = {}
    try:
        paid = stripe.pay(
            PayOrder("att-e1", Money(2_000, "USD"), "tea", PayMethod.CARD, "", clock.now(), VISA)
        )
        pays["att-e1"] = paid.channel_txn_id
        # Just past midnight in Los Angeles: the next reporting day, the same UTC day.
        clock.set(next_midnight.replace(tzinfo=LOS_ANGELES) + timedelta(minutes=1))
        assert clock.now().astimezone(UTC).date() == evening.astimezone(UTC).date()
        paid = stripe.pay(
            PayOrder("att-e2", Money(3_000, "USD"), "tea", PayMethod.CARD, "", clock.now(), VISA)
        )
        pays["att-e2"] = paid.channel_txn_id
        refund = RefundOrder("rf-e1", "att-e1", Money(500, "USD"), Money(2_000, "USD"), "r", "")
        assert stripe.refund(refund).error_code is None
    finally:
        stripe.close_client()  # type: ignore[attr-defined]
    assert all(pays.values())
    clock.advance(timedelta(days=2))

    first = stack.puller.pull("stripe", first_day)
    second = stack.puller.pull("stripe", first_day + timedelta(days=1))
    assert (first.status, second.status) == (PullStatus.STORED, PullStatus.STORED)
    [doc] = second.documents
    assert doc.fmt == formats.STRIPE
    one = stack.store.read(stack.store.current("stripe", first_day)).to_pylist()
    assert [(r["kind"], r["merchant_ref"], r["channel_txn_id"], r["amount"]) for r in one] == [
        ("payment", "att-e1", pays["att-e1"], 2_000)
    ]
    two = stack.store.read(stack.store.current("stripe", first_day + timedelta(days=1)))
    got = sorted(
        (r["kind"], r["merchant_ref"], r["parent_ref"], r["channel_txn_id"], r["amount"])
        for r in two.to_pylist()
    )
    assert got == [
        ("payment", "att-e2", None, pays["att-e2"], 3_000),
        ("refund", "rf-e1", "att-e1", pays["att-e1"], -500),
    ]
    assert two.column("payout_id").null_count == two.num_rows  # not paid out when pulled


def test_retries_back_off_after_server_errors_and_timeouts(
    app: App, clock: FixedClock, stack: Stack
) -> None:
    pay_in_china(stack, clock)
    day = beijing_day(clock)
    next_day = datetime.combine(day + timedelta(days=1), datetime.min.time(), BEIJING)
    clock.set(next_day + timedelta(hours=1))  # the day is over; no bill is late yet
    stack.flaky["wechatpay"].plan["/v3/bill/tradebill"] = ["500"]
    stack.flaky["wechatpay"].plan["/v3/billdownload/file"] = ["slow"]
    stack.flaky["bank"].plan["/statements/"] = ["slow"]

    wechat = stack.puller.pull("wechatpay", day)
    assert wechat.status is PullStatus.STORED
    trade, fundflow = wechat.documents
    # A bare 500, then a descriptor whose file download timed out, then all of it.
    assert trade.attempts == 3
    assert (trade.fmt, fundflow.attempts) == (formats.WECHATPAY_TRADE, 1)
    bank = stack.puller.pull("bank", day)
    assert bank.status is PullStatus.STORED
    assert bank.documents[0].attempts == 2
    assert stack.sleeps == [1.0, 2.0, 1.0]
    assert rows(app) == 3

    # A channel that keeps failing: bounded tries, then FAILED; an alert once it is late.
    stack.sleeps.clear()
    stack.flaky["alipay"].plan["/gateway.do"] = ["500"] * 10
    early = stack.puller.pull("alipay", day)
    assert early.status is PullStatus.FAILED
    assert early.documents[0].attempts == RETRY.attempts
    assert not early.alert  # before 09:00 Beijing time the next day: try again later
    assert stack.sleeps == [1.0, 2.0]
    clock.set(next_day + timedelta(hours=9))
    late = stack.puller.pull("alipay", day)
    assert late.status is PullStatus.FAILED
    assert late.alert
    assert rows(app) == 3


def test_not_ready_until_the_expected_time_then_missing(
    app: App, clock: FixedClock, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    day = beijing_day(clock)
    # The day is still running: nothing is asked.
    early = stack.puller.pull("wechatpay", day)
    assert early.status is PullStatus.NOT_READY
    assert {d.attempts for d in early.documents} == {0}
    assert stack.flaky["wechatpay"].seen == []

    schedule = stack.puller.schedule("wechatpay")
    assert schedule.expected_by(day) == datetime.combine(
        day + timedelta(days=1), datetime.min.time(), BEIJING
    ) + timedelta(hours=10)
    # The day is over, no bill yet (a quiet day): not there yet, before 10:00 Beijing time.
    clock.set(schedule.expected_by(day) - timedelta(hours=2))
    waiting = stack.puller.pull("wechatpay", day)
    assert waiting.status is PullStatus.NOT_READY
    assert {d.code for d in waiting.documents} == {"NO_STATEMENT_EXIST"}
    assert not waiting.alert
    with caplog.at_level(logging.WARNING, logger="clearhouse.reconciliation.pull"):
        clock.set(schedule.expected_by(day))
        missing = stack.puller.pull("wechatpay", day)
    assert missing.status is PullStatus.MISSING
    assert missing.alert
    assert {d.code for d in missing.documents} == {MISSING_CODE}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(w.startswith(MISSING_CODE) and str(day) in w for w in warnings)
    assert missing.to_dict()["documents"][0]["code"] == MISSING_CODE
    # Alipay's bill of a finished day exists even when quiet: stored, not missing.
    assert stack.puller.pull("alipay", day).status is PullStatus.STORED
    assert rows(app) == 1


def test_the_bank_statement_comes_in_the_configured_format(
    app: App, clock: FixedClock, stack: Stack
) -> None:
    stack.sandboxes.bank.receive(Money(50_000, "CNY"), "WeChat Pay", "payout 1102")
    day = beijing_day(clock)
    clock.advance(timedelta(days=1))
    document = stack.document | {"bank": stack.document["bank"] | {"statement_format": "mt940"}}
    puller = Puller.from_document(stack.store, document, clock, timeout=0.5, retry=RETRY)
    try:
        result = puller.pull("bank", day)
    finally:
        puller.close()
    [doc] = result.documents
    assert (doc.fmt, doc.status) == (formats.MT940, PullStatus.STORED)
    assert doc.imported is not None
    assert doc.imported.lines == 1
    assert stack.store.current("bank", day, formats.CAMT053) == []


def test_each_quick_pay_acquirer_pulls_its_own_daily_file(
    app: App, clock: FixedClock, stack: Stack
) -> None:
    """Both acquirers' files, each under its own channel and format, with the card payments
    and the refund each one made; 98 (no file yet) until the Beijing day is over."""
    with ExitStack() as served:
        apps = stack.sandboxes.apps()
        urls = {
            name: served.enter_context(ServedApp(apps[name])).base_url
            for name in ("quickpay", "quickpay_b")
        }
        document = stack.document | stack.sandboxes.credentials.merchant_document(urls)
        puller = Puller.from_document(
            stack.store, document, clock, timeout=2.0, retry=RETRY, sleep=stack.sleeps.append
        )
        served.callback(puller.close)
        assert {"quickpay", "quickpay_b"} <= set(puller.channels())
        assert puller.schedule("quickpay_b").expected_at.hour == 9
        card = next(c for c in TEST_CARDS if c.holder_name == "张三")
        ports = ports_from_document(document, clock)
        day = beijing_day(clock)
        paid: dict[str, str | None] = {}
        for channel, attempt in (("quickpay", "att-q1"), ("quickpay_b", "att-q2")):
            port = ports[channel]
            assert isinstance(port, QuickpayAdapter)
            sandbox = getattr(stack.sandboxes, channel)
            challenge = port.bind_start(
                CardElements(card.holder_name, card.id_number, card.card_no)
            )
            bound = port.bind_confirm(challenge.request_id, sandbox.last_sms_code(card.phone))
            assert bound.token is not None
            order = PayOrder(
                attempt,
                Money(12_000, "CNY"),
                "tea",
                PayMethod.CARD,
                "http://127.0.0.1:9/notify",
                clock.now() + timedelta(hours=1),
                payer_id=bound.token,
            )
            result = port.pay(order)
            assert result.error_code is None
            paid[attempt] = result.channel_txn_id
        refund = RefundOrder("rf-q1", "att-q2", Money(2_000, "CNY"), Money(12_000, "CNY"), "r", "")
        assert ports["quickpay_b"].refund(refund).error_code is None
        for port in ports.values():
            port.close_client()  # type: ignore[attr-defined]

        early = puller.pull("quickpay", day)  # the day is still running: nothing asked
        assert (early.status, early.documents[0].attempts) == (PullStatus.NOT_READY, 0)
        clock.set(datetime.combine(day + timedelta(days=1), datetime.min.time(), BEIJING))
        clock.advance(timedelta(hours=10))  # past 09:00 Beijing time on the next day
        results = {channel: puller.pull(channel, day) for channel in ("quickpay", "quickpay_b")}
        for channel, result in results.items():
            assert result.status is PullStatus.STORED, result.to_dict()
            assert not result.alert
            [doc] = result.documents
            assert doc.fmt == formats.QUICKPAY_FILES[channel]
            assert doc.imported is not None
            assert doc.imported.account == getattr(stack.sandboxes.credentials, channel).mer_id
        a = stack.store.read(stack.store.current("quickpay", day)).to_pylist()
        b = stack.store.read(stack.store.current("quickpay_b", day)).to_pylist()
        assert [(r["source"], r["merchant_ref"], r["channel_txn_id"], r["amount"]) for r in a] == [
            ("quickpay", "att-q1", paid["att-q1"], 12_000)
        ]
        assert [
            (r["source"], r["kind"], r["merchant_ref"], r["parent_ref"], r["amount"], r["fee"])
            for r in b
        ] == [
            ("quickpay_b", "payment", "att-q2", None, 12_000, 60),
            ("quickpay_b", "refund", "rf-q1", "att-q2", -2_000, -10),
        ]
        # Held: a second pull asks nothing.
        again = puller.pull("quickpay_b", day)
        assert (again.status, again.documents[0].attempts) == (PullStatus.ALREADY, 0)
        # A quiet day's file is there too, after the day.
        clock.advance(timedelta(days=1))
        quiet = puller.pull("quickpay", day + timedelta(days=1))
        assert quiet.status is PullStatus.STORED
        assert quiet.documents[0].imported is not None
        assert quiet.documents[0].imported.lines == 0
    assert stack.sleeps == []
