"""A stateful PayPal REST simulator (OAuth, Orders v2, Payments v2, webhooks, the Settlement
Report) that PayPal's server SDK and our adapter can talk to."""

from clearhouse.sandbox.paypal.app import create_app
from clearhouse.sandbox.paypal.state import RETRY_SCHEDULE, PaypalSandbox, is_ack, make_notifier

__all__ = ["RETRY_SCHEDULE", "PaypalSandbox", "create_app", "is_ack", "make_notifier"]
