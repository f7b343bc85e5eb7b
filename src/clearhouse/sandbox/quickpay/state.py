"""One simulated quick pay channel instance: bind requests and their SMS codes, bindings (tokens),
consumptions and refunds, the journal behind the daily file, and the signed notifications.

No HTTP and no cryptography here: ``app`` parses, verifies, decrypts and signs; this decides,
raising ``Refusal`` with the network's respCode. The card data it keeps is the card number and
the bank-registered phone of bound cards (the channel must hold them to charge the card and
send codes); CVN2 only passes through ``Issuers.verify`` and is never kept. Thread-safe: the
served app and the notifier thread share one instance, and the issuers are shared further.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import httpx

from clearhouse.clock import Clock
from clearhouse.fees import FeeSchedule
from clearhouse.gateway.channels.quickpay.protocol import (
    BEIJING,
    CONSUME,
    CURRENCY,
    REFUND,
    QuickpayCredentials,
    business_day,
    expiry_from_wire,
    format_time,
    mask_card,
)
from clearhouse.money import Money
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.quickpay import banks
from clearhouse.sandbox.quickpay.banks import CardKind, Issuers
from clearhouse.sandbox.quickpay.files import FileLine

# The channel retries an unacknowledged notification with doubling waits (about 2 h in all).
RETRY_SCHEDULE = tuple(timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 64))
SMS_VALIDITY = timedelta(minutes=5)
SMS_MAX_TRIES = 5  # the fifth wrong code locks the request
REORDER_DELAY = timedelta(minutes=10)  # how long a REORDERED_NOTIFICATION is held back
DEFAULT_SMS_EXEMPT = Money(200_00, CURRENCY)  # small payments need no SMS code
_YUAN = 100
PROCESSING = "05"

# respCodes the channel itself gives.
DUPLICATE, BAD_VALUE, NOT_FOUND = "12", "10", "34"
CHANNEL_LIMIT, NOT_REFUNDABLE, OVER_REFUND, TOO_LATE = "33", "35", "36", "39"
NOT_BOUND, SMS_LOCKED, SMS_EXPIRED, SMS_REQUIRED, SMS_WRONG = "40", "67", "69", "70", "71"


def is_ack(response: httpx.Response) -> bool:
    """The channel stops retrying when the merchant answers HTTP 200 with the body ``ok``."""
    return response.status_code == 200 and response.text.strip() == "ok"


def quickpay_notifier(clock: Clock, client: httpx.Client | None = None) -> Notifier:
    return Notifier(clock, RETRY_SCHEDULE, is_ack, client)


class Refusal(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """This channel's per-card limits by card type; the issuer's own limits apply on top."""

    debit_single: Money
    debit_daily: Money
    credit_single: Money
    credit_daily: Money

    def of(self, kind: CardKind) -> tuple[Money, Money]:
        if kind is CardKind.CREDIT:
            return self.credit_single, self.credit_daily
        return self.debit_single, self.debit_daily


DEFAULT_LIMITS = ChannelLimits(
    debit_single=Money(5_000 * _YUAN, CURRENCY),
    debit_daily=Money(20_000 * _YUAN, CURRENCY),
    credit_single=Money(10_000 * _YUAN, CURRENCY),
    credit_daily=Money(20_000 * _YUAN, CURRENCY),
)


@dataclass(frozen=True, slots=True)
class SentSms:
    phone: str
    code: str
    text: str
    sent_at: datetime


@dataclass
class Challenge:
    phone: str
    code: str
    sent_at: datetime
    tries: int = 0  # wrong codes so far

    def check(self, code: str, now: datetime) -> None:
        if self.tries >= SMS_MAX_TRIES:
            raise Refusal(SMS_LOCKED)
        if now >= self.sent_at + SMS_VALIDITY:
            raise Refusal(SMS_EXPIRED)
        if not hmac.compare_digest(code.encode("ascii", "replace"), self.code.encode()):
            self.tries += 1
            raise Refusal(SMS_LOCKED if self.tries >= SMS_MAX_TRIES else SMS_WRONG)


@dataclass
class Binding:
    token: str
    card_no: str
    kind: CardKind
    bank: str
    phone: str
    bound_at: datetime
    active: bool = True


@dataclass
class BindRequest:
    order_id: str
    card_no: str
    kind: CardKind
    bank: str
    phone: str
    challenge: Challenge
    token: str | None = None  # set once confirmed


@dataclass
class PaySms:
    order_id: str
    token: str
    amount: Money
    challenge: Challenge


@dataclass
class Txn:
    order_id: str
    txn_type: str  # "01" consumption, "04" refund
    query_id: str
    amount: Money
    txn_time: datetime  # the merchant's txnTime
    card_no: str
    token: str
    notify_url: str
    result: str = PROCESSING  # the respCode of the outcome once known
    completed_at: datetime | None = None
    fee: Money = field(default_factory=lambda: Money.zero(CURRENCY))  # refund: fee returned
    orig_order_id: str = ""
    refunded: Money = field(default_factory=lambda: Money.zero(CURRENCY))
    fee_returned: Money = field(default_factory=lambda: Money.zero(CURRENCY))
    duplicate_query_ids: list[str] = field(default_factory=list)


class QuickpayState:
    def __init__(
        self,
        credentials: QuickpayCredentials,
        issuers: Issuers,
        clock: Clock,
        faults: FaultPlan,
        fee: FeeSchedule,
        notifier: Notifier | None,
        limits: ChannelLimits,
        sms_exempt: Money,
        build: Callable[[Txn, str], Callable[[], tuple[bytes, dict[str, str]]]],
    ) -> None:
        """``build(txn, query_id)`` makes a notification's body builder (``app`` signs)."""
        self.credentials = credentials
        self.issuers = issuers
        self.clock = clock
        self.faults = faults  # replaceable at run time (PUT /sandbox/faults)
        self.fee = fee
        self.notifier = notifier
        self.limits = limits
        self.sms_exempt = sms_exempt
        self._build = build
        self.lock = threading.RLock()
        self.bind_requests: dict[str, BindRequest] = {}
        self.bindings: dict[str, Binding] = {}
        self.pay_sms: dict[str, PaySms] = {}
        self.txns: dict[str, Txn] = {}
        self.used: dict[tuple[str, date], Money] = {}  # this channel's spend per card and day
        self.journal: dict[date, list[FileLine]] = {}
        self.outbox: dict[str, list[SentSms]] = {}
        self._seq = itertools.count(1)

    def _send_sms(self, phone: str, purpose: str) -> Challenge:
        now = self.clock.now()
        code = f"{secrets.randbelow(10**6):06d}"
        text = f"[quickpay sandbox] code {code}, valid 5 minutes: {purpose}"
        self.outbox.setdefault(phone, []).append(SentSms(phone, code, text, now))
        return Challenge(phone, code, now)

    def _query_id(self, at: datetime) -> str:
        return f"{format_time(at)}{next(self._seq):07d}"  # 21 digits

    # -- binding -------------------------------------------------------------------------------

    def bind_open(self, order_id: str, card_no: str, elements: Mapping[str, str]) -> BindRequest:
        """Real-name verification by the issuer, then an SMS code to the registered phone.
        ``elements`` (with CVN2 for a credit card) is read here and not kept."""
        existing = self.bind_requests.get(order_id)
        if existing is not None and existing.card_no != card_no:
            raise Refusal(DUPLICATE)
        expiry = elements.get("expired")
        code, card = self.issuers.verify(
            card_no,
            elements.get("customerNm", ""),
            elements.get("certifId", ""),
            elements.get("phoneNo") or None,
            expiry_from_wire(expiry) if expiry else None,
            elements.get("cvn2") or None,
            self.clock.now(),
        )
        if card is None:
            raise Refusal(code)
        if existing is not None and existing.token is not None:
            return existing
        purpose = f"binding the card ending {card_no[-4:]}"
        challenge = self._send_sms(card.phone, purpose)
        if existing is not None:  # a resend: a new code, the wrong tries still count
            challenge.tries = existing.challenge.tries
            existing.challenge = challenge
            return existing
        request = BindRequest(order_id, card_no, card.kind, card.issuer.name, card.phone, challenge)
        self.bind_requests[order_id] = request
        return request

    def bind_confirm(self, order_id: str, sms_code: str) -> Binding:
        request = self.bind_requests.get(order_id)
        if request is None:
            raise Refusal(NOT_FOUND)
        if request.token is not None:  # a retry of a confirmation already made
            return self.bindings[request.token]
        request.challenge.check(sms_code, self.clock.now())
        # One token per card and merchant: binding the same card again gives the same token.
        binding = next(
            (b for b in self.bindings.values() if b.card_no == request.card_no and b.active),
            None,
        )
        if binding is None:
            token = "99" + "".join(secrets.choice("0123456789") for _ in range(17))
            binding = Binding(
                token,
                request.card_no,
                request.kind,
                request.bank,
                request.phone,
                self.clock.now(),
            )
            self.bindings[token] = binding
        request.token = binding.token
        return binding

    def binding(self, token: str) -> Binding:
        binding = self.bindings.get(token)
        if binding is None or not binding.active:
            raise Refusal(NOT_BOUND)
        return binding

    def unbind(self, token: str) -> Binding:
        binding = self.binding(token)
        binding.active = False
        return binding

    # -- payments ------------------------------------------------------------------------------

    def send_pay_sms(self, order_id: str, token: str, amount: Money) -> PaySms:
        binding = self.binding(token)
        if order_id in self.txns:
            raise Refusal(DUPLICATE)
        purpose = f"paying {amount.to_decimal()} CNY with the card ending {binding.card_no[-4:]}"
        challenge = self._send_sms(binding.phone, purpose)
        previous = self.pay_sms.get(order_id)
        if previous is not None and (previous.token, previous.amount) == (token, amount):
            challenge.tries = previous.challenge.tries
        sms = PaySms(order_id, token, amount, challenge)
        self.pay_sms[order_id] = sms
        return sms

    def consume(
        self,
        order_id: str,
        token: str,
        amount: Money,
        sms_code: str | None,
        notify_url: str,
        txn_time: datetime,
        pay_timeout: datetime | None,
        merchant_verified: bool = False,
    ) -> Txn:
        """Accept a consumption (or refuse it with a code); the issuer's answer is the result
        that the query and the notification report. ``merchant_verified``: the merchant
        verified the payer itself (its payment password), which stands in for the SMS code."""
        existing = self.txns.get(order_id)
        if existing is not None:
            same = (existing.txn_type, existing.token, existing.amount) == (
                CONSUME[0],
                token,
                amount,
            )
            if not same:
                raise Refusal(DUPLICATE)
            return existing  # a retry: the same acceptance, no second charge
        binding = self.binding(token)
        now = self.clock.now()
        if amount.amount <= 0:
            raise Refusal(BAD_VALUE)
        if pay_timeout is not None and now > pay_timeout:
            raise Refusal(TOO_LATE)
        single, daily = self.limits.of(binding.kind)
        used = self.used.get((binding.card_no, business_day(now)), Money.zero(CURRENCY))
        if amount > single or used + amount > daily:
            raise Refusal(CHANNEL_LIMIT)
        if sms_code is not None:
            sms = self.pay_sms.get(order_id)
            if sms is None or (sms.token, sms.amount) != (token, amount):
                raise Refusal(SMS_REQUIRED)  # no code was sent for this order and amount
            sms.challenge.check(sms_code, now)
        elif amount > self.sms_exempt and not merchant_verified:
            raise Refusal(SMS_REQUIRED)
        txn = Txn(
            order_id,
            CONSUME[0],
            self._query_id(now),
            amount,
            txn_time,
            binding.card_no,
            token,
            notify_url,
        )
        self.txns[order_id] = txn
        self._complete(txn)
        return txn

    def _complete(self, txn: Txn) -> None:
        now = self.clock.now()
        if self.faults.hits(Fault.LATE_RESULT, txn.order_id):
            # Completes just after the Beijing midnight that ends the business day.
            next_day = business_day(now) + timedelta(days=1)
            now = datetime.combine(next_day, time(0, 0, 5), BEIJING)
        txn.result = self.issuers.authorize(txn.card_no, txn.amount, now)
        txn.completed_at = now
        if txn.result == banks.OK:
            fee = self.fee.fee(txn.amount)
            if self.faults.hits(Fault.WRONG_FEE, txn.order_id):
                fee = fee + Money(1, CURRENCY)
            txn.fee = fee
            key = (txn.card_no, business_day(now))
            self.used[key] = self.used.get(key, Money.zero(CURRENCY)) + txn.amount
            self._record(txn, txn.query_id, now, txn.amount, fee)
        self._notify(txn, txn.query_id)
        if txn.result != banks.OK or not self.faults.hits(Fault.DUPLICATE_PAYMENT, txn.order_id):
            return
        # The card is charged a second time under the same order: another queryId.
        if self.issuers.authorize(txn.card_no, txn.amount, now) == banks.OK:
            second = self._query_id(now)
            txn.duplicate_query_ids.append(second)
            self._record(txn, second, now, txn.amount, txn.fee)
            self._notify(txn, second)

    def refund(
        self, order_id: str, orig_order_id: str, amount: Money, notify_url: str, txn_time: datetime
    ) -> Txn:
        existing = self.txns.get(order_id)
        if existing is not None:
            same = (existing.txn_type, existing.orig_order_id, existing.amount) == (
                REFUND[0],
                orig_order_id,
                amount,
            )
            if not same:
                raise Refusal(DUPLICATE)
            return existing
        orig = self.txns.get(orig_order_id)
        if orig is None or orig.txn_type != CONSUME[0] or orig.result != banks.OK:
            raise Refusal(NOT_REFUNDABLE)
        if amount.amount <= 0:
            raise Refusal(BAD_VALUE)
        if orig.refunded + amount > orig.amount:
            raise Refusal(OVER_REFUND)
        now = self.clock.now()
        returned = self.fee.refunded_fee(orig.amount, orig.fee, orig.refunded, amount)
        self.issuers.credit(orig.card_no, amount)
        orig.refunded = orig.refunded + amount
        orig.fee_returned = orig.fee_returned + returned
        txn = Txn(
            order_id,
            REFUND[0],
            self._query_id(now),
            amount,
            txn_time,
            orig.card_no,
            orig.token,
            notify_url,
            result=banks.OK,
            completed_at=now,
            fee=returned,
            orig_order_id=orig_order_id,
        )
        self.txns[order_id] = txn
        self._record(txn, txn.query_id, now, -amount, -returned)
        self._notify(txn, txn.query_id)
        return txn

    # -- journal and notifications -------------------------------------------------------------

    def _record(self, txn: Txn, query_id: str, at: datetime, amount: Money, fee: Money) -> None:
        line = FileLine(
            txn.txn_type,
            txn.order_id,
            txn.orig_order_id,
            query_id,
            txn.txn_time,
            at,
            mask_card(txn.card_no),
            amount,
            fee,
        )
        self.journal.setdefault(business_day(at), []).append(line)

    def _notify(self, txn: Txn, query_id: str) -> None:
        if self.notifier is None or not txn.notify_url:
            return
        subject = txn.order_id
        if self.faults.hits(Fault.LOST_NOTIFICATION, subject):
            return
        reordered = self.faults.hits(Fault.REORDERED_NOTIFICATION, subject)
        delay = REORDER_DELAY if reordered else timedelta(0)
        copies = 2 if self.faults.hits(Fault.DUPLICATE_NOTIFICATION, subject) else 1
        for _ in range(copies):
            self.notifier.enqueue(txn.notify_url, self._build(txn, query_id), subject, delay)
