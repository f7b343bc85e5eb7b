"""The bank-card quick pay channel (a UnionPay-style card network): the protocol, the adapter,
and here the values the card methods take and return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from clearhouse.money import Money

__all__ = ["BindChallenge", "BoundCard", "CardElements", "CardResult", "CardStatus"]


class CardStatus(StrEnum):
    OK = "OK"
    REFUSED = "REFUSED"  # final: ``error_code`` says why
    UNKNOWN = "UNKNOWN"  # no usable answer: retry with the same request id, or query


@dataclass(frozen=True, slots=True, repr=False)
class CardElements:
    """What the payer types to bind a card: 3 elements (name, ID number, card number), 4 with
    the bank-registered phone, and for a credit card the expiry (MMYY as printed) and CVN2.
    Never stored; ``repr`` shows only the card's last four digits."""

    holder_name: str
    id_number: str
    card_no: str
    phone: str | None = None
    expiry: str | None = None
    cvv: str | None = None

    def __repr__(self) -> str:
        given = [name for name in ("phone", "expiry", "cvv") if getattr(self, name)]
        return f"CardElements(card=****{self.card_no[-4:]}, with={'+'.join(given) or '-'})"


@dataclass(frozen=True, slots=True)
class BindChallenge:
    """Step 1 of a binding: the elements verified, an SMS code sent to the registered phone."""

    status: CardStatus
    raw: str
    request_id: str  # give it to ``bind_confirm`` (and to ``bind_start`` again to resend)
    masked_phone: str | None = None
    expires_at: datetime | None = None
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class BoundCard:
    """A bound card as the gateway keeps it: no card number, only the token and what shows."""

    status: CardStatus
    raw: str
    token: str | None = None
    masked_card_no: str | None = None
    bank: str | None = None
    bank_code: str | None = None
    card_type: str | None = None  # "debit" or "credit"
    single_limit: Money | None = None  # this channel's limits for this card
    daily_limit: Money | None = None
    issuer_single_limit: Money | None = None  # the issuer's, across every channel
    issuer_daily_limit: Money | None = None
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class CardResult:
    """The answer to an unbind or a payment SMS."""

    status: CardStatus
    raw: str
    masked_phone: str | None = None
    expires_at: datetime | None = None
    error_code: str | None = None
