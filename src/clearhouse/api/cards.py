"""Card routes (P7): bind a bank card to a real-name customer, confirm it with the SMS code,
list and unbind cards, sign a card on another channel, send a card payment's (or a combined
payment's) SMS code, and set the payer's payment password.

A merchant acts only for the customers in its scope (``gateway/customers.py``): another
marketplace's customer, card or binding answers as unknown. The card number, ID number, CVV
and payment password in these requests reach the card flows only: no answer echoes them (cards
show their masked number) and the idempotency record keeps a keyed digest of the body, never
the body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response

from clearhouse.api import guard
from clearhouse.api.common import ERRORS_DOC, Guarded, body_schema, parse
from clearhouse.api.schemas import (
    CardBindCreate,
    CardBindingConfirm,
    CardBindingOut,
    CardOut,
    CardSigningCreate,
    PaymentPasswordOut,
    PaymentPasswordSet,
    PaymentSmsOut,
)
from clearhouse.gateway.channels.quickpay import CardElements
from clearhouse.gateway.service import Gateway

# The request bodies these routes parse themselves (registered in the OpenAPI document).
CARD_BODIES = (CardBindCreate, CardBindingConfirm, CardSigningCreate, PaymentPasswordSet)


def add_card_routes(api: FastAPI, gateway: Gateway, guarded: Guarded) -> None:
    @api.post(
        "/v1/customers/{customer_id}/cards",
        status_code=201,
        response_model=CardBindingOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(CardBindCreate),
    )
    async def start_card_binding(customer_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(CardBindCreate, body)
            elements = CardElements(
                holder_name=req.holder_name,
                id_number=req.id_number,
                card_no=req.card_number,
                phone=req.phone,
                expiry=req.expiry,
                cvv=req.cvv,
            )
            binding = gateway.cards.start_binding(
                customer_id, elements, req.channel, merchant_id=caller.merchant_id
            )
            return 201, binding

        return await guarded(request, handle, idempotent=True)

    @api.post(
        "/v1/card-bindings/{binding_id}/confirm",
        response_model=CardOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(CardBindingConfirm),
    )
    async def confirm_card_binding(binding_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(CardBindingConfirm, body)
            confirmed = gateway.cards.confirm_binding(
                binding_id, req.sms_code, merchant_id=caller.merchant_id
            )
            return 200, confirmed

        return await guarded(request, handle, idempotent=True)

    @api.get(
        "/v1/customers/{customer_id}/cards", response_model=list[CardOut], responses=ERRORS_DOC
    )
    async def list_cards(customer_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.cards.list_cards(customer_id, merchant_id=caller.merchant_id)

        return await guarded(request, handle, idempotent=False)

    @api.post("/v1/cards/{card_id}/unbind", response_model=CardOut, responses=ERRORS_DOC)
    async def unbind_card(card_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.cards.unbind(card_id, merchant_id=caller.merchant_id)

        return await guarded(request, handle, idempotent=True)

    @api.post(
        "/v1/cards/{card_id}/signings",
        status_code=201,
        response_model=CardBindingOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(CardSigningCreate),
    )
    async def sign_card_on(card_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(CardSigningCreate, body)
            binding = gateway.cards.sign_on(
                card_id, req.channel, req.id_number, req.cvv, merchant_id=caller.merchant_id
            )
            return 201, binding

        return await guarded(request, handle, idempotent=True)

    @api.post("/v1/payments/{payment_id}/sms", response_model=PaymentSmsOut, responses=ERRORS_DOC)
    async def send_payment_sms(payment_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.cards.send_pay_sms(caller.merchant_id, payment_id)

        return await guarded(request, handle, idempotent=True)

    @api.post(
        "/v1/payment-groups/{group_id}/sms", response_model=PaymentSmsOut, responses=ERRORS_DOC
    )
    async def send_group_sms(group_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.cards.send_group_sms(caller.merchant_id, group_id)

        return await guarded(request, handle, idempotent=True)

    @api.post(
        "/v1/customers/{customer_id}/payment-password",
        response_model=PaymentPasswordOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(PaymentPasswordSet),
    )
    async def set_payment_password(customer_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(PaymentPasswordSet, body)
            done = gateway.cards.passwords.set_password(
                customer_id,
                req.password,
                merchant_id=caller.merchant_id,
                binding_id=req.binding_id,
                current_password=req.current_password,
            )
            return 200, done

        return await guarded(request, handle, idempotent=True)

    @api.get(
        "/v1/customers/{customer_id}/payment-password",
        response_model=PaymentPasswordOut,
        responses=ERRORS_DOC,
    )
    async def get_payment_password(customer_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.cards.passwords.status(customer_id, merchant_id=caller.merchant_id)

        return await guarded(request, handle, idempotent=False)
