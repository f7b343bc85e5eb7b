"""The issuing banks behind the simulated card network: their cardholder records, the checks an
issuer makes (card elements, expiry, CVN2, its own per-card limits, the balance) and the money.

One ``Issuers`` object is shared by every channel instance over the network, so an issuer's
per-card daily limit holds across all of them together: that is where "never together above the
issuer's limit" is enforced at the source.

CVN2 values are never stored, here or anywhere: like a real issuer, each one keeps a card
verification key and recomputes the value printed on the card to compare (``printed_cvv`` is
the sandbox's way to read what is printed on a test card's back).

The seeded catalogue (``Issuers.seeded()``, documented in ``docs/channels/quickpay.md``):

=====================  ======  ======  ==================  ========  =========  ==============
card                   bank    type    holder / phone      expiry    balance    issuer single /
                                                                                daily limit
=====================  ======  ======  ==================  ========  =========  ==============
6219990000000000010    SCB     debit   张三 13800000001     12/30     100000.00  50000 / 50000
6259990000000007       SCB     credit  李四 13800000002     12/30     50000.00   20000 / 20000
6229990000000000035    SSB     debit   王五 13800000003     12/30     100.00     5000 / 10000
6229990000000000043    SSB     debit   赵六 13800000004     12/30     100000.00  5000 / 3000
6259990000000015       SCB     credit  钱七 13800000005     01/24     50000.00   20000 / 20000
=====================  ======  ======  ==================  ========  =========  ==============
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from clearhouse.gateway.channels.quickpay.protocol import BEIJING, CURRENCY, business_day
from clearhouse.money import Money

# Response codes an issuer gives (the network passes them on as they are).
OK = "00"
CARD_INVALID = "61"
INSUFFICIENT_FUNDS = "64"
SECURITY_MISMATCH = "65"  # expiry or CVN2
IDENTITY_MISMATCH = "66"  # name, ID number or phone: the bank never says which
MISSING_ELEMENT = "13"
CARD_EXPIRED = "73"
ISSUER_LIMIT = "78"


class CardKind(StrEnum):
    DEBIT = "01"  # the network's cardType codes
    CREDIT = "02"


def luhn_ok(card_no: str) -> bool:
    if not card_no.isdigit() or not 13 <= len(card_no) <= 19:
        return False
    total = 0
    for i, digit in enumerate(int(d) for d in reversed(card_no)):
        doubled = digit * 2 - 9 if digit > 4 else digit * 2
        total += doubled if i % 2 else digit
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class Issuer:
    code: str  # the institution code on the network
    name: str
    bins: tuple[str, ...]  # the first six digits of its cards
    cvk: bytes = field(repr=False)  # card verification key: CVN2 is derived, never stored

    def cvv(self, card_no: str, expiry: str) -> str:
        mac = hmac.new(self.cvk, f"{card_no}:{expiry}".encode("ascii"), hashlib.sha256)
        return f"{int.from_bytes(mac.digest()[:4], 'big') % 1000:03d}"


@dataclass
class IssuerCard:
    """The bank's record of one card and its holder (no CVN2: see ``Issuer.cvv``)."""

    card_no: str
    issuer: Issuer
    kind: CardKind
    holder_name: str
    id_number: str
    phone: str  # the bank-registered phone: where SMS codes go
    expiry: str  # MMYY as printed; valid through the end of that month
    balance: Money  # debit: the account balance; credit: the credit still available
    single_limit: Money  # the issuer's card-not-present limits, across all channels
    daily_limit: Money
    spent: dict[date, Money] = field(default_factory=dict)  # per Beijing day, all channels

    def expired(self, at: datetime) -> bool:
        local = at.astimezone(BEIJING)
        month, year = int(self.expiry[:2]), 2000 + int(self.expiry[2:])
        return (local.year, local.month) > (year, month)


@dataclass(frozen=True, slots=True)
class CatalogueCard:
    card_no: str
    issuer: str  # institution code
    kind: CardKind
    holder_name: str
    id_number: str
    phone: str
    expiry: str
    balance: str  # yuan
    single_limit: str
    daily_limit: str


SANDBOX_COMMERCIAL = Issuer("99010000", "沙箱商业银行", ("621999", "625999"), b"sandbox-cvk-01")
SANDBOX_SAVINGS = Issuer("99020000", "沙箱储蓄银行", ("622999",), b"sandbox-cvk-02")
TEST_CARDS = (
    CatalogueCard(
        "6219990000000000010", "99010000", CardKind.DEBIT, "张三", "110101199003070017",
        "13800000001", "1230", "100000.00", "50000.00", "50000.00",
    ),
    CatalogueCard(
        "6259990000000007", "99010000", CardKind.CREDIT, "李四", "310101198805050028",
        "13800000002", "1230", "50000.00", "20000.00", "20000.00",
    ),
    CatalogueCard(  # a thin balance: most payments fail for insufficient funds
        "6229990000000000035", "99020000", CardKind.DEBIT, "王五", "440101199512120035",
        "13800000003", "1230", "100.00", "5000.00", "10000.00",
    ),
    CatalogueCard(  # a low issuer daily limit: two channels together soon reach it
        "6229990000000000043", "99020000", CardKind.DEBIT, "赵六", "320101199207070046",
        "13800000004", "1230", "100000.00", "5000.00", "3000.00",
    ),
    CatalogueCard(  # expired in January 2024: refused at binding
        "6259990000000015", "99010000", CardKind.CREDIT, "钱七", "510101198501010059",
        "13800000005", "0124", "50000.00", "20000.00", "20000.00",
    ),
)  # fmt: skip


