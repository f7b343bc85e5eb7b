"""Channel adapters from a channels document: per channel its base URL and the merchant's
credentials (what ``clearhouse sandbox credentials --json`` prints, or a production file).

An entry's ``kind`` names its adapter; without one the entry's name does, and a name
``quickpay_<x>`` is another quick pay instance (another acquirer on the card network, with its
own merchant number and keys): ``{"quickpay_b": {"kind": "quickpay", "base_url": ...,
"credentials": ...}}`` and ``{"quickpay_b": {"base_url": ..., "credentials": ...}}`` are the
same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clearhouse.clock import Clock
from clearhouse.errors import ConfigurationError
from clearhouse.gateway.channels.alipay.adapter import AlipayAdapter
from clearhouse.gateway.channels.alipay.credentials import AlipayCredentials
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.paypal.protocol import PaypalCredentials
from clearhouse.gateway.channels.port import ChannelPort
from clearhouse.gateway.channels.quickpay.adapter import QuickpayAdapter
from clearhouse.gateway.channels.quickpay.protocol import QuickpayCredentials
from clearhouse.gateway.channels.stripe.adapter import StripeAdapter
from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.gateway.channels.wechatpay.adapter import WechatPayAdapter
from clearhouse.gateway.channels.wechatpay.protocol import WechatPayCredentials

BANK_ENTRY = "bank"


def ports_from_document(
    document: dict[str, Any], clock: Clock, timeout: float = 10.0
) -> dict[str, ChannelPort]:
    ports: dict[str, ChannelPort] = {}
    for name, entry in document.items():
        if name == BANK_ENTRY:
            continue  # the payout bank is not a channel (wallet/bankwire: bank_from_document)
        try:
            base_url, creds = entry["base_url"], entry["credentials"]
        except (KeyError, TypeError) as exc:
            raise ConfigurationError(f"channel {name!r}: needs base_url and credentials") from exc
        kind = entry.get("kind") or ("quickpay" if name.startswith("quickpay_") else name)
        if kind not in (name, "quickpay"):
            # The other adapters name themselves: only quick pay runs as several instances.
            raise ConfigurationError(f"channel {name!r}: kind {kind!r} runs only as itself")
        if kind == "quickpay":
            ports[name] = QuickpayAdapter(
                QuickpayCredentials.from_dict(creds),
                base_url=base_url,
                timeout=timeout,
                clock=clock,
                name=name,
            )
        elif kind == "wechatpay":
            ports[name] = WechatPayAdapter(
                WechatPayCredentials.from_dict(creds),
                base_url=base_url,
                timeout=timeout,
                clock=clock,
            )
        elif kind == "alipay":
            ports[name] = AlipayAdapter(
                AlipayCredentials.from_dict(creds), base_url=base_url, timeout=timeout, clock=clock
            )
        elif kind == "stripe":
            ports[name] = StripeAdapter(
                StripeCredentials.from_dict(creds), base_url=base_url, timeout=timeout, clock=clock
            )
        elif kind == "paypal":
            ports[name] = PaypalAdapter(
                PaypalCredentials.from_dict(creds), base_url=base_url, timeout=timeout, clock=clock
            )
        else:
            raise ConfigurationError(f"unknown channel {name!r} in the channels document")
    return ports


def load_document(path: Path) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read channels document {path}: {exc}") from exc
    return document
