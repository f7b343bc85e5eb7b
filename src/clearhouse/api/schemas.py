"""The merchant API's request and response bodies (they are also its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

OrderId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-|*.]+$")


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_order_id: str = OrderId
    amount: StrictInt = Field(description="minor units of the currency (fen for CNY)")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    description: str = Field(min_length=1, max_length=128)
    # Free text, not an enum: which channels are enabled is the deployment's choice.
    channel: str = Field(
        pattern=r"^[a-z_]{2,16}$",
        examples=["wechatpay", "alipay", "card"],
        description="a channel, or a family of channels (card): routing picks one",
    )
    method: Literal["native", "jsapi", "page", "card"] = Field(
        description="native: QR code; jsapi: in the channel's app (needs payer_id); page: "
        "the channel's cashier page; card: a card the channel holds (payer_id is its token). "
        "Not every channel takes every method."
    )
    settlement: Literal["instant", "escrow"] = "escrow"
    expires_at: AwareDatetime | None = None
    payer_id: str | None = Field(default=None, min_length=1, max_length=64)
    payer_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="your id for the payer: the cashier shows their last method first",
    )


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(description="minor units, at most what is left to refund")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reason: str = Field(default="", max_length=80)


class AttemptOut(BaseModel):
    id: str
    channel: str
    method: str
    status: str
    channel_txn_id: str | None
    credential: str | None
    error_code: str | None


class PaymentOut(BaseModel):
    id: str
    merchant_order_id: str
    amount: int
    currency: str
    description: str
    settlement: str
    status: str
    commission: int
    fee: int | None
    refunded: int
    expires_at: datetime
    paid_at: datetime | None
    created_at: datetime
    attempt: AttemptOut | None


class RefundOut(BaseModel):
    id: str
    payment_id: str
    amount: int
    currency: str
    fee_returned: int
    reason: str
    status: str
    channel_refund_id: str | None
    error_code: str | None
    created_at: datetime


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


class DeliveryOut(BaseModel):
    id: int
    event_id: int
    url: str
    status_code: int | None
    error: str | None
    duration_ms: int
    manual: bool
    at: datetime


class EventOut(BaseModel):
    id: int
    type: str
    payload: dict[str, object]
    created_at: datetime
    delivery_state: str
    attempts: int


class ConsideredOut(BaseModel):
    channel: str
    excluded: str | None
    success_ppm: int
    fee: int
    weight: int
    score: int
    circuit: str


class RoutingOut(BaseModel):
    requested: str
    method: str
    chosen: str
    seed: int
    draw: int
    considered: list[ConsideredOut]
    created_at: datetime


class CashierOption(BaseModel):
    family: str
    available: bool
    channels: list[str]
    success_ppm: int
    fee: int | None
    reason: str | None
    last_used: bool
