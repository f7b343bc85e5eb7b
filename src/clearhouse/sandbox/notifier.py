"""Outgoing notifications of a sandbox: delivered at least once, on the channel's retry schedule.

A delivery is built afresh on every try (``build`` signs it with a new timestamp and nonce, as the
real channels do), sent with httpx, and judged by the channel's own acknowledgement rule. Tests
drive deliveries with ``run_due()`` under an injected clock; ``clearhouse sandbox`` runs them on a
background thread.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from clearhouse.clock import Clock

Build = Callable[[], tuple[bytes, dict[str, str]]]
IsAck = Callable[[httpx.Response], bool]


@dataclass(order=True)
class _Delivery:
    due: datetime
    seq: int
    url: str = field(compare=False)
    build: Build = field(compare=False)
    subject: str = field(compare=False)
    tries: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class DeliveryLog:
    subject: str
    url: str
    at: datetime
    try_number: int
    outcome: str  # "acked", "refused: <status>", "error: <type>"


class Notifier:
    def __init__(
        self,
        clock: Clock,
        schedule: Sequence[timedelta],
        is_ack: IsAck,
        client: httpx.Client | None = None,
    ) -> None:
        """``schedule``: the waits between tries after the first; its length bounds the retries."""
        self._clock = clock
        self._schedule = list(schedule)
        self._is_ack = is_ack
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=5.0)
        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.log: list[DeliveryLog] = []

    def enqueue(
        self, url: str, build: Build, subject: str, delay: timedelta = timedelta(0)
    ) -> None:
        with self._lock:
            heapq.heappush(
                self._heap,
                _Delivery(self._clock.now() + delay, next(self._seq), url, build, subject),
            )

    def pending(self) -> list[str]:
        with self._lock:
            return [d.subject for d in sorted(self._heap)]

    def run_due(self) -> int:
        """Send every delivery that is due now, one after another, in due order; return how
        many were acknowledged (tests drive this under a FixedClock)."""
        acked = 0
        while True:
            with self._lock:
                if not self._heap or self._heap[0].due > self._clock.now():
                    return acked
                delivery = heapq.heappop(self._heap)
            acked += self._send(delivery)

    def _take_due(self) -> list[_Delivery]:
        now = self._clock.now()
        with self._lock:
            due = []
            while self._heap and self._heap[0].due <= now:
                due.append(heapq.heappop(self._heap))
            return due

    def _send(self, delivery: _Delivery) -> int:
        delivery.tries += 1
        body, headers = delivery.build()
        try:
            response = self._client.post(delivery.url, content=body, headers=headers)
            outcome = "acked" if self._is_ack(response) else f"refused: {response.status_code}"
        except httpx.HTTPError as exc:
            outcome = f"error: {type(exc).__name__}"
        now = self._clock.now()
        self.log.append(DeliveryLog(delivery.subject, delivery.url, now, delivery.tries, outcome))
        if outcome == "acked":
            return 1
        if delivery.tries <= len(self._schedule):
            delivery.due = now + self._schedule[delivery.tries - 1]
            with self._lock:
                heapq.heappush(self._heap, delivery)
        return 0

    def start(self, interval: float = 0.2, concurrency: int = 8) -> None:
        """Deliver on background threads until ``stop()``: up to ``concurrency`` at once, as
        a channel's notification service does (one slow receiver must not hold up the rest)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval, concurrency), daemon=True
        )
        self._thread.start()

    def _loop(self, interval: float, concurrency: int) -> None:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="notifier") as pool:
            while not self._stop.wait(interval):
                list(pool.map(self._send, self._take_due()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        """Stop, and release the connections of the client it made (a client passed in is its
        owner's to close)."""
        self.stop()
        if self._owns_client:
            self._client.close()
