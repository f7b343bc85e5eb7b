"""The gateway's exception tree. Each class's ``code`` is stable and published; the API maps
codes to HTTP statuses in ``clearhouse.api.errors``, the one list of what a merchant can see."""

from __future__ import annotations

from clearhouse.errors import ClearhouseError


class GatewayError(ClearhouseError):
    code = "GATEWAY_ERROR"


class InvalidPayment(GatewayError):
    """The request is well-formed JSON but not a payment we can take (P2)."""

    code = "INVALID_PAYMENT"


class ChannelNotSupported(InvalidPayment):
    code = "CHANNEL_NOT_SUPPORTED"


class MethodNotSupported(InvalidPayment):
    code = "METHOD_NOT_SUPPORTED"


class CurrencyNotSupported(InvalidPayment):
    code = "CURRENCY_NOT_SUPPORTED"


class AmountTooLarge(InvalidPayment):
    code = "AMOUNT_TOO_LARGE"


class NoRoute(InvalidPayment):
    """No enabled channel can carry the payment now (limits, open circuits, method, currency);
    ``reasons`` names each channel's."""

    code = "NO_ROUTE"


class OrderExpired(InvalidPayment):
    code = "ORDER_EXPIRED"


class DuplicateOrder(GatewayError):
    """The merchant's order id is already taken by a different payment request."""

    code = "DUPLICATE_ORDER"


class MerchantNotActive(GatewayError):
    code = "MERCHANT_NOT_ACTIVE"


class RiskDeclined(GatewayError):
    code = "RISK_DECLINED"


class PaymentNotFound(GatewayError):
    code = "PAYMENT_NOT_FOUND"


class RefundNotFound(GatewayError):
    code = "REFUND_NOT_FOUND"


class InvalidTransition(GatewayError):
    """The payment is not in a state that allows this (closing a paid order, completing an
    instant one)."""

    code = "INVALID_STATE"


class RefundRefused(GatewayError):
    """A refund the policy does not allow; ``code`` is the RefundRefusal value."""

    code = "REFUND_REFUSED"


class LedgerRefused(GatewayError):
    """The ledger rejected a posting the gateway needed: a fault, never a business answer, so
    the whole transaction rolls back and the channel's notification is retried."""

    code = "LEDGER_REFUSED"
