"""What callers ask the ledger to do, and what it answers. Pure values.

Every request carries an idempotency key. Its payload hash is stored with the outcome, so a retry
with the same key and payload gets the first outcome back (a success or a rejection) and a reuse
of the key for a different payload is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clearhouse.errors import ClearhouseError
from clearhouse.ledger.model import Reason, Rejection

MAX_KEY_LENGTH = 128
MAX_MEMO_LENGTH = 200  # journal_entries.memo
MAX_CODE_LENGTH = 8  # journal_entries.code; currencies are 3
MAX_ID = 2**63 - 1
SYSTEM_KEY_PREFIX = "clearhouse:"


class InvalidRequest(ClearhouseError):
    """A request that cannot even be identified (bad key, wrong types): never stored."""

    code = "INVALID_REQUEST"


@dataclass(frozen=True, slots=True)
class Post:
    """Post an entry by transaction code; with ``hold=True`` it is a pending hold instead."""

    key: str
    code: str
    currency: str
    amounts: Mapping[str, int]
    parties: Mapping[str, str] = field(default_factory=dict)
    memo: str | None = None
    hold: bool = False
    expires_at: datetime | None = None

    @property
    def operation(self) -> str:
        return "hold" if self.hold else "post"


@dataclass(frozen=True, slots=True)
class CommitHold:
    """Capture a hold, whole (``amounts`` None) or in part (each leg at most what it holds)."""

    key: str
    hold_id: int
    amounts: Mapping[str, int] | None = None
    memo: str | None = None
    operation = "commit"


@dataclass(frozen=True, slots=True)
class VoidHold:
    key: str
    hold_id: int
    memo: str | None = None
    operation = "void"


@dataclass(frozen=True, slots=True)
class Reverse:
    key: str
    entry_id: int
    memo: str | None = None
    operation = "reverse"


Request = Post | CommitHold | VoidHold | Reverse


@dataclass(frozen=True, slots=True)
class Outcome:
    key: str
    entry_id: int | None
    rejection: Rejection | None = None
    replayed: bool = False  # True when this is the stored answer to an earlier request

    @property
    def ok(self) -> bool:
        return self.rejection is None

    @property
    def reason(self) -> Reason | None:
        return None if self.rejection is None else self.rejection.reason

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "ok": self.ok, "entry_id": self.entry_id}
        if self.rejection is not None:
            out["reason"] = self.rejection.reason.value
            out["detail"] = self.rejection.detail
        out["replayed"] = self.replayed
        return out


def validate_request(req: Request, *, system: bool = False) -> None:
    """Shape checks that make a request identifiable and storable; a request that passes gets a
    stored outcome, one that fails raises and stores nothing.

    Keys under ``SYSTEM_KEY_PREFIX`` belong to Clearhouse's own jobs (the expiry sweep), so no
    client request can take the key a system request will need.
    """
    key = req.key
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(
            f"idempotency key must be a non-empty string of at most {MAX_KEY_LENGTH} characters",
            key=str(key)[:MAX_KEY_LENGTH],
        )
    if key.startswith(SYSTEM_KEY_PREFIX) and not system:
        raise InvalidRequest(f"keys starting {SYSTEM_KEY_PREFIX!r} are reserved", key=key)
    if req.memo is not None and (not isinstance(req.memo, str) or len(req.memo) > MAX_MEMO_LENGTH):
        raise InvalidRequest(f"memo must be text of at most {MAX_MEMO_LENGTH} characters", key=key)
    if isinstance(req, Post):
        _validate_post(req)
    else:
        ref = req.entry_id if isinstance(req, Reverse) else req.hold_id
        if not _is_int(ref) or not 0 < ref <= MAX_ID:
            raise InvalidRequest(f"entry and hold ids are integers from 1 to {MAX_ID}", key=key)
    amounts = getattr(req, "amounts", None) or {}
    for name, value in amounts.items():
        if not isinstance(name, str) or not _is_int(value):
            raise InvalidRequest(f"amount {name!r} must be an integer of minor units", key=key)


def _validate_post(req: Post) -> None:
    if not isinstance(req.code, str) or not isinstance(req.currency, str):
        raise InvalidRequest("code and currency are text", key=req.key)
    if len(req.code) > MAX_CODE_LENGTH or len(req.currency) > MAX_CODE_LENGTH:
        raise InvalidRequest(
            f"code and currency are at most {MAX_CODE_LENGTH} characters", key=req.key
        )
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in req.parties.items()):
        raise InvalidRequest("parties map party names to account ids, both text", key=req.key)
    if req.expires_at is not None and (
        not isinstance(req.expires_at, datetime) or req.expires_at.tzinfo is None
    ):
        raise InvalidRequest("expires_at must be a timezone-aware datetime", key=req.key)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def payload_hash(req: Request) -> bytes:
    """SHA-256 of a canonical JSON form of everything the request asks for (the key excluded)."""
    body: dict[str, Any] = {"operation": req.operation}
    for name in req.__dataclass_fields__:
        if name == "key":
            continue
        value = getattr(req, name)
        if isinstance(value, Mapping):
            value = dict(sorted(value.items()))
        elif isinstance(value, datetime):
            value = value.isoformat()
        body[name] = value
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()
