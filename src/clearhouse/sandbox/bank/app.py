"""The payout bank over HTTP (``wallet/bankwire/protocol.py``): signed requests, signed answers
(errors included), the answer held back past the client's timeout on the ``timeout`` fault.
Control routes under ``/sandbox`` are unauthenticated: the sandbox is a test double."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from clearhouse.sandbox.bank.state import ApiError, PayoutBank
from clearhouse.wallet.bankwire import protocol


def create_app(bank: PayoutBank) -> FastAPI:
    app = FastAPI(title="Payout bank sandbox", openapi_url=None, docs_url=None, redoc_url=None)

    def signed(status: int, data: dict[str, Any]) -> Response:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        headers = protocol.answer_headers(bank.credentials, body, bank.clock.now())
        return Response(body, status, headers=headers, media_type="application/json")

    def failure(exc: ApiError) -> Response:
        return signed(exc.status, {"code": exc.code, "message": exc.message})

    async def authenticated(request: Request) -> bytes:
        body = await request.body()
        try:
            protocol.verify_request(
                bank.credentials,
                request.method,
                request.url.path,
                dict(request.headers),
                body,
                bank.clock.now(),
            )
        except protocol.SignatureError as exc:
            raise ApiError(401, "SIGNATURE_INVALID", exc.message) from None
        return body

    @app.post(protocol.BATCH_PATH)
    async def submit(request: Request) -> Response:
        try:
            body = await authenticated(request)
            try:
                data = json.loads(body)
            except ValueError:
                raise ApiError(400, "INVALID_REQUEST", "the body is not JSON") from None
            if not isinstance(data, dict):
                raise ApiError(400, "INVALID_REQUEST", "the body is not a JSON object")
            answer = bank.submit(data)
        except ApiError as exc:
            return failure(exc)
        if bank.take_timeout(answer["batch_no"]):
            # Paid already; only the answer is late, so the client must ask.
            await asyncio.sleep(bank.timeout_delay_s)
        return signed(200, answer)

    @app.get(protocol.ITEM_PATH + "{ref}")
    async def query(ref: str, request: Request) -> Response:
        try:
            await authenticated(request)
            return signed(200, bank.query(ref))
        except ApiError as exc:
            return failure(exc)

    @app.post("/sandbox/accounts/{card_no}/close")
    async def close_account(card_no: str) -> dict[str, str]:
        bank.close_account(card_no)
        return {"card_no": card_no, "status": "closed"}

    return app
