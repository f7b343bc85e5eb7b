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
from clearhouse.gateway.channels.wechatpay.protocol import WechatPayCredentials
from clearhouse.sandbox.alipay import AlipaySandbox, alipay_notifier
from clearhouse.sandbox.alipay import create_app as alipay_app
from clearhouse.sandbox.faults import NO_FAULTS, FaultPlan
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.wechatpay.app import create_app as wechatpay_app
from clearhouse.sandbox.wechatpay.state import WechatPaySandbox, make_notifier

CHANNELS = ("wechatpay", "alipay")
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class SandboxCredentials:
    wechatpay: WechatPayCredentials
    alipay: AlipayCredentials

    @classmethod
    def generate(cls) -> SandboxCredentials:
        return cls(WechatPayCredentials.generate(), AlipayCredentials.generate())

    @classmethod
    def load_or_create(cls, directory: Path) -> SandboxCredentials:
        """The sandbox keys kept in ``directory`` (private: mode 0600), made on first use."""
        path = directory / CREDENTIALS_FILE
        if path.exists():
            data = json.loads(path.read_text())
            return cls(
                WechatPayCredentials.from_dict(data["wechatpay"]),
                AlipayCredentials.from_dict(data["alipay"]),
            )
        made = cls.generate()
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"wechatpay": made.wechatpay.to_dict(), "alipay": made.alipay.to_dict()}, out)
        return made

    def merchant_document(self, base_urls: dict[str, str]) -> dict[str, Any]:
        """Per channel: base URL and the merchant's side of the keys (ids, private key and
        serial, APIv3 key, the channel's public key and its id) — never the channel's private
        key. Also what ``clearhouse serve --channels`` reads."""
        return {
            "wechatpay": {
                "base_url": base_urls["wechatpay"],
                "credentials": self.wechatpay.merchant_view().to_dict(),
            },
            "alipay": {
                "base_url": base_urls["alipay"],
                "gateway_url": base_urls["alipay"] + "/gateway.do",
                "credentials": self.alipay.merchant_view().to_dict(),
            },
        }


class Sandboxes:
    def __init__(
        self,
        credentials: SandboxCredentials,
        clock: Clock,
        faults: FaultPlan = NO_FAULTS,
        *,
        auto_pay: bool = False,
        timeout_delay_s: float = 15.0,
    ) -> None:
        self.credentials = credentials
        self.notifiers: dict[str, Notifier] = {
            "wechatpay": make_notifier(clock),
            "alipay": alipay_notifier(clock),
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

    def apps(self) -> dict[str, FastAPI]:
        return {
            "wechatpay": wechatpay_app(self.wechatpay),
            "alipay": alipay_app(self.alipay),
        }

    def set_faults(self, plan: FaultPlan) -> None:
        self.wechatpay.faults = plan
        self.alipay.faults = plan

    def pay(self, channel: str, out_trade_no: str) -> None:
        """The payer pays (scans the code, confirms in the app)."""
        if channel == "wechatpay":
            self.wechatpay.pay(out_trade_no)
        else:
            self.alipay.pay(out_trade_no)

    def run_due(self) -> int:
        return sum(n.run_due() for n in self.notifiers.values())

    def start(self, interval: float = 0.2) -> None:
        for notifier in self.notifiers.values():
            notifier.start(interval)

    def stop(self) -> None:
        for notifier in self.notifiers.values():
            notifier.stop()
