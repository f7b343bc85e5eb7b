"""The Stripe sandbox over HTTP: the ``/v1`` routes stripe-python calls, plus ``/sandbox`` controls.

Every ``/v1`` request needs the account's secret key, as a Bearer token or as the Basic-auth
user (401 otherwise). Bodies are form-encoded with Stripe's brackets; answers are Stripe's JSON
objects and error shapes. A POST with an ``Idempotency-Key`` that completed (2xx, or 402: the
card was tried) is replayed to the same key and parameters with ``Idempotent-Replayed: true``;
the same key with other parameters is a 400 ``idempotency_error``. ``expand[]`` expands ids
(``latest_charge``, ``data.latest_charge``, ``balance_transaction``, ``source``...).
Control routes are unauthenticated: the sandbox is never exposed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from clearhouse.gateway.channels.stripe import protocol
from clearhouse.sandbox import control
from clearhouse.sandbox.stripe import reports
from clearhouse.sandbox.stripe.events import ApiError, new_id, subject_of
from clearhouse.sandbox.stripe.state import StripeSandbox

_JSON = "application/json"
# One clause of Stripe's search language that the sandbox understands: ``field:'value'`` or
# ``metadata['key']:'value'``, joined by AND.
_CLAUSE = re.compile(
    r"""\s*(?:(?P<field>[a-z_]+)|metadata\[(?P<q>['"])(?P<key>.+?)(?P=q)\])"""
    r"""\s*:\s*(?P<vq>['"])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)\s*(?:AND\b|and\b|$)"""
)
_Action = Callable[[dict[str, Any]], dict[str, Any]]


def create_app(sandbox: StripeSandbox) -> FastAPI:
    app = FastAPI(title="Stripe API sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    wire = _Wire(sandbox)
    _payment_routes(app, wire)
    _balance_routes(app, wire)
    _report_routes(app, wire)
    _control_routes(app, wire)
    return app


class _Wire:
    """Authentication, form decoding, idempotency, expansion and error answers."""

    def __init__(self, sandbox: StripeSandbox) -> None:
        self.sandbox = sandbox
        # key -> (fingerprint, status, body); served on the event loop only, so no lock
        self.replays: dict[str, tuple[str, int, bytes]] = {}
        self.files: dict[str, bytes] = {}

    def answer(self, status: int, body: bytes, replayed: bool = False) -> Response:
        headers = {"Request-Id": new_id("req"), "Stripe-Version": protocol.API_VERSION}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status_code=status, headers=headers, media_type=_JSON)

    def failure(self, exc: ApiError) -> Response:
        return self.answer(exc.status, exc.body())

    def authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        key = value.strip()
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(key, validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        elif scheme.lower() != "bearer":
            key = ""
        if not key:
            raise ApiError(
                401,
                "invalid_request_error",
                "You did not provide an API key. Provide it in the Authorization header, "
                "as a Bearer token or as the Basic auth username.",
            )
        if key != self.sandbox.credentials.secret_key:
            raise ApiError(
                401,
                "invalid_request_error",
                f"Invalid API Key provided: {key[:8]}{'*' * 4}{key[-4:]}",
                code="api_key_invalid",
            )

    async def params(self, request: Request) -> dict[str, Any]:
        self.authenticate(request)
        text = request.url.query if request.method == "GET" else (await request.body()).decode()
        try:
            return protocol.decode_form(text)
        except (protocol.StripeProtocolError, UnicodeDecodeError):
            raise ApiError(400, "invalid_request_error", "Invalid request body") from None

    def expand(self, obj: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        paths = params.get("expand") or []
        out = copy.deepcopy(obj)
        for path in paths if isinstance(paths, list) else [paths]:
            self._expand(out, str(path).split("."))
        return out

    def _expand(self, node: Any, parts: list[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self._expand(item, parts)
            return
        if not isinstance(node, dict) or not parts:
            return
        head, rest = parts[0], parts[1:]
        value = node.get(head)
        if isinstance(value, str) and value in self.sandbox.objects:
            # ``a.b`` expands ``a`` too, as Stripe does.
            kind = self.sandbox.objects[value]["object"]
            node[head] = value = copy.deepcopy(self.sandbox.retrieve(kind, value))
        self._expand(value, rest)

    async def call(
        self, request: Request, operation: str, action: _Action, subject: str | None = None
    ) -> Response:
        """Run a state-changing POST: idempotent, expanded, and late if a TIMEOUT fault hits."""
        try:
            params = await self.params(request)
        except ApiError as exc:
            return self.failure(exc)
        key = request.headers.get("idempotency-key")
        fingerprint = json.dumps([request.url.path, params], sort_keys=True)
        if key:
            stored = self.replays.get(key)
            if stored is not None:
                if stored[0] != fingerprint:
                    return self.failure(
                        ApiError(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            f"parameters they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                        )
                    )
                return self.answer(stored[1], stored[2], replayed=True)
        try:
            result = action(params)
            status, body = 200, protocol.dumps(self.expand(result, params))
            subject = subject or subject_of(result)
        except ApiError as exc:
            status, body = exc.status, exc.body()
            intent = exc.extra.get("payment_intent")
            subject = subject or (subject_of(intent) if isinstance(intent, dict) else "")
        if key and status in (200, 402):
            self.replays[key] = (fingerprint, status, body)
        if subject and self.sandbox.take_timeout(operation, subject):
            # The work is done and remembered; only the answer is held back.
            await asyncio.sleep(self.sandbox.timeout_delay_s)
        return self.answer(status, body)

    async def read(self, request: Request, fetch: _Action) -> Response:
        try:
            params = await self.params(request)
            return self.answer(200, protocol.dumps(self.expand(fetch(params), params)))
        except ApiError as exc:
            return self.failure(exc)


def page(items: list[dict[str, Any]], params: Mapping[str, Any], url: str) -> dict[str, Any]:
    """A Stripe list: newest first, ``limit`` (1..100, default 10), ``starting_after`` and
    ``ending_before`` cursors, ``has_more``."""
    raw = str(params.get("limit", "10"))
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ApiError(400, "invalid_request_error", "Invalid limit", "parameter_invalid_integer")
    limit, ids = int(raw), [i["id"] for i in items]
    after, before = params.get("starting_after"), params.get("ending_before")
    for cursor in (after, before):
        if cursor is not None and cursor not in ids:
            raise ApiError(
                400, "invalid_request_error", f"No such object: '{cursor}'", "resource_missing"
            )
    if after is not None:
        rest = items[ids.index(after) + 1 :]
        chosen, more = rest[:limit], len(rest) > limit
    elif before is not None:
        rest = items[: ids.index(before)]
        chosen, more = rest[-limit:], len(rest) > limit
    else:
        chosen, more = items[:limit], len(items) > limit
    return {"object": "list", "data": chosen, "has_more": more, "url": url}


def _newest(sandbox: StripeSandbox, kind: str, **match: Any) -> list[dict[str, Any]]:
    ids = reversed(sandbox.order.get(kind, []))
    objects = [sandbox.objects[i] for i in ids]
    return [o for o in objects if all(v is None or o.get(k) == v for k, v in match.items())]


def _search(sandbox: StripeSandbox, params: Mapping[str, Any]) -> dict[str, Any]:
    query = str(params.get("query", ""))
    clauses, pos = [], 0
    while pos < len(query):
        match = _CLAUSE.match(query, pos)
        if match is None or match.end() == pos:
            raise ApiError(
                400,
                "invalid_request_error",
                f"Invalid search query: {query!r}. The sandbox understands field:'value' "
                "clauses (metadata['key'], status, currency, amount) joined by AND.",
                "parameter_invalid_string",
                param="query",
            )
        name = match["field"] or f"metadata[{match['key']}]"
        clauses.append((name, re.sub(r"\\(.)", r"\1", match["value"])))
        pos = match.end()
    if not clauses:
        raise ApiError(400, "invalid_request_error", "Missing query", "parameter_missing")
    found = sandbox.search_payment_intents(clauses)
    raw, token = str(params.get("limit", "10")), str(params.get("page") or "0")
    if not raw.isdigit() or not 1 <= int(raw) <= 100 or not token.isdigit():
        raise ApiError(400, "invalid_request_error", "Invalid limit or page", "parameter_invalid")
    start, limit = int(token), int(raw)
    more = len(found) > start + limit
    return {
        "object": "search_result",
        "data": found[start : start + limit],
        "has_more": more,
        "next_page": str(start + limit) if more else None,
        "url": "/v1/payment_intents/search",
    }


def _payment_routes(app: FastAPI, wire: _Wire) -> None:
    sandbox = wire.sandbox

    @app.post("/v1/payment_intents")
    async def create_intent(request: Request) -> Response:
        return await wire.call(request, "pay", sandbox.create_payment_intent)

    @app.get("/v1/payment_intents")
    async def list_intents(request: Request) -> Response:
        def fetch(p: dict[str, Any]) -> dict[str, Any]:
            found = _newest(sandbox, "payment_intent")
            return page(found, p, "/v1/payment_intents")

        return await wire.read(request, fetch)

    @app.get("/v1/payment_intents/search")
    async def search_intents(request: Request) -> Response:
        return await wire.read(request, lambda p: _search(sandbox, p))

    @app.get("/v1/payment_intents/{pi_id}")
    async def get_intent(request: Request, pi_id: str) -> Response:
        return await wire.read(request, lambda _: sandbox.retrieve("payment_intent", pi_id))

    @app.post("/v1/payment_intents/{pi_id}/{action}")
    async def act_on_intent(request: Request, pi_id: str, action: str) -> Response:
        actions = {
            "confirm": sandbox.confirm_payment_intent,
            "capture": sandbox.capture_payment_intent,
            "cancel": sandbox.cancel_payment_intent,
        }
        if action not in actions:
            return wire.failure(_unrecognized(request))
        do = actions[action]
        return await wire.call(request, action, lambda p: do(pi_id, p))

    @app.get("/v1/charges")
    async def list_charges(request: Request) -> Response:
        def fetch(p: dict[str, Any]) -> dict[str, Any]:
            found = _newest(sandbox, "charge", payment_intent=p.get("payment_intent"))
            return page(found, p, "/v1/charges")

        return await wire.read(request, fetch)

    @app.get("/v1/charges/{charge_id}")
    async def get_charge(request: Request, charge_id: str) -> Response:
        return await wire.read(request, lambda _: sandbox.retrieve("charge", charge_id))

    @app.post("/v1/refunds")
    async def create_refund(request: Request) -> Response:
        return await wire.call(request, "refund", sandbox.create_refund)

    @app.get("/v1/refunds")
    async def list_refunds(request: Request) -> Response:
        def fetch(p: dict[str, Any]) -> dict[str, Any]:
            match = {"charge": p.get("charge"), "payment_intent": p.get("payment_intent")}
            return page(_newest(sandbox, "refund", **match), p, "/v1/refunds")

        return await wire.read(request, fetch)

    @app.get("/v1/refunds/{refund_id}")
    async def get_refund(request: Request, refund_id: str) -> Response:
        return await wire.read(request, lambda _: sandbox.retrieve("refund", refund_id))


def _balance_routes(app: FastAPI, wire: _Wire) -> None:
    sandbox = wire.sandbox

    @app.get("/v1/balance")
    async def balance(request: Request) -> Response:
        return await wire.read(request, lambda _: sandbox.ledger.balance())

    @app.get("/v1/balance_transactions")
    async def list_transactions(request: Request) -> Response:
        def fetch(p: dict[str, Any]) -> dict[str, Any]:
            with sandbox.lock:
                found = sandbox.ledger.transactions(p)
            return page(found, p, "/v1/balance_transactions")

        return await wire.read(request, fetch)

    @app.get("/v1/balance_transactions/{txn_id}")
    async def get_transaction(request: Request, txn_id: str) -> Response:
        return await wire.read(request, lambda _: sandbox.retrieve("balance_transaction", txn_id))

    @app.post("/v1/payouts")
    async def create_payout(request: Request) -> Response:
        def create(p: dict[str, Any]) -> dict[str, Any]:
            with sandbox.lock:
                return sandbox.ledger.create_payout(p)

        return await wire.call(request, "payout", create)

    @app.get("/v1/payouts")
    async def list_payouts(request: Request) -> Response:
        return await wire.read(
            request, lambda p: page(_newest(sandbox, "payout"), p, "/v1/payouts")
        )

    @app.get("/v1/payouts/{payout_id}")
    async def get_payout(request: Request, payout_id: str) -> Response:
        return await wire.read(request, lambda _: sandbox.retrieve("payout", payout_id))

    @app.post("/v1/webhook_endpoints")
    async def create_endpoint(request: Request) -> Response:
        def create(p: dict[str, Any]) -> dict[str, Any]:
            url, events = p.get("url"), p.get("enabled_events")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ApiError(400, "invalid_request_error", "Invalid URL", "url_invalid")
            if not isinstance(events, list) or not events:
                raise ApiError(
                    400, "invalid_request_error", "Missing enabled_events", "parameter_missing"
                )
            with sandbox.lock:
                return sandbox.events.add_endpoint(url, [str(e) for e in events])

        return await wire.call(request, "webhook_endpoint", create, subject="")

    @app.get("/v1/webhook_endpoints")
    async def list_endpoints(request: Request) -> Response:
        def fetch(p: dict[str, Any]) -> dict[str, Any]:
            found = [_secretless(e) for e in _newest(sandbox, "webhook_endpoint")]
            return page(found, p, "/v1/webhook_endpoints")

        return await wire.read(request, fetch)

    @app.get("/v1/webhook_endpoints/{endpoint_id}")
    async def get_endpoint(request: Request, endpoint_id: str) -> Response:
        return await wire.read(
            request, lambda _: _secretless(sandbox.retrieve("webhook_endpoint", endpoint_id))
        )

    @app.get("/v1/events")
    async def list_events(request: Request) -> Response:
        def fetch(p: dict[str, Any]) -> dict[str, Any]:
            return page(_newest(sandbox, "event", type=p.get("type")), p, "/v1/events")

        return await wire.read(request, fetch)

    @app.get("/v1/events/{event_id}")
    async def get_event(request: Request, event_id: str) -> Response:
        return await wire.read(request, lambda _: sandbox.retrieve("event", event_id))


def _report_routes(app: FastAPI, wire: _Wire) -> None:
    """Report runs finish at once; their file is served under ``/v1/files`` of the same base
    (Stripe serves files from files.stripe.com)."""
    sandbox = wire.sandbox

    @app.post("/v1/reporting/report_runs")
    async def create_run(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")

        def run(p: dict[str, Any]) -> dict[str, Any]:
            return _report_run(wire, p, base)

        return await wire.call(request, "report_run", run, subject="")

    @app.get("/v1/reporting/report_runs/{run_id}")
    async def get_run(request: Request, run_id: str) -> Response:
        return await wire.read(request, lambda _: sandbox.retrieve("reporting.report_run", run_id))

    @app.get("/v1/files/{file_id}/contents")
    async def file_contents(request: Request, file_id: str) -> Response:
        try:
            wire.authenticate(request)
            data = wire.files[file_id]
        except ApiError as exc:
            return wire.failure(exc)
        except KeyError:
            return wire.failure(
                ApiError(
                    404, "invalid_request_error", f"No such file: {file_id}", "resource_missing"
                )
            )
        return Response(data, media_type="text/csv")


def _report_run(wire: _Wire, p: Mapping[str, Any], base: str) -> dict[str, Any]:
    sandbox = wire.sandbox
    report_type = str(p.get("report_type", ""))
    balance_change = report_type.startswith("balance_change_from_activity.itemized.")
    if not (balance_change or report_type.startswith("payout_reconciliation.")):
        raise ApiError(
            400,
            "invalid_request_error",
            "The sandbox runs payout_reconciliation and balance_change_from_activity.itemized"
            f" reports, not {report_type!r}",
            "parameter_invalid_string",
            param="report_type",
        )
    params = p.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "invalid_request_error", "Invalid parameters", "parameter_invalid")
    start, end = (_unix(params.get(k), k) for k in ("interval_start", "interval_end"))
    tz = str(params.get("timezone") or sandbox.report_timezone)
    columns = params.get("columns")
    with sandbox.lock:
        if balance_change:
            rows, write = sandbox.ledger.activity_rows(start, end), reports.balance_change
        else:
            rows = sandbox.ledger.report_rows(start, end, params.get("payout"))
            write = reports.payout_reconciliation
        try:
            data = write(rows, tz, columns if isinstance(columns, list) else None)
        except (KeyError, ValueError):
            raise ApiError(
                400, "invalid_request_error", f"Invalid timezone: {tz}", param="timezone"
            ) from None
        file_id = new_id("file")
        wire.files[file_id] = data
        return sandbox.store(
            {
                "id": new_id("frr"),
                "object": "reporting.report_run",
                "created": sandbox.now(),
                "error": None,
                "livemode": False,
                "parameters": {**params, "timezone": tz},
                "report_type": report_type,
                "result": {
                    "id": file_id,
                    "object": "file",
                    "created": sandbox.now(),
                    "filename": f"{file_id}.csv",
                    "purpose": "finance_report_run",
                    "size": len(data),
                    "type": "csv",
                    "url": f"{base}/v1/files/{file_id}/contents",
                },
                "status": "succeeded",
                "succeeded_at": sandbox.now(),
            }
        )


def _control_routes(app: FastAPI, wire: _Wire) -> None:
    """The refund processor, the payout schedule, the notification pump and the fault plan."""
    sandbox = wire.sandbox

    @app.post("/sandbox/refunds/settle")
    async def settle(request: Request) -> dict[str, int]:
        body = json.loads(await request.body() or b"{}")
        return {"settled": sandbox.settle_refunds(body.get("fail", []))}

    @app.post("/sandbox/payouts/run")
    async def run_payout(request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        arrival = date.fromisoformat(str(body.get("arrival_date", sandbox.clock.now().date())))
        payout = sandbox.run_payout(str(body.get("currency", "usd")), arrival)
        return Response(json.dumps(payout), media_type=_JSON)

    control.notification_routes(app, sandbox)
    control.fault_routes(
        app, sandbox, lambda message: wire.failure(ApiError(400, "invalid_request_error", message))
    )


def _unrecognized(request: Request) -> ApiError:
    return ApiError(
        404,
        "invalid_request_error",
        f"Unrecognized request URL ({request.method}: {request.url.path}).",
    )


def _secretless(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if k != "secret"}


def _unix(raw: object, name: str) -> int | None:
    if raw is None:
        return None
    if not str(raw).isdigit():
        raise ApiError(400, "invalid_request_error", f"Invalid {name}", param=f"parameters[{name}]")
    return int(str(raw))
