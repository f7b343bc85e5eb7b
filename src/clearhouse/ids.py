"""Identifiers: prefixed, sortable by creation time, safe to show to people and put in URLs."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _system_millis() -> int:
    return int(time.time() * 1000)


def _system_random() -> int:
    return int.from_bytes(os.urandom(10), "big")


_millis: Callable[[], int] = _system_millis
_random80: Callable[[], int] = _system_random
_lock = threading.Lock()


def new_id(prefix: str) -> str:
    """``prefix_`` + 48 bits of milliseconds + 80 random bits, base32 (a ULID in lower case)."""
    with _lock:
        value = (_millis() << 80) | _random80()
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(reversed(chars))}"


@contextmanager
def seeded(seed: int, millis: Callable[[], int]) -> Iterator[None]:
    """Ids from a seeded generator and a simulated clock, for simulations: the same seed makes
    the same ids in the same order, so whatever is keyed on them (a sandbox's faults) repeats.
    Never for production ids: they would be guessable."""
    global _millis, _random80
    rng = random.Random(seed)
    saved = _millis, _random80
    _millis, _random80 = millis, lambda: rng.getrandbits(80)
    try:
        yield
    finally:
        _millis, _random80 = saved
