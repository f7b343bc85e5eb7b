"""The merchant API's request and response bodies (they are also its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

OrderId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-|*.]+$")
PIN = r"^[0-9]{6}$"


def _one_verification(verification: str | None, payment_password: str | None) -> None:
    if verification is not None and payment_password is not None:
        raise ValueError("give verification (the SMS code) or payment_password, not both")


class LegIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["channel", "balance", "subsidy"]
    amount: StrictInt = Field(description="minor units")
    account_id: str | None = Field(
        default=None, min_length=1, max_length=40, description="the payer's account (balance)"
    )


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
        "the channel's cashier page; card: a bound card (payer_id is its card id from "
        "/v1/customers/{id}/cards, or a card token the channel holds, as Stripe's). "
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
    legs: list[LegIn] | None = Field(
        default=None,
        max_length=3,
        description="a mixed payment: the parts, adding up to amount, one of them the channel's "
        "(the balance part is refunded first; the subsidy is not refunded)",
    )
    verification: str | None = Field(
        default=None,
        pattern=r"^[0-9]{4,8}$",
        description="a card payment above the channel's small-amount exemption: the payer's SMS "
        "code (POST /v1/payments/{id}/sms sends it). Not part of the request's identity: send "
        "the same request again with it. Never stored or shown.",
    )
    payment_password: str | None = Field(
        default=None,
        pattern=PIN,
        description="or, instead of the SMS code, the payer's payment password (set with POST "
        "/v1/customers/{id}/payment-password). Checked before anything is sent: a wrong one "
        "leaves the payment waiting. Not part of the request's identity; never stored or shown.",
    )

    @model_validator(mode="after")
    def _one_way(self) -> PaymentCreate:
        _one_verification(self.verification, self.payment_password)
        return self


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_order_id: str = OrderId
    amount: StrictInt
    description: str = Field(min_length=1, max_length=128)
    merchant_id: str | None = Field(
        default=None, min_length=1, max_length=40, description="a seller of your marketplace"
    )


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_group_id: str = OrderId
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    orders: list[OrderIn] = Field(min_length=2, max_length=50)
    channel: str = Field(pattern=r"^[a-z_]{2,16}$")
    method: Literal["native", "jsapi", "page", "card"]
    settlement: Literal["instant", "escrow"] = "escrow"
    expires_at: AwareDatetime | None = None
    payer_id: str | None = Field(default=None, min_length=1, max_length=64)
    payer_ref: str | None = Field(default=None, min_length=1, max_length=64)
    verification: str | None = Field(
        default=None,
        pattern=r"^[0-9]{4,8}$",
        description="a card payment above the channel's small-amount exemption: the payer's SMS "
        "code for the group (POST /v1/payment-groups/{id}/sms sends it); send the same request "
        "again with it. Never stored or shown.",
    )
    payment_password: str | None = Field(
        default=None,
        pattern=PIN,
        description="or the payer's payment password instead of the SMS code. Never stored or "
        "shown.",
    )

    @model_validator(mode="after")
    def _one_way(self) -> GroupCreate:
        _one_verification(self.verification, self.payment_password)
        return self


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


class GroupOut(BaseModel):
    id: str
    merchant_group_id: str
    amount: int
    currency: str
    status: str
    payments: list[PaymentOut]
    created_at: datetime


# --- cards ----------------------------------------------------------------------------------


class CardBindCreate(BaseModel):
    """What the payer types to bind a card: 3 elements (name, ID number, card number), 4 with
    the bank-registered phone; a credit card also its expiry and CVV. The CVV is used for this
    verification only: never stored."""

    model_config = ConfigDict(extra="forbid")

    holder_name: str = Field(min_length=1, max_length=60)
    id_number: str = Field(min_length=1, max_length=32, description="resident ID card number")
    card_number: str = Field(min_length=1, max_length=32)
    phone: str | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="the bank-registered phone (4 elements); without it the SMS code goes to the "
        "phone the bank has",
    )
    expiry: str | None = Field(
        default=None, min_length=1, max_length=8, description="credit cards: MMYY as printed"
    )
    cvv: str | None = Field(
        default=None, min_length=1, max_length=8, description="credit cards: never stored"
    )
    channel: str = Field(default="quickpay", pattern=r"^[a-z_]{2,16}$")


class CardBindingConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sms_code: str = Field(pattern=r"^[0-9]{4,8}$")


class CardSigningCreate(BaseModel):
    """Bind a card already held on another channel: the ID number again and, for a credit
    card, the CVV (never kept, so asked each time)."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(pattern=r"^[a-z_]{2,16}$")
    id_number: str = Field(min_length=1, max_length=32)
    cvv: str | None = Field(default=None, min_length=1, max_length=8)


class CardBindingOut(BaseModel):
    id: str
    customer_id: str
    channel: str
    card_id: str | None
    status: str  # pending | confirmed | failed | expired (not confirmed in 15 minutes)
    masked_phone: str | None
    expires_at: datetime | None  # of the SMS code
    error_code: str | None
    created_at: datetime


class CardSigningOut(BaseModel):
    channel: str
    status: str  # active | unbound
    currency: str
    single_limit: int | None  # this channel's limits for the card, minor units
    daily_limit: int | None


