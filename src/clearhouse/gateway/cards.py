"""Bank cards for quick pay (P7): bind a card to a real-name customer (the issuer verifies the
elements and sends an SMS code), sign it on several channel instances, pay with our card id,
unbind it everywhere.

As with payments, every channel call happens between transactions, never inside one: a binding
is stored only after the channel has verified the elements and sent its code (a refusal leaves
no row), and a card only after the channel has confirmed the code and given its token.

What is kept (tables ``cards``, ``card_signings``, ``card_bindings``, ``card_usage``): the card
number, the holder's name, the phone and the expiry sealed under the server's key, a keyed
digest of the number (to find the same card again), the masked number, and per channel the
token and the limits its bind answer gave. The ID number is checked against the customer's
keyed digest and not kept with the card. The CVV goes from the request to the adapter, which
encrypts it for the channel, and nowhere else: no row, no log line, no answer holds it.

Paying: a payment names our card id as ``payer_id`` with method ``card``. Routing asks
``Cards.access`` which channels the card is signed on (only those are candidates, within the
limits their bind answers gave) and checks the issuer's limit across all of them before
anything is stored; ``CardChannel`` swaps the card id for the chosen channel's token when the
payment is sent, and above the channel's exemption asks for the payer's SMS code or payment
password (``payment_passwords.py``): a right password is sent as the merchant's own
verification of the payer, in place of the code.

Bindings never confirmed expire after ``BINDING_TTL`` (``expire_bindings``, run by the serving
process's workers and by ``clearhouse cards expire-bindings``): the sealed copy of the card's
elements is erased with them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, datetime
from functools import partial
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection, Row

from clearhouse.accounts.model import CustomerKind, KycLevel, Status, normalise_id_number
from clearhouse.clock import Clock
from clearhouse.db.schema import (
    card_bindings,
    card_signings,
    card_usage,
    cards,
    customers,
    payment_events,
    payment_groups,
)
from clearhouse.db.schema import payment_attempts as attempts_table
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway import customers as scope
from clearhouse.gateway import records
from clearhouse.gateway.card_model import (
    BINDING_TTL,
    BindingExpired,
    BindingNotFound,
    BindingStatus,
    CardAccess,
    CardError,
    CardNotActive,
    CardNotFound,
    CardRefused,
    CardStatus,
    ChannelUnavailable,
    CustomerNotFound,
    IdentityMismatch,
    IdentityNotVerified,
    InvalidCard,
    IssuerLimitExceeded,
    SignedLimits,
    VerificationFailed,
    VerificationRequired,
    binding_expired,
    check_elements,
    check_payment_password,
    check_sms_code,
    issuer_refusal,
    known_issuer_limits,
    same_name,
)
from clearhouse.gateway.channels.port import (
    Ack,
    ChannelResult,
    ChannelStatus,
    Notification,
    PayMethod,
    PayOrder,
    RefundOrder,
    RefundResult,
)
from clearhouse.gateway.channels.quickpay import BindChallenge, BoundCard, CardElements
from clearhouse.gateway.channels.quickpay import CardStatus as Answer
from clearhouse.gateway.channels.quickpay.adapter import QuickpayAdapter
from clearhouse.gateway.channels.quickpay.protocol import CURRENCY, business_day
from clearhouse.gateway.channels.registry import Channels
from clearhouse.gateway.errors import ChannelNotSupported, InvalidTransition, PaymentNotFound
from clearhouse.gateway.model import AttemptStatus
from clearhouse.gateway.payment_passwords import PaymentPasswords
from clearhouse.ids import new_id
from clearhouse.money import Money
from clearhouse.sealing import Sealer

log = logging.getLogger(__name__)

# Seal purposes: a value sealed for one use cannot be unsealed as another.
PAN, HOLDER, PHONE, EXPIRY, ELEMENTS = (
    "card.pan",
    "card.holder",
    "card.phone",
    "card.expiry",
    "card.binding",
)
# The channel's answers to a confirmation that are about the SMS code, not the card.
_SMS_REFUSALS = frozenset({"SMS_CODE_WRONG", "SMS_CODE_EXPIRED", "SMS_CODE_LOCKED"})
_TRY_AGAIN = "SMS_CODE_WRONG"  # the binding stays open; every other refusal ends it
SMS_SENT = "sms"  # the flow record's kind for a payment's SMS code sent
PASSWORD_CHECKED = "password"  # ... for a payment password checked (the outcome, never the value)


# --- the port: payments name our card id ----------------------------------------------------


class CardChannel:
    """A quick pay instance as the gateway's ``ChannelPort``: a payment's ``payer_id`` is our
    card id, swapped for this channel's token when sending. Everything else goes to the
    adapter as it is."""

    def __init__(self, adapter: QuickpayAdapter, engine: Engine, sms_exempt: int | None) -> None:
        """``sms_exempt``: payments above it (minor units) need the payer's SMS code or payment
        password."""
        self.adapter = adapter
        self.name = adapter.name
        self._engine = engine
        self._exempt = sms_exempt
        self.passwords: PaymentPasswords | None = None  # set by ``Cards``

    def pay(self, order: PayOrder) -> ChannelResult:
        if order.method is not PayMethod.CARD or not order.payer_id:
            return self.adapter.pay(replace(order, payment_password=None))  # refused, not sent
        with self._engine.connect() as conn:
            token = signed_token(conn, order.payer_id, self.name)
            sms_sent = conn.execute(
                select(payment_events.c.id).where(
                    payment_events.c.attempt_id == order.attempt_id,
                    payment_events.c.kind == SMS_SENT,
                )
            ).first()
        if token is None:
            # Unbound since routing chose this channel: nothing is sent.
            why = f"card {order.payer_id} is not signed on {self.name}"
            return ChannelResult(ChannelStatus.FAILED, why, error_code="CARD_NOT_SIGNED")
        if order.payment_password is not None:
            if order.verification is not None:
                raise CardError(
                    "verify with the SMS code or the payment password, not both",
                    code="VALIDATION_ERROR",
                    field="payment_password",
                )
            # Checked here, before anything is sent: a wrong password leaves the attempt
            # unsent (CREATED), so the payer may try again, within the password's tries.
            self._check_password(order, order.payer_id, order.payment_password)
            sent = replace(order, payer_id=token, payment_password=None, payer_verified=True)
            return self.adapter.pay(sent)
        if order.verification is not None:
            check_sms_code(order.verification, "verification")
        needs_code = self._exempt is not None and order.amount.amount > self._exempt
        # A code with none sent for this attempt would only get it refused (and the payment
        # with it): the attempt waits instead, as it does for a missing code.
        if (order.verification is None and needs_code) or (
            order.verification is not None and sms_sent is None
        ):
            # The attempt stays unsent (CREATED): the same request with the code sends it.
            self._verification_required(order)
        return self.adapter.pay(replace(order, payer_id=token))

    def _verification_required(self, order: PayOrder) -> None:
        assert order.payer_id is not None
        with self._engine.connect() as conn:
            attempt = conn.execute(
                select(attempts_table.c.intent_id, attempts_table.c.group_id).where(
                    attempts_table.c.id == order.attempt_id
                )
            ).one()
            methods = ["sms"]
            customer = _card_customer(conn, order.payer_id)
            if self.passwords is not None and self.passwords.usable(conn, customer):
                methods.append("payment_password")
        group = {} if attempt.group_id is None else {"group_id": attempt.group_id}
        raise VerificationRequired(
            f"{self.name} needs the payer's SMS code or payment password for this payment: send "
            "the same request with the password, or send the code, then the request with it",
            payment_id=attempt.intent_id,
            **group,
            attempt_id=order.attempt_id,
            channel=self.name,
            methods=methods,
        )

    def _check_password(self, order: PayOrder, card_id: str, password: str) -> None:
        """The card's holder's payment password, or raise; the outcome (never the value) goes
        on the payment's flow record."""
        check_payment_password(password)
        if self.passwords is None:
            raise ChannelNotSupported(f"{self.name} takes no payment password", channel=self.name)
        with self._engine.connect() as conn:
            customer = _card_customer(conn, card_id)
        try:
            self.passwords.verify(customer, password)
        except CardError as exc:
            self._record_check(order.attempt_id, exc.code)
            raise
        self._record_check(order.attempt_id, "verified")

    def _record_check(self, attempt_id: str, outcome: str) -> None:
        assert self.passwords is not None
        now = self.passwords.clock.now()

        def work(conn: Connection) -> None:
            intent_id = conn.execute(
                select(attempts_table.c.intent_id).where(attempts_table.c.id == attempt_id)
            ).scalar_one()
            records.record(
                conn,
                now,
                intent_id,
                PASSWORD_CHECKED,
                f"payment password {outcome}",
                attempt_id=attempt_id,
                status=outcome,
            )

        run_in_transaction(self._engine, work)

    def query(self, attempt_id: str) -> ChannelResult:
        return self.adapter.query(attempt_id)

    def close(self, attempt_id: str) -> ChannelResult:
        return self.adapter.close(attempt_id)

    def refund(self, order: RefundOrder) -> RefundResult:
        return self.adapter.refund(order)

    def query_refund(self, refund_no: str, attempt_id: str) -> RefundResult:
        return self.adapter.query_refund(refund_no, attempt_id)

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        return self.adapter.parse_notification(headers, body)

    def ack(self, ok: bool) -> Ack:
        return self.adapter.ack(ok)

    def close_client(self) -> None:
        self.adapter.close_client()


