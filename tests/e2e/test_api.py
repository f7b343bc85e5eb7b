"""The merchant API over HTTP (ASGI): signatures, replay protection, idempotency, error codes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from clearhouse.accounts.model import Role
from clearhouse.api import signing
from clearhouse.api.errors import ERROR_STATUS
from clearhouse.db.schema import api_idempotency, payment_intents, refunds
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.merchants import set_status
from tests.conftest import open_party
from tests.gateway_support import add_merchant, enrol

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
    begin_idempotent(
        gateway.engine, gateway.clock, Caller(merchant.id, "k"), "key-2", scope, gateway.sealer
    )
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


def test_risk_block_and_internal_error(app, channel, merchant, clock, request):
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
    request.addfinalizer(gateway.close)
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


def test_combined_and_mixed_payments_over_http(app, client, channel, gateway, merchant):
    seller = add_merchant(app, gateway, name="Tea Farm", parent_id=merchant.id)
    stranger = add_merchant(app, gateway, name="Elsewhere")
    cart = {
        "merchant_group_id": "cart-1",
        "currency": "CNY",
        "channel": "wechatpay",
        "method": "native",
        "orders": [
            {"merchant_order_id": "a", "amount": 300, "description": "tea"},
            {
                "merchant_order_id": "b",
                "amount": 200,
                "description": "cup",
                "merchant_id": seller.id,
            },
        ],
    }
    made = client.post("/v1/payment-groups", cart)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["amount"], body["status"], len(body["payments"])) == (500, "PROCESSING", 2)
    assert client.get(f"/v1/payment-groups/{body['id']}").json()["id"] == body["id"]
    foreign = cart | {"merchant_group_id": "cart-2"}
    foreign["orders"] = [dict(o) for o in cart["orders"]]
    foreign["orders"][1] |= {"merchant_order_id": "c", "merchant_id": stranger.id}
    foreign["orders"][0] |= {"merchant_order_id": "d"}
    refused = client.post("/v1/payment-groups", foreign)
    assert (refused.status_code, error_code(refused)) == (422, "NOT_A_SELLER")

    buyer = open_party(app, "buyer", (Role.BUYER_BALANCE,))
    enrol(app, merchant.id, buyer.customer_id)
    app.ledger.post("top-up", "4002", "CNY", {"amount": 500}, parties={"buyer": buyer.account_id})
    before = rows(app, payment_intents)
    for legs, code in [
        ([{"method": "channel", "amount": 12_000}], "LEGS_DO_NOT_ADD_UP"),
        (
            [{"method": "channel", "amount": 12_300}, {"method": "subsidy", "amount": 500}],
            "INVALID_PAYMENT_LEG",  # escrow only: this one asks for instant settlement
        ),
        (
            [
                {"method": "channel", "amount": 12_000},
                {"method": "balance", "amount": 800, "account_id": buyer.account_id},
            ],
            "INSUFFICIENT_BALANCE",
        ),
    ]:
        settlement = "instant" if code == "INVALID_PAYMENT_LEG" else "escrow"
        response = client.post(
            "/v1/payments", payment(merchant_order_id="mixed", legs=legs, settlement=settlement)
        )
        assert (response.status_code, error_code(response)) == (422, code), response.text
        assert ERROR_STATUS[code] == 422
    assert rows(app, payment_intents) == before
    ok = client.post(
        "/v1/payments",
        payment(
            merchant_order_id="mixed",
            legs=[
                {"method": "channel", "amount": 12_300},
                {"method": "balance", "amount": 500, "account_id": buyer.account_id},
            ],
        ),
    )
    assert ok.status_code == 201, ok.text
    assert channel.orders[ok.json()["attempt"]["id"]].amount.amount == 12_300


def test_card_errors_get_a_code_and_change_nothing(app, merchant, clock, request):
    """Every card code through the API, against a quick pay sandbox over HTTP (and a second
    instance that does not answer). A refused request leaves the card and payment tables as
    they were; only VERIFICATION_REQUIRED stores its payment (unsent), by design."""
    import httpx

    from clearhouse.accounts.model import KycLevel
    from clearhouse.api.app import create_api
    from clearhouse.api.client import MerchantClient
    from clearhouse.db.schema import card_bindings, card_signings, cards
    from clearhouse.gateway.channels.quickpay.adapter import QuickpayAdapter
    from clearhouse.gateway.channels.quickpay.protocol import QuickpayCredentials
    from clearhouse.sandbox.quickpay import Issuers, QuickpaySandbox, create_app
    from clearhouse.sandbox.serving import ServedApp
    from tests.card_support import CAPPED, CREDIT, DEBIT, PII_KEY, add_customer, bind_body
    from tests.gateway_support import make_gateway

    keys = QuickpayCredentials.generate()
    sandbox = QuickpaySandbox(keys, Issuers.seeded(), clock)
    seen: set[str] = set()

    def counts() -> tuple[int, ...]:
        return tuple(rows(app, t) for t in (cards, card_signings, card_bindings, payment_intents))

    def expect(response, code: str) -> None:  # type: ignore[no-untyped-def]
        assert error_code(response) == code, response.text
        assert response.status_code == ERROR_STATUS[code]
        seen.add(code)

    with ServedApp(create_app(sandbox)) as channel:
        up = QuickpayAdapter(keys.merchant_view(), base_url=channel.base_url, clock=clock)
        down = QuickpayAdapter(
            keys.merchant_view(), "http://127.0.0.1:9", timeout=0.5, clock=clock, name="quickpay_b"
        )
        gateway = make_gateway(app, {"quickpay": up, "quickpay_b": down}, pii_key=PII_KEY)
        request.addfinalizer(gateway.close)
        with ServedApp(create_api(gateway)) as served, httpx.Client(base_url=served.base_url) as h:
            client = MerchantClient(
                h, merchant.key.key_id, merchant.key.secret, lambda: clock.now().timestamp()
            )
            zhang = add_customer(app, DEBIT, merchant_id=merchant.id)
            unverified = add_customer(app, CREDIT, merchant_id=merchant.id, kyc=KycLevel.UNVERIFIED)
            before = counts()
            bind = f"/v1/customers/{zhang}/cards"
            expect(client.post("/v1/customers/cus_x/cards", bind_body(DEBIT)), "CUSTOMER_NOT_FOUND")
            expect(
                client.post(f"/v1/customers/{unverified}/cards", bind_body(CREDIT)),
                "IDENTITY_NOT_VERIFIED",
            )
            expect(client.post(bind, bind_body(DEBIT, holder_name="李四")), "IDENTITY_MISMATCH")
            bad_luhn = bind_body(DEBIT, card_number="6219990000000000011")
            expect(client.post(bind, bad_luhn), "INVALID_CARD")
            expect(client.post(bind, bind_body(DEBIT, phone="13900000000")), "CARD_REFUSED")
            down_body = bind_body(DEBIT, channel="quickpay_b")
            expect(client.post(bind, down_body), "CHANNEL_UNAVAILABLE")
            expect(
                client.post("/v1/card-bindings/bnd_x/confirm", {"sms_code": "123456"}),
                "BINDING_NOT_FOUND",
            )
            expect(client.post("/v1/cards/card_x/unbind", {}), "CARD_NOT_FOUND")
            assert counts() == before
            assert sandbox.state.bind_requests == {}  # the channel kept nothing either

            binding = client.post(bind, bind_body(DEBIT)).json()
            code = sandbox.last_sms_code(DEBIT.phone)
            wrong = {"sms_code": "000000" if code != "000000" else "111111"}
            confirm = f"/v1/card-bindings/{binding['id']}/confirm"
            expect(client.post(confirm, wrong), "VERIFICATION_FAILED")
            card = client.post(confirm, {"sms_code": code}).json()
            pay = payment(channel="card", method="card", payer_id=card["id"], amount=30_000)
            before = counts()
            waiting = client.post("/v1/payments", pay)
            expect(waiting, "VERIFICATION_REQUIRED")
            assert counts()[-1] == before[-1] + 1  # stored, not sent
            assert sandbox.state.txns == {}

            capped = add_customer(app, CAPPED, merchant_id=merchant.id)
            binding = client.post(f"/v1/customers/{capped}/cards", bind_body(CAPPED)).json()
            code = sandbox.last_sms_code(CAPPED.phone)
            cap = client.post(f"/v1/card-bindings/{binding['id']}/confirm", {"sms_code": code})
            over = payment(merchant_order_id="o-cap", method="card", channel="card", amount=300_001)
            before = counts()
            expect(
                client.post("/v1/payments", over | {"payer_id": cap.json()["id"]}),
                "ISSUER_LIMIT_EXCEEDED",
            )
            assert client.post(f"/v1/cards/{card['id']}/unbind", {}).status_code == 200
            unbound = pay | {"merchant_order_id": "o-unbound"}
            expect(client.post("/v1/payments", unbound), "CARD_NOT_ACTIVE")
            assert counts()[-1] == before[-1]
            gateway.close()
    assert len(seen) == 12


def test_payment_password_and_binding_expiry_codes(app, merchant, clock, request):
    """The payment password's codes and a late binding confirmation, through the API against
    a quick pay sandbox over HTTP. A refused password change leaves no password; a refused
    payment password leaves the payment unsent."""
    import httpx

    from clearhouse.api.app import create_api
    from clearhouse.api.client import MerchantClient
    from clearhouse.db.schema import payment_passwords
    from clearhouse.gateway.channels.quickpay.adapter import QuickpayAdapter
    from clearhouse.gateway.channels.quickpay.protocol import QuickpayCredentials
    from clearhouse.sandbox.quickpay import Issuers, QuickpaySandbox, create_app
    from clearhouse.sandbox.serving import ServedApp
    from tests.card_support import DEBIT, PII_KEY, add_customer, bind_body
    from tests.gateway_support import make_gateway

    keys = QuickpayCredentials.generate()
    sandbox = QuickpaySandbox(keys, Issuers.seeded(), clock)
    seen: set[str] = set()

    def expect(response, code: str) -> None:  # type: ignore[no-untyped-def]
        assert error_code(response) == code, response.text
        assert response.status_code == ERROR_STATUS[code]
        seen.add(code)

    with ServedApp(create_app(sandbox)) as channel:
        port = QuickpayAdapter(keys.merchant_view(), base_url=channel.base_url, clock=clock)
        gateway = make_gateway(app, {"quickpay": port}, pii_key=PII_KEY)
        request.addfinalizer(gateway.close)
        with ServedApp(create_api(gateway)) as served, httpx.Client(base_url=served.base_url) as h:
            client = MerchantClient(
                h, merchant.key.key_id, merchant.key.secret, lambda: clock.now().timestamp()
            )
            zhang = add_customer(app, DEBIT, merchant_id=merchant.id)
            binding = client.post(f"/v1/customers/{zhang}/cards", bind_body(DEBIT)).json()
            code = sandbox.last_sms_code(DEBIT.phone)
            confirm = f"/v1/card-bindings/{binding['id']}/confirm"
            card = client.post(confirm, {"sms_code": code}).json()
            pay = payment(channel="quickpay", method="card", payer_id=card["id"], amount=30_000)
            unset = client.post("/v1/payments", pay | {"payment_password": "729164"})
            expect(unset, "PAYMENT_PASSWORD_NOT_SET")
            path = f"/v1/customers/{zhang}/payment-password"
            expect(client.post(path, {"password": "729164"}), "PAYMENT_PASSWORD_PROOF_INVALID")
            weak = {"password": "123456", "binding_id": binding["id"]}
            expect(client.post(path, weak), "PAYMENT_PASSWORD_WEAK")
            assert rows(app, payment_passwords) == 0
            made = client.post(path, {"password": "729164", "binding_id": binding["id"]})
            assert made.status_code == 200, made.text
            wrong = pay | {"payment_password": "318052"}
            for _ in range(4):
                expect(client.post("/v1/payments", wrong), "PAYMENT_PASSWORD_WRONG")
            expect(client.post("/v1/payments", wrong), "PAYMENT_PASSWORD_LOCKED")
            assert sandbox.state.txns == {}  # nothing was sent

            late = client.post(f"/v1/customers/{zhang}/cards", bind_body(DEBIT)).json()
            clock.advance(timedelta(minutes=15))
            late_code = sandbox.last_sms_code(DEBIT.phone)
            expect(
                client.post(f"/v1/card-bindings/{late['id']}/confirm", {"sms_code": late_code}),
                "BINDING_EXPIRED",
            )
            gateway.close()
    assert len(seen) == 6


def test_wallet_movements_and_their_errors_over_http(app, client, channel, merchant):
    """Top-up, transfer, withdrawal and balance through the API, and every wallet code; a
    refused request changes no balance, usage or row."""
    from clearhouse.accounts.handlers import set_fund_account_status
    from clearhouse.accounts.model import LimitKind, Status
    from clearhouse.db.schema import wallet_transfers, withdrawals
    from tests.wallet_support import (
        CAPPED,
        add_buyer,
        available,
        fund_reserve,
        settle_topup,
        used,
    )

    seen: set[str] = set()

    def expect(response, code: str) -> None:  # type: ignore[no-untyped-def]
        assert error_code(response) == code, response.text
        assert response.status_code == ERROR_STATUS[code]
        seen.add(code)

    alice = add_buyer(app, "alice", merchant_id=merchant.id, balance=100_000)
    bob = add_buyer(app, "bob", merchant_id=merchant.id, card=CAPPED)
    dollars = add_buyer(app, "dollars", merchant_id=merchant.id, card=None, currency="USD")
    frozen = add_buyer(app, "frozen", merchant_id=merchant.id, card=None)
    run_in_transaction(
        app.engine, lambda c: set_fund_account_status(c, frozen.fund_id, Status.FROZEN)
    )
    topup = {
        "topup_id": "tu-1",
        "account_id": bob.account_id,
        "amount": 5_000,
        "currency": "CNY",
        "channel": "wechatpay",
        "method": "native",
    }
    made = client.post("/v1/topups", topup)
    assert made.status_code == 201, made.text
    assert (made.json()["purpose"], made.json()["account_id"]) == ("topup", bob.account_id)
    settle_topup(client, channel, made.json()["attempt"]["id"])
    refund = {"amount": 100, "currency": "CNY", "reason": "no"}
    expect(client.post(f"/v1/payments/{made.json()['id']}/refunds", refund), "TOPUP_NOT_REFUNDABLE")
    shown = client.get(f"/v1/accounts/{bob.account_id}/balance").json()
    assert (shown["posted"], shown["available"]) == (5_000, 5_000)
    expect(client.get("/v1/accounts/acc_nobody/balance"), "ACCOUNT_NOT_FOUND")

    move = {
        "transfer_id": "t-1",
        "from_account_id": alice.account_id,
        "to_account_id": bob.account_id,
        "amount": 2_000,
        "currency": "CNY",
    }
    before = (available(app, alice), available(app, bob), rows(app, wallet_transfers))
    expect(client.post("/v1/transfers", move | {"to_account_id": alice.account_id}), "SAME_ACCOUNT")
    expect(client.post("/v1/transfers", move | {"to_account_id": "acc_x"}), "ACCOUNT_NOT_FOUND")
    expect(
        client.post("/v1/transfers", move | {"to_account_id": dollars.account_id}),
        "CURRENCY_MISMATCH",
    )
    expect(
        client.post("/v1/transfers", move | {"to_account_id": frozen.account_id}),
        "ACCOUNT_NOT_ACTIVE",
    )
    expect(client.post("/v1/transfers", move | {"amount": 1_000_001}), "KYC_LIMIT_EXCEEDED")
    expect(
        client.post(
            "/v1/transfers",
            move
            | {"from_account_id": bob.account_id, "to_account_id": alice.account_id}
            | {"amount": 9_000},
        ),
        "INSUFFICIENT_BALANCE",
    )
    assert (available(app, alice), available(app, bob), rows(app, wallet_transfers)) == before
    assert client.post("/v1/transfers", move).status_code == 201
    expect(client.post("/v1/transfers", move | {"amount": 2_001}), "DUPLICATE_TRANSFER")

    out = {
        "withdrawal_id": "w-1",
        "account_id": alice.account_id,
        "card_id": alice.card_id,
        "amount": 10_000,
        "currency": "CNY",
    }
    before = (available(app, alice), rows(app, withdrawals))
    expect(client.post("/v1/withdrawals", out), "PAYOUT_UNAVAILABLE")  # no money at the bank
    expect(client.post("/v1/withdrawals", out | {"card_id": bob.card_id}), "CARD_NOT_OWNED")
    assert (available(app, alice), rows(app, withdrawals)) == before
    assert used(app, alice.customer_id, LimitKind.WITHDRAWAL) == 0
    fund_reserve(app)
    made = client.post("/v1/withdrawals", out)
    assert made.status_code == 201, made.text
    assert (made.json()["status"], made.json()["rail"]) == ("REQUESTED", "realtime")
    read = client.get(f"/v1/withdrawals/{made.json()['id']}")
    assert read.json()["id"] == made.json()["id"]
    expect(client.post("/v1/withdrawals", out | {"amount": 10_001}), "DUPLICATE_WITHDRAWAL")
    expect(client.get("/v1/withdrawals/wdr_nobody"), "WITHDRAWAL_NOT_FOUND")
    assert len(seen) == 12


def test_a_merchant_opens_its_buyers_and_only_its_marketplace_sees_them(
    app, client, http, gateway, merchant, clock
):
    """POST /v1/customers opens a class I buyer with a balance in the merchant's currency,
    enrolled with it; its sellers see the buyer, another marketplace does not; one identity is
    one customer; elements that cannot be right are named and change nothing."""
    from clearhouse.api.client import MerchantClient
    from clearhouse.db.schema import accounts, customers, merchant_customers

    def as_merchant(m):  # type: ignore[no-untyped-def]
        return MerchantClient(http, m.key.key_id, m.key.secret, lambda: clock.now().timestamp())

    seen: set[str] = set()

    def expect(response, code: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
        assert error_code(response) == code, response.text
        assert response.status_code == ERROR_STATUS[code]
        seen.add(code)
        return dict(response.json()["error"])

    seller = as_merchant(add_merchant(app, gateway, name="Tea Farm", parent_id=merchant.id))
    stranger = as_merchant(add_merchant(app, gateway, name="Elsewhere"))
    body = {"name": "王五", "id_number": "11010519491231002x", "phone": "138 0013 8000"}
    made = client.post("/v1/customers", body, idempotency_key="cus-1")
    assert made.status_code == 201, made.text
    shown = made.json()
    assert (shown["kind"], shown["name"], shown["kyc_level"], shown["status"]) == (
        "person",
        "王五",
        1,
        "active",
    )
    assert (shown["id_number"], shown["phone"]) == ("110***********002X", "138****8000")
    assert "11010519491231002" not in made.text
    assert "13800138000" not in made.text
    [account] = shown["accounts"]
    assert (account["status"], account["balances"]) == ("active", ["CNY"])
    replayed = client.post("/v1/customers", body, idempotency_key="cus-1")
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == shown
    before = (rows(app, customers), rows(app, accounts), rows(app, merchant_customers))
    assert before[2] == 1

    # The marketplace's seller acts for the buyer; another marketplace knows of no such buyer.
    assert seller.get(f"/v1/customers/{shown['id']}").json() == shown
    balance = seller.get(f"/v1/accounts/{account['id']}/balance")
    assert (balance.status_code, balance.json()["available"]) == (200, 0)
    hidden = expect(stranger.get(f"/v1/customers/{shown['id']}"), "CUSTOMER_NOT_FOUND")
    unknown = expect(stranger.get("/v1/customers/cus_nobody"), "CUSTOMER_NOT_FOUND")
    assert hidden["message"].replace(shown["id"], "cus_nobody") == unknown["message"]
    expect(stranger.get(f"/v1/accounts/{account['id']}/balance"), "ACCOUNT_NOT_FOUND")

    # One identity, one customer: the owner is told which; anyone else only that it is taken.
    again = expect(client.post("/v1/customers", body), "DUPLICATE_IDENTITY")
    assert again["customer_id"] == shown["id"]
    elsewhere = expect(stranger.post("/v1/customers", body), "DUPLICATE_IDENTITY")
    assert "customer_id" not in elsewhere
    for change, field in [
        ({"id_number": "1101051949123100"}, "id_number"),
        ({"phone": "23800138000"}, "phone"),
        ({"name": "王{五}"}, "name"),
    ]:
        refused = expect(client.post("/v1/customers", body | change), "INVALID_CUSTOMER")
        assert refused["field"] == field
    expect(client.post("/v1/customers", body | {"email": "x"}), "VALIDATION_ERROR")
    assert (rows(app, customers), rows(app, accounts), rows(app, merchant_customers)) == before
    assert len(seen) == 5


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
