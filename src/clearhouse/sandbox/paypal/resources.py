"""The sandbox's records (orders, captures, refunds) and their JSON as PayPal's REST API shows
them, HATEOAS links included. Pure: ``state`` holds the records and decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clearhouse.gateway.channels.paypal.protocol import format_time, to_amount
from clearhouse.money import Money

OPEN = ("CREATED", "PAYER_ACTION_REQUIRED")  # not approved yet


@dataclass
class Order:
    id: str
    request: dict[str, Any]  # as received: a replay under the same PayPal-Request-Id must match
    amount: Money
    reference_id: str
    custom_id: str
    invoice_id: str
    description: str
    payer_action: bool  # created with payment_source.paypal: the link is rel=payer-action
    return_url: str
    created_at: datetime
    status: str = "CREATED"
    updated_at: datetime | None = None
    payer_id: str = ""
    decline: bool = False  # the payer's funding will be declined at capture
    capture_id: str = ""


@dataclass
class Capture:
    id: str
    order_id: str
    amount: Money
    fee: Money
    custom_id: str
    invoice_id: str
    created_at: datetime
    completed_at: datetime  # later than created_at under LATE_RESULT
    status: str = "COMPLETED"
    refunded: Money | None = None
    refund_ids: list[str] = field(default_factory=list)


@dataclass
class Refund:
    id: str
    capture_id: str
    amount: Money
    fee_returned: Money
    invoice_id: str
    note_to_payer: str
    created_at: datetime
    refunded_total: Money  # of the capture, this refund included
    status: str = "COMPLETED"


def _link(base: str, path: str, rel: str, method: str = "GET") -> dict[str, str]:
    return {"href": f"{base}{path}", "rel": rel, "method": method}


def order_view(
    order: Order,
    base: str,
    merchant_id: str,
    captures: dict[str, Capture],
    refunds: dict[str, Refund],
) -> dict[str, Any]:
    unit: dict[str, Any] = {
        "reference_id": order.reference_id,
        "amount": to_amount(order.amount),
        "payee": {"merchant_id": merchant_id},
    }
    for name in ("custom_id", "invoice_id", "description"):
        if getattr(order, name):
            unit[name] = getattr(order, name)
    links = [_link(base, f"/v2/checkout/orders/{order.id}", "self")]
    if order.status in OPEN:
        rel = "payer-action" if order.payer_action else "approve"
        links.append(_link(base, f"/checkoutnow?token={order.id}", rel))
    if order.status == "APPROVED":
        links.append(_link(base, f"/v2/checkout/orders/{order.id}/capture", "capture", "POST"))
    view: dict[str, Any] = {
        "id": order.id,
        "intent": "CAPTURE",
        "status": order.status,
        "purchase_units": [unit],
        "create_time": format_time(order.created_at),
        "links": links,
    }
    if order.updated_at is not None:
        view["update_time"] = format_time(order.updated_at)
    if order.payer_id:
        email = f"{order.payer_id.lower()}@payer.example"
        view["payer"] = {"payer_id": order.payer_id, "email_address": email}
        view["payment_source"] = {"paypal": {"account_id": order.payer_id, "email_address": email}}
    if order.capture_id:
        capture = captures[order.capture_id]
        payments: dict[str, Any] = {"captures": [capture_view(capture, base)]}
        if capture.refund_ids:
            payments["refunds"] = [
                refund_view(refunds[r], capture, base) for r in capture.refund_ids
            ]
        unit["payments"] = payments
    return view


def capture_view(capture: Capture, base: str) -> dict[str, Any]:
    path = f"/v2/payments/captures/{capture.id}"
    view: dict[str, Any] = {
        "id": capture.id,
        "status": capture.status,
        "amount": to_amount(capture.amount),
        "final_capture": True,
        "seller_protection": {"status": "ELIGIBLE"},
        "create_time": format_time(capture.created_at),
        "update_time": format_time(capture.completed_at),
        "supplementary_data": {"related_ids": {"order_id": capture.order_id}},
        "links": [
            _link(base, path, "self"),
            _link(base, f"{path}/refund", "refund", "POST"),
            _link(base, f"/v2/checkout/orders/{capture.order_id}", "up"),
        ],
    }
    if capture.status == "DECLINED":
        view["status_details"] = {"reason": "DECLINED_BY_RISK_FRAUD_FILTERS"}
    else:
        view["seller_receivable_breakdown"] = {
            "gross_amount": to_amount(capture.amount),
            "paypal_fee": to_amount(capture.fee),
            "net_amount": to_amount(capture.amount - capture.fee),
        }
    for name in ("custom_id", "invoice_id"):
        if getattr(capture, name):
            view[name] = getattr(capture, name)
    return view


def refund_view(refund: Refund, capture: Capture, base: str) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": refund.id,
        "status": refund.status,
        "amount": to_amount(refund.amount),
        "seller_payable_breakdown": {
            "gross_amount": to_amount(refund.amount),
            "paypal_fee": to_amount(refund.fee_returned),
            "net_amount": to_amount(refund.amount - refund.fee_returned),
            "total_refunded_amount": to_amount(refund.refunded_total),
        },
        "create_time": format_time(refund.created_at),
        "update_time": format_time(refund.created_at),
        "links": [
            _link(base, f"/v2/payments/refunds/{refund.id}", "self"),
            _link(base, f"/v2/payments/captures/{capture.id}", "up"),
        ],
    }
    if refund.invoice_id:
        view["invoice_id"] = refund.invoice_id
    if capture.custom_id:
        view["custom_id"] = capture.custom_id
    if refund.note_to_payer:
        view["note_to_payer"] = refund.note_to_payer
    return view
