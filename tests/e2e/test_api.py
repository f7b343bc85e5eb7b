"""The merchant API over HTTP (ASGI): signatures, replay protection, idempotency, error codes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from clearhouse.api import signing
from clearhouse.api.errors import ERROR_STATUS
from clearhouse.db.schema import api_idempotency, payment_intents, refunds
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.merchants import set_status

PAYMENT = {
    "merchant_order_id": "order-1",
    "amount": 12_800,
    "currency": "CNY",
    "description": "Pu'er cake 357 g",
    "channel": "wechatpay",
    "method": "native",
    "settlement": "escrow",
}


def payment(**change: object) -> dict[str, object]:
    return PAYMENT | change


def rows(app, table) -> int:  # type: ignore[no-untyped-def]
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar())


def error_code(response) -> str:  # type: ignore[no-untyped-def]
    return str(response.json()["error"]["code"])


def test_create_and_read_a_payment(client, channel):
    created = client.post("/v1/payments", payment())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "PROCESSING"
    assert body["attempt"]["credential"].startswith("weixin://pay/")
    assert body["commission"] == 640
    read = client.get(f"/v1/payments/{body['id']}")
    assert read.status_code == 200
    assert read.json()["id"] == body["id"]
    channel.payer_pays(body["attempt"]["id"])
    headers, note = channel.notification(body["attempt"]["id"])
    ack = client.http.post("/notify/wechatpay", content=note, headers=headers)
    assert ack.status_code == 200
    assert client.get(f"/v1/payments/{body['id']}").json()["status"] == "SUCCEEDED"


def test_unsigned_and_badly_signed_requests_change_nothing(app, client, http, clock):
    body = b'{"merchant_order_id":"o","amount":1,"currency":"CNY"}'
    assert error_code(http.post("/v1/payments", content=body)) == "UNAUTHENTICATED"

    headers = client.headers("POST", "/v1/payments", body)
    tampered = http.post(
        "/v1/payments", content=body.replace(b"1", b"9"), headers=headers | {"Idempotency-Key": "k"}
    )
    assert (tampered.status_code, error_code(tampered)) == (401, "BAD_SIGNATURE")

    headers = client.headers("POST", "/v1/payments", body) | {signing.KEY_HEADER: "ak_nobody"}
    assert error_code(http.post("/v1/payments", content=body, headers=headers)) == (
        "UNKNOWN_API_KEY"
    )

    stale = client.headers("POST", "/v1/payments", body)
    clock.advance(timedelta(seconds=301))
    assert error_code(http.post("/v1/payments", content=body, headers=stale)) == "STALE_TIMESTAMP"
    assert rows(app, payment_intents) == 0
    assert rows(app, api_idempotency) == 0


def test_a_replayed_request_is_refused(app, client, http):
    headers = client.headers("GET", "/v1/payments/pay_x", b"")
    first = http.get("/v1/payments/pay_x", headers=headers)
    assert error_code(first) == "PAYMENT_NOT_FOUND"
    again = http.get("/v1/payments/pay_x", headers=headers)
    assert (again.status_code, error_code(again)) == (401, "NONCE_REUSED")


def test_idempotency_key_replays_and_guards(app, client, http, gateway, merchant):
    first = client.post("/v1/payments", payment(), idempotency_key="key-1")
    again = client.post("/v1/payments", payment(), idempotency_key="key-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = client.post("/v1/payments", payment(amount=1), idempotency_key="key-1")
    assert (other.status_code, error_code(other)) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert rows(app, payment_intents) == 1

    # A first request still running: the retry is told so, not run twice.
    from clearhouse.api.guard import Caller, begin_idempotent

    scope = b"POST /v1/payments\n" + b'{"x": 1}'
    begin_idempotent(gateway.engine, gateway.clock, Caller(merchant.id, "k"), "key-2", scope)
    busy = client.post("/v1/payments", b'{"x": 1}', idempotency_key="key-2")
    assert (busy.status_code, error_code(busy)) == (409, "IDEMPOTENCY_IN_FLIGHT")

    body = b"{}"
    headers = client.headers("POST", "/v1/payments", body)
    missing = http.post("/v1/payments", content=body, headers=headers)
    assert (missing.status_code, error_code(missing)) == (400, "IDEMPOTENCY_KEY_REQUIRED")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"amount": ', 400, "MALFORMED_JSON"),
        (payment(amount="12800"), 422, "VALIDATION_ERROR"),
        (payment(extra_field=1), 422, "VALIDATION_ERROR"),
        (payment(currency="XXZ"), 422, "UNKNOWN_CURRENCY"),
        (payment(currency="USD"), 422, "CURRENCY_NOT_SUPPORTED"),
        (payment(amount=0), 422, "INVALID_AMOUNT"),
        (payment(amount=-100), 422, "INVALID_AMOUNT"),
        (payment(amount=100_000_001), 422, "AMOUNT_TOO_LARGE"),
        (payment(amount=2**64), 422, "AMOUNT_OUT_OF_RANGE"),
        (payment(channel="paypal"), 422, "CHANNEL_NOT_SUPPORTED"),
        (payment(method="page"), 422, "METHOD_NOT_SUPPORTED"),
        (payment(method="jsapi"), 422, "INVALID_PAYMENT"),
        (payment(expires_at="2020-01-01T00:00:00Z"), 422, "ORDER_EXPIRED"),
    ],
)
def test_bad_payment_requests_get_a_code_and_change_nothing(
    app, client, channel, body, status, code
):
    response = client.post("/v1/payments", body)
    assert (response.status_code, error_code(response)) == (status, code), response.text
    assert ERROR_STATUS[code] == status
    assert rows(app, payment_intents) == 0
    assert channel.calls == []


def test_business_errors(app, client, channel, gateway, merchant, clock):
    seen: set[str] = set()

    def expect(response, code: str) -> None:  # type: ignore[no-untyped-def]
        assert error_code(response) == code, response.text
        assert response.status_code == ERROR_STATUS[code]
        seen.add(code)

    created = client.post("/v1/payments", payment()).json()
    expect(client.post("/v1/payments", payment(amount=1)), "DUPLICATE_ORDER")
    expect(client.post(f"/v1/payments/{created['id']}/complete", {}), "INVALID_STATE")
    refund = {"amount": 100, "currency": "CNY", "reason": "r"}
    expect(client.post(f"/v1/payments/{created['id']}/refunds", refund), "PAYMENT_NOT_REFUNDABLE")
    channel.payer_pays(created["attempt"]["id"])
    client.get(f"/v1/payments/{created['id']}")
    gateway.poller.run_once()  # not due
    clock.advance(timedelta(minutes=1))
    gateway.poller.run_once()
    too_much = refund | {"amount": 12_801}
    expect(
        client.post(f"/v1/payments/{created['id']}/refunds", too_much), "REFUND_EXCEEDS_REFUNDABLE"
    )
    assert rows(app, refunds) == 0
    ok = client.post(f"/v1/payments/{created['id']}/refunds", refund)
    assert ok.status_code == 201, ok.text
    expect(client.get("/v1/refunds/ref_nothing"), "REFUND_NOT_FOUND")
    expect(client.get("/v1/payments/pay_nothing"), "PAYMENT_NOT_FOUND")
    expect(client.get("/v1/events/999999/deliveries"), "DELIVERY_NOT_FOUND")

    small = client.post("/v1/payments", payment(merchant_order_id="small", amount=100)).json()
    channel.payer_pays(small["attempt"]["id"])
    headers, note = channel.notification(small["attempt"]["id"])
    client.http.post("/notify/wechatpay", content=note, headers=headers)
    one = refund | {"amount": 1}
    for _ in range(50):
        assert client.post(f"/v1/payments/{small['id']}/refunds", one).status_code == 201
    expect(client.post(f"/v1/payments/{small['id']}/refunds", one), "REFUND_LIMIT_REACHED")
    clock.advance(timedelta(days=366))
    expect(client.post(f"/v1/payments/{created['id']}/refunds", refund), "REFUND_WINDOW_CLOSED")

    instant = client.post(
        "/v1/payments", payment(merchant_order_id="instant", settlement="instant")
    ).json()
    channel.payer_pays(instant["attempt"]["id"])
    headers, note = channel.notification(instant["attempt"]["id"])
    client.http.post("/notify/wechatpay", content=note, headers=headers)
    app.ledger.post(
        "deposit-all",
        "8002",
        "CNY",
        {"amount": 12_160},
        parties={"merchant": merchant.merchant.account_id},
    )
    expect(client.post(f"/v1/payments/{instant['id']}/refunds", refund), "REFUND_EXCEEDS_BALANCE")
    run_in_transaction(gateway.engine, lambda c: set_status(c, merchant.id, "suspended"))
    expect(client.get(f"/v1/payments/{created['id']}"), "MERCHANT_NOT_ACTIVE")
    assert seen


def test_risk_block_and_internal_error(app, channel, merchant, clock):
    import httpx

    from clearhouse.api.app import create_api
    from clearhouse.api.client import MerchantClient
    from clearhouse.risk.checkpoint import Decision, RiskSubject, Verdict
    from clearhouse.sandbox.serving import ServedApp
    from tests.gateway_support import make_gateway

    class BlockBig:
        def decide(self, subject: RiskSubject) -> Decision:
            if subject.amount.amount > 50_000:
                return Decision(Verdict.BLOCK, ("amount above the new-payer limit",))
            return Decision(Verdict.ALLOW)

    class Broken(type(channel)):  # type: ignore[misc]
        broken = True

        def pay(self, order):  # type: ignore[no-untyped-def]
            if self.broken:
                raise RuntimeError("bug in an adapter")
            return super().pay(order)

    adapter = Broken()
    gateway = make_gateway(app, {"wechatpay": adapter}, risk=BlockBig())
    with ServedApp(create_api(gateway)) as served, httpx.Client(base_url=served.base_url) as http:
        client = MerchantClient(
            http, merchant.key.key_id, merchant.key.secret, lambda: clock.now().timestamp()
        )
        blocked = client.post("/v1/payments", payment(amount=60_000))
        assert (blocked.status_code, error_code(blocked)) == (402, "RISK_DECLINED")
        assert blocked.json()["error"]["reasons"] == ["amount above the new-payer limit"]
        assert rows(app, payment_intents) == 0
        broken = client.post("/v1/payments", payment(), idempotency_key="k")
        assert (broken.status_code, error_code(broken)) == (500, "INTERNAL_ERROR")
        assert "bug in an adapter" not in broken.text  # internals stay in the log
        # The key is released: the retry runs, finds the stored payment that never reached the
        # channel, and sends that same attempt.
        adapter.broken = False
        retry = client.post("/v1/payments", payment(), idempotency_key="k")
        assert retry.status_code == 201
        assert retry.json()["attempt"]["status"] == "PENDING"
        assert rows(app, payment_intents) == 1


def test_routing_decision_cashier_and_an_open_circuit(app, client, channel, gateway, clock):
    created = client.post("/v1/payments", payment(payer_ref="buyer-7")).json()
    decision = client.get(f"/v1/payments/{created['id']}/routing")
    assert decision.status_code == 200, decision.text
    assert decision.json()["chosen"] == "wechatpay"
    assert decision.json()["considered"][0]["excluded"] is None
    shown = client.get("/v1/cashier?amount=12800&currency=CNY&payer_ref=buyer-7").json()
    assert [(o["family"], o["available"]) for o in shown] == [("wechatpay", True)]

    for _ in range(5):  # the channel stops answering
        gateway.router.record_call("wechatpay", ok=False)
    before = rows(app, payment_intents)
    refused = client.post("/v1/payments", payment(merchant_order_id="o-2"))
    assert error_code(refused) == "NO_ROUTE", refused.text
    assert refused.status_code == ERROR_STATUS["NO_ROUTE"]
    assert refused.json()["error"]["reasons"] == {"wechatpay": "CIRCUIT_OPEN"}
    assert rows(app, payment_intents) == before
    shown = client.get("/v1/cashier?amount=12800&currency=CNY").json()
    assert (shown[0]["available"], shown[0]["reason"]) == (False, "CIRCUIT_OPEN")

    clock.advance(timedelta(seconds=30))  # cool-down over: a trial goes through and heals it
    retried = client.post("/v1/payments", payment(merchant_order_id="o-2"))
    assert retried.status_code == 201, retried.text
    assert client.get("/v1/cashier?amount=1&currency=CNY").json()[0]["available"]


def test_every_published_error_code_is_driven_by_a_test():
    """Each code in the one list is asserted by a test of this module, except the server's own
    trouble, which is a fault and not reachable by a request."""
    from pathlib import Path

    source = Path(__file__).read_text()
    faults = {"DATABASE_BUSY"}
    undriven = sorted(
        c
        for c in ERROR_STATUS
        if c not in faults
        and f'"{c}"'
        not in source.split("def test_every_published_error_code_is_driven_by_a_test")[0]
    )
    assert undriven == []


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (signing.SIGNATURE_HEADER, "\u00e9" * 64),
        (signing.SIGNATURE_HEADER, "abc"),
        (signing.TIMESTAMP_HEADER, "9" * 400),
        (signing.TIMESTAMP_HEADER, "\uff11\uff12\uff13"),  # full-width digits
    ],
)
def test_malformed_signing_headers_are_unauthenticated_not_a_crash(client, http, header, value):
    headers: dict[str, str | bytes] = dict(client.headers("GET", "/v1/payments/pay_x", b""))
    headers[header] = value.encode()  # raw bytes on the wire, as a hostile client sends them
    response = http.get("/v1/payments/pay_x", headers=headers)
    assert (response.status_code, error_code(response)) == (401, "UNAUTHENTICATED")
