"""Every error code the merchant API can answer with, and its HTTP status: the one list.

The codes are stable: clients match on them. A test drives the API into each one.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

ERROR_STATUS: dict[str, int] = {
    # authentication and replay protection
    "UNAUTHENTICATED": 401,  # a signing header is missing
    "UNKNOWN_API_KEY": 401,
    "BAD_SIGNATURE": 401,
    "STALE_TIMESTAMP": 401,  # outside the 5-minute window
    "NONCE_REUSED": 401,
    "MERCHANT_NOT_ACTIVE": 403,
    # idempotency
    "IDEMPOTENCY_KEY_REQUIRED": 400,
    "IDEMPOTENCY_KEY_REUSED": 422,  # same key, different body
    "IDEMPOTENCY_IN_FLIGHT": 409,  # same key, first request still running
    # request shape
    "MALFORMED_JSON": 400,
    "VALIDATION_ERROR": 422,
    "UNKNOWN_CURRENCY": 422,
    "INVALID_AMOUNT": 422,
    "AMOUNT_OUT_OF_RANGE": 422,
    # payments
    "INVALID_PAYMENT": 422,
    "AMOUNT_TOO_LARGE": 422,
    "CURRENCY_NOT_SUPPORTED": 422,
    "CHANNEL_NOT_SUPPORTED": 422,
    "METHOD_NOT_SUPPORTED": 422,
    "NO_ROUTE": 422,  # every channel that could carry it is over a limit or unavailable
    "LEGS_DO_NOT_ADD_UP": 422,  # a mixed payment's parts and its amount differ
    "INVALID_PAYMENT_LEG": 422,
    "INSUFFICIENT_BALANCE": 422,  # the payer's balance cannot cover its part
    "NOT_A_SELLER": 422,  # a combined payment's order for a merchant not on this marketplace
    "ORDER_EXPIRED": 422,
    "DUPLICATE_ORDER": 409,
    "RISK_DECLINED": 402,
    "PAYMENT_NOT_FOUND": 404,
    "INVALID_STATE": 409,
    # refunds
    "REFUND_NOT_FOUND": 404,
    "PAYMENT_NOT_REFUNDABLE": 409,
    "REFUND_EXCEEDS_REFUNDABLE": 422,
    "REFUND_LIMIT_REACHED": 422,
    "REFUND_WINDOW_CLOSED": 422,
    "REFUND_EXCEEDS_BALANCE": 422,  # the merchant's settlement balance cannot cover it
    # webhooks
    "DELIVERY_NOT_FOUND": 404,
    # customers
    "CUSTOMER_NOT_FOUND": 404,  # no such customer, or not one of yours
    "INVALID_CUSTOMER": 422,  # a new customer's element that cannot be right; `field` names it
    "DUPLICATE_IDENTITY": 409,  # the ID number is a customer's already (`customer_id` if yours)
    # cards
    "IDENTITY_NOT_VERIFIED": 422,  # the customer has no verified real-name identity
    "IDENTITY_MISMATCH": 422,  # the holder's name or ID number is not the customer's
    "INVALID_CARD": 422,  # an element that cannot be right; `field` names it
    "CARD_REFUSED": 422,  # the channel or issuer refused the card; `reason` is its code
    "BINDING_NOT_FOUND": 404,
    "BINDING_EXPIRED": 409,  # not confirmed within 15 minutes: its card data erased; bind again
    "VERIFICATION_FAILED": 422,  # the SMS code was refused; `reason` says how
    "CARD_NOT_FOUND": 404,
    "CARD_NOT_ACTIVE": 409,  # the card was unbound
    "ISSUER_LIMIT_EXCEEDED": 422,  # over the issuer's limit, every channel together
    "VERIFICATION_REQUIRED": 402,  # stored, not sent: the payer's SMS code or password needed
    # the payer's payment password
    "PAYMENT_PASSWORD_NOT_SET": 409,  # verify with the SMS code, or set one
    "PAYMENT_PASSWORD_WRONG": 422,  # counted; `tries_left` before it locks
    "PAYMENT_PASSWORD_LOCKED": 409,  # too many wrong tries: until `locked_until`
    "PAYMENT_PASSWORD_WEAK": 422,  # one digit repeated or a run (123456)
    "PAYMENT_PASSWORD_PROOF_INVALID": 422,  # no current password nor a fresh SMS-confirmed binding
    "CHANNEL_UNAVAILABLE": 503,  # no usable answer from the channel: retry
    # wallet: top-ups, transfers, withdrawals
    "TOPUP_NOT_REFUNDABLE": 409,  # the money is the buyer's balance now: withdraw it
    "ACCOUNT_NOT_FOUND": 404,  # no such account of your customers, or no balance in the currency
    "ACCOUNT_NOT_ACTIVE": 409,  # the account, its customer or its balance is frozen/closed
    "CURRENCY_MISMATCH": 422,  # the account's balance is in another currency
    "SAME_ACCOUNT": 422,  # a transfer to the account it comes from
    "KYC_LIMIT_EXCEEDED": 422,  # over the identity's limit; `period` and `headroom` say which
    "DUPLICATE_TRANSFER": 409,  # the transfer id is taken by a different transfer
    "DUPLICATE_WITHDRAWAL": 409,
    "WITHDRAWAL_NOT_FOUND": 404,
    "CARD_NOT_OWNED": 422,  # the card is another customer's than the balance's
    "PAYOUT_UNAVAILABLE": 503,  # the platform's bank reserve cannot cover it now: retry
    # the server's own trouble: safe to retry with the same Idempotency-Key
    "DATABASE_BUSY": 503,
    "INTERNAL_ERROR": 500,
}


def error_response(code: str, message: str, **details: Any) -> JSONResponse:
    status = ERROR_STATUS.get(code)
    if status is None:
        # An internal fault (a ledger refusal, a broken seal): logged in full under an incident
        # id; the merchant gets the id, never our internals.
        incident = secrets.token_hex(8)
        log.error("incident %s: %s %s %s", incident, code, message, details)
        return JSONResponse(
            {
                "error": {
                    "code": "INTERNAL_ERROR",
                    "message": "internal error; retry with the same Idempotency-Key",
                    "incident": incident,
                }
            },
            500,
        )
    return JSONResponse({"error": {"code": code, "message": message, **details}}, status)
