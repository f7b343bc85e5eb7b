"""Bank cards as pure values and rules: what a payer types to bind one, the real-name match,
what a card may carry on each channel, the issuer's limit across channels, and the payer's
payment password (its format, weak values, tries and lockout). No I/O.

The card flows themselves (channel calls, storage) are in ``cards.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise

from clearhouse.gateway.errors import GatewayError
from clearhouse.gateway.routing import Limits


class CardStatus(StrEnum):
    ACTIVE = "active"
    UNBOUND = "unbound"  # no payment may use it; binding it again makes it active


class BindingStatus(StrEnum):
    PENDING = "pending"  # the SMS code is out: confirm it
    CONFIRMED = "confirmed"
    FAILED = "failed"  # the code expired or was locked: start a new binding
    EXPIRED = "expired"  # never confirmed in time: its sealed elements are erased


# The channel's SMS code lives 5 minutes; a binding is kept three times that, so a confirmation
# sent as the code ran out still finds it, then expires and its sealed card data is erased.
BINDING_TTL = timedelta(minutes=15)


def binding_expired(created_at: datetime, now: datetime) -> bool:
    return now >= created_at + BINDING_TTL


# --- errors (stable codes, published by the API in api/errors.py) --------------------------


class CardError(GatewayError):
    code = "CARD_ERROR"


class CustomerNotFound(CardError):
    code = "CUSTOMER_NOT_FOUND"


class IdentityNotVerified(CardError):
    """Only a person whose identity is verified (real name and ID number on record, KYC class
    I or above, active) may bind a card."""

    code = "IDENTITY_NOT_VERIFIED"


class IdentityMismatch(CardError):
    """The holder's name or ID number is not the customer's verified identity (which one is not
    said: an answer per element would let a caller test them one by one)."""

    code = "IDENTITY_MISMATCH"


class InvalidCard(CardError):
    """A card element that cannot be right (``field`` names it, never its value)."""

    code = "INVALID_CARD"


class CardRefused(CardError):
    """The channel or the issuer refused the card; ``reason`` is the channel's stable code
    (CARD_ELEMENTS_MISMATCH, CARD_SECURITY_MISMATCH, CARD_EXPIRED, ...)."""

    code = "CARD_REFUSED"


class ChannelUnavailable(CardError):
    """No usable answer from the channel: nothing is known to have happened; retry."""

    code = "CHANNEL_UNAVAILABLE"


class BindingNotFound(CardError):
    code = "BINDING_NOT_FOUND"


class VerificationFailed(CardError):
    """The SMS code was refused; ``reason`` is SMS_CODE_WRONG (try again), SMS_CODE_EXPIRED or
    SMS_CODE_LOCKED (the binding is over: start a new one)."""

    code = "VERIFICATION_FAILED"


class CardNotFound(CardError):
    code = "CARD_NOT_FOUND"


class CardNotActive(CardError):
    """The card was unbound: no payment may use it until it is bound again."""

    code = "CARD_NOT_ACTIVE"


class IssuerLimitExceeded(CardError):
    """The payment would take the card over its issuer's single or daily limit, which holds for
    every channel together; nothing was sent."""

    code = "ISSUER_LIMIT_EXCEEDED"


class VerificationRequired(CardError):
    """Above the channel's small-amount exemption a card payment needs the payer's SMS code or
    payment password: the payment is stored, nothing was sent. Send the code
    (``POST /v1/payments/{id}/sms``), then send the same payment request again with
    ``verification``; or send it again with ``payment_password``."""

    code = "VERIFICATION_REQUIRED"


class BindingExpired(CardError):
    """The binding was not confirmed in time (``BINDING_TTL``): its sealed card data is erased;
    start a new one."""

    code = "BINDING_EXPIRED"


class PaymentPasswordNotSet(CardError):
    code = "PAYMENT_PASSWORD_NOT_SET"


class PaymentPasswordWrong(CardError):
    """``tries_left`` wrong tries before the password locks."""

    code = "PAYMENT_PASSWORD_WRONG"


class PaymentPasswordLocked(CardError):
    """Too many wrong tries in a row: refused, right or wrong, until ``locked_until`` (or a new
    password is set with a fresh SMS-confirmed binding)."""

    code = "PAYMENT_PASSWORD_LOCKED"


class PaymentPasswordWeak(CardError):
    """One digit repeated or a run of digits (123456, 654321): the first values guessed."""

    code = "PAYMENT_PASSWORD_WEAK"


class PaymentPasswordProofInvalid(CardError):
    """Setting a payment password needs the current one, or a binding of this customer's card
    confirmed by SMS code in the last ``PROOF_WINDOW`` and not yet used to set it."""

    code = "PAYMENT_PASSWORD_PROOF_INVALID"


# --- the elements a payer types ------------------------------------------------------------

_ID_NUMBER = re.compile(r"[0-9]{17}[0-9X]")  # resident identity card
_CARD_NUMBER = re.compile(r"[0-9]{13,19}")
_PHONE = re.compile(r"1[0-9]{10}")  # mainland mobile: where bank codes are sent
_EXPIRY = re.compile(r"(0[1-9]|1[0-2])[0-9]{2}")  # MMYY, as printed
_CVV = re.compile(r"[0-9]{3}")
SMS_CODE = re.compile(r"[0-9]{4,8}")
_NAME_FORBIDDEN = re.compile(r"[&{}=\x00-\x1f\x7f]")  # the wire's customerInfo syntax, controls
MAX_NAME = 60


def luhn_ok(number: str) -> bool:
    total = 0
    for i, digit in enumerate(int(d) for d in reversed(number)):
        doubled = digit * 2 - 9 if digit > 4 else digit * 2
        total += doubled if i % 2 else digit
    return total % 10 == 0


def check_elements(
    holder_name: str,
    id_number: str,
    card_no: str,
    phone: str | None,
    expiry: str | None,
    cvv: str | None,
) -> None:
    """Refuse elements that cannot be right before anything is sent or stored. The issuer
    decides the rest (whether they are this card's)."""
    if (
        not holder_name.strip()
        or len(holder_name) > MAX_NAME
        or _NAME_FORBIDDEN.search(holder_name)
    ):
        raise InvalidCard("the holder's name is not a name", field="holder_name")
    if not _ID_NUMBER.fullmatch(id_number):
        raise InvalidCard("the ID number is not a resident ID card number", field="id_number")
    if not _CARD_NUMBER.fullmatch(card_no) or not luhn_ok(card_no):
        raise InvalidCard("the card number is not a card number", field="card_number")
    if phone is not None and not _PHONE.fullmatch(phone):
        raise InvalidCard("the phone is not a mobile number", field="phone")
    if (expiry is None) != (cvv is None):
        raise InvalidCard("a credit card needs both its expiry and its CVV", field="expiry")
    if expiry is not None and not _EXPIRY.fullmatch(expiry):
        raise InvalidCard("the expiry is not MMYY", field="expiry")
    if cvv is not None and not _CVV.fullmatch(cvv):
        raise InvalidCard("the CVV is not three digits", field="cvv")


def check_sms_code(code: str, field: str = "sms_code") -> None:
    if not SMS_CODE.fullmatch(code):
        raise InvalidCard("an SMS code is digits only", field=field)


# --- the payment password --------------------------------------------------------------------

PAYMENT_PASSWORD = re.compile(r"[0-9]{6}")  # a 6-digit PIN, as the wallets' cashiers take it
MAX_PASSWORD_TRIES = 5  # wrong in a row, then locked
PASSWORD_LOCK = timedelta(hours=3)
# How recent the SMS-confirmed binding that proves the payer must be to set a password.
PROOF_WINDOW = timedelta(minutes=15)


def check_payment_password(password: str, field: str = "payment_password") -> None:
    if not PAYMENT_PASSWORD.fullmatch(password):
        raise CardError("a payment password is 6 digits", code="VALIDATION_ERROR", field=field)


def weak_password(password: str) -> bool:
    """One digit repeated, or each digit one more (or one less) than the one before."""
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(password)}
    return len(steps) == 1 and steps <= {0, 1, 9}


