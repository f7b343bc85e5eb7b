"""The merchant HTTP API (thin: parse, authenticate, call a handler, render) and the channels'
notify endpoints.

Handlers are synchronous (database and channel calls block), so each request runs in the
thread pool; the event loop only reads bodies and writes answers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.routing import Match

from clearhouse.api import guard, signing
from clearhouse.api.cards import CARD_BODIES, add_card_routes
from clearhouse.api.common import ERRORS_DOC, MAX_ID, Handler, body_schema, parse
from clearhouse.api.customers import CUSTOMER_BODIES, add_customer_routes
from clearhouse.api.errors import error_response
from clearhouse.api.marketplace import add_marketplace_routes
from clearhouse.api.schemas import (
    DeliveryOut,
    EventOut,
    GroupCreate,
    PaymentCreate,
    PaymentOut,
    RefundCreate,
    RefundOut,
)
from clearhouse.api.wallet import WALLET_BODIES, add_wallet_routes
from clearhouse.errors import ClearhouseError
from clearhouse.gateway.legs import LegRequest
from clearhouse.gateway.model import Settlement
from clearhouse.gateway.payments import PaymentRequest, mixed_parts, view
from clearhouse.gateway.refunds import refund_view
from clearhouse.gateway.service import Gateway
from clearhouse.money import Money

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Workers:
    """The threads handlers run on. Few: the work is CPU and database bound under one GIL, so
    more threads only add switching (anyio's default pool is 40)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        if self._limiter is None:  # made in the event loop, on first use
            self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)


