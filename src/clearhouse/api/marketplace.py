"""Marketplace routes: combined payments, routing decisions and the cashier's methods."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response

from clearhouse.api import guard
from clearhouse.api.common import ERRORS_DOC, MAX_ID, Guarded, body_schema, parse
from clearhouse.api.schemas import CashierOption, GroupCreate, GroupOut, RoutingOut
from clearhouse.gateway.groups import CombinedRequest, Order
from clearhouse.gateway.model import Settlement
from clearhouse.gateway.service import Gateway
from clearhouse.money import Money


def add_marketplace_routes(api: FastAPI, gateway: Gateway, guarded: Guarded) -> None:
    @api.post(
        "/v1/payment-groups",
        status_code=201,
        response_model=GroupOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(GroupCreate),
    )
    async def create_group(request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(GroupCreate, body)
            group = gateway.groups.create(
                caller.merchant_id,
                CombinedRequest(
                    merchant_group_id=req.merchant_group_id,
                    orders=tuple(
                        Order(
                            o.merchant_order_id,
                            Money(o.amount, req.currency),
                            o.description,
                            o.merchant_id,
                        )
                        for o in req.orders
                    ),
                    channel=req.channel,
                    method=req.method,
                    settlement=Settlement(req.settlement),
                    expires_at=req.expires_at,
                    payer_id=req.payer_id,
                    payer_ref=req.payer_ref,
                    verification=req.verification,
                    payment_password=req.payment_password,
                ),
            )
            return 201, gateway.groups.view(group)

        return await guarded(request, handle, idempotent=True)

    @api.get("/v1/payment-groups/{group_id}", response_model=GroupOut, responses=ERRORS_DOC)
    async def get_group(group_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.groups.view(gateway.groups.get(caller.merchant_id, group_id))

        return await guarded(request, handle, idempotent=False)

    @api.get("/v1/payments/{payment_id}/routing", response_model=RoutingOut, responses=ERRORS_DOC)
    async def get_routing(payment_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            intent = gateway.payments.get(caller.merchant_id, payment_id)
            return 200, gateway.router.decision(intent.id)

        return await guarded(request, handle, idempotent=False)

    @api.get("/v1/cashier", response_model=list[CashierOption], responses=ERRORS_DOC)
    async def get_cashier(
        request: Request,
        amount: Annotated[int, Query(ge=1, le=MAX_ID)],
        currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")],
        payer_ref: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            money = Money(amount, currency)
            options = gateway.router.cashier(caller.merchant_id, money, payer_ref)
            return 200, [dataclasses.asdict(o) for o in options]

        return await guarded(request, handle, idempotent=False)
