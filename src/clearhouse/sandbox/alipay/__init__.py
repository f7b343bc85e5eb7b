"""A stateful Alipay OpenAPI simulator that ``python-alipay-sdk`` and our adapter can talk to."""

from clearhouse.sandbox.alipay.app import create_app
from clearhouse.sandbox.alipay.simulator import AlipaySandbox
from clearhouse.sandbox.alipay.state import RETRY_SCHEDULE, PayerError, alipay_notifier, is_ack

__all__ = [
    "RETRY_SCHEDULE",
    "AlipaySandbox",
    "PayerError",
    "alipay_notifier",
    "create_app",
    "is_ack",
]
