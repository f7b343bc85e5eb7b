"""Small hand-built statement lines and our records, for the matching tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from clearhouse.reconciliation.ours import OURS
from clearhouse.reconciliation.statements.model import LINES

DAY = date(2026, 11, 2)
AT = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


def line(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": "wechatpay",
        "account": "1900000109",
        "business_date": DAY,
        "occurred_at": AT,
        "kind": "payment",
        "channel_txn_id": None,
        "channel_refund_id": None,
        "merchant_ref": None,
        "parent_ref": None,
        "status": "SUCCESS",
        "currency": "CNY",
        "amount": 10_000,
        "fee": 60,
        "payout_id": None,
        "memo": None,
        "line_no": None,
    }
    row.update(kw)
    if "net" not in kw:
        row["net"] = row["amount"] - row["fee"]
    return row


def ours(**kw: Any) -> dict[str, Any]:
    ref = kw.get("merchant_ref", "att_1")
    kind = kw.get("kind", "payment")
    row: dict[str, Any] = {
        "channel": "wechatpay",
        "kind": kind,
        "merchant_ref": ref,
        "attempt_id": ref if kind == "payment" else "att_parent",
        "refund_id": ref if kind == "refund" else None,
        "intent_id": f"pay_{ref}",
        "merchant_order_id": f"order-{ref}",
        "channel_txn_id": None,
        "channel_refund_id": None,
        "status": "succeeded",
        "currency": "CNY",
        "amount": 10_000,
        "expected_fee": 60,
        "parent_amount": None,
        "refunded_before": None,
        "paid_by_attempt_id": ref if kind == "payment" else None,
        "fx_rate": None,
        "created_at": AT - timedelta(minutes=1),
        "confirmed_at": AT,
        "business_date": DAY,
    }
    row.update(kw)
    return row


def lines_table(rows: list[dict[str, Any]]) -> pa.Table:
    numbered = [
        r if r["line_no"] is not None else {**r, "line_no": i + 1} for i, r in enumerate(rows)
    ]
    return pa.Table.from_pylist(numbered, schema=LINES)


def ours_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=OURS)