def card_ports(engine: Engine, channels: Channels) -> dict[str, CardChannel]:
    """The quick pay instances among ``channels``, as ports that take our card ids."""
    found: dict[str, CardChannel] = {}
    for name in channels.names():
        channel = channels.get(name)
        if isinstance(channel.port, QuickpayAdapter):
            found[name] = CardChannel(channel.port, engine, channel.terms.sms_exempt)
    return found


# --- reads and writes inside the caller's transaction ----------------------------------------


def _card_customer(conn: Connection, card_id: str) -> str:
    customer: str = conn.execute(
        select(cards.c.customer_id).where(cards.c.id == card_id)
    ).scalar_one()
    return customer


def signed_token(conn: Connection, card_id: str, channel: str) -> str | None:
    """The channel's token for an active card signed there, else None."""
    token: str | None = conn.execute(
        select(card_signings.c.token)
        .join(cards, cards.c.id == card_signings.c.card_id)
        .where(
            card_signings.c.card_id == card_id,
            card_signings.c.channel == channel,
            card_signings.c.status == CardStatus.ACTIVE.value,
            cards.c.status == CardStatus.ACTIVE.value,
        )
    ).scalar()
    return token


def check_identity(
    conn: Connection, customer_id: str, holder_name: str, id_number: str, pii_key: bytes
) -> None:
    """The holder must be the customer, as its verified real-name identity says."""
    row = conn.execute(
        select(
            customers.c.kind,
            customers.c.name,
            customers.c.id_number_digest,
            customers.c.kyc_level,
            customers.c.status,
        ).where(customers.c.id == customer_id)
    ).first()
    if row is None:
        raise CustomerNotFound(f"no customer {customer_id!r}", customer_id=customer_id)
    if (
        row.kind != CustomerKind.PERSON.value
        or row.status != Status.ACTIVE.value
        or row.kyc_level < KycLevel.CLASS_I
        or row.id_number_digest is None
    ):
        raise IdentityNotVerified(
            "only an active person with a verified identity may bind a card",
            customer_id=customer_id,
        )
    # The customer's digest, computed as accounts.handlers.open_customer stores it.
    digest = hmac.new(pii_key, normalise_id_number(id_number).encode(), hashlib.sha256).digest()
    same_id = hmac.compare_digest(digest, bytes(row.id_number_digest))
    if not (same_id and same_name(holder_name, row.name)):
        raise IdentityMismatch(
            "the holder's name or ID number is not this customer's verified identity",
            customer_id=customer_id,
        )