@dataclass(frozen=True, slots=True)
class PasswordTries:
    """The lockout state of a payment password: wrong tries in a row, and the lock."""

    failed: int
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def current(self, now: datetime) -> PasswordTries:
        """A lock that has run out starts the count again."""
        if self.locked_until is not None and now >= self.locked_until:
            return PasswordTries(0, None)
        return self

    def after_wrong(self, now: datetime) -> PasswordTries:
        failed = self.current(now).failed + 1
        if failed >= MAX_PASSWORD_TRIES:
            return PasswordTries(failed, now + PASSWORD_LOCK)
        return PasswordTries(failed, None)

    @property
    def tries_left(self) -> int:
        return max(0, MAX_PASSWORD_TRIES - self.failed)


def same_name(a: str, b: str) -> bool:
    """Names as the payer types them and as the identity holds them: spaces and case aside."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


# --- what a card may carry -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedLimits:
    """A channel's own limits for one card, from its bind answer (minor units; None: none)."""

    single: int | None
    daily: int | None

    def within(self, limits: Limits) -> Limits:
        """The channel's terms tightened by what it said of this card."""
        return replace(
            limits,
            single=_smaller(limits.single, self.single),
            card_daily=_smaller(limits.card_daily, self.daily),
        )


@dataclass(frozen=True, slots=True)
class CardAccess:
    """What routing needs of a card payment: the channels the card is signed on (with their
    limits for it). ``served``: the channels that take our card ids; ``ours``: the payer id is
    one of our cards, so no other channel can use it either."""

    ours: bool
    signed: dict[str, SignedLimits]
    served: frozenset[str]

    def applies_to(self, channel: str) -> bool:
        return self.ours or channel in self.served


@dataclass(frozen=True, slots=True)
class IssuerLimits:
    single: int | None
    daily: int | None


def known_issuer_limits(answers: Iterable[tuple[int | None, int | None]]) -> IssuerLimits:
    """The issuer's limits as the bind answers of the card's channels gave them (single,
    daily): the smallest of what is known, since the issuer applies one limit to all."""
    given = list(answers)
    singles = [s for s, _ in given if s is not None]
    dailies = [d for _, d in given if d is not None]
    return IssuerLimits(min(singles, default=None), min(dailies, default=None))


def issuer_refusal(limits: IssuerLimits, used_today: int, amount: int) -> str | None:
    """``"single"`` or ``"daily"`` if ``amount`` would break the issuer's limit, else None."""
    if limits.single is not None and amount > limits.single:
        return "single"
    if limits.daily is not None and used_today + amount > limits.daily:
        return "daily"
    return None


def _smaller(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