class CardOut(BaseModel):
    id: str  # the payer_id of a card payment
    customer_id: str
    masked_card_number: str
    bank: str | None
    card_type: str  # debit | credit
    status: str  # active | unbound
    signings: list[CardSigningOut]
    created_at: datetime


class PaymentSmsOut(BaseModel):
    payment_id: str  # a combined payment's: the order its attempt belongs to
    group_id: str | None  # a combined payment
    attempt_id: str
    channel: str
    amount: int  # what the code is for: the attempt's amount (a cart's total)
    currency: str
    masked_phone: str | None
    expires_at: datetime | None


class PaymentPasswordSet(BaseModel):
    """Set or change a customer's payment password (a 6-digit PIN, not one digit repeated or
    a run such as 123456). The proof: ``binding_id``, a card binding of this customer that
    you started and that was confirmed by SMS code in the last 15 minutes (binding a card, or
    signing a bound one again, as a forgotten password is reset); else ``current_password``.
    Never stored in clear, logged or shown."""

    model_config = ConfigDict(extra="forbid")

    password: str = Field(pattern=PIN)
    binding_id: str | None = Field(default=None, min_length=1, max_length=40)
    current_password: str | None = Field(default=None, pattern=PIN)


class PaymentPasswordOut(BaseModel):
    customer_id: str
    set: bool
    locked_until: datetime | None  # after 5 wrong tries in a row, for 3 hours
    tries_left: int | None  # before it locks
    updated_at: datetime | None


# --- wallet: top-ups, transfers, withdrawals, balances ---------------------------------------

AccountId = Field(min_length=1, max_length=40)


class TopupCreate(BaseModel):
    """Top up a buyer's balance through a channel payment (the money is the buyer's once
    paid: no commission, not refundable; it leaves by a withdrawal)."""

    model_config = ConfigDict(extra="forbid")

    topup_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_\-|*.]+$",
        description="your id for the top-up (the payment's merchant_order_id): idempotency",
    )
    account_id: str = AccountId
    amount: StrictInt = Field(description="minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    channel: str = Field(pattern=r"^[a-z_]{2,16}$")
    method: Literal["native", "jsapi", "page", "card"]
    expires_at: AwareDatetime | None = None
    payer_id: str | None = Field(default=None, min_length=1, max_length=64)
    payer_ref: str | None = Field(default=None, min_length=1, max_length=64)


class TopupOut(PaymentOut):
    purpose: str  # topup
    account_id: str | None


class TransferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transfer_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_\-|*.]+$",
        description="your id for the transfer: the same request again returns it",
    )
    from_account_id: str = AccountId
    to_account_id: str = AccountId
    amount: StrictInt = Field(description="minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    description: str = Field(default="", max_length=128)


class TransferOut(BaseModel):
    id: str
    transfer_id: str
    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    description: str
    status: str  # COMPLETED
    entry_id: int
    created_at: datetime


class WithdrawalCreate(BaseModel):
    """Withdraw from a buyer's balance to the buyer's own bound card. Paid in batches: the
    answer is REQUESTED; the outcome comes as an event (withdrawal.paid, withdrawal.failed,
    withdrawal.suspended) and on GET."""

    model_config = ConfigDict(extra="forbid")

    withdrawal_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_\-|*.]+$",
        description="your id for the withdrawal: the same request again returns it",
    )
    account_id: str = AccountId
    card_id: str = Field(min_length=1, max_length=40, description="a card of the same customer")
    amount: StrictInt = Field(description="minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class WithdrawalOut(BaseModel):
    id: str
    withdrawal_id: str
    account_id: str
    card_id: str
    amount: int
    currency: str
    rail: str  # realtime | batch | large_value
    status: str  # REQUESTED | SUBMITTED | PAID | FAILED | SUSPENDED
    due_at: datetime
    short_errors: int
    error_code: str | None
    batch_id: str | None
    bank_txn_id: str | None
    paid_at: datetime | None
    created_at: datetime


class BalanceOut(BaseModel):
    account_id: str
    role: str
    currency: str
    posted: int
    pending: int  # held: withdrawals on their way, parts of payments not yet taken
    available: int


# --- customers: buyers opened and seen by the merchant ----------------------------------------


class CustomerCreate(BaseModel):
    """Open a real-name buyer: opened at the lowest real-name class (I) with one account holding
    a buyer balance in your currency, and enrolled with you (your sellers may act for it too).
    An ID number that is a customer's already is refused (DUPLICATE_IDENTITY)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=60, description="the real name on the ID card")
    id_number: str = Field(min_length=1, max_length=32, description="resident ID card number")
    phone: str = Field(min_length=1, max_length=20, description="mainland mobile number")


class CustomerAccountOut(BaseModel):
    id: str  # the account_id of top-ups, transfers, withdrawals and balance parts
    status: str  # active | frozen | closed
    balances: list[str]  # currencies of its buyer balances


class CustomerOut(BaseModel):
    id: str  # the customer_id of the card routes
    kind: str  # person
    name: str
    id_number: str | None  # masked
    phone: str | None  # masked
    kyc_level: int  # 0 (unverified) to 3
    status: str  # active | frozen | closed
    accounts: list[CustomerAccountOut]
    created_at: datetime
