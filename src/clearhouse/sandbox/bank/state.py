"""The simulated payout bank: batches of payouts to bank cards over three rails, the checks a
paying bank makes (the account exists and is open, the name is the account holder's, the rail
takes the amount now), de-duplication on the client's reference, and seeded faults.

The cards are the card network's (``Issuers``, shared with the quick pay sandboxes): a payout
credits the card's account, so a withdrawal paid here shows on the same card a payer pays with.

Item codes (``model.FINAL_CODES`` and ``model.SHORT_CODES`` class them):

==========================  =====  ===================================================
code                        class  when
==========================  =====  ===================================================
ACCOUNT_NOT_FOUND           final  no card with this number on the network
ACCOUNT_CLOSED              final  the card's account was closed (``close_account``)
NAME_MISMATCH               final  the name is not the card holder's
RAIL_REFUSED                final  a real-time item above the real-time ceiling
OUTSIDE_BUSINESS_HOURS      short  a large-value item outside business hours
BANK_BUSY                   short  the fault ``bank_busy`` (per reference and try)
==========================  =====  ===================================================

A short refusal is not kept as the item's outcome: the same reference sent again is processed
again. A paid or finally refused item is kept: the same reference sent again gets that answer
and is never paid twice.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clearhouse.clock import Clock
from clearhouse.errors import MoneyError
from clearhouse.money import Money
from clearhouse.sandbox.faults import NO_FAULTS, Fault, FaultPlan, FirstTimeouts
from clearhouse.sandbox.quickpay.banks import Issuers
from clearhouse.wallet.bankwire.protocol import BankCredentials
from clearhouse.wallet.model import FailureClass, Rail, RailPolicy, classify

CURRENCY = "CNY"
MAX_ITEMS = 1000
SETTLEMENT_ACCOUNT = "6217000010008800123"  # the platform's account: withdrawals are paid from it


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class Payout:
    ref: str
    batch_no: str
    rail: Rail
    amount: Money
    account_no: str
    status: str  # PAID | FAILED
    code: str | None
    bank_txn_id: str | None
    at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "batch_no": self.batch_no,
            "rail": self.rail.value,
            "currency": self.amount.currency,
            "amount": str(self.amount.to_decimal()),
            "status": self.status,
            "code": self.code,
            "bank_txn_id": self.bank_txn_id,
            "paid_at": self.at.isoformat() if self.status == "PAID" else None,
        }


@dataclass(frozen=True, slots=True)
class Credit:
    """Money into the platform's settlement account: a channel paying our balance out."""

    ref: str  # the bank's reference
    amount: Money
    payer: str
    memo: str  # the remittance information the payer sent
    at: datetime
    end_to_end_id: str | None = None


