"""The sandboxes as one test-mode environment: their keys (generated once and kept, like a
channel's test account), the simulators with their notifiers, and what a merchant needs to
point an SDK or Clearhouse at them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from clearhouse.clock import Clock
from clearhouse.gateway.channels.alipay.credentials import AlipayCredentials
from clearhouse.gateway.channels.paypal.protocol import PaypalCredentials
from clearhouse.gateway.channels.quickpay.protocol import QuickpayCredentials
from clearhouse.gateway.channels.stripe import protocol as stripe_protocol
from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.gateway.channels.wechatpay.protocol import WechatPayCredentials
from clearhouse.money import Money
from clearhouse.sandbox import paypal
from clearhouse.sandbox.alipay import AlipaySandbox, alipay_notifier
from clearhouse.sandbox.alipay import create_app as alipay_app
from clearhouse.sandbox.bank import PayoutBank
from clearhouse.sandbox.bank import create_app as bank_app
from clearhouse.sandbox.faults import NO_FAULTS, FaultPlan
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.quickpay import ChannelLimits, Issuers, QuickpaySandbox, quickpay_notifier
from clearhouse.sandbox.quickpay import create_app as quickpay_app
from clearhouse.sandbox.stripe import events as stripe_events
from clearhouse.sandbox.stripe.app import create_app as stripe_app
from clearhouse.sandbox.stripe.state import StripeSandbox
from clearhouse.sandbox.wechatpay.app import create_app as wechatpay_app
from clearhouse.sandbox.wechatpay.state import WechatPaySandbox, make_notifier
from clearhouse.wallet.bankwire.protocol import BankCredentials

# Served in this order on consecutive ports by ``clearhouse sandbox``.
CHANNELS = ("wechatpay", "alipay", "stripe", "paypal", "quickpay", "quickpay_b")
CREDENTIALS_FILE = "credentials.json"
_KINDS: dict[str, Any] = {
    "wechatpay": WechatPayCredentials,
    "alipay": AlipayCredentials,
    "stripe": StripeCredentials,
    "paypal": PaypalCredentials,
    "quickpay": QuickpayCredentials,
    "quickpay_b": QuickpayCredentials,
    "bank": BankCredentials,  # the payout bank (withdrawals): served after the channels
}
# The second acquirer's per-card limits are tighter than the first's (the sandbox default:
# debit 5,000 / 20,000, credit 10,000 / 20,000): routing has a real choice between them.
QUICKPAY_B_LIMITS = ChannelLimits(
    debit_single=Money(2_000_00, "CNY"),
    debit_daily=Money(10_000_00, "CNY"),
    credit_single=Money(5_000_00, "CNY"),
    credit_daily=Money(10_000_00, "CNY"),
)


@dataclass(frozen=True)
class SandboxCredentials:
    wechatpay: WechatPayCredentials
    alipay: AlipayCredentials
    stripe: StripeCredentials
    paypal: PaypalCredentials
    quickpay: QuickpayCredentials
    quickpay_b: QuickpayCredentials
    bank: BankCredentials

    @classmethod
    def generate(cls) -> SandboxCredentials:
        return cls(**{name: kind.generate() for name, kind in _KINDS.items()})

    @classmethod
    def load_or_create(cls, directory: Path) -> SandboxCredentials:
        """The sandbox keys kept in ``directory`` (private: mode 0600), made on first use; a
        channel added since the file was written gets its keys then, the others are kept."""
        path = directory / CREDENTIALS_FILE
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        made = {
            name: kind.from_dict(data[name]) if name in data else kind.generate()
            for name, kind in _KINDS.items()
        }
        if set(data) != set(_KINDS):
            directory.mkdir(parents=True, exist_ok=True)
            fresh = path.with_suffix(".tmp")
            fresh.unlink(missing_ok=True)
            fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump({name: creds.to_dict() for name, creds in made.items()}, out)
            fresh.replace(path)
        return cls(**made)

    def merchant_document(self, base_urls: dict[str, str]) -> dict[str, Any]:
        """Per channel in ``base_urls``: its base URL and the merchant's side of the keys (ids,
        private key and serial, API keys, the channel's public key and its id), never the
        channel's own secrets. Also what ``clearhouse serve --channels`` reads."""
        document: dict[str, Any] = {}
        for name in CHANNELS:
            if name not in base_urls:
                continue
            creds = getattr(self, name)
            document[name] = {
                "base_url": base_urls[name],
                "credentials": creds.merchant_view().to_dict(),
            }
        if "alipay" in document:
            document["alipay"]["gateway_url"] = base_urls["alipay"] + "/gateway.do"
        if "quickpay_b" in document:
            document["quickpay_b"]["kind"] = "quickpay"  # another instance of the channel
        if "bank" in base_urls:
            document["bank"] = {
                "base_url": base_urls["bank"],
                "credentials": self.bank.merchant_view().to_dict(),
            }
        return document


