"""What a bank statement line is, read from its memo and references (R9).

A bank line says little: an amount, a bank reference and free text the payer or the bank
wrote. ``classify`` turns that text into a class and the reference it names, so the matcher
can look for the right counterpart: a channel's payout (Stripe ``po_``, an Alipay or WeChat Pay
settlement, a PayPal transfer), one of our withdrawal batches or withdrawals, a returned
withdrawal, a bank charge, interest. It is pure: the same text always gives the same answer,
and the rule that decided is named so a person can see why.

Text is compared after NFKC normalisation (Chinese bank memos often carry full-width letters
and digits) and in upper case; references are returned as written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MemoClass", "MemoKind", "classify"]


class MemoKind(StrEnum):
    CHANNEL_PAYOUT = "channel_payout"  # a channel paid our balance out to this account
    WITHDRAWAL_BATCH = "withdrawal_batch"  # one of our payout batches, booked as one sum
    WITHDRAWAL = "withdrawal"  # one withdrawal of ours (a detail of a batch)
    RETURN = "return"  # a payment of ours that came back (account closed, name mismatch)
    BANK_FEE = "bank_fee"
    INTEREST = "interest"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MemoClass:
    kind: MemoKind
    channel: str | None = None  # stripe, alipay, wechatpay, paypal for a channel payout
    reference: str | None = None  # the payout id or our batch / withdrawal id it names
    rule: str = "none"  # the rule that decided, for the audit trail


# Our own ids (``ids.new_id``): prefix, underscore, 26 base32 characters.
_BATCH_ID = re.compile(r"\bwdb_[0-9a-z]{26}\b", re.IGNORECASE)
_WITHDRAWAL_ID = re.compile(r"\bwdr_[0-9a-z]{26}\b", re.IGNORECASE)
_STRIPE_PAYOUT = re.compile(r"\bpo_[0-9A-Za-z]{8,}\b")
# PayPal transaction ids: 17 upper-case letters and digits, with at least one digit.
_PAYPAL_ID = re.compile(r"\b(?=[0-9A-Z]*[0-9])[0-9A-Z]{17}\b")
_LONG_NUMBER = re.compile(r"(?<![0-9])[0-9]{12,40}(?![0-9])")


def _words(*words: str) -> re.Pattern[str]:
    """Any of ``words``: a Latin word must start a word ("FEES" counts, "COFFEE" does not);
    Chinese has no spaces between words, so a Chinese word counts anywhere."""
    parts = [rf"(?<![A-Z]){re.escape(w)}" if w.isascii() else re.escape(w) for w in words]
    return re.compile("|".join(parts))


_RETURN_WORDS = _words("退汇", "退票", "退回", "RETURN", "REJECT", "REVERSAL", "RTRN")
_FEE_WORDS = _words("手续费", "服务费", "汇划费", "FEE", "CHARGE", "CHGS", "COMMISSION")
_INTEREST_WORDS = _words("利息", "结息", "INTEREST")
_BATCH_WORDS = _words("BATCH", "批量", "代发")


@dataclass(frozen=True, slots=True)
class _Channel:
    name: str
    words: re.Pattern[str]
    reference: re.Pattern[str]


_CHANNELS = (
    _Channel("stripe", _words("STRIPE"), _STRIPE_PAYOUT),
    # Tenpay (财付通) is the licensed company behind WeChat Pay: settlements arrive in its name.
    _Channel("wechatpay", _words("财付通", "TENPAY", "微信", "WECHAT", "WEIXIN"), _LONG_NUMBER),
    _Channel("alipay", _words("支付宝", "ALIPAY", "ZHIFUBAO"), _LONG_NUMBER),
    _Channel("paypal", _words("PAYPAL"), _PAYPAL_ID),
)


def classify(
    memo: str | None, references: Iterable[str | None] = (), *, kind: str | None = None
) -> MemoClass:
    """The class of a bank line from its ``memo``, its ``references`` (merchant_ref,
    channel_txn_id, payout_id, ...) and, if known, its normalised ``kind`` (``"fee"``)."""
    refs = [r for r in references if r]
    text = unicodedata.normalize("NFKC", " ".join([memo or "", *refs]))
    upper = text.upper()
    # A line that names one withdrawal is about that withdrawal, even inside a batch.
    withdrawal = _search(_WITHDRAWAL_ID, text)
    batch = _search(_BATCH_ID, text)
    own = (withdrawal or batch or "").lower() or None
    if _RETURN_WORDS.search(upper):
        return MemoClass(MemoKind.RETURN, reference=own, rule="return-words")
    if withdrawal is not None:
        return MemoClass(MemoKind.WITHDRAWAL, reference=own, rule="withdrawal-id")
    if batch is not None:
        return MemoClass(MemoKind.WITHDRAWAL_BATCH, reference=own, rule="batch-id")
    stripe = _search(_STRIPE_PAYOUT, text)
    if stripe is not None:
        return MemoClass(MemoKind.CHANNEL_PAYOUT, "stripe", stripe, rule="stripe-payout-id")
    for channel in _CHANNELS:
        if channel.words.search(upper):
            found = _search(channel.reference, text)
            return MemoClass(
                MemoKind.CHANNEL_PAYOUT, channel.name, found, rule=f"{channel.name}-name"
            )
    if kind == "fee" or _FEE_WORDS.search(upper):
        return MemoClass(MemoKind.BANK_FEE, rule="fee-kind" if kind == "fee" else "fee-words")
    if _INTEREST_WORDS.search(upper):
        return MemoClass(MemoKind.INTEREST, rule="interest-words")
    if _BATCH_WORDS.search(upper):
        # A batch of ours whose id the bank dropped: the matcher has to go by amount and day.
        return MemoClass(MemoKind.WITHDRAWAL_BATCH, rule="batch-words")
    return MemoClass(MemoKind.UNKNOWN)


def _search(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return found.group(0) if found else None
