"""Wallet routes: top-ups, transfers and withdrawals of buyer balances, and a balance."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response

from clearhouse.api import guard
from clearhouse.api.common import ERRORS_DOC, Guarded, body_schema, parse
from clearhouse.api.schemas import (
    BalanceOut,
    TopupCreate,
    TopupOut,
    TransferCreate,
    TransferOut,
    WithdrawalCreate,
    WithdrawalOut,
)
from clearhouse.gateway.service import Gateway
from clearhouse.money import Money
from clearhouse.wallet.topups import TopupRequest
from clearhouse.wallet.transfers import TransferRequest
from clearhouse.wallet.withdrawals import WithdrawalRequest

WALLET_BODIES = (TopupCreate, TransferCreate, WithdrawalCreate)


def add_wallet_routes(api: FastAPI, gateway: Gateway, guarded: Guarded) -> None:
    @api.post(
        "/v1/topups",
        status_code=201,
        response_model=TopupOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(TopupCreate),
    )
    async def create_topup(request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(TopupCreate, body)
            made = gateway.wallet.topup(
                caller.merchant_id,
                TopupRequest(
                    topup_ref=req.topup_id,
                    account_id=req.account_id,
                    amount=Money(req.amount, req.currency),
                    channel=req.channel,
                    method=req.method,
                    expires_at=req.expires_at,
                    payer_id=req.payer_id,
                    payer_ref=req.payer_ref,
                ),
            )
            return 201, made

        return await guarded(request, handle, idempotent=True)

    @api.post(
        "/v1/transfers",
        status_code=201,
        response_model=TransferOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(TransferCreate),
    )
    async def create_transfer(request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(TransferCreate, body)
            made = gateway.wallet.transfers.create(
                caller.merchant_id,
                TransferRequest(
                    transfer_ref=req.transfer_id,
                    payer_account_id=req.from_account_id,
                    payee_account_id=req.to_account_id,
                    amount=Money(req.amount, req.currency),
                    description=req.description,
                ),
            )
            return 201, made

        return await guarded(request, handle, idempotent=True)

    @api.post(
        "/v1/withdrawals",
        status_code=201,
        response_model=WithdrawalOut,
        responses=ERRORS_DOC,
        openapi_extra=body_schema(WithdrawalCreate),
    )
    async def create_withdrawal(request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            req = parse(WithdrawalCreate, body)
            made = gateway.wallet.withdrawals.request(
                caller.merchant_id,
                WithdrawalRequest(
                    withdrawal_ref=req.withdrawal_id,
                    account_id=req.account_id,
                    card_id=req.card_id,
                    amount=Money(req.amount, req.currency),
                ),
            )
            return 201, made

        return await guarded(request, handle, idempotent=True)

    @api.get("/v1/withdrawals/{withdrawal_id}", response_model=WithdrawalOut, responses=ERRORS_DOC)
    async def get_withdrawal(withdrawal_id: str, request: Request) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.wallet.withdrawals.get(caller.merchant_id, withdrawal_id)

        return await guarded(request, handle, idempotent=False)

    @api.get("/v1/accounts/{account_id}/balance", response_model=BalanceOut, responses=ERRORS_DOC)
    async def get_balance(
        account_id: str,
        request: Request,
        currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")] = "CNY",
    ) -> Response:
        def handle(caller: guard.Caller, body: bytes) -> tuple[int, Any]:
            return 200, gateway.wallet.balance(caller.merchant_id, account_id, currency)

        return await guarded(request, handle, idempotent=False)
