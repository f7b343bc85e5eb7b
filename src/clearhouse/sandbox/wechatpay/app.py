"""The sandbox over HTTP: WeChat Pay API v3 routes plus a few ``/sandbox`` control routes.

Every ``/v3`` request must carry the merchant's valid ``Authorization`` (401 SIGN_ERROR
otherwise); every ``/v3`` answer except a bill file is signed with the platform key, errors
included. Control routes (pay as the payer, settle refunds, faults, deliver notifications) are
unauthenticated: the sandbox is a test double, never exposed.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from clearhouse.gateway.channels.wechatpay import protocol
from clearhouse.sandbox import control
from clearhouse.sandbox.wechatpay.state import ApiError, WechatPaySandbox

_JSON = "application/json"


def create_app(sandbox: WechatPaySandbox) -> FastAPI:
    app = FastAPI(title="WeChat Pay v3 sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    wire = _Wire(sandbox)
    _payment_routes(app, wire)
    _bill_routes(app, wire)
    _control_routes(app, sandbox)
    return app


class _Wire:
    """Authentication, signing and parsing around the sandbox's decisions."""

    def __init__(self, sandbox: WechatPaySandbox) -> None:
        self.sandbox = sandbox

    def signed(self, status: int, body: bytes) -> Response:
        sandbox = self.sandbox
        headers = protocol.signed_headers(sandbox.credentials, body, sandbox.clock.now())
        return Response(body, status_code=status, headers=headers, media_type=_JSON)

    def failure(self, exc: ApiError) -> Response:
        return self.signed(exc.status, protocol.error_body(exc.code, exc.message))

    async def authenticated(self, request: Request) -> bytes:
        """The raw body, once the request's signature checks out."""
        body = await request.body()
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        target = raw_path.decode("latin-1")
        if request.url.query:
            target += "?" + request.url.query
        try:
            protocol.verify_authorization(
                request.headers.get("authorization", ""),
                request.method,
                target,
                body,
                self.sandbox.credentials,
                self.sandbox.clock.now(),
            )
        except protocol.SignatureError as exc:
            raise ApiError(401, "SIGN_ERROR", f"签名验证失败: {exc.message}") from None
        return body

    async def json_body(self, request: Request) -> dict[str, Any]:
        body = await self.authenticated(request)
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "PARAM_ERROR", "请求体不是合法的 JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "PARAM_ERROR", "请求体必须是 JSON 对象")
        return data

    async def late(self, operation: str, subject: str) -> None:
        # The work is done; only the answer is held back, so the client times out.
        if self.sandbox.take_timeout(operation, subject):
            await asyncio.sleep(self.sandbox.timeout_delay_s)


def _payment_routes(app: FastAPI, wire: _Wire) -> None:
    sandbox = wire.sandbox

    async def create(request: Request, trade_type: str) -> Response:
        try:
            body = await wire.json_body(request)
            answer = sandbox.create_transaction(trade_type, body)
        except ApiError as exc:
            return wire.failure(exc)
        await wire.late("pay", str(body.get("out_trade_no")))
        return wire.signed(200, protocol.dumps(answer))

    @app.post("/v3/pay/transactions/native")
    async def native(request: Request) -> Response:
        return await create(request, "NATIVE")

    @app.post("/v3/pay/transactions/jsapi")
    async def jsapi(request: Request) -> Response:
        return await create(request, "JSAPI")

    @app.get("/v3/pay/transactions/out-trade-no/{out_trade_no}")
    async def query(request: Request, out_trade_no: str) -> Response:
        try:
            await wire.authenticated(request)
            view = sandbox.query(out_trade_no, request.query_params.get("mchid"))
        except ApiError as exc:
            return wire.failure(exc)
        return wire.signed(200, protocol.dumps(view))

    @app.get("/v3/pay/transactions/id/{transaction_id}")
    async def query_by_id(request: Request, transaction_id: str) -> Response:
        try:
            await wire.authenticated(request)
            mchid = request.query_params.get("mchid")
            view = sandbox.query_by_transaction_id(transaction_id, mchid)
        except ApiError as exc:
            return wire.failure(exc)
        return wire.signed(200, protocol.dumps(view))

    @app.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/close")
    async def close(request: Request, out_trade_no: str) -> Response:
        try:
            sandbox.close(out_trade_no, await wire.json_body(request))
        except ApiError as exc:
            return wire.failure(exc)
        await wire.late("close", out_trade_no)
        return wire.signed(204, b"")

    @app.post("/v3/refund/domestic/refunds")
    async def refund(request: Request) -> Response:
        try:
            body = await wire.json_body(request)
            answer = sandbox.create_refund(body)
        except ApiError as exc:
            return wire.failure(exc)
        await wire.late("refund", str(body.get("out_refund_no")))
        return wire.signed(200, protocol.dumps(answer))

    @app.get("/v3/refund/domestic/refunds/{out_refund_no}")
    async def query_refund(request: Request, out_refund_no: str) -> Response:
        try:
            await wire.authenticated(request)
            view = sandbox.query_refund(out_refund_no)
        except ApiError as exc:
            return wire.failure(exc)
        return wire.signed(200, protocol.dumps(view))


