"""Refunds to the payer decided by reconciliation (R5), on SQLite and PostgreSQL, against the
real WeChat Pay and Alipay sandboxes over HTTP: a duplicate payment planted by the sandbox is
found in the pulled bill, refunded once (by its own transaction id), resolved, its suspense
cleared; its refund line in the next day's bill is recognised; a refund refused or unanswered
stays unresolved and is sent again, never twice at the channel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import sleep
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clearhouse.accounts.model import Role
from clearhouse.bootstrap import App, upgrade_database
from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.service import Gateway
from clearhouse.gateway.transaction_refunds import TransactionRefunds
from clearhouse.reconciliation import handling
from clearhouse.reconciliation.batches import Reconciler
from clearhouse.reconciliation.errors import ReconError
from clearhouse.reconciliation.pull import Puller, PullStatus, Retry
from clearhouse.reconciliation.store import StatementStore
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.runner import SandboxCredentials, Sandboxes
from clearhouse.sandbox.serving import ServedApp
from tests.conftest import platform_fund
from tests.gateway_support import MerchantFixture, add_merchant, make_gateway
from tests.integration.gateway.test_payments import request
from tests.integration.reconciliation.batch_support import (
    actions,
    assert_books_balance,
    differences,
    suspense,
)

BEIJING = ZoneInfo("Asia/Shanghai")
SERVED = ("wechatpay", "alipay")
REFUND_PATH = "/v3/refund/domestic/refunds"


class Slow:
    """An ASGI wrapper that answers the next ``slow`` requests to a path after the client
    has given up: the request is read, then handed to the sandbox late, which acts on it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.slow: dict[str, int] = {}
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            self.seen.append(f"{scope['method']} {path}")
            if self.slow.get(path):
                self.slow[path] -= 1
                messages = [await receive()]
                while messages[-1].get("more_body"):
                    messages.append(await receive())
                await asyncio.sleep(1.0)

                async def replay() -> Any:
                    return messages.pop(0) if messages else {"type": "http.disconnect"}

                receive = replay
        await self.app(scope, receive, send)


@dataclass
class Stack:
    sandboxes: Sandboxes
    wire: dict[str, Slow]
    gateway: Gateway
    merchant: MerchantFixture
    puller: Puller
    rec: Reconciler


@pytest.fixture(scope="module")
def credentials() -> SandboxCredentials:
    return SandboxCredentials.generate()


@pytest.fixture
def stack(
    app: App, clock: FixedClock, credentials: SandboxCredentials, tmp_path: Path
) -> Iterator[Stack]:
    upgrade_database(app)
    sandboxes = Sandboxes(credentials, clock, timeout_delay_s=1.0)
    apps = sandboxes.apps()
    wire = {name: Slow(apps[name]) for name in SERVED}
    with ExitStack() as stack:
        urls = {name: stack.enter_context(ServedApp(wire[name])).base_url for name in SERVED}
        document = {k: v for k, v in credentials.merchant_document(urls).items() if k in SERVED}
        gateway = make_gateway(app, ports_from_document(document, clock, timeout=0.5))
        store = StatementStore(app.engine, tmp_path / "recon", clock)
        puller = Puller.from_document(
            store, document, clock, timeout=5.0, retry=Retry(attempts=1), sleep=lambda _s: None
        )
        rec = Reconciler(
            app.engine,
            store,
            app.ledger,
            clock,
            payments=gateway.payments,
            refunds=TransactionRefunds(gateway.payments.channels),
        )
        yield Stack(sandboxes, wire, gateway, add_merchant(app, gateway), puller, rec)
        puller.close()
        gateway.close()
        sandboxes.close()


def paid_twice(stack: Stack, channel: str, order: str, amount: int) -> str:
    """An order the payer pays twice at the channel (the sandbox's DUPLICATE_PAYMENT); our
    gateway learns of the first payment by its query. Returns the attempt id."""
    gateway = stack.gateway
    intent = gateway.payments.create(stack.merchant.id, request(order, amount, channel=channel))
    attempt_id = gateway.payments.attempts(intent.id)[-1].id
    stack.sandboxes.set_faults(FaultPlan().force(Fault.DUPLICATE_PAYMENT, attempt_id))
    stack.sandboxes.pay(channel, attempt_id)
    port = gateway.payments.channels.get(channel).port
    assert gateway.payments.apply(attempt_id, port.query(attempt_id), "query")
    return attempt_id


