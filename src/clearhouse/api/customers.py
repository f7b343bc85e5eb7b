"""Customer routes: open a real-name buyer enrolled with the caller, and read a customer in the
caller's scope (``gateway/customers.py``). The ID number and phone in a request reach the
opening only: answers show them masked and the idempotency record keeps a keyed digest."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response

from clearhouse.api import guard
from clearhouse.api.common import ERRORS_DOC, Guarded, body_schema, parse
from clearhouse.api.schemas import CustomerCreate, CustomerOut
from clearhouse.gateway.customers import BuyerRequest
from clearhouse.gateway.service import Gateway

CUSTOMER_BODIES = (CustomerCreate,)


def add_customer_routes(api: FastAPI, gateway: Gateway, guarded: Guarded) -> None:
    @api.post(
        "/v1/customers",
        status_code=201,
        response_model=CustomerOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(CustomerCreate),
    )
    async def open_customer(request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(CustomerCreate, body)
            made = gateway.customers.open_buyer(
                caller.merchant_id, BuyerRequest(req.name, req.id_number, req.phone)
            )
            return 201, made

        return await guarded(request, handle, idempotent=True)

    @api.get("/v1/customers/{customer_id}", response_model=CustomerOut, responses=ERRORS_DOC)
    async def get_customer(customer_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.customers.get(caller.merchant_id, customer_id)

        return await guarded(request, handle, idempotent=False)
