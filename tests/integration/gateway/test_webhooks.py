"""Merchant webhooks end to end, on SQLite and PostgreSQL: outbox events delivered over real HTTP
to a receiver on a local port, signed, retried on the backoff schedule by a fixed clock (nothing
sleeps), every try logged, failed events re-sendable by hand."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clearhouse.bootstrap import App, upgrade_database
from clearhouse.clock import FixedClock
from clearhouse.db.schema import merchants, outbox
from clearhouse.gateway.service import Gateway
from clearhouse.outbox.webhooks import (
    BACKOFF,
    SIGNATURE_HEADER,
    TOLERANCE_SECONDS,
    DeliveryNotFound,
    DeliveryReport,
    Webhooks,
    verify_signature,
)
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sealing import Sealer
from tests.fake_channel import FakeChannel
from tests.gateway_support import SERVER_SECRET, MerchantFixture, add_merchant, make_gateway
from tests.integration.gateway.test_payments import request, settle_via_notification

# --- the merchant's receiver ----------------------------------------------------------------


@dataclass
class Receiver:
    """Records every call and answers the scripted statuses in turn, then 200."""

    base_url: str = ""
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks"

    def app(self) -> Starlette:
        async def hook(req: Request) -> Response:
            self.calls.append((dict(req.headers), await req.body()))
            return Response(status_code=self.script.pop(0) if self.script else 200)

        return Starlette(routes=[Route("/hooks", hook, methods=["POST"])])


@pytest.fixture(scope="module")
def served_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with ServedApp(receiver.app()) as served:
        receiver.base_url = served.base_url
        yield receiver


@pytest.fixture
def receiver(served_receiver: Receiver) -> Receiver:
    served_receiver.calls.clear()
    served_receiver.script.clear()
    return served_receiver


@pytest.fixture
def closed_port_url() -> str:
    """A local port nobody listens on: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


# --- the gateway, with a client the test closes ---------------------------------------------


@pytest.fixture
def webhooks(app: App, clock: FixedClock) -> Iterator[Webhooks]:
    client = httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0))
    yield Webhooks(app.engine, clock, Sealer(SERVER_SECRET), client)
    client.close()


@pytest.fixture
def gateway(app: App, channel: FakeChannel, webhooks: Webhooks) -> Iterator[Gateway]:
    upgrade_database(app)
    built = make_gateway(app, {"wechatpay": channel}, webhooks=webhooks)
    yield built
    built.close()


@pytest.fixture
def merchant(app: App, gateway: Gateway, receiver: Receiver) -> MerchantFixture:
    return add_merchant(app, gateway, webhook_url=receiver.url)


def pay(gateway: Gateway, channel: FakeChannel, merchant: MerchantFixture, order: str) -> int:
    """A succeeded payment; returns the id of its payment.succeeded event."""
    before = {e["id"] for e in gateway.webhooks.events(merchant.id)}
    intent = gateway.payments.create(merchant.id, request(order))
    settle_via_notification(gateway, channel, gateway.payments.attempts(intent.id)[-1].id)
    new = [e for e in gateway.webhooks.events(merchant.id) if e["id"] not in before]
    assert [e["type"] for e in new] == ["payment.succeeded"]
    assert json.loads(new[0]["payload"])["id"] == intent.id
    return int(new[0]["id"])


def event(app: App, event_id: int) -> dict[str, Any]:
    with app.engine.connect() as conn:
        return dict(conn.execute(select(outbox).where(outbox.c.id == event_id)).mappings().one())


def now_seconds(clock: FixedClock) -> int:
    return int(clock.now().timestamp())


# --- tests ----------------------------------------------------------------------------------