def business_day(clock: FixedClock) -> date:
    return clock.now().astimezone(BEIJING).date()


def pull(stack: Stack, clock: FixedClock, channel: str, day: date) -> None:
    """The day's bill, pulled the morning after (moves the clock there)."""
    clock.set(datetime.combine(day + timedelta(days=1), time(11), BEIJING))
    assert stack.puller.pull(channel, day).status is PullStatus.STORED


def clearing(app: App, channel: str) -> int:
    return app.ledger.balance(platform_fund(app, Role.CHANNEL_CLEARING, channel)).posted


def channel_refunds(stack: Stack, channel: str) -> list[tuple[str, str, int]]:
    """The refunds the channel holds: (our number, the transaction refunded, amount)."""
    if channel == "wechatpay":
        return [
            (r.out_refund_no, r.transaction_id, r.amount)
            for r in stack.sandboxes.wechatpay.refunds.values()
        ]
    return [
        (r.out_request_no, r.trade_no, r.amount.amount)
        for r in stack.sandboxes.alipay.state.refunds.values()
    ]


def the_duplicate(app: App) -> dict[str, Any]:
    [duplicate] = [d for d in differences(app) if d["type"] == "DUPLICATE_PAYMENT"]
    return duplicate


@pytest.mark.parametrize("channel", SERVED)
def test_a_duplicate_payment_is_refunded_once_and_its_suspense_cleared(
    app: App, clock: FixedClock, stack: Stack, channel: str
) -> None:
    day = business_day(clock)
    attempt_id = paid_twice(stack, channel, "order-1", 5_000)
    booked = clearing(app, channel)  # the first payment, less its fee
    pull(stack, clock, channel, day)

    batch = stack.rec.run(channel, day, by="scheduler")
    assert batch.counts["differences"]["DUPLICATE_PAYMENT"] == 1
    assert sum(batch.counts["differences"].values()) == 1
    duplicate = the_duplicate(app)
    number = handling.refund_no(duplicate["id"])
    assert duplicate["merchant_ref"] == attempt_id
    decided = actions(app, duplicate["id"])[0]
    assert (decided["action"], decided["actor"]) == ("refund", "system")
    assert f'"refund_no": "{number}"' in decided["evidence"]
    # The refund went out once, for the second transaction, not the order's payment.
    assert channel_refunds(stack, channel) == [(number, duplicate["channel_txn_id"], 5_000)]

    if channel == "wechatpay":  # WeChat answers PROCESSING: the next send reads it settled
        assert duplicate["status"] == "refunding"
        assert suspense(app) == -5_000  # parked while the refund is under way
        [again] = stack.rec.send_refunds()
        assert (again.answer, again.status) == ("SUCCEEDED", "resolved")
    done = the_duplicate(app)
    assert (done["status"], done["resolution"]) == ("resolved", "refunded")
    assert done["resolved_at"] is not None
    trail = [a["action"] for a in actions(app, duplicate["id"])]
    assert (trail[0], trail[-1]) == ("refund", "refunded")
    assert suspense(app) == 0
    assert clearing(app, channel) == booked  # the duplicate's money left for the payer
    assert_books_balance(app)

    # Re-runs and retries send nothing more.
    assert stack.rec.send_refunds() == []
    assert stack.rec.run(channel, day, by="scheduler").already
    assert len(channel_refunds(stack, channel)) == 1
    assert len(actions(app, duplicate["id"])) == len(trail)

    # The next day's bill shows the refund under our number: recognised, nothing to review.
    next_day = day + timedelta(days=1)
    pull(stack, clock, channel, next_day)
    second = stack.rec.run(channel, next_day, by="scheduler")
    [seen] = [d for d in differences(app) if d["first_batch_id"] == second.id]
    assert (seen["type"], seen["status"], seen["resolution"]) == (
        "LONG",
        "resolved",
        "recon_refund",
    )
    assert seen["amount"] == -5_000
    assert seen["suspense_entry_id"] is None
    assert suspense(app) == 0
    assert_books_balance(app)


