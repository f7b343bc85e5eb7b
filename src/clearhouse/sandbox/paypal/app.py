"""The sandbox over HTTP: PayPal's OAuth, Orders v2, Payments v2 and webhook routes, the payer's
approval page, the Settlement Report file, and a few ``/sandbox`` control routes.

Every ``/v1`` and ``/v2`` API call needs ``Authorization: Bearer <token>`` from
``/v1/oauth2/token`` (401 ``invalid_token`` otherwise). Answers honour ``Prefer``: PayPal's
default is ``return=minimal`` (id, status, links), ``return=representation`` gives the whole
resource. The approval page and control routes are unauthenticated: they stand for the payer's
browser and the test bench, never exposed.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from clearhouse.gateway.channels.paypal import protocol
from clearhouse.sandbox import control
from clearhouse.sandbox.paypal import settlement
from clearhouse.sandbox.paypal.state import ApiError, OAuthError, PaypalSandbox

_JSON = "application/json"
_STL_FILE = re.compile(r"STL-(\d{8})\.01\.009\.CSV")


def create_app(sandbox: PaypalSandbox) -> FastAPI:
    app = FastAPI(title="PayPal REST sandbox", openapi_url=None, docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def learn_url(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not sandbox.public_url:  # links and the cert URL need the address payers reach
            sandbox.public_url = str(request.base_url).rstrip("/")
        return await call_next(request)

    _oauth_routes(app, sandbox)
    _order_routes(app, sandbox)
    _payment_routes(app, sandbox)
    _webhook_routes(app, sandbox)
    _payer_routes(app, sandbox)
    _control_routes(app, sandbox)
    return app


def _json(data: Any, status: int = 200) -> Response:
    return Response(protocol.dumps(data), status_code=status, media_type=_JSON)


def _failure(exc: ApiError | OAuthError) -> Response:
    debug_id = secrets.token_hex(7)
    if isinstance(exc, OAuthError):
        body: dict[str, Any] = {"error": exc.error, "error_description": exc.description}
    else:
        body = protocol.error_body(exc.status, exc.issue, exc.description, debug_id)
    response = _json(body, exc.status)
    response.headers["Paypal-Debug-Id"] = debug_id
    return response


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "MALFORMED_REQUEST_JSON", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "MALFORMED_REQUEST_JSON", "the body is not a JSON object")
    return data


def _shaped(request: Request, view: dict[str, Any], status: int) -> Response:
    if "return=representation" in request.headers.get("prefer", ""):
        return _json(view, status)
    minimal = {k: view[k] for k in ("id", "status", "links") if k in view}
    return _json(minimal, status)


Handler = Callable[[], Awaitable[Response]]


def _api(sandbox: PaypalSandbox, request: Request) -> Callable[[Handler], Awaitable[Response]]:
    """Authenticate, run, and turn the sandbox's errors into PayPal's answers."""

    async def run(handler: Handler) -> Response:
        try:
            sandbox.authenticate(request.headers.get("authorization", ""))
            return await handler()
        except (ApiError, OAuthError) as exc:
            return _failure(exc)

    return run


async def _late(sandbox: PaypalSandbox, operation: str, subject: str) -> None:
    # The work is done; only the answer is held back, so the client times out.
    if subject and sandbox.take_timeout(operation, subject):
        await asyncio.sleep(sandbox.timeout_delay_s)


def _oauth_routes(app: FastAPI, sandbox: PaypalSandbox) -> None:
    @app.post("/v1/oauth2/token")
    async def token(request: Request) -> Response:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "basic":
                raise ValueError("not basic")
            client_id, _, secret = base64.b64decode(encoded).decode("utf-8").partition(":")
        except ValueError:
            return _failure(OAuthError(401, "invalid_client", "Client Authentication failed"))
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        try:
            answer = sandbox.issue_token(client_id, secret, form.get("grant_type", ""))
        except OAuthError as exc:
            return _failure(exc)
        return _json(answer)


def _order_routes(app: FastAPI, sandbox: PaypalSandbox) -> None:
    @app.post("/v2/checkout/orders")
    async def create(request: Request) -> Response:
        async def handle() -> Response:
            body = await _body(request)
            request_id = request.headers.get("paypal-request-id")
            view = sandbox.create_order(body, request_id)
            await _late(sandbox, "create", request_id or "")
            return _shaped(request, view, 201)

        return await _api(sandbox, request)(handle)

    @app.get("/v2/checkout/orders/{order_id}")
    async def get(request: Request, order_id: str) -> Response:
        async def handle() -> Response:
            return _json(sandbox.get_order(order_id))

        return await _api(sandbox, request)(handle)

    @app.post("/v2/checkout/orders/{order_id}/capture")
    async def capture(request: Request, order_id: str) -> Response:
        async def handle() -> Response:
            request_id = request.headers.get("paypal-request-id")
            view = sandbox.capture(order_id, await _body(request), request_id)
            subject = view["purchase_units"][0].get("custom_id", order_id)
            await _late(sandbox, "capture", subject)
            return _shaped(request, view, 201)

        return await _api(sandbox, request)(handle)


def _payment_routes(app: FastAPI, sandbox: PaypalSandbox) -> None:
    @app.get("/v2/payments/captures/{capture_id}")
    async def get_capture(request: Request, capture_id: str) -> Response:
        async def handle() -> Response:
            return _json(sandbox.get_capture(capture_id))

        return await _api(sandbox, request)(handle)

    @app.post("/v2/payments/captures/{capture_id}/refund")
    async def refund(request: Request, capture_id: str) -> Response:
        async def handle() -> Response:
            request_id = request.headers.get("paypal-request-id")
            view = sandbox.refund(capture_id, await _body(request), request_id)
            await _late(sandbox, "refund", view.get("invoice_id", ""))
            return _shaped(request, view, 201)

        return await _api(sandbox, request)(handle)

    @app.get("/v2/payments/refunds/{refund_id}")
    async def get_refund(request: Request, refund_id: str) -> Response:
        async def handle() -> Response:
            return _json(sandbox.get_refund(refund_id))

        return await _api(sandbox, request)(handle)

    @app.get("/ppreports/outgoing/{name}")
    async def settlement_file(request: Request, name: str) -> Response:
        # PayPal delivers the STL file over SFTP; the sandbox serves the same bytes over HTTP.
        async def handle() -> Response:
            match = _STL_FILE.fullmatch(name)
            if match is None:
                raise ApiError(404, "RESOURCE_NOT_FOUND", f"no report {name}")
            day = datetime.strptime(match.group(1), "%Y%m%d").date()
            data = sandbox.settlement_report(day)
            disposition = f'attachment; filename="{settlement.file_name(day)}"'
            headers = {"Content-Disposition": disposition}
            return Response(data, media_type="text/csv", headers=headers)

        return await _api(sandbox, request)(handle)


def _webhook_routes(app: FastAPI, sandbox: PaypalSandbox) -> None:
    @app.post("/v1/notifications/verify-webhook-signature")
    async def verify(request: Request) -> Response:
        async def handle() -> Response:
            return _json(sandbox.verify_webhook_signature(await _body(request)))

        return await _api(sandbox, request)(handle)

    @app.get("/v1/notifications/certs/{name}")
    async def certificate(name: str) -> Response:
        if sandbox.cert_url().rsplit("/", 1)[-1] != name:
            return _failure(ApiError(404, "RESOURCE_NOT_FOUND", "no such certificate"))
        return Response(sandbox.require_cert(), media_type="application/x-pem-file")


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Pay with PayPal (sandbox)</title></head>
<body><h1>Pay {amount}</h1><p>{description}</p>
<form method="post" action="/checkoutnow"><input type="hidden" name="token" value="{token}">
<button name="action" value="approve">Pay now</button>
<button name="action" value="decline">Pay with a card that will be declined</button>
</form></body></html>"""


