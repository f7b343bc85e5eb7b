from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from clearhouse.api.app import create_api
from clearhouse.api.client import MerchantClient
from clearhouse.clock import FixedClock
from clearhouse.gateway.service import Gateway
from clearhouse.sandbox.serving import ServedApp
from tests.gateway_support import MerchantFixture, channel, gateway, merchant

__all__ = ["channel", "client", "gateway", "http", "merchant"]


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    """The API served over real HTTP on a free port."""
    with ServedApp(create_api(gateway)) as served, httpx.Client(base_url=served.base_url) as c:
        yield c


@pytest.fixture
def client(http: httpx.Client, merchant: MerchantFixture, clock: FixedClock) -> MerchantClient:
    return MerchantClient(
        http, merchant.key.key_id, merchant.key.secret, lambda: clock.now().timestamp()
    )
