"""The payout port: what the wallet asks of a bank's corporate payout interface, and the values
that cross it. The adapter (``wallet/bankwire``) speaks HTTP; tests may use a fake.

Like the channel adapters, a payout adapter never raises for the bank's answer: a batch whose
answer did not arrive (a timeout, a network failure, a body that does not verify) comes back as
``answered=False``, and the items stay submitted until a status query says what happened. The
bank de-duplicates on our withdrawal id (``ref``), so a query or a resubmission under the same
id can never pay twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from clearhouse.money import Money
from clearhouse.wallet.model import Rail


class ItemStatus(StrEnum):
    PAID = "PAID"
    FAILED = "FAILED"  # refused; ``code`` says why (final or short: see model.classify)
    NOT_FOUND = "NOT_FOUND"  # a query: the bank has no item under this id
    UNKNOWN = "UNKNOWN"  # no usable answer


@dataclass(frozen=True, slots=True)
class PayoutItem:
    ref: str  # our withdrawal id: the bank's de-duplication key
    amount: Money
    card_number: str = field(repr=False)
    holder_name: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PayoutBatch:
    batch_id: str
    rail: Rail
    items: tuple[PayoutItem, ...]

    @property
    def total(self) -> Money:
        assert self.items
        return sum((i.amount for i in self.items[1:]), self.items[0].amount)


@dataclass(frozen=True, slots=True)
class ItemResult:
    ref: str
    status: ItemStatus
    code: str | None = None  # the bank's reason for a refusal
    bank_txn_id: str | None = None
    paid_at: datetime | None = None
    amount: Money | None = None  # what the bank says it paid
    raw: str = ""  # the bank's answer about this item, kept as evidence


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    answered: bool
    items: tuple[ItemResult, ...] = ()
    raw: str = ""
    error_code: str | None = None  # TIMEOUT, NETWORK, BAD_RESPONSE, or the bank's refusal


class PayoutPort(Protocol):
    def submit(self, batch: PayoutBatch) -> BatchAnswer: ...

    def query(self, ref: str) -> ItemResult: ...

    def close(self) -> None: ...
