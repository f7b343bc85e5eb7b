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