def test_succeeded_payment_is_delivered_signed(app, gateway, channel, merchant, receiver, clock):
    event_id = pay(gateway, channel, merchant, "order-1")
    pending = event(app, event_id)
    assert (pending["delivery_state"], pending["attempts"]) == ("pending", 0)
    assert pending["next_attempt_at"] == clock.now()
    assert receiver.calls == []  # nothing is sent inside the payment's transaction

    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=1)

    assert len(receiver.calls) == 1
    headers, body = receiver.calls[0]
    assert headers["content-type"] == "application/json"
    assert headers["clearhouse-event-id"] == str(event_id)
    sent = json.loads(body)
    assert sent["id"] == event_id
    assert sent["type"] == "payment.succeeded"
    assert sent["data"]["status"] == "SUCCEEDED"
    assert sent["data"]["amount"] == 10_000
    assert sent["data"] == json.loads(pending["payload"])

    secret = merchant.webhook_secret.encode()
    signature = headers[SIGNATURE_HEADER.lower()]
    now = now_seconds(clock)
    assert signature.startswith(f"t={now},v1=")
    assert verify_signature(secret, body, signature, now)
    assert verify_signature(secret, body, signature, now + TOLERANCE_SECONDS)
    assert not verify_signature(secret, body.replace(b"10000", b"10001"), signature, now)
    assert not verify_signature(secret, body + b" ", signature, now)
    assert not verify_signature(secret, body, signature, now + TOLERANCE_SECONDS + 1)
    assert not verify_signature(b"whsec_someone-else", body, signature, now)
    assert not verify_signature(secret, body, signature.split(",")[1], now)  # no timestamp

    done = event(app, event_id)
    assert (done["delivery_state"], done["attempts"], done["next_attempt_at"]) == (
        "delivered",
        1,
        None,
    )
    [logged] = gateway.webhooks.deliveries(merchant.id, event_id)
    assert (logged["status_code"], logged["manual"], logged["error"]) == (200, False, None)
    assert logged["url"] == receiver.url
    assert logged["at"] == clock.now()
    assert logged["duration_ms"] >= 0

    clock.advance(timedelta(days=1))
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=0, delivered=0)
    assert len(receiver.calls) == 1


def test_failing_receiver_is_retried_on_the_backoff_schedule(
    app, gateway, channel, merchant, receiver, clock
):
    receiver.script = [500, 503]
    event_id = pay(gateway, channel, merchant, "order-1")
    first_try = clock.now()

    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=0)
    failed_once = event(app, event_id)
    assert (failed_once["delivery_state"], failed_once["attempts"]) == ("pending", 1)
    assert failed_once["next_attempt_at"] == first_try + BACKOFF[0]

    clock.advance(BACKOFF[0] - timedelta(microseconds=1))  # not yet due
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=0, delivered=0)
    assert len(receiver.calls) == 1

    clock.advance(timedelta(microseconds=1))
    second_try = clock.now()
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=0)
    assert event(app, event_id)["next_attempt_at"] == second_try + BACKOFF[1]

    clock.advance(BACKOFF[1] - timedelta(seconds=1))
    assert gateway.webhooks.deliver_due().tried == 0
    clock.advance(timedelta(seconds=1))
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=1)

    assert len(receiver.calls) == 3
    # The same event each time, re-signed at the time of each try.
    assert {c[1] for c in receiver.calls} == {receiver.calls[0][1]}
    stamps = [c[0][SIGNATURE_HEADER.lower()].split(",")[0] for c in receiver.calls]
    assert stamps == [f"t={int(t.timestamp())}" for t in (first_try, second_try, clock.now())]
    log = gateway.webhooks.deliveries(merchant.id, event_id)
    assert [d["status_code"] for d in log] == [500, 503, 200]
    assert [d["manual"] for d in log] == [False, False, False]
    assert [d["at"] for d in log] == [first_try, second_try, clock.now()]
    done = event(app, event_id)
    assert (done["delivery_state"], done["attempts"]) == ("delivered", 3)


def test_event_fails_after_the_last_backoff_and_can_be_resent_by_hand(
    app, gateway, channel, merchant, receiver, clock
):
    tries = len(BACKOFF) + 1  # the first try, then one after each wait
    receiver.script = [500] * tries
    event_id = pay(gateway, channel, merchant, "order-1")

    for attempt, wait in enumerate(BACKOFF, start=1):
        assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=0)
        pending = event(app, event_id)
        assert (pending["delivery_state"], pending["attempts"]) == ("pending", attempt)
        assert pending["next_attempt_at"] == clock.now() + wait
        clock.advance(wait)
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=0)

    failed = event(app, event_id)
    assert (failed["delivery_state"], failed["attempts"], failed["next_attempt_at"]) == (
        "failed",
        tries,
        None,
    )
    assert len(receiver.calls) == tries
    log = gateway.webhooks.deliveries(merchant.id, event_id)
    assert [d["status_code"] for d in log] == [500] * tries
    assert not any(d["manual"] for d in log)

    clock.advance(timedelta(days=30))  # a failed event is never picked up again by itself
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=0, delivered=0)
    assert len(receiver.calls) == tries

    assert gateway.webhooks.resend(merchant.id, event_id) is True
    assert len(receiver.calls) == tries + 1
    assert json.loads(receiver.calls[-1][1])["id"] == event_id
    last = gateway.webhooks.deliveries(merchant.id, event_id)[-1]
    assert (last["status_code"], last["manual"], last["at"]) == (200, True, clock.now())
    assert event(app, event_id)["delivery_state"] == "delivered"


