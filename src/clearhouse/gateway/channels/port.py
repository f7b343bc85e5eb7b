"""The port every channel adapter implements, and the values that cross it. Pure.

Adapters never raise for a channel's answer: a network failure, a timeout, an answer that does
not parse or whose signature does not verify all come back as ``UNKNOWN`` (the money may have
moved; only a query or a notification can say). A clear refusal by the channel is ``FAILED``
with the channel's own error code. Exceptions are for notifications that fail verification
(``BadNotification``) and for programming errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from clearhouse.errors import ClearhouseError
from clearhouse.money import Money


class ChannelStatus(StrEnum):
    PENDING = "PENDING"  # accepted, payer has not paid yet / refund in progress
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # refused or paid nothing; final
    CLOSED = "CLOSED"  # closed unpaid (by us or on expiry); final
    UNKNOWN = "UNKNOWN"  # no usable answer: query again


class PayMethod(StrEnum):
    NATIVE = "native"  # QR code shown by the merchant (WeChat native, Alipay precreate)
    JSAPI = "jsapi"  # inside the channel's app, payer identified (WeChat openid)
    PAGE = "page"  # redirect to the channel's cashier page (Alipay page pay, PayPal approval)
    CARD = "card"  # a card the channel already holds for the payer: payer_id is its token


@dataclass(frozen=True, slots=True)
class PayOrder:
    attempt_id: str  # our reference at the channel (out_trade_no)
    amount: Money
    description: str
    method: PayMethod
    notify_url: str
    expires_at: datetime
    payer_id: str | None = None  # the payer's id at the channel (openid), for JSAPI
    # The payer's one-time code (a card payment's SMS code): used once, never kept or shown.
    verification: str | None = field(default=None, repr=False)
    # The payer's payment password: checked by the gateway's card port, never sent to a
    # channel, kept or shown. Once it is right, the port sends the order ``payer_verified``
    # (the merchant verified the payer itself, in place of the channel's SMS code).
    payment_password: str | None = field(default=None, repr=False)
    payer_verified: bool = False


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """The channel's answer about one payment attempt."""

    status: ChannelStatus
    raw: str  # the channel's answer as received (or the failure), kept as evidence (P3)
    channel_txn_id: str | None = None
    amount: Money | None = None  # what the channel says was paid
    paid_at: datetime | None = None
    credential: str | None = None  # what the payer needs: code_url, prepay_id, cashier URL
    error_code: str | None = None  # the channel's code, or TIMEOUT / NETWORK / BAD_RESPONSE
    # When the channel settles in another currency than the charge: the rate it converted at,
    # in units of the settlement currency per unit of the charge's (Stripe's exchange_rate).
    fx_rate: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RefundOrder:
    refund_no: str  # our refund request number: the same on every retry (out_refund_no)
    attempt_id: str
    refund: Money
    total: Money  # the original payment's amount
    reason: str
    notify_url: str  # empty: no notification asked for
    # One transaction of the order, when it is not the order's payment: a duplicate payment
    # (the payer paid the order twice), refunded by the channel's own id of it.
    channel_txn_id: str | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    status: ChannelStatus  # PENDING, SUCCEEDED, FAILED or UNKNOWN
    raw: str
    channel_refund_id: str | None = None
    amount: Money | None = None
    refunded_at: datetime | None = None
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified, decrypted notification. Exactly one of ``payment`` / ``refund`` is set."""

    attempt_id: str
    raw: str  # the decrypted resource, kept as evidence
    payment: ChannelResult | None = None
    refund_no: str | None = None
    refund: RefundResult | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """The HTTP answer a channel expects to a notification."""

    status_code: int
    body: str
    media_type: str


class BadNotification(ClearhouseError):
    """A notification that does not verify (signature, timestamp, decryption, format)."""

    code = "BAD_NOTIFICATION"


class ChannelPort(Protocol):
    name: str  # "wechatpay", "alipay": also the posting-rule sub-account of its clearing account

    def pay(self, order: PayOrder) -> ChannelResult: ...

    def query(self, attempt_id: str) -> ChannelResult: ...

    def close(self, attempt_id: str) -> ChannelResult: ...

    def refund(self, order: RefundOrder) -> RefundResult: ...

    def query_refund(self, refund_no: str, attempt_id: str) -> RefundResult: ...

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and decode a notification; raise ``BadNotification`` if it does not verify."""
        ...

    def ack(self, ok: bool) -> Ack: ...

    def close_client(self) -> None:
        """Release the adapter's connections (the port's ``close`` closes a payment)."""
        ...