@dataclass
class PayoutBank:
    credentials: BankCredentials
    clock: Clock
    issuers: Issuers = field(default_factory=Issuers.seeded)
    faults: FaultPlan = NO_FAULTS
    policy: RailPolicy = field(default_factory=RailPolicy)
    timeout_delay_s: float = 15.0
    payouts: dict[str, Payout] = field(default_factory=dict)  # the last answer per reference
    tries: dict[str, int] = field(default_factory=dict)
    batches: dict[str, list[str]] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    # The settlement account's statements (statements.py): its balance before the first
    # movement here, and the credits it received.
    settlement_account: str = SETTLEMENT_ACCOUNT
    opening_balance_minor: int = 10_000_000_000
    credits: list[Credit] = field(default_factory=list)
    _timeouts: FirstTimeouts = field(default_factory=FirstTimeouts)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- the interface ----------------------------------------------------------------------

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        batch_no, rail, items = self._parse_batch(body)
        now = self.clock.now()
        with self._lock:
            results = [self._pay(batch_no, rail, item, now) for item in items]
            self.batches.setdefault(batch_no, []).extend(r["ref"] for r in results)
        return {"batch_no": batch_no, "count": len(results), "items": results}

    def query(self, ref: str) -> dict[str, Any]:
        with self._lock:
            found = self.payouts.get(ref)
            if found is None:
                raise ApiError(404, "NOT_FOUND", f"no payout {ref}")
            return found.view()

    def take_timeout(self, batch_no: str) -> bool:
        """Whether the answer to this batch must come too late (the first time only)."""
        return self._timeouts.take(self.faults, "batch", batch_no)

    # --- control (tests, the demo) ----------------------------------------------------------

    def close_account(self, card_no: str) -> None:
        with self._lock:
            self.closed.add(card_no)

    def paid(self) -> list[Payout]:
        with self._lock:
            return [p for p in self.payouts.values() if p.status == "PAID"]

    def received(self) -> list[Credit]:
        with self._lock:
            return list(self.credits)

    def receive(
        self, amount: Money, payer: str, memo: str, end_to_end_id: str | None = None
    ) -> Credit:
        """A credit to the settlement account now (a channel's payout arriving)."""
        if amount.currency != CURRENCY or amount.amount <= 0:
            raise ApiError(400, "INVALID_REQUEST", f"a credit is a positive {CURRENCY} amount")
        now = self.clock.now()
        credit = Credit(
            f"C{now:%y%m%d}{secrets.token_hex(4).upper()}", amount, payer, memo, now, end_to_end_id
        )
        with self._lock:
            self.credits.append(credit)
        return credit

    # --- inside -----------------------------------------------------------------------------

    def _parse_batch(self, body: dict[str, Any]) -> tuple[str, Rail, list[dict[str, Any]]]:
        try:
            batch_no = str(body["batch_no"])
            rail = Rail(body["rail"])
            currency = str(body["currency"])
            items = list(body["items"])
            count, total = int(body["count"]), Money.parse(str(body["total"]), currency)
            if currency != CURRENCY:
                raise ApiError(400, "CURRENCY_NOT_SUPPORTED", f"payouts are in {CURRENCY}")
            amounts = [Money.parse(str(i["amount"]), currency) for i in items]
            for item in items:
                str(item["ref"]), str(item["account_no"]), str(item["account_name"])
        except (KeyError, TypeError, ValueError, MoneyError) as exc:
            raise ApiError(400, "INVALID_REQUEST", f"malformed batch: {exc}") from None
        if not 0 < len(items) <= MAX_ITEMS or any(a.amount <= 0 for a in amounts):
            raise ApiError(400, "INVALID_REQUEST", f"1 to {MAX_ITEMS} items, amounts positive")
        if count != len(items) or total != sum(amounts[1:], amounts[0]):
            raise ApiError(400, "BATCH_MISMATCH", "count or total differs from the items")
        if len({str(i["ref"]) for i in items}) != len(items):
            raise ApiError(400, "INVALID_REQUEST", "a reference appears twice in the batch")
        return batch_no, rail, [i | {"amount": a} for i, a in zip(items, amounts, strict=True)]

    def _pay(
        self, batch_no: str, rail: Rail, item: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        ref, amount = str(item["ref"]), item["amount"]
        known = self.payouts.get(ref)
        if (
            known is not None
            and known.code is not None
            and classify(known.code) is (FailureClass.SHORT)
        ):
            known = None  # a short refusal took nothing: process the item again
        if known is not None:
            return known.view()  # paid or finally refused before: never again
        tries = self.tries[ref] = self.tries.get(ref, 0) + 1
        code = self._refusal(rail, item, amount, now, tries)
        payout = Payout(
            ref,
            batch_no,
            rail,
            amount,
            str(item["account_no"]),
            "FAILED" if code else "PAID",
            code,
            None if code else f"B{now:%Y%m%d}{secrets.token_hex(6).upper()}",
            now,
        )
        if code is None:
            card = self.issuers.card(payout.account_no)
            assert card is not None
            with self.issuers.lock:
                card.balance = card.balance + amount
        self.payouts[ref] = payout
        return payout.view()

    def _refusal(
        self, rail: Rail, item: dict[str, Any], amount: Money, now: datetime, tries: int
    ) -> str | None:
        ref = str(item["ref"])
        busy = self.faults.forced.get(Fault.BANK_BUSY, frozenset())
        if ref in busy or self.faults.hits(Fault.BANK_BUSY, f"{ref}#{tries}"):
            return "BANK_BUSY"
        if rail is Rail.REALTIME and amount.amount > self.policy.realtime_max_minor:
            return "RAIL_REFUSED"
        if rail is Rail.LARGE_VALUE and not self.policy.hours.is_open(now):
            return "OUTSIDE_BUSINESS_HOURS"
        card = self.issuers.card(str(item["account_no"]))
        if card is None:
            return "ACCOUNT_NOT_FOUND"
        if card.card_no in self.closed:
            return "ACCOUNT_CLOSED"
        if card.holder_name != str(item["account_name"]):
            return "NAME_MISMATCH"
        return None