def test_failed_manual_resend_is_logged_and_leaves_the_schedule(
    app, gateway, channel, merchant, receiver, clock
):
    receiver.script = [500, 502]
    event_id = pay(gateway, channel, merchant, "order-1")
    gateway.webhooks.deliver_due()
    due = event(app, event_id)["next_attempt_at"]

    assert gateway.webhooks.resend(merchant.id, event_id) is False
    after = event(app, event_id)
    assert (after["delivery_state"], after["next_attempt_at"]) == ("pending", due)
    log = gateway.webhooks.deliveries(merchant.id, event_id)
    assert [(d["status_code"], d["manual"]) for d in log] == [(500, False), (502, True)]

    clock.set(due)
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=1)


def test_resend_of_another_merchants_event_is_not_found(app, gateway, channel, merchant, receiver):
    event_id = pay(gateway, channel, merchant, "order-1")
    other = add_merchant(app, gateway, name="Other Shop", webhook_url=receiver.url)

    with pytest.raises(DeliveryNotFound):
        gateway.webhooks.resend(other.id, event_id)
    with pytest.raises(DeliveryNotFound):
        gateway.webhooks.deliveries(other.id, event_id)
    with pytest.raises(DeliveryNotFound):
        gateway.webhooks.resend(merchant.id, event_id + 1_000)
    assert gateway.webhooks.events(other.id) == []
    assert receiver.calls == []
    assert gateway.webhooks.deliveries(merchant.id, event_id) == []
    assert event(app, event_id)["attempts"] == 0


def test_unreachable_url_is_logged_with_an_error_and_retried(
    app, gateway, channel, receiver, clock, closed_port_url
):
    merchant = add_merchant(app, gateway, webhook_url=closed_port_url)
    event_id = pay(gateway, channel, merchant, "order-1")

    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=0)
    [logged] = gateway.webhooks.deliveries(merchant.id, event_id)
    assert logged["status_code"] is None
    assert logged["error"].startswith("ConnectError")
    assert logged["url"] == closed_port_url
    assert logged["manual"] is False
    pending = event(app, event_id)
    assert (pending["delivery_state"], pending["attempts"]) == ("pending", 1)
    assert pending["next_attempt_at"] == clock.now() + BACKOFF[0]

    # Still down at the next try: logged again, the schedule moves on.
    clock.advance(BACKOFF[0])
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=0)
    assert event(app, event_id)["next_attempt_at"] == clock.now() + BACKOFF[1]

    # The merchant fixes its endpoint: the next due try reaches it.
    with app.engine.begin() as conn:
        conn.execute(
            update(merchants).where(merchants.c.id == merchant.id).values(webhook_url=receiver.url)
        )
    clock.advance(BACKOFF[1])
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=1)
    log = gateway.webhooks.deliveries(merchant.id, event_id)
    assert [d["status_code"] for d in log] == [None, None, 200]
    assert [d["error"] is None for d in log] == [False, False, True]
    assert len(receiver.calls) == 1


def test_merchant_without_webhook_url_has_events_marked_delivered_without_a_call(
    app, gateway, channel, receiver
):
    merchant = add_merchant(app, gateway, webhook_url=None)
    event_id = pay(gateway, channel, merchant, "order-1")

    assert gateway.webhooks.deliver_due().tried == 1
    done = event(app, event_id)
    assert (done["delivery_state"], done["next_attempt_at"]) == ("delivered", None)
    assert gateway.webhooks.deliveries(merchant.id, event_id) == []
    assert receiver.calls == []
    assert gateway.webhooks.deliver_due().tried == 0


def test_only_due_events_are_sent_in_order(app, gateway, channel, merchant, receiver, clock):
    first = pay(gateway, channel, merchant, "order-1")
    clock.advance(timedelta(seconds=5))
    second = pay(gateway, channel, merchant, "order-2")
    receiver.script = [500]  # the first event's first try fails

    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=2, delivered=1)
    assert [json.loads(body)["id"] for _, body in receiver.calls] == [first, second]
    assert event(app, first)["delivery_state"] == "pending"
    assert event(app, second)["delivery_state"] == "delivered"

    clock.advance(BACKOFF[0])
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=1)
    assert json.loads(receiver.calls[-1][1])["id"] == first


def test_failed_manual_resend_does_not_use_up_an_automatic_try(
    app, gateway, channel, merchant, receiver, clock
):
    receiver.script = [500, 500, 500]  # automatic, manual, automatic
    event_id = pay(gateway, channel, merchant, "order-1")
    gateway.webhooks.deliver_due()
    assert gateway.webhooks.resend(merchant.id, event_id) is False
    clock.advance(BACKOFF[0])
    assert gateway.webhooks.deliver_due() == DeliveryReport(tried=1, delivered=0)
    # Without the manual re-send the wait after the second automatic failure is BACKOFF[1].
    assert event(app, event_id)["next_attempt_at"] == clock.now() + BACKOFF[1]