def _card_row(conn: Connection, card_id: str, lock: bool = False) -> Row[Any]:
    stmt = select(cards).where(cards.c.id == card_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise CardNotFound(f"no card {card_id!r}", card_id=card_id)
    return row


def card_view(conn: Connection, card_id: str) -> dict[str, Any]:
    """A card as merchants see it: masked, no token, no sealed value."""
    row = _card_row(conn, card_id)
    signings = conn.execute(
        select(card_signings)
        .where(card_signings.c.card_id == card_id)
        .order_by(card_signings.c.channel)
    ).all()
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "masked_card_number": row.masked_pan,
        "bank": row.bank,
        "card_type": row.card_type,
        "status": row.status,
        "signings": [
            {
                "channel": s.channel,
                "status": s.status,
                "currency": s.currency,
                "single_limit": s.single_limit,
                "daily_limit": s.daily_limit,
            }
            for s in signings
        ],
        "created_at": row.created_at.isoformat(),
    }


def binding_view(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "channel": row.channel,
        "card_id": row.card_id,
        "status": row.status,
        "masked_phone": row.masked_phone,
        "expires_at": None if row.expires_at is None else row.expires_at.isoformat(),
        "error_code": row.error_code,
        "created_at": row.created_at.isoformat(),
    }


def _binding_row(conn: Connection, bind_id: str, lock: bool = False) -> Row[Any]:
    stmt = select(card_bindings).where(card_bindings.c.id == bind_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise BindingNotFound(f"no card binding {bind_id!r}", binding_id=bind_id)
    return row


# What an expired binding keeps: no card data, and why it ended.
_EXPIRED: dict[str, Any] = {
    "status": BindingStatus.EXPIRED.value,
    "error_code": BindingExpired.code,
    "elements_sealed": None,
}


def _still_open(row: Row[Any]) -> None:
    """Raise unless the binding waits for its code."""
    if row.status == BindingStatus.EXPIRED.value:
        raise BindingExpired(
            f"binding {row.id} was not confirmed within {BINDING_TTL.seconds // 60} minutes: "
            "start a new one",
            binding_id=row.id,
        )
    if row.status != BindingStatus.PENDING.value:
        raise InvalidTransition(
            f"binding {row.id} ended ({row.error_code}): start a new one", binding_id=row.id
        )


def expire_bindings(engine: Engine, now: datetime, limit: int = 1000) -> int:
    """Expire the bindings started ``BINDING_TTL`` or more before ``now`` and never confirmed,
    erasing their sealed card elements. Idempotent; returns how many expired (at most
    ``limit`` a run: a backlog drains over the next runs)."""

    def work(conn: Connection) -> int:
        due = list(
            conn.execute(
                select(card_bindings.c.id)
                .where(
                    card_bindings.c.status == BindingStatus.PENDING.value,
                    card_bindings.c.created_at <= now - BINDING_TTL,
                )
                .order_by(card_bindings.c.created_at)
                .limit(limit)
            ).scalars()
        )
        if not due:
            return 0
        done = conn.execute(
            update(card_bindings)
            .where(
                card_bindings.c.id.in_(due),
                card_bindings.c.status == BindingStatus.PENDING.value,
            )
            .values(_EXPIRED | {"updated_at": now})
        )
        return int(done.rowcount)

    expired = run_in_transaction(engine, work)
    if expired:
        log.info("%d card binding(s) expired unconfirmed; their sealed elements erased", expired)
    return expired


def _minor(amount: Money | None) -> int | None:
    return None if amount is None else amount.amount


# --- the service -----------------------------------------------------------------------------


class Cards:
    def __init__(
        self, engine: Engine, clock: Clock, sealer: Sealer, pii_key: bytes, channels: Channels
    ) -> None:
        """``pii_key``: the key of the customers' ID number digests (``Settings.pii_key``)."""
        self.engine = engine
        self.clock = clock
        self.sealer = sealer
        self._pii_key = pii_key
        self.passwords = PaymentPasswords(engine, clock, sealer)
        self.ports: dict[str, CardChannel] = {}
        for name in channels.names():
            port = channels.get(name).port
            if isinstance(port, CardChannel):
                port.passwords = self.passwords
                self.ports[name] = port

    def _port(self, channel: str) -> CardChannel:
        port = self.ports.get(channel)
        if port is None:
            raise ChannelNotSupported(f"{channel!r} is not a card channel", channel=channel)
        return port

    def _seal(self, value: str, purpose: str) -> bytes:
        return self.sealer.seal(value.encode(), purpose)

    def _unseal(self, sealed: bytes | None, purpose: str) -> str | None:
        return None if sealed is None else self.sealer.unseal(bytes(sealed), purpose).decode()

    # --- binding ------------------------------------------------------------------------------

    def start_binding(
        self,
        customer_id: str,
        elements: CardElements,
        channel: str = "quickpay",
        *,
        merchant_id: str,
    ) -> dict[str, Any]:
        """Check the elements and the holder's identity, then have the channel verify them with
        the issuer and send its SMS code. Nothing is stored unless the channel accepted. A
        customer outside the merchant's scope is unknown to it (``gateway/customers.py``)."""
        elements = replace(elements, id_number=normalise_id_number(elements.id_number))
        check_elements(
            elements.holder_name,
            elements.id_number,
            elements.card_no,
            elements.phone,
            elements.expiry,
            elements.cvv,
        )
        port = self._port(channel)

        def check(c: Connection) -> None:
            scope.require_customer(c, merchant_id, customer_id)
            check_identity(c, customer_id, elements.holder_name, elements.id_number, self._pii_key)

        run_in_transaction(self.engine, check, readonly=True)
        challenge = port.adapter.bind_start(elements)
        _accepted(challenge.status, challenge.error_code, channel)
        # What the confirmation needs to make the card; never the CVV, nor the ID number.
        kept = {
            "card_no": elements.card_no,
            "holder_name": elements.holder_name,
            "phone": elements.phone,
            "expiry": elements.expiry,
        }
        sealed = self._seal(json.dumps(kept), ELEMENTS)
        return run_in_transaction(
            self.engine,
            lambda c: self._store_binding(
                c, customer_id, merchant_id, channel, challenge, None, sealed
            ),
        )

    def sign_on(
        self,
        card_id: str,
        channel: str,
        id_number: str,
        cvv: str | None = None,
        *,
        merchant_id: str,
    ) -> dict[str, Any]:
        """Bind a card we hold on another channel: its elements come from the sealed card, the
        payer gives the ID number again (checked against the identity) and, for a credit card,
        the CVV (never kept, so asked each time). Confirm like any binding."""
        port = self._port(channel)
        id_number = normalise_id_number(id_number)

        def load(conn: Connection) -> tuple[Row[Any], CardElements]:
            scope.require_card(conn, merchant_id, card_id)
            row = _card_row(conn, card_id)
            if row.status != CardStatus.ACTIVE.value:
                raise CardNotActive(f"card {card_id} is unbound", card_id=card_id)
            elements = CardElements(
                holder_name=self._unseal(row.holder_sealed, HOLDER) or "",
                id_number=id_number,
                card_no=self._unseal(row.pan_sealed, PAN) or "",
                phone=self._unseal(row.phone_sealed, PHONE),
                # A debit card verifies without expiry and CVV, whatever was typed once.
                expiry=self._unseal(row.expiry_sealed, EXPIRY)
                if row.card_type == "credit"
                else None,
                cvv=cvv,
            )
            check_identity(conn, row.customer_id, elements.holder_name, id_number, self._pii_key)
            return row, elements

        row, elements = run_in_transaction(self.engine, load, readonly=True)
        if row.card_type == "credit" and cvv is None:
            raise InvalidCard("a credit card needs its CVV again: it is never kept", field="cvv")
        if row.card_type != "credit" and cvv is not None:
            raise InvalidCard("a debit card is bound without a CVV", field="cvv")
        check_elements(
            elements.holder_name,
            elements.id_number,
            elements.card_no,
            elements.phone,
            elements.expiry,
            elements.cvv,
        )
        challenge = port.adapter.bind_start(elements)
        _accepted(challenge.status, challenge.error_code, channel)
        return run_in_transaction(
            self.engine,
            lambda c: self._store_binding(
                c, row.customer_id, merchant_id, channel, challenge, card_id, None
            ),
        )

    def _store_binding(
        self,
        conn: Connection,
        customer_id: str,
        merchant_id: str | None,
        channel: str,
        challenge: BindChallenge,
        card_id: str | None,
        sealed: bytes | None,
    ) -> dict[str, Any]:
        now = self.clock.now()
        bind_id = new_id("bnd")
        conn.execute(
            card_bindings.insert().values(
                id=bind_id,
                customer_id=customer_id,
                merchant_id=merchant_id,
                channel=channel,
                request_id=challenge.request_id,
                card_id=card_id,
                elements_sealed=sealed,
                masked_phone=challenge.masked_phone,
                expires_at=challenge.expires_at,
                status=BindingStatus.PENDING.value,
                created_at=now,
                updated_at=now,
            )
        )
        log.info("card binding %s started on %s for %s", bind_id, channel, customer_id)
        return binding_view(_binding_row(conn, bind_id))

    def binding(self, bind_id: str) -> dict[str, Any]:
        return run_in_transaction(
            self.engine, lambda c: binding_view(_binding_row(c, bind_id)), readonly=True
        )

    def confirm_binding(self, bind_id: str, sms_code: str, *, merchant_id: str) -> dict[str, Any]:
        """The payer's SMS code: the channel binds the card and gives its token; the card is
        stored (or, bound before, made active again) and signed on that channel. A confirmation
        already made answers the same card."""
        check_sms_code(sms_code)

        def load(c: Connection) -> Row[Any]:
            scope.require_binding(c, merchant_id, bind_id)
            return _binding_row(c, bind_id)

        row = run_in_transaction(self.engine, load, readonly=True)
        if row.status == BindingStatus.CONFIRMED.value:
            return self.card(row.card_id)
        if row.status == BindingStatus.PENDING.value and binding_expired(
            row.created_at, self.clock.now()
        ):
            # Not left to the purge: a late confirmation finds the binding over, its data gone.
            run_in_transaction(self.engine, lambda c: self._expire(c, bind_id))
            row = run_in_transaction(self.engine, lambda c: _binding_row(c, bind_id), readonly=True)
        _still_open(row)
        bound = self._port(row.channel).adapter.bind_confirm(row.request_id, sms_code)
        if bound.status is Answer.UNKNOWN:
            raise ChannelUnavailable(
                f"{row.channel} gave no usable answer; confirm again",
                channel=row.channel,
                reason=bound.error_code,
            )
        if bound.status is Answer.REFUSED:
            reason = bound.error_code or "REFUSED"
            if reason != _TRY_AGAIN:
                run_in_transaction(self.engine, lambda c: self._end_binding(c, bind_id, reason))
            if reason in _SMS_REFUSALS:
                raise VerificationFailed("the SMS code was refused", reason=reason)
            raise CardRefused(f"{row.channel} refused the binding", reason=reason)
        if bound.token is None or bound.card_type is None or bound.masked_card_no is None:
            raise ChannelUnavailable(
                f"{row.channel} answered without the card", reason="BAD_RESPONSE"
            )
        return run_in_transaction(
            self.engine, lambda c: self._confirmed(c, bind_id, bound), retry_integrity=True
        )

    def _end_binding(self, conn: Connection, bind_id: str, reason: str) -> None:
        conn.execute(
            update(card_bindings)
            .where(
                card_bindings.c.id == bind_id,
                card_bindings.c.status == BindingStatus.PENDING.value,
            )
            .values(
                status=BindingStatus.FAILED.value,
                error_code=reason,
                elements_sealed=None,  # nothing to make a card from any more
                updated_at=self.clock.now(),
            )
        )

    def _expire(self, conn: Connection, bind_id: str) -> None:
        conn.execute(
            update(card_bindings)
            .where(
                card_bindings.c.id == bind_id,
                card_bindings.c.status == BindingStatus.PENDING.value,
            )
            .values(_EXPIRED | {"updated_at": self.clock.now()})
        )

    def expire_bindings(self, now: datetime | None = None) -> int:
        """See ``expire_bindings``: what the serving process's workers run."""
        return expire_bindings(self.engine, now or self.clock.now())

    def _confirmed(self, conn: Connection, bind_id: str, bound: BoundCard) -> dict[str, Any]:
        row = _binding_row(conn, bind_id, lock=True)
        if row.status == BindingStatus.CONFIRMED.value:
            return card_view(conn, row.card_id)
        # Expired (its elements erased) while the channel was confirming: nothing to make a
        # card from; the payer binds again (the channel gives the same token).
        _still_open(row)
        now = self.clock.now()
        card_id = row.card_id
        if card_id is None:
            kept = json.loads(self._unseal(row.elements_sealed, ELEMENTS) or "{}")
            card_id = self._keep_card(conn, row.customer_id, kept, bound, now)
        else:
            # Signed again (or on another channel) after proving the card once more.
            conn.execute(
                update(cards)
                .where(cards.c.id == card_id)
                .values(status=CardStatus.ACTIVE.value, updated_at=now)
            )
        self._sign(conn, card_id, row.channel, bound, now)
        conn.execute(
            update(card_bindings)
            .where(card_bindings.c.id == bind_id)
            .values(
                status=BindingStatus.CONFIRMED.value,
                card_id=card_id,
                elements_sealed=None,  # the card holds them now
                updated_at=now,
            )
        )
        log.info("card %s signed on %s (binding %s)", card_id, row.channel, bind_id)
        return card_view(conn, card_id)

    def _keep_card(
        self,
        conn: Connection,
        customer_id: str,
        kept: dict[str, str | None],
        bound: BoundCard,
        now: datetime,
    ) -> str:
        """The customer's card with this number: made, or (bound before) updated and active."""
        card_no = kept["card_no"] or ""
        digest = self.sealer.digest(card_no.encode(), PAN)
        values: dict[str, Any] = {
            "masked_pan": bound.masked_card_no,
            "bank": bound.bank,
            "bank_code": bound.bank_code,
            "card_type": bound.card_type,
            "holder_sealed": self._seal(kept["holder_name"] or "", HOLDER),
            "status": CardStatus.ACTIVE.value,
            "updated_at": now,
        }
        # Bound with three elements, the phone on record (if any) stays.
        if kept.get("phone"):
            values["phone_sealed"] = self._seal(str(kept["phone"]), PHONE)
        if kept.get("expiry"):
            values["expiry_sealed"] = self._seal(str(kept["expiry"]), EXPIRY)
        existing = conn.execute(
            select(cards.c.id).where(
                cards.c.customer_id == customer_id, cards.c.pan_digest == digest
            )
        ).scalar()
        if existing is not None:
            conn.execute(update(cards).where(cards.c.id == existing).values(values))
            return str(existing)
        card_id = new_id("card")
        conn.execute(
            cards.insert().values(
                id=card_id,
                customer_id=customer_id,
                pan_digest=digest,
                pan_sealed=self._seal(card_no, PAN),
                created_at=now,
                **values,
            )
        )
        return card_id

    def _sign(
        self, conn: Connection, card_id: str, channel: str, bound: BoundCard, now: datetime
    ) -> None:
        values = {
            "token": bound.token,
            "currency": CURRENCY,
            "single_limit": _minor(bound.single_limit),
            "daily_limit": _minor(bound.daily_limit),
            "issuer_single_limit": _minor(bound.issuer_single_limit),
            "issuer_daily_limit": _minor(bound.issuer_daily_limit),
            "status": CardStatus.ACTIVE.value,
            "updated_at": now,
        }
        done = conn.execute(
            update(card_signings)
            .where(card_signings.c.card_id == card_id, card_signings.c.channel == channel)
            .values(values)
        )
        if done.rowcount == 0:
            conn.execute(
                card_signings.insert().values(
                    card_id=card_id, channel=channel, created_at=now, **values
                )
            )

    # --- cards --------------------------------------------------------------------------------

    def card(self, card_id: str) -> dict[str, Any]:
        return run_in_transaction(self.engine, lambda c: card_view(c, card_id), readonly=True)

    def list_cards(self, customer_id: str, *, merchant_id: str) -> list[dict[str, Any]]:
        """The customer's active cards, oldest first."""

        def work(conn: Connection) -> list[dict[str, Any]]:
            scope.require_customer(conn, merchant_id, customer_id)
            ids = conn.execute(
                select(cards.c.id)
                .where(
                    cards.c.customer_id == customer_id,
                    cards.c.status == CardStatus.ACTIVE.value,
                )
                .order_by(cards.c.created_at, cards.c.id)
            ).scalars()
            return [card_view(conn, card_id) for card_id in ids]

        return run_in_transaction(self.engine, work, readonly=True)

    def unbind(self, card_id: str, *, merchant_id: str) -> dict[str, Any]:
        """Stop the card here first (no new payment may use it), then unbind it at every
        channel it is signed on. A channel that does not answer keeps its signing active:
        ``ChannelUnavailable``, and unbinding again finishes the work."""

        def stop(conn: Connection) -> list[tuple[str, str]]:
            scope.require_card(conn, merchant_id, card_id)
            row = _card_row(conn, card_id, lock=True)
            if row.status == CardStatus.ACTIVE.value:
                conn.execute(
                    update(cards)
                    .where(cards.c.id == card_id)
                    .values(status=CardStatus.UNBOUND.value, updated_at=self.clock.now())
                )
            signed = conn.execute(
                select(card_signings.c.channel, card_signings.c.token).where(
                    card_signings.c.card_id == card_id,
                    card_signings.c.status == CardStatus.ACTIVE.value,
                )
            ).all()
            return [(s.channel, s.token) for s in signed]

        unanswered: list[str] = []
        for channel, token in run_in_transaction(self.engine, stop):
            port = self.ports.get(channel)
            if port is not None:
                result = port.adapter.unbind(token)
                # CARD_NOT_BOUND: the channel had already let it go.
                done = result.status is Answer.OK or result.error_code == "CARD_NOT_BOUND"
                if not done:
                    unanswered.append(channel)
                    continue
            else:
                log.warning(
                    "card %s: channel %s is not configured; signing ended here", card_id, channel
                )
            run_in_transaction(self.engine, partial(self._unsign, card_id=card_id, channel=channel))
        if unanswered:
            raise ChannelUnavailable(
                "the card is unbound here; some channels did not confirm: unbind again",
                card_id=card_id,
                channels=unanswered,
            )
        log.info("card %s unbound", card_id)
        return self.card(card_id)

    def _unsign(self, conn: Connection, card_id: str, channel: str) -> None:
        conn.execute(
            update(card_signings)
            .where(card_signings.c.card_id == card_id, card_signings.c.channel == channel)
            .values(status=CardStatus.UNBOUND.value, updated_at=self.clock.now())
        )

    # --- paying -------------------------------------------------------------------------------

    def send_pay_sms(self, merchant_id: str, payment_id: str) -> dict[str, Any]:
        """The payer's SMS code for a card payment that waits for it (its attempt not sent
        yet): for this attempt and amount only. Sending again sends a new code."""

        def load(conn: Connection) -> tuple[records.Attempt, records.Intent]:
            intent = records.merchant_intent(conn, merchant_id, payment_id)
            return records.attempts_of(conn, intent.id)[-1], intent

        return self._send_sms(load, payment_id)

    def send_group_sms(self, merchant_id: str, group_id: str) -> dict[str, Any]:
        """The same for a combined payment (P11): the code for its one channel attempt, which
        carries the cart's total."""

        def load(conn: Connection) -> tuple[records.Attempt, records.Intent]:
            attempt_id = conn.execute(
                select(attempts_table.c.id)
                .join(payment_groups, payment_groups.c.id == attempts_table.c.group_id)
                .where(payment_groups.c.id == group_id, payment_groups.c.merchant_id == merchant_id)
                .order_by(attempts_table.c.created_at.desc(), attempts_table.c.id.desc())
            ).scalar()
            attempt = None if attempt_id is None else records.attempt(conn, attempt_id)
            if attempt is None:
                raise PaymentNotFound(f"no payment group {group_id!r}", payment_id=group_id)
            return attempt, records.intent(conn, attempt.intent_id)

        return self._send_sms(load, None)

    def _send_sms(
        self,
        load_attempt: Callable[[Connection], tuple[records.Attempt, records.Intent]],
        payment_id: str | None,
    ) -> dict[str, Any]:
        def load(conn: Connection) -> tuple[records.Attempt, str, Money]:
            attempt, intent = load_attempt(conn)
            if (
                attempt.channel not in self.ports
                or attempt.method != PayMethod.CARD.value
                or attempt.status is not AttemptStatus.CREATED
                or not attempt.payer_id
            ):
                raise InvalidTransition(
                    "only a card payment waiting for the payer's code can be sent one",
                    payment_id=payment_id or attempt.group_id,
                )
            token = signed_token(conn, attempt.payer_id, attempt.channel)
            if token is None:
                raise CardNotActive(
                    f"card {attempt.payer_id} is no longer signed on {attempt.channel}",
                    card_id=attempt.payer_id,
                )
            return attempt, token, records.attempt_amount(attempt, intent)

        attempt, token, amount = run_in_transaction(self.engine, load, readonly=True)
        result = self.ports[attempt.channel].adapter.send_pay_sms(token, attempt.id, amount)
        _accepted(result.status, result.error_code, attempt.channel)
        # On the payment's flow record (the channel's answer: the masked phone, the expiry).
        run_in_transaction(
            self.engine,
            lambda c: records.record(
                c,
                self.clock.now(),
                attempt.intent_id,
                SMS_SENT,
                result.raw,
                attempt_id=attempt.id,
                status=result.status.value,
            ),
        )
        return {
            "payment_id": payment_id or attempt.intent_id,
            "group_id": attempt.group_id,
            "attempt_id": attempt.id,
            "channel": attempt.channel,
            "amount": amount.amount,
            "currency": amount.currency,
            "masked_phone": result.masked_phone,
            "expires_at": None if result.expires_at is None else result.expires_at.isoformat(),
        }

    # --- routing's questions (inside the transaction that stores the payment) -------------------

    def access(
        self,
        conn: Connection,
        card: str | None,
        names: list[str],
        amount: Money,
        now: datetime,
        *,
        merchant_id: str,
    ) -> CardAccess | None:
        """Where a card payment may go: for one of our cards, the channels it is signed on;
        refused if the card is unbound or the payment would break the issuer's limit (every
        channel together, per the card network's day), else counted against it. None when no
        channel asked for takes our card ids and the card is not ours. A card outside the
        merchant's scope is not ours to it, whatever it is to others."""
        served = frozenset(n for n in names if n in self.ports)
        row = None
        if card and scope.card_in_scope(conn, merchant_id, card):
            stmt = select(cards.c.status).where(cards.c.id == card)
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update()  # one card's payments check its limit in turn
            row = conn.execute(stmt).first()
        if row is None:
            return CardAccess(False, {}, served) if served else None
        if row.status != CardStatus.ACTIVE.value:
            raise CardNotActive(f"card {card} is unbound", card_id=card)
        assert card is not None
        signed = conn.execute(
            select(card_signings).where(
                card_signings.c.card_id == card,
                card_signings.c.status == CardStatus.ACTIVE.value,
                card_signings.c.currency == amount.currency,
            )
        ).all()
        if signed:
            limits = known_issuer_limits(
                (s.issuer_single_limit, s.issuer_daily_limit) for s in signed
            )
            day = business_day(now)
            used = self._used(conn, card, day, amount.currency)
            over = issuer_refusal(limits, used, amount.amount)
            if over is not None:
                limit = limits.single if over == "single" else limits.daily
                raise IssuerLimitExceeded(
                    f"over the issuer's {over} limit for this card, all channels together",
                    card_id=card,
                    limit=over,
                    issuer_limit=limit,
                    used_today=used,
                )
            self._count(conn, card, day, amount.currency, amount.amount)
        return CardAccess(
            True, {s.channel: SignedLimits(s.single_limit, s.daily_limit) for s in signed}, served
        )

    def release(self, conn: Connection, card: str, amount: Money, at: datetime) -> None:
        """Give back what a payment that failed or closed had counted (nothing for a card
        that is not ours)."""
        conn.execute(
            update(card_usage)
            .where(
                card_usage.c.card_id == card,
                card_usage.c.day == business_day(at),
                card_usage.c.currency == amount.currency,
                card_usage.c.used_minor >= amount.amount,
            )
            .values(used_minor=card_usage.c.used_minor - amount.amount)
        )

    def _used(self, conn: Connection, card: str, day: date, currency: str) -> int:
        value = conn.execute(
            select(card_usage.c.used_minor).where(
                card_usage.c.card_id == card,
                card_usage.c.day == day,
                card_usage.c.currency == currency,
            )
        ).scalar()
        return int(value or 0)

    def _count(self, conn: Connection, card: str, day: date, currency: str, delta: int) -> None:
        where = (
            card_usage.c.card_id == card,
            card_usage.c.day == day,
            card_usage.c.currency == currency,
        )
        done = conn.execute(
            update(card_usage).where(*where).values(used_minor=card_usage.c.used_minor + delta)
        )
        if done.rowcount == 0:
            conn.execute(
                card_usage.insert().values(
                    card_id=card, day=day, currency=currency, used_minor=delta
                )
            )


def _accepted(status: Answer, error_code: str | None, channel: str) -> None:
    """Raise unless the channel said yes."""
    if status is Answer.UNKNOWN:
        raise ChannelUnavailable(
            f"{channel} gave no usable answer; nothing is known to have happened: retry",
            channel=channel,
            reason=error_code,
        )
    if status is Answer.REFUSED:
        raise CardRefused(f"{channel} refused the card", channel=channel, reason=error_code)
