"""The payer's payment password (P7: "verification at payment, SMS or password"): a 6-digit PIN
a real-name customer sets once and then types at the cashier instead of waiting for a card
payment's SMS code.

Setting it. The first time (and after it is forgotten) the payer proves who they are as the
wallets' cashiers have them do it: by binding a card, or signing a bound card on a channel
again. That binding checked the holder's name and ID number against the customer's verified
identity and the channel's SMS code proved the payer holds the bank-registered phone; its id,
confirmed in the last ``PROOF_WINDOW`` (15 minutes) and not yet used for a password, is the
proof. Changing it otherwise takes the current password, which counts wrong tries as a
payment does.

At rest. Only ``scrypt(HMAC(server key, customer id, PIN), salt)`` is kept, with the salt (16
random bytes) and the parameters (N = 2^15, r = 8, p = 1: 32 MiB and about 0.1 s a try; kept
per row, so they can be raised for new passwords without breaking old ones). A PIN has a
million values: scrypt alone would only slow a search of a stolen table down, so the keyed
digest in front of it means a copy of the database without the server's secret cannot be
searched at all. Hashes are compared in constant time.

Tries. Five wrong tries in a row lock the password for three hours, right or wrong; a right
one resets the count. Each try reads the hash, runs scrypt outside any transaction, then
counts the outcome under the row's lock, rechecking it: tries sent in parallel are each
counted, and none is answered once the lock is on.

The PIN itself is never stored, logged, shown or passed on: requests carry it to ``verify``
and ``set_password`` only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection, Row

from clearhouse.clock import Clock
from clearhouse.db.schema import card_bindings, payment_passwords
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway import customers as scope
from clearhouse.gateway.card_model import (
    PROOF_WINDOW,
    BindingStatus,
    PasswordTries,
    PaymentPasswordLocked,
    PaymentPasswordNotSet,
    PaymentPasswordProofInvalid,
    PaymentPasswordWeak,
    PaymentPasswordWrong,
    check_payment_password,
    weak_password,
)
from clearhouse.sealing import Sealer

log = logging.getLogger(__name__)

PEPPER = "payment.password"  # the digest's purpose: no other digest of the server key matches
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32


@dataclass(frozen=True, slots=True)
class Kdf:
    n: int
    r: int
    p: int

    def text(self) -> str:
        return f"scrypt:n={self.n},r={self.r},p={self.p}"

    @classmethod
    def parse(cls, text: str) -> Kdf:
        name, _, params = text.partition(":")
        if name != "scrypt":
            raise ValueError(f"unknown password KDF {name!r}")
        values = dict(part.split("=", 1) for part in params.split(","))
        return cls(int(values["n"]), int(values["r"]), int(values["p"]))


CURRENT_KDF = Kdf(SCRYPT_N, SCRYPT_R, SCRYPT_P)


@dataclass(frozen=True, slots=True)
class _Stored:
    password_hash: bytes
    salt: bytes
    kdf: str
    tries: PasswordTries
    updated_at: datetime

    @classmethod
    def of(cls, row: Row[Any]) -> _Stored:
        return cls(
            bytes(row.password_hash),
            bytes(row.salt),
            row.kdf,
            PasswordTries(row.failed_tries, row.locked_until),
            row.updated_at,
        )


def _stored(conn: Connection, customer_id: str, lock: bool = False) -> _Stored | None:
    stmt = select(payment_passwords).where(payment_passwords.c.customer_id == customer_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    return None if row is None else _Stored.of(row)


class PaymentPasswords:
    def __init__(self, engine: Engine, clock: Clock, sealer: Sealer) -> None:
        self.engine = engine
        self.clock = clock
        self._sealer = sealer

    def _hash(self, customer_id: str, password: str, salt: bytes, kdf: Kdf) -> bytes:
        keyed = self._sealer.digest(f"{customer_id}\x00{password}".encode(), PEPPER)
        return hashlib.scrypt(
            keyed,
            salt=salt,
            n=kdf.n,
            r=kdf.r,
            p=kdf.p,
            dklen=HASH_BYTES,
            maxmem=256 * kdf.r * kdf.n * kdf.p,  # what scrypt needs, with room to spare
        )

    # --- reading ------------------------------------------------------------------------------

    def status(self, customer_id: str, *, merchant_id: str) -> dict[str, Any]:
        """Whether the customer has a password, and whether it is locked (never the hash)."""

        def work(conn: Connection) -> dict[str, Any]:
            scope.require_customer(conn, merchant_id, customer_id)
            return self._view(customer_id, _stored(conn, customer_id))

        return run_in_transaction(self.engine, work, readonly=True)

    def usable(self, conn: Connection, customer_id: str) -> bool:
        """Set and not locked now: a payment may be verified with it."""
        found = _stored(conn, customer_id)
        return found is not None and not found.tries.locked(self.clock.now())

    def _view(self, customer_id: str, found: _Stored | None) -> dict[str, Any]:
        now = self.clock.now()
        tries = None if found is None else found.tries.current(now)
        locked = tries is not None and tries.locked(now)
        return {
            "customer_id": customer_id,
            "set": found is not None,
            "locked_until": None
            if tries is None or not locked or tries.locked_until is None
            else tries.locked_until.isoformat(),
            "tries_left": None if tries is None else tries.tries_left,
            "updated_at": None if found is None else found.updated_at.isoformat(),
        }

    # --- verifying ----------------------------------------------------------------------------

    def verify(self, customer_id: str, password: str) -> None:
        """Raise unless ``password`` is the customer's payment password: ``NotSet``,
        ``Locked`` (before or because of this try) or ``Wrong`` (with the tries left). A wrong
        try is counted (committed) before the error is raised."""
        check_payment_password(password)
        for _ in range(3):  # the password may change between the read and the count
            found = run_in_transaction(
                self.engine, lambda c: _stored(c, customer_id), readonly=True
            )
            if found is None:
                raise PaymentPasswordNotSet(
                    "the payer has no payment password: verify with the SMS code, or set one",
                    customer_id=customer_id,
                )
            self._refuse_if_locked(found.tries, self.clock.now())
            given = self._hash(customer_id, password, found.salt, Kdf.parse(found.kdf))
            count = partial(self._count, customer_id=customer_id, read=found, given=given)
            outcome = run_in_transaction(self.engine, count)
            if outcome is None:
                continue
            if outcome.failed == 0:
                return
            self._refuse_if_locked(outcome, self.clock.now())
            raise PaymentPasswordWrong(
                "wrong payment password", customer_id=customer_id, tries_left=outcome.tries_left
            )
        raise PaymentPasswordWrong(
            "the payment password changed while it was checked: try again",
            customer_id=customer_id,
        )

    def _count(
        self, conn: Connection, customer_id: str, read: _Stored, given: bytes
    ) -> PasswordTries | None:
        """Count one try under the row's lock: the tries after it, or None if the password
        changed since ``read`` (the try is not counted: check again)."""
        now = self.clock.now()
        found = _stored(conn, customer_id, lock=True)
        if found is None or (found.salt, found.password_hash) != (read.salt, read.password_hash):
            return None
        if found.tries.locked(now):
            return found.tries  # locked by a try counted in the meantime: not answered
        right = hmac.compare_digest(given, found.password_hash)
        after = PasswordTries(0, None) if right else found.tries.after_wrong(now)
        if after != found.tries:
            conn.execute(
                update(payment_passwords)
                .where(payment_passwords.c.customer_id == customer_id)
                .values(failed_tries=after.failed, locked_until=after.locked_until)
            )
        if not right:
            log.info("payment password of %s: wrong try %d", customer_id, after.failed)
        return after

    def _refuse_if_locked(self, tries: PasswordTries, now: datetime) -> None:
        if tries.locked(now):
            assert tries.locked_until is not None
            raise PaymentPasswordLocked(
                "too many wrong payment passwords: locked for now",
                locked_until=tries.locked_until.isoformat(),
            )

    # --- setting ------------------------------------------------------------------------------

    def set_password(
        self,
        customer_id: str,
        password: str,
        *,
        merchant_id: str,
        binding_id: str | None = None,
        current_password: str | None = None,
    ) -> dict[str, Any]:
        """Set or change the customer's payment password. Proof: ``binding_id``, a binding of
        this customer's card (started by this merchant) confirmed by SMS code within
        ``PROOF_WINDOW`` and after the password was last set; or ``current_password``.
        Setting it with a binding also lifts a lock (the wallets' "forgot the password")."""
        check_payment_password(password, "password")
        if current_password is not None:
            check_payment_password(current_password, "current_password")
        if weak_password(password):
            raise PaymentPasswordWeak(
                "a payment password may not repeat one digit or run in order", field="password"
            )
        run_in_transaction(
            self.engine,
            lambda c: scope.require_customer(c, merchant_id, customer_id),
            readonly=True,
        )
        if binding_id is None:
            if current_password is None:
                raise PaymentPasswordProofInvalid(
                    "give the current password, or a card binding confirmed by SMS code in the "
                    f"last {PROOF_WINDOW.seconds // 60} minutes",
                    customer_id=customer_id,
                )
            self.verify(customer_id, current_password)
        salt = os.urandom(SALT_BYTES)
        hashed = self._hash(customer_id, password, salt, CURRENT_KDF)

        def work(conn: Connection) -> dict[str, Any]:
            now = self.clock.now()
            found = _stored(conn, customer_id, lock=True)
            if binding_id is not None:
                _check_proof(conn, customer_id, merchant_id, binding_id, found, now)
            values = {
                "password_hash": hashed,
                "salt": salt,
                "kdf": CURRENT_KDF.text(),
                "failed_tries": 0,
                "locked_until": None,
                "updated_at": now,
            }
            if found is None:
                conn.execute(
                    payment_passwords.insert().values(
                        customer_id=customer_id, created_at=now, **values
                    )
                )
            else:
                conn.execute(
                    update(payment_passwords)
                    .where(payment_passwords.c.customer_id == customer_id)
                    .values(values)
                )
            return self._view(customer_id, _stored(conn, customer_id))

        view = run_in_transaction(self.engine, work, retry_integrity=True)
        log.info("payment password of %s set", customer_id)
        return view


def _check_proof(
    conn: Connection,
    customer_id: str,
    merchant_id: str,
    binding_id: str,
    found: _Stored | None,
    now: datetime,
) -> None:
    """The binding proves the payer now: this customer's, started by this merchant, confirmed
    by SMS code within the window and after the password was last set (so one confirmation
    sets it once)."""
    row = conn.execute(
        select(
            card_bindings.c.customer_id,
            card_bindings.c.merchant_id,
            card_bindings.c.status,
            card_bindings.c.updated_at,
        ).where(card_bindings.c.id == binding_id)
    ).first()
    confirmed_at = row.updated_at if row is not None else None  # confirming is its last change
    if (
        row is None
        or confirmed_at is None
        or row.customer_id != customer_id
        or (row.merchant_id is not None and row.merchant_id != merchant_id)
        or row.status != BindingStatus.CONFIRMED.value
        or now - confirmed_at > PROOF_WINDOW
        or (found is not None and confirmed_at <= found.updated_at)
    ):
        raise PaymentPasswordProofInvalid(
            "the binding is not this customer's, not confirmed, older than "
            f"{PROOF_WINDOW.seconds // 60} minutes or already used to set the password",
            binding_id=binding_id,
        )
