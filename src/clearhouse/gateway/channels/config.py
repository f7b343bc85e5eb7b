"""Channel adapters from a channels document: per channel its base URL and the merchant's
credentials (what ``clearhouse sandbox credentials --json`` prints, or a production file)."""

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
from clearhouse.gateway.channels.stripe.adapter import StripeAdapter
from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.gateway.channels.wechatpay.adapter import WechatPayAdapter
from clearhouse.gateway.channels.wechatpay.protocol import WechatPayCredentials


def ports_from_document(
    document: dict[str, Any], clock: Clock, timeout: float = 10.0
) -> dict[str, ChannelPort]:
    ports: dict[str, ChannelPort] = {}
    for name, entry in document.items():
        try:
            base_url, creds = entry["base_url"], entry["credentials"]
        except (KeyError, TypeError) as exc:
            raise ConfigurationError(f"channel {name!r}: needs base_url and credentials") from exc
        if name == "wechatpay":
            ports[name] = WechatPayAdapter(
                WechatPayCredentials.from_dict(creds),
                base_url=base_url,
                timeout=timeout,
                clock=clock,
            )
        elif name == "alipay":
            ports[name] = AlipayAdapter(
                AlipayCredentials.from_dict(creds), base_url=base_url, timeout=timeout, clock=clock
            )
        elif name == "stripe":
            ports[name] = StripeAdapter(
                StripeCredentials.from_dict(creds), base_url=base_url, timeout=timeout, clock=clock
            )
        elif name == "paypal":
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
