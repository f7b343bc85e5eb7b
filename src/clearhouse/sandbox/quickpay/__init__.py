"""A stateful simulated bank-card quick pay network (a UnionPay-style card channel and its
issuing banks) that the quick pay adapter talks to over HTTP."""

from clearhouse.sandbox.quickpay.app import QuickpaySandbox, create_app
from clearhouse.sandbox.quickpay.banks import TEST_CARDS, CardKind, Issuers
from clearhouse.sandbox.quickpay.state import (
    RETRY_SCHEDULE,
    ChannelLimits,
    is_ack,
    quickpay_notifier,
)

__all__ = [
    "RETRY_SCHEDULE",
    "TEST_CARDS",
    "CardKind",
    "ChannelLimits",
    "Issuers",
    "QuickpaySandbox",
    "create_app",
    "is_ack",
    "quickpay_notifier",
]