class Sandboxes:
    def __init__(
        self,
        credentials: SandboxCredentials,
        clock: Clock,
        faults: FaultPlan = NO_FAULTS,
        *,
        auto_pay: bool = False,
        timeout_delay_s: float = 15.0,
        stripe_settlement_currency: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.notifiers: dict[str, Notifier] = {
            "wechatpay": make_notifier(clock),
            "alipay": alipay_notifier(clock),
            "stripe": stripe_events.make_notifier(clock),
            "paypal": paypal.make_notifier(clock),
            "quickpay": quickpay_notifier(clock),
            "quickpay_b": quickpay_notifier(clock),
        }
        self.wechatpay = WechatPaySandbox(
            credentials.wechatpay,
            clock,
            faults,
            notifier=self.notifiers["wechatpay"],
            auto_pay=auto_pay,
            timeout_delay_s=timeout_delay_s,
        )
        self.alipay = AlipaySandbox(
            credentials.alipay,
            clock,
            faults,
            notifier=self.notifiers["alipay"],
            auto_pay=auto_pay,
            timeout_delay_s=timeout_delay_s,
        )
        self.stripe = StripeSandbox(
            credentials.stripe,
            clock,
            faults,
            notifier=self.notifiers["stripe"],
            timeout_delay_s=timeout_delay_s,
            settlement_currency=stripe_settlement_currency,
        )
        self.paypal = paypal.PaypalSandbox(
            credentials.paypal,
            clock,
            faults,
            notifier=self.notifiers["paypal"],
            auto_pay=auto_pay,
            timeout_delay_s=timeout_delay_s,
        )
        # Two acquirers over one card network: the issuers (cards, balances, the issuers'
        # limits across channels) are shared; merchant numbers, tokens and limits are not.
        self.issuers = Issuers.seeded()
        self.quickpay = QuickpaySandbox(
            credentials.quickpay,
            self.issuers,
            clock,
            name="quickpay",
            faults=faults,
            notifier=self.notifiers["quickpay"],
            timeout_delay_s=timeout_delay_s,
        )
        self.quickpay_b = QuickpaySandbox(
            credentials.quickpay_b,
            self.issuers,
            clock,
            name="quickpay_b",
            faults=faults,
            notifier=self.notifiers["quickpay_b"],
            limits=QUICKPAY_B_LIMITS,
            timeout_delay_s=timeout_delay_s,
        )
        # The payout bank pays withdrawals to the same network's cards.
        self.bank = PayoutBank(
            credentials.bank, clock, self.issuers, faults, timeout_delay_s=timeout_delay_s
        )

    def apps(self) -> dict[str, FastAPI]:
        return {
            "wechatpay": wechatpay_app(self.wechatpay),
            "alipay": alipay_app(self.alipay),
            "stripe": stripe_app(self.stripe),
            "paypal": paypal.create_app(self.paypal),
            "quickpay": quickpay_app(self.quickpay),
            "quickpay_b": quickpay_app(self.quickpay_b),
            "bank": bank_app(self.bank),
        }

    def notify_to(self, base_url: str) -> None:
        """Where Stripe's and PayPal's webhooks go (set per account at those channels, not per
        order): Clearhouse's ``/notify/<channel>``."""
        base = base_url.rstrip("/")
        self.stripe.events.endpoints.clear()
        self.stripe.events.add_endpoint(
            f"{base}/notify/stripe",
            list(stripe_protocol.HANDLED_EVENTS),
            self.credentials.stripe.webhook_secret,
        )
        self.paypal.webhook_url = f"{base}/notify/paypal"

    def set_faults(self, plan: FaultPlan) -> None:
        for sandbox in (
            self.wechatpay,
            self.alipay,
            self.stripe,
            self.paypal,
            self.quickpay,
            self.quickpay_b,
        ):
            sandbox.faults = plan
        self.bank.faults = plan

    def pay(self, channel: str, out_trade_no: str) -> None:
        """The payer pays (scans the code, confirms in the app, approves at PayPal). Card
        channels (Stripe, quick pay) need no payer step: their confirmation is the payment
        (quick pay's SMS code travels with it)."""
        if channel == "wechatpay":
            self.wechatpay.pay(out_trade_no)
        elif channel == "alipay":
            self.alipay.pay(out_trade_no)
        elif channel == "paypal":
            order = next(o for o in self.paypal.orders.values() if o.custom_id == out_trade_no)
            self.paypal.approve(order.id)

    def run_due(self) -> int:
        return sum(n.run_due() for n in self.notifiers.values())

    def start(self, interval: float = 0.2) -> None:
        for notifier in self.notifiers.values():
            notifier.start(interval)

    def stop(self) -> None:
        for notifier in self.notifiers.values():
            notifier.stop()

    def close(self) -> None:
        """Stop the notifiers and release their connections."""
        for notifier in self.notifiers.values():
            notifier.close()