def test_an_unanswered_refund_stays_refunding_and_is_sent_again_once(
    app: App, clock: FixedClock, stack: Stack
) -> None:
    day = business_day(clock)
    paid_twice(stack, "wechatpay", "order-1", 3_000)
    pull(stack, clock, "wechatpay", day)
    stack.wire["wechatpay"].slow[REFUND_PATH] = 1  # the answer comes after we gave up

    stack.rec.run("wechatpay", day, by="scheduler")
    duplicate = the_duplicate(app)
    assert duplicate["status"] == "refunding"
    [pending] = [a for a in actions(app, duplicate["id"]) if a["action"] == "refund_pending"]
    assert '"error_code": "TIMEOUT"' in pending["evidence"]
    assert suspense(app) == -3_000

    # The channel acted on the request whose answer was lost.
    for _ in range(50):
        if channel_refunds(stack, "wechatpay"):
            break
        sleep(0.1)
    assert len(channel_refunds(stack, "wechatpay")) == 1
    # Sent again with the same number: the channel answers with that refund, settled.
    [again] = stack.rec.send_refunds("wechatpay")
    assert (again.answer, again.status) == ("SUCCEEDED", "resolved")
    done = the_duplicate(app)
    assert (done["status"], done["resolution"]) == ("resolved", "refunded")
    assert len(channel_refunds(stack, "wechatpay")) == 1
    assert stack.rec.send_refunds("wechatpay") == []
    sends = [s for s in stack.wire["wechatpay"].seen if s == f"POST {REFUND_PATH}"]
    assert len(sends) == 2
    assert suspense(app) == 0
    assert_books_balance(app)


def test_a_refused_refund_goes_to_review_and_can_be_sent_again(
    app: App, clock: FixedClock, stack: Stack
) -> None:
    day = business_day(clock)
    paid_twice(stack, "wechatpay", "order-1", 3_000)
    pull(stack, clock, "wechatpay", day)
    morning = clock.now()
    clock.advance(timedelta(days=366))  # past WeChat's refund window: the channel refuses

    stack.rec.run("wechatpay", day, by="scheduler")
    duplicate = the_duplicate(app)
    assert (duplicate["status"], duplicate["resolution"], duplicate["alert"]) == (
        "open",
        None,
        True,
    )
    refused = actions(app, duplicate["id"])[-1]
    assert refused["action"] == "refund_refused"
    assert "INVALID_REQUEST" in refused["reason"]
    assert channel_refunds(stack, "wechatpay") == []
    assert suspense(app) == -3_000  # still parked: the books balance meanwhile
    assert_books_balance(app)
    assert stack.rec.send_refunds() == []  # refused ones wait for a reviewer

    for bad in ({"actor": " ", "reason": "r"}, {"actor": "a", "reason": ""}):
        with pytest.raises(ReconError):
            handling.requeue_refund(app.engine, clock, duplicate["id"], **bad)
    with pytest.raises(ReconError) as caught:
        handling.requeue_refund(app.engine, clock, "rcd_nope", actor="a", reason="r")
    assert caught.value.code == "DIFFERENCE_NOT_FOUND"

    clock.set(morning + timedelta(hours=1))  # the channel would take it now
    handling.requeue_refund(app.engine, clock, duplicate["id"], actor="alice", reason="retry")
    assert the_duplicate(app)["status"] == "refunding"
    stack.rec.send_refunds()
    stack.rec.send_refunds()
    done = the_duplicate(app)
    assert (done["status"], done["resolution"], done["alert"]) == ("resolved", "refunded", False)
    assert len(channel_refunds(stack, "wechatpay")) == 1
    # (The clock was set back: the trail is compared as a whole, not by time.)
    trail = sorted((a["action"], a["actor"]) for a in actions(app, duplicate["id"]))
    assert trail == [
        ("refund", "alice"),
        ("refund", "system"),
        ("refund_pending", "system"),
        ("refund_refused", "system"),
        ("refunded", "system"),
    ]
    with pytest.raises(ReconError) as caught:
        handling.requeue_refund(app.engine, clock, duplicate["id"], actor="a", reason="r")
    assert caught.value.code == "INVALID_RECON_ACTION"
    assert suspense(app) == 0
    assert_books_balance(app)