class Issuers:
    """Every issuer on the network and their cards. Thread-safe: channel instances served on
    different threads share one."""

    def __init__(self, issuers: Iterable[Issuer]) -> None:
        self.issuers = {issuer.code: issuer for issuer in issuers}
        self.cards: dict[str, IssuerCard] = {}
        self.lock = threading.RLock()

    @classmethod
    def seeded(cls) -> Issuers:
        """The two sandbox banks and the documented test cards (fresh balances each call)."""
        issuers = cls([SANDBOX_COMMERCIAL, SANDBOX_SAVINGS])
        for card in TEST_CARDS:
            issuers.add_card(
                card.card_no,
                card.kind,
                card.holder_name,
                card.id_number,
                card.phone,
                card.expiry,
                Money.parse(card.balance, CURRENCY),
                Money.parse(card.single_limit, CURRENCY),
                Money.parse(card.daily_limit, CURRENCY),
            )
        return issuers

    def add_card(
        self,
        card_no: str,
        kind: CardKind,
        holder_name: str,
        id_number: str,
        phone: str,
        expiry: str,
        balance: Money,
        single_limit: Money,
        daily_limit: Money,
    ) -> IssuerCard:
        issuer = self._issuer_of(card_no)
        if issuer is None or not luhn_ok(card_no):
            raise ValueError("no issuer has this BIN, or the number fails the Luhn check")
        card = IssuerCard(
            card_no,
            issuer,
            kind,
            holder_name,
            id_number,
            phone,
            expiry,
            balance,
            single_limit,
            daily_limit,
        )
        with self.lock:
            self.cards[card_no] = card
        return card

    def _issuer_of(self, card_no: str) -> Issuer | None:
        return next((i for i in self.issuers.values() if card_no[:6] in i.bins), None)

    def card(self, card_no: str) -> IssuerCard | None:
        with self.lock:
            return self.cards.get(card_no)

    def printed_cvv(self, card_no: str) -> str:
        """What is printed on the back of a test card (for tests and demos only)."""
        card = self.cards[card_no]
        return card.issuer.cvv(card.card_no, card.expiry)

    # -- the issuer's checks ---------------------------------------------------------------------

    def verify(
        self,
        card_no: str,
        holder_name: str,
        id_number: str,
        phone: str | None,
        expiry: str | None,
        cvv: str | None,
        at: datetime,
    ) -> tuple[str, IssuerCard | None]:
        """Real-name verification of 3 or 4 elements (+ expiry and CVN2 for a credit card).

        A mismatch answers by class only, as banks do: 66 for who the holder is (name, ID,
        phone), 65 for what is printed on the card (expiry, CVN2); never which element."""
        with self.lock:
            card = self.cards.get(card_no)
            if card is None:
                return CARD_INVALID, None
            identity = (card.holder_name, card.id_number)
            if identity != (holder_name, id_number) or phone not in (None, card.phone):
                return IDENTITY_MISMATCH, None
            if card.kind is CardKind.CREDIT:
                if not expiry or not cvv:
                    return MISSING_ELEMENT, None
                printed = card.issuer.cvv(card.card_no, card.expiry)
                same_cvv = hmac.compare_digest(cvv.encode("ascii", "replace"), printed.encode())
                if expiry != card.expiry or not same_cvv:
                    return SECURITY_MISMATCH, None
            if card.expired(at):
                return CARD_EXPIRED, None
            return OK, card

    def authorize(self, card_no: str, amount: Money, at: datetime) -> str:
        """Debit the card if the issuer agrees: not expired, within its single and daily
        limits (all channels together) and the balance."""
        with self.lock:
            card = self.cards.get(card_no)
            if card is None:
                return CARD_INVALID
            if card.expired(at):
                return CARD_EXPIRED
            day = business_day(at)
            spent = card.spent.get(day, Money.zero(CURRENCY))
            if amount > card.single_limit or spent + amount > card.daily_limit:
                return ISSUER_LIMIT
            if amount > card.balance:
                return INSUFFICIENT_FUNDS
            card.balance = card.balance - amount
            card.spent[day] = spent + amount
            return OK

    def credit(self, card_no: str, amount: Money) -> None:
        """A refund back to the card (the day's spent limit is not given back, as issuers do)."""
        with self.lock:
            card = self.cards[card_no]
            card.balance = card.balance + amount
