"""The payout bank over HTTP (``wallet/bankwire/protocol.py``): signed requests, signed answers
(errors included), the answer held back past the client's timeout on the ``timeout`` fault.
``GET /statements/{YYYY-MM-DD}?format=camt053|mt940`` is the settlement account's statement of
that day (``statements.py``), signed like every answer (the signature covers the path, not the
query). Control routes under ``/sandbox`` are unauthenticated: the sandbox is a test double."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from clearhouse.errors import MoneyError
from clearhouse.money import Money
from clearhouse.sandbox.bank import statements
from clearhouse.sandbox.bank.state import CURRENCY, ApiError, PayoutBank
from clearhouse.wallet.bankwire import protocol

STATEMENT_PATH = "/statements/"


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

    @app.get(STATEMENT_PATH + "{day}")
    async def statement(
        day: str, request: Request, fmt: str = Query("camt053", alias="format")
    ) -> Response:
        try:
            await authenticated(request)
            try:
                on = date.fromisoformat(day)
                body, media_type = statements.render(bank, on, fmt)
            except ValueError as exc:
                raise ApiError(400, "INVALID_REQUEST", str(exc)) from None
        except ApiError as exc:
            return failure(exc)
        headers = protocol.answer_headers(bank.credentials, body, bank.clock.now())
        return Response(body, 200, headers=headers, media_type=media_type)

    @app.post("/sandbox/credits")
    async def credit(request: Request) -> Response:
        """A channel pays out to the settlement account: ``{"amount", "payer", "memo"}``."""
        try:
            data = json.loads(await request.body())
            amount = Money.parse(str(data["amount"]), CURRENCY)
            received = bank.receive(
                amount, str(data["payer"]), str(data["memo"]), data.get("end_to_end_id") or None
            )
        except (ValueError, KeyError, TypeError, MoneyError) as exc:
            return signed(400, {"code": "INVALID_REQUEST", "message": str(exc)})
        except ApiError as exc:
            return failure(exc)
        return signed(200, {"ref": received.ref, "at": received.at.isoformat()})

    @app.post("/sandbox/accounts/{card_no}/close")
    async def close_account(card_no: str) -> dict[str, str]:
        bank.close_account(card_no)
        return {"card_no": card_no, "status": "closed"}

    return app