def create_api(gateway: Gateway, threads: int = 8) -> FastAPI:
    workers = _Workers(threads)
    # Channel notifications confirm money already paid: their own threads, so a flood of new
    # payments never queues the confirmations of earlier ones.
    notify_workers = _Workers(max(2, threads // 2))
    api = FastAPI(
        title="Clearhouse merchant API",
        version="1",
        description=(
            "Sign every request (HMAC-SHA256; see `Clearhouse-Signature`) and send an "
            "`Idempotency-Key` with every POST. Amounts are integer minor units."
        ),
    )

    @api.exception_handler(RequestValidationError)
    async def invalid_parameters(request: Request, exc: RequestValidationError) -> Response:
        # Path and query parameters are checked by FastAPI before the handler: answer in the
        # API's own error shape, not FastAPI's.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return error_response("VALIDATION_ERROR", "invalid parameters", errors=errors)

    api.add_exception_handler(HTTPException, _allow_every_method)

    async def guarded(request: Request, handler: Handler, *, idempotent: bool) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return await workers.run(
            _run, gateway, request.method, path, headers, body, handler, idempotent
        )

    @api.post(
        "/v1/payments",
        status_code=201,
        response_model=PaymentOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(PaymentCreate),
    )
    async def create_payment(request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(PaymentCreate, body)
            parts: tuple[LegRequest, ...] = ()
            if req.legs is not None:
                parts = mixed_parts(
                    Money(req.amount, req.currency),
                    [(p.method, Money(p.amount, req.currency), p.account_id) for p in req.legs],
                )
            intent = gateway.payments.create(
                caller.merchant_id,
                PaymentRequest(
                    merchant_order_id=req.merchant_order_id,
                    amount=Money(req.amount, req.currency),
                    description=req.description,
                    channel=req.channel,
                    method=req.method,
                    settlement=Settlement(req.settlement),
                    expires_at=req.expires_at,
                    payer_id=req.payer_id,
                    payer_ref=req.payer_ref,
                    legs=parts,
                    verification=req.verification,
                    payment_password=req.payment_password,
                ),
            )
            return 201, view(intent, gateway.payments.attempts(intent.id))

        return await guarded(request, handle, idempotent=True)

    for add_routes in (
        add_marketplace_routes,
        add_card_routes,
        add_customer_routes,
        add_wallet_routes,
    ):
        add_routes(api, gateway, guarded)

    @api.get("/v1/payments/{payment_id}", response_model=PaymentOut, responses=ERRORS_DOC)
    async def get_payment(payment_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            intent = gateway.payments.get(caller.merchant_id, payment_id)
            return 200, view(intent, gateway.payments.attempts(intent.id))

        return await guarded(request, handle, idempotent=False)

    @api.post("/v1/payments/{payment_id}/close", response_model=PaymentOut, responses=ERRORS_DOC)
    async def close_payment(payment_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            intent = gateway.payments.close(caller.merchant_id, payment_id)
            return 200, view(intent, gateway.payments.attempts(intent.id))

        return await guarded(request, handle, idempotent=True)

    @api.post("/v1/payments/{payment_id}/complete", response_model=PaymentOut, responses=ERRORS_DOC)
    async def complete_payment(payment_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            intent = gateway.payments.complete(caller.merchant_id, payment_id)
            return 200, view(intent, gateway.payments.attempts(intent.id))

        return await guarded(request, handle, idempotent=True)

    @api.post(
        "/v1/payments/{payment_id}/refunds",
        status_code=201,
        response_model=RefundOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(RefundCreate),
    )
    async def create_refund(payment_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(RefundCreate, body)
            refund = gateway.refunds.create(
                caller.merchant_id,
                payment_id,
                Money(req.amount, req.currency),
                req.reason,
                request_key=caller.request_key,
            )
            return 201, refund_view(refund)

        return await guarded(request, handle, idempotent=True)

    @api.get("/v1/refunds/{refund_id}", response_model=RefundOut, responses=ERRORS_DOC)
    async def get_refund(refund_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, refund_view(gateway.refunds.get(caller.merchant_id, refund_id))

        return await guarded(request, handle, idempotent=False)

    @api.get("/v1/events", response_model=list[EventOut], responses=ERRORS_DOC)
    async def list_events(
        request: Request,
        after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            rows = gateway.webhooks.events(caller.merchant_id, after, limit)
            return 200, [_event_out(r) for r in rows]

        return await guarded(request, handle, idempotent=False)

    @api.get(
        "/v1/events/{event_id}/deliveries", response_model=list[DeliveryOut], responses=ERRORS_DOC
    )
    async def list_deliveries(
        event_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request
    ) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.webhooks.deliveries(caller.merchant_id, event_id)

        return await guarded(request, handle, idempotent=False)

    @api.post("/v1/events/{event_id}/resend", responses=ERRORS_DOC)
    async def resend_event(
        event_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request
    ) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            delivered = gateway.webhooks.resend(caller.merchant_id, event_id)
            return 200, {"event_id": event_id, "delivered": delivered}

        return await guarded(request, handle, idempotent=True)

    @api.post("/notify/{channel}", include_in_schema=False)
    async def notify(channel: str, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if channel not in gateway.payments.channels:
            return Response(status_code=404)
        ack = await notify_workers.run(gateway.notifications.handle, channel, headers, body)
        return Response(ack.body, ack.status_code, media_type=ack.media_type)

    @api.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    _install_openapi(api)
    return api


async def _allow_every_method(request: Request, exc: Exception) -> Response:
    """A path served by several routes (GET and POST of /v1/customers/{id}/cards): the
    framework's 405 names the first route's methods only; Allow must name them all."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = {
            method
            for route in request.app.routes
            if route.matches(request.scope)[0] is not Match.NONE
            for method in getattr(route, "methods", None) or ()
        }
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
    return await http_exception_handler(request, exc)


def _install_openapi(api: FastAPI) -> None:
    """The document with the request bodies the handlers parse themselves (after the
    signature check, so FastAPI must not parse them first)."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title,
                version=api.version,
                description=api.description,
                routes=api.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (
                PaymentCreate,
                RefundCreate,
                GroupCreate,
                *CARD_BODIES,
                *WALLET_BODIES,
                *CUSTOMER_BODIES,
            ):
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def _run(
    gateway: Gateway,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    handler: Handler,
    idempotent: bool,
) -> Response:
    try:
        caller = guard.authenticate(
            gateway.engine, gateway.sealer, gateway.clock, method, path, headers, body
        )
        key = headers.get(signing.IDEMPOTENCY_HEADER.lower()) if idempotent else None
        if idempotent:
            # The key covers the route too: one key cannot replay another endpoint's answer.
            scope = f"{method} {path}\n".encode() + body
            replay = guard.begin_idempotent(
                gateway.engine, gateway.clock, caller, key, scope, sealer=gateway.sealer
            )
            if replay is not None:
                return Response(
                    replay.body,
                    replay.status_code,
                    media_type="application/json",
                    headers={"Idempotent-Replayed": "true"},
                )
    except ClearhouseError as exc:
        return error_response(exc.code, exc.message, **_jsonable(exc.details))
    if idempotent:
        caller = dataclasses.replace(caller, request_key=key)
    response = _call(handler, caller, body)
    if idempotent and key:
        guard.finish_idempotent(
            gateway.engine, caller, key, response.status_code, bytes(response.body).decode()
        )
    return response


def _call(handler: Handler, caller: guard.Caller, body: bytes) -> Response:
    try:
        status, payload = handler(caller, body)
    except ClearhouseError as exc:
        return error_response(exc.code, exc.message, **_jsonable(exc.details))
    except Exception:
        log.exception("unhandled error")
        return error_response("INTERNAL_ERROR", "internal error; retry with the same key")
    return Response(
        json.dumps(payload, default=str, separators=(",", ":")),
        status,
        media_type="application/json",
    )


def _event_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": row["type"],
        "payload": json.loads(row["payload"]),
        "created_at": row["created_at"],
        "delivery_state": row["delivery_state"],
        "attempts": row["attempts"],
    }


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(json.dumps(details, default=str))
    return decoded
