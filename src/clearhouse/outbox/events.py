"""Merchant events, written to the outbox in the transaction of the change they announce, so an
event exists exactly when its change committed. Webhook delivery reads them afterwards."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from clearhouse.db.schema import outbox


def emit(
    conn: Connection, merchant_id: str, type_: str, payload: dict[str, Any], now: datetime
) -> None:
    conn.execute(
        outbox.insert().values(
            merchant_id=merchant_id,
            type=type_,
            payload=json.dumps(payload, sort_keys=True, separators=(",", ":")),
            created_at=now,
            delivery_state="pending",
            attempts=0,
            next_attempt_at=now,
        )
    )
