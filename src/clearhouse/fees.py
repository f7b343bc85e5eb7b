"""Channel fee schedules: what a channel charges on a payment, with that channel's rounding.

Shared by the gateway (the fee it expects and books), the sandboxes (the fee they charge) and
reconciliation (the fee it checks on the statement), so all three round the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from clearhouse.money import Money, Rounding


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """``rate`` of the amount plus ``fixed`` minor units, rounded once per transaction.

    ``refund_returns_fee``: a full refund gives back the whole fee, a partial one its prorated
    share (WeChat Pay and Alipay do this); Stripe keeps the fee. ``refund_keeps_fixed``: only
    the percentage part comes back, the fixed part is kept (PayPal).
    """

    rate: Decimal
    fixed: int = 0
    rounding: Rounding = Rounding.HALF_UP
    refund_returns_fee: bool = True
    refund_keeps_fixed: bool = False

    def fee(self, amount: Money) -> Money:
        """The fee on a payment of ``amount``; a fraction below one minor unit rounds as the mode
        says (half-up: 0.4 fen is not charged, 0.5 fen is one fen)."""
        exact = Decimal(amount.amount) * self.rate
        rounded = int(exact.quantize(Decimal(1), rounding=self.rounding.value)) + self.fixed
        return Money(rounded, amount.currency)

    def refunded_fee(self, paid: Money, fee: Money, refunded_before: Money, refund: Money) -> Money:
        """The part of ``fee`` that a refund of ``refund`` returns, after ``refunded_before``
        earlier refunds of the same payment. Cumulative, so the shares of several partial
        refunds add up to exactly the whole fee when the payment is refunded in full."""
        if not self.refund_returns_fee or paid.amount == 0:
            return Money.zero(fee.currency)
        if self.refund_keeps_fixed:
            fee = Money(max(fee.amount - self.fixed, 0), fee.currency)
        after = refunded_before + refund
        return self._share(fee, after, paid) - self._share(fee, refunded_before, paid)

    def _share(self, fee: Money, part: Money, whole: Money) -> Money:
        exact = Decimal(fee.amount) * Decimal(part.amount) / Decimal(whole.amount)
        return Money(int(exact.quantize(Decimal(1), rounding=self.rounding.value)), fee.currency)


# Published standard rates for marketplace merchants; a deployment may override them.
WECHATPAY = FeeSchedule(rate=Decimal("0.006"))
ALIPAY = FeeSchedule(rate=Decimal("0.006"))
# Stripe's standard US card pricing, 2.9% + 30 cents; the fee is not returned on a refund.
STRIPE = FeeSchedule(rate=Decimal("0.029"), fixed=30, refund_returns_fee=False)
# PayPal's standard US checkout rate, 3.49% + 49 cents; a refund returns the percentage part
# (prorated) and PayPal keeps the fixed fee.
PAYPAL = FeeSchedule(rate=Decimal("0.0349"), fixed=49, refund_keeps_fixed=True)
# Bank-card quick pay: 0.5% of the amount, fractions below one fen not charged (half-up).
QUICKPAY = FeeSchedule(rate=Decimal("0.005"))
