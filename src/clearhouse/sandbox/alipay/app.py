"""The sandbox over HTTP: ``/gateway.do`` as Alipay serves it, plus control routes for the payer,
the bills and the fault plan under ``/sandbox``."""

# Alipay's texts use full-width punctuation; they are reproduced as Alipay sends them.
# ruff: noqa: RUF001

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from clearhouse.gateway.channels.alipay.protocol import format_amount
from clearhouse.sandbox import control
from clearhouse.sandbox.alipay.simulator import AlipaySandbox
from clearhouse.sandbox.alipay.state import NO_ORDER, PayerError, Trade

JSON_UTF8 = "application/json;charset=utf-8"


def _trade_json(trade: Trade) -> dict[str, Any]:
    return {
        "out_trade_no": trade.out_trade_no,
        "trade_no": trade.trade_no,
        "trade_status": trade.status,
        "scanned": trade.scanned,
        "total_amount": format_amount(trade.total),
        "fee": format_amount(trade.fee) if trade.fee else None,
        "refunded": format_amount(trade.refunded),
        "paid_at": trade.paid_at.isoformat() if trade.paid_at else None,
    }


def _cashier(trade: Trade | None, error: dict[str, str] | None) -> HTMLResponse:
    if trade is None:
        detail = html.escape(f"{(error or {}).get('sub_code')}: {(error or {}).get('sub_msg')}")
        return HTMLResponse(f"<!doctype html><title>支付宝</title><p>错误：{detail}</p>")
    order = html.escape(trade.out_trade_no)
    return HTMLResponse(
        "<!doctype html><meta charset='utf-8'><title>支付宝收银台 (sandbox)</title>"
        f"<h1>{html.escape(trade.subject)}</h1><p>订单号 {order}</p>"
        f"<p>金额 ¥{format_amount(trade.total)}</p><p>状态 {html.escape(trade.status)}</p>"
        f"<form method='post' action='/sandbox/orders/{order}/pay'>"
        "<button type='submit'>确认付款</button></form>"
    )


def create_app(sandbox: AlipaySandbox) -> FastAPI:
    app = FastAPI(title="Alipay OpenAPI sandbox", docs_url="/sandbox/docs", openapi_url=None)

    @app.api_route("/gateway.do", methods=["GET", "POST"])
    async def gateway(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            # Form bodies are UTF-8 (charset=utf-8 is the only charset this sandbox accepts).
            body = (await request.body()).decode("utf-8", errors="replace")
            params.update(parse_qsl(body, keep_blank_values=True))
        base_url = str(request.base_url).rstrip("/")
        answer = sandbox.handle(params, base_url)
        if answer.trade is not None or answer.page_error is not None:
            return _cashier(answer.trade, answer.page_error)
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return Response(answer.body, media_type=JSON_UTF8)

    @app.get("/sandbox/qr/{out_trade_no}")
    def qr(out_trade_no: str) -> HTMLResponse:
        try:
            return _cashier(sandbox.scan(out_trade_no), None)
        except PayerError:
            trade = sandbox.trade(out_trade_no)
            if trade is None:
                raise HTTPException(404, "no such order") from None
            return _cashier(trade, None)

    @app.post("/sandbox/orders/{out_trade_no}/pay")
    def pay(out_trade_no: str) -> dict[str, Any]:
        return _trade_json(_payer(lambda: sandbox.pay(out_trade_no)))

    @app.post("/sandbox/orders/{out_trade_no}/scan")
    def scan(out_trade_no: str) -> dict[str, Any]:
        return _trade_json(_payer(lambda: sandbox.scan(out_trade_no)))

    @app.get("/sandbox/orders/{out_trade_no}")
    def order(out_trade_no: str) -> dict[str, Any]:
        trade = sandbox.trade(out_trade_no)
        if trade is None:
            raise HTTPException(404, "no such order")
        return _trade_json(trade)

    @app.get("/sandbox/bills/{name}")
    def bill(name: str) -> Response:
        try:
            day = datetime.strptime(name.removesuffix(".csv.zip"), "%Y%m%d").date()
        except ValueError:
            raise HTTPException(404, "no such bill") from None
        filename = f"{sandbox.credentials.pid}_{day:%Y%m%d}.csv.zip"
        return Response(
            sandbox.bill(day),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    control.fault_routes(app, sandbox)

    return app


def _payer(action: Callable[[], Trade]) -> Trade:
    try:
        return action()
    except PayerError as exc:
        raise HTTPException(404 if exc.code == NO_ORDER else 409, exc.message) from exc