def _bill_routes(app: FastAPI, wire: _Wire) -> None:
    sandbox = wire.sandbox

    async def bill(request: Request, kind: str, bill_type: str) -> Response:
        try:
            await wire.authenticated(request)
            day = _bill_date(request.query_params.get("bill_date"))
            data = sandbox.bill(kind, day, bill_type)
        except ApiError as exc:
            return wire.failure(exc)
        token = sandbox.register_download(data)
        gz = "&tar_type=GZIP" if request.query_params.get("tar_type") == "GZIP" else ""
        base = str(request.base_url).rstrip("/")
        descriptor = {
            "hash_type": "SHA1",
            # Of the raw bill, even when it is served compressed (WeChat's rule).
            "hash_value": hashlib.sha1(data).hexdigest(),
            "download_url": f"{base}/v3/billdownload/file?token={token}{gz}",
        }
        return wire.signed(200, protocol.dumps(descriptor))

    @app.get("/v3/bill/tradebill")
    async def tradebill(request: Request) -> Response:
        bill_type = request.query_params.get("bill_type", "ALL")
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            return wire.failure(ApiError(400, "PARAM_ERROR", "bill_type 不支持"))
        return await bill(request, "tradebill", bill_type)

    @app.get("/v3/bill/fundflowbill")
    async def fundflowbill(request: Request) -> Response:
        if request.query_params.get("account_type", "BASIC") != "BASIC":
            return wire.failure(ApiError(400, "PARAM_ERROR", "仅支持 BASIC 账户"))
        return await bill(request, "fundflowbill", "ALL")

    @app.get("/v3/billdownload/file")
    async def download(request: Request) -> Response:
        try:
            await wire.authenticated(request)
            data = sandbox.download(request.query_params.get("token", ""))
        except ApiError as exc:
            return wire.failure(exc)
        # Bill files are not signed: their integrity is the descriptor's hash.
        if request.query_params.get("tar_type") == "GZIP":
            return Response(gzip.compress(data), media_type="application/gzip")
        return Response(data, media_type="application/octet-stream")


def _control_routes(app: FastAPI, sandbox: WechatPaySandbox) -> None:
    """The payer, the refund processor, the notification pump and the fault plan."""

    @app.post("/sandbox/orders/{out_trade_no}/pay")
    async def payer_pays(out_trade_no: str) -> Response:
        try:
            view = sandbox.pay(out_trade_no)
        except ApiError as exc:
            return Response(
                protocol.error_body(exc.code, exc.message), exc.status, media_type=_JSON
            )
        return Response(protocol.dumps(view), media_type=_JSON)

    @app.post("/sandbox/refunds/settle")
    async def settle() -> dict[str, int]:
        return {"settled": sandbox.settle_refunds()}

    control.notification_routes(app, sandbox)
    control.fault_routes(app, sandbox, _bad_param)


def _bad_param(message: str) -> Response:
    return Response(protocol.error_body("PARAM_ERROR", message), 400, media_type=_JSON)


def _bill_date(text: str | None) -> date:
    try:
        return date.fromisoformat(text or "")
    except ValueError:
        raise ApiError(400, "PARAM_ERROR", "bill_date 格式错误, 应为 yyyy-MM-DD") from None