def _payer_routes(app: FastAPI, sandbox: PaypalSandbox) -> None:
    @app.get("/checkoutnow")
    async def page(token: str = "") -> Response:
        try:
            order = sandbox.get_order(token)
        except ApiError as exc:
            return HTMLResponse(f"<p>{html.escape(exc.description)}</p>", exc.status)
        amount = order["purchase_units"][0]["amount"]
        return HTMLResponse(
            _PAGE.format(
                amount=html.escape(f"{amount['value']} {amount['currency_code']}"),
                description=html.escape(order["purchase_units"][0].get("description", "")),
                token=html.escape(token),
            )
        )

    @app.post("/checkoutnow")
    async def approve(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        token = form.get("token", "")
        try:
            view = sandbox.approve(token, decline=form.get("action") == "decline")
        except ApiError as exc:
            return HTMLResponse(f"<p>{html.escape(exc.description)}</p>", exc.status)
        return_url = sandbox.orders[token].return_url
        if return_url:  # back to the merchant, as PayPal does, with the order and the payer
            query = urlencode({"token": token, "PayerID": view["payer"]["payer_id"]})
            separator = "&" if "?" in return_url else "?"
            return RedirectResponse(f"{return_url}{separator}{query}", status_code=303)
        return HTMLResponse("<p>Approved. You can return to the merchant.</p>")


def _control_routes(app: FastAPI, sandbox: PaypalSandbox) -> None:
    """The payer (without a browser), the webhook pump and the fault plan."""

    @app.post("/sandbox/orders/{order_id}/approve")
    async def payer_approves(request: Request, order_id: str) -> Response:
        try:
            body = await _body(request)
            return _json(sandbox.approve(order_id, decline=bool(body.get("decline"))))
        except ApiError as exc:
            return _failure(exc)

    control.notification_routes(app, sandbox)
    control.fault_routes(
        app, sandbox, lambda message: _failure(ApiError(400, "INVALID_PARAMETER_VALUE", message))
    )
