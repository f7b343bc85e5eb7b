"""Events and webhook endpoints of the Stripe sandbox.

An event snapshots its object when it happens (a retry resends the same snapshot with a fresh
signature, as Stripe does). It goes to every endpoint subscribed to its type (or to ``*``), through
the ``Notifier`` on Stripe's retry schedule; any 2xx acknowledges. Faults apply per subject:
a lost event is never sent, a duplicated one is sent twice, a reordered one is held back.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from clearhouse.clock import Clock
from clearhouse.gateway.channels.stripe import protocol
from clearhouse.sandbox.faults import Fault
from clearhouse.sandbox.notifier import Notifier

if TYPE_CHECKING:
    from clearhouse.sandbox.stripe.state import StripeSandbox

# Stripe retries an unacknowledged event for up to three days with a growing backoff.
RETRY_SCHEDULE = tuple(
    timedelta(seconds=s)
    for s in (60, 300, 1800, 3600, 7200, 14400, 28800, 28800, 28800, 43200, 43200, 43200, 43200)
)
REORDER_DELAY = timedelta(seconds=90)


def is_ack(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


def make_notifier(clock: Clock, client: httpx.Client | None = None) -> Notifier:
    return Notifier(clock, RETRY_SCHEDULE, is_ack, client)


class ApiError(Exception):
    """A Stripe error answer: HTTP status, ``error.type``, message, ``error.code`` and extras
    (``param``, ``decline_code``, ``payment_intent``...)."""

    def __init__(
        self, status: int, kind: str, message: str, code: str | None = None, **extra: Any
    ) -> None:
        super().__init__(f"{status} {kind} {code}: {message}")
        self.status, self.kind, self.message, self.code, self.extra = (
            status,
            kind,
            message,
            code,
            extra,
        )

    def body(self) -> bytes:
        return protocol.error_body(self.kind, self.message, self.code, **self.extra)


class Events:
    def __init__(self, sandbox: StripeSandbox, url: str | None, secret: str) -> None:
        self._sandbox = sandbox
        self.endpoints: list[dict[str, Any]] = []
        if url:
            self.add_endpoint(url, list(protocol.HANDLED_EVENTS), secret)

    def add_endpoint(
        self, url: str, enabled_events: list[str], secret: str | None = None
    ) -> dict[str, Any]:
        """A webhook endpoint; the answer to its creation is the only one showing ``secret``."""
        sandbox = self._sandbox
        endpoint = sandbox.store(
            {
                "id": new_id("we"),
                "object": "webhook_endpoint",
                "api_version": None,
                "created": sandbox.now(),
                "description": None,
                "enabled_events": enabled_events,
                "livemode": False,
                "metadata": {},
                "secret": secret or protocol.new_webhook_secret(),
                "status": "enabled",
                "url": url,
            }
        )
        self.endpoints.append(endpoint)
        return endpoint

    def emit(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        sandbox = self._sandbox
        targets = [
            e
            for e in self.endpoints
            if e["status"] == "enabled" and {"*", event_type} & set(e["enabled_events"])
        ]
        event = sandbox.store(
            {
                "id": new_id("evt"),
                "object": "event",
                "api_version": protocol.API_VERSION,
                "created": sandbox.now(),
                "data": {"object": copy.deepcopy(obj)},
                "livemode": False,
                "pending_webhooks": len(targets),
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
            }
        )
        subject, faults = subject_of(obj), sandbox.faults
        if sandbox.notifier is None or faults.hits(Fault.LOST_NOTIFICATION, subject):
            return event
        delay = REORDER_DELAY if faults.hits(Fault.REORDERED_NOTIFICATION, subject) else None
        copies = 2 if faults.hits(Fault.DUPLICATE_NOTIFICATION, subject) else 1
        for endpoint in targets:
            build = self.delivery(event, endpoint["secret"])
            for _ in range(copies):
                sandbox.notifier.enqueue(endpoint["url"], build, subject, delay or timedelta(0))
        return event

    def delivery(
        self, event: dict[str, Any], secret: str
    ) -> Callable[[], tuple[bytes, dict[str, str]]]:
        """A builder of one webhook: the same payload, signed afresh on every try."""
        payload = json.dumps(event, indent=2).encode()

        def build() -> tuple[bytes, dict[str, str]]:
            header = protocol.signature_header(payload, secret, self._sandbox.clock.now())
            return payload, {
                "Content-Type": "application/json; charset=utf-8",
                protocol.SIGNATURE_HEADER: header,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }

        return build

    def signed(self, event_id: str, secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        """An event's webhook as it would be delivered now (for tests and tools)."""
        with self._sandbox.lock:
            event = self._sandbox.get("event", event_id)
        return self.delivery(event, secret or self._sandbox.credentials.webhook_secret)()


def new_id(prefix: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return f"{prefix}_{''.join(secrets.choice(alphabet) for _ in range(24))}"


def subject_of(obj: Mapping[str, Any]) -> str:
    """The fault subject, named as in the other sandboxes: our reference from metadata (a
    refund's ``refund_no``; a payment's ``attempt_id`` or ``order_id``), else the object's id."""
    metadata = obj.get("metadata") or {}
    keys = ("refund_no", "attempt_id", "order_id") if obj.get("object") == "refund" else ()
    for key in (*keys, "attempt_id", "order_id"):
        if metadata.get(key):
            return str(metadata[key])
    return str(obj["id"])
