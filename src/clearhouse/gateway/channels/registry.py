"""The channels a deployment runs, each with its port and its terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from clearhouse import fees
from clearhouse.fees import FeeSchedule
from clearhouse.gateway.channels.paypal.protocol import CURRENCIES as PAYPAL_CURRENCIES
from clearhouse.gateway.channels.port import ChannelPort, PayMethod
from clearhouse.gateway.errors import ChannelNotSupported, MethodNotSupported
from clearhouse.gateway.model import RefundPolicy
from clearhouse.gateway.routing import Limits


@dataclass(frozen=True, slots=True)
class ChannelTerms:
    fees: FeeSchedule
    refund_window: timedelta
    max_refunds: int
    methods: frozenset[PayMethod]
    currencies: frozenset[str]
    # Refusal codes meaning "this channel cannot return the money" (the payer's account is
    # closed or frozen): the refund falls back to a payout (P8).
    refund_dead_ends: frozenset[str]
    family: str  # what the payer sees at the cashier; channels of one family route together
    limits: Limits = field(default_factory=Limits)
    weight: int = 100
    # The channel whose posting rules and clearing account this one books to: a second
    # acquirer of the same kind ("quickpay_b") shares quick pay's; empty for itself.
    books: str = ""
    # Card payments above this (minor units) need the payer's SMS code; at or below it they
    # are exempt (quick pay's small-amount exemption). None: the channel asks for no code.
    sms_exempt: int | None = None

    @property
    def refund_policy(self) -> RefundPolicy:
        return RefundPolicy(self.refund_window, self.max_refunds, self.fees)


# Published terms: WeChat Pay takes refunds for a year and at most 50 per payment; Alipay's
# standard merchant agreement allows refunds for 12 months; PayPal refunds within 180 days. Stripe
# publishes no count limit (50 is ours) and its window depends on the card network (180 days is
# a safe common bound). Quick pay's terms are the acquirer agreement's; limits are a
# deployment's to set (these defaults are conservative examples).
TERMS = {
    "quickpay": ChannelTerms(
        fees=fees.QUICKPAY,
        refund_window=timedelta(days=365),
        max_refunds=50,
        methods=frozenset({PayMethod.CARD}),
        currencies=frozenset({"CNY"}),
        refund_dead_ends=frozenset({"CARD_CANCELLED"}),
        family="card",
        limits=Limits(single=5_000_000, daily=500_000_000, card_daily=5_000_000),
        sms_exempt=20_000,
    ),
    # A second acquirer on the same card network: its own merchant number and tokens, lower
    # caps and a smaller share of the traffic; booked to quick pay's rules and clearing account.
    "quickpay_b": ChannelTerms(
        fees=fees.QUICKPAY,
        refund_window=timedelta(days=365),
        max_refunds=50,
        methods=frozenset({PayMethod.CARD}),
        currencies=frozenset({"CNY"}),
        refund_dead_ends=frozenset({"CARD_CANCELLED"}),
        family="card",
        limits=Limits(single=2_000_000, daily=200_000_000, card_daily=2_000_000),
        weight=50,
        books="quickpay",
        sms_exempt=20_000,
    ),
    "wechatpay": ChannelTerms(
        fees=fees.WECHATPAY,
        refund_window=timedelta(days=365),
        max_refunds=50,
        methods=frozenset({PayMethod.NATIVE, PayMethod.JSAPI}),
        currencies=frozenset({"CNY"}),
        refund_dead_ends=frozenset({"USER_ACCOUNT_ABNORMAL", "ACCOUNT_ERROR"}),
        family="wechatpay",
    ),
    "alipay": ChannelTerms(
        fees=fees.ALIPAY,
        refund_window=timedelta(days=365),
        max_refunds=50,
        methods=frozenset({PayMethod.NATIVE, PayMethod.PAGE}),
        currencies=frozenset({"CNY"}),
        refund_dead_ends=frozenset({"ACQ.BUYER_ERROR"}),
        family="alipay",
    ),
    "stripe": ChannelTerms(
        fees=fees.STRIPE,
        refund_window=timedelta(days=180),
        max_refunds=50,
        methods=frozenset({PayMethod.CARD}),
        currencies=frozenset({"USD", "EUR", "GBP"}),
        refund_dead_ends=frozenset({"expired_or_canceled_card", "lost_or_stolen_card"}),
        family="card",
    ),
    "paypal": ChannelTerms(
        fees=fees.PAYPAL,
        refund_window=timedelta(days=180),
        max_refunds=50,
        methods=frozenset({PayMethod.PAGE}),
        currencies=PAYPAL_CURRENCIES,
        refund_dead_ends=frozenset(),
        family="paypal",
    ),
}


@dataclass(frozen=True, slots=True)
class Channel:
    port: ChannelPort
    terms: ChannelTerms


class Channels:
    def __init__(
        self, ports: dict[str, ChannelPort], terms: dict[str, ChannelTerms] | None = None
    ) -> None:
        """``terms``: a deployment's own terms for some channels (limits, weights, another
        instance of a channel under its own name); the published ones otherwise."""
        own = terms or {}
        self._channels = {
            name: Channel(port, own[name] if name in own else TERMS[name])
            for name, port in ports.items()
        }

    def __contains__(self, name: str) -> bool:
        return name in self._channels

    def names(self) -> list[str]:
        return sorted(self._channels)

    def books(self, name: str) -> str:
        """The posting-rule channel of ``name`` (see ``ChannelTerms.books``)."""
        return self.get(name).terms.books or name

    def routable(self, requested: str) -> list[str]:
        """The channels a request for ``requested`` (a channel or a family) may go to."""
        return [
            name
            for name, ch in sorted(self._channels.items())
            if requested in (name, ch.terms.family)
        ]

    def get(self, name: str) -> Channel:
        found = self._channels.get(name)
        if found is None:
            raise ChannelNotSupported(f"channel {name!r} is not enabled", channel=name)
        return found

    def check_method(self, name: str, method: str) -> PayMethod:
        channel = self.get(name)
        try:
            parsed = PayMethod(method)
        except ValueError:
            parsed = None
        if parsed is None or parsed not in channel.terms.methods:
            raise MethodNotSupported(
                f"{name} does not take method {method!r}",
                channel=name,
                supported=sorted(m.value for m in channel.terms.methods),
            )
        return parsed
