"""How a card payment is verified, and what is kept of card data nobody confirmed, over real
HTTP on SQLite and PostgreSQL: the payer's payment password (set with an SMS-confirmed binding,
changed with the current one, tries and lockout), as an alternative to the payment's SMS code;
combined payments verified like single ones; and unconfirmed bindings expiring with their
sealed card data erased."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select
from typer.testing import CliRunner

from clearhouse.cli import app as cli
from clearhouse.cli.gateway import run_workers
from clearhouse.db.schema import (
    api_idempotency,
    card_bindings,
    metadata,
    payment_events,
    payment_passwords,
)
from clearhouse.gateway.card_model import PaymentPasswordLocked, PaymentPasswordWrong
from clearhouse.gateway.cards import expire_bindings
from tests.card_support import CREDIT, DEBIT, bind_body
from tests.integration.gateway.live_stack import Stack, credentials, customer, stack

__all__ = ["credentials", "customer", "stack"]

PIN = "729164"  # the tests' payment password
OTHER_PIN = "318052"


def code_of(response: Any) -> str:
    return str(response.json()["error"]["code"])


def bind(stack: Stack, customer_id: str, card: Any = DEBIT, **change: Any) -> tuple[str, str]:
    """A card bound through the API: (card id, the confirmed binding's id)."""
    started = stack.client.post(f"/v1/customers/{customer_id}/cards", bind_body(card, **change))
    assert started.status_code == 201, started.text
    binding_id = started.json()["id"]
    code = stack.quickpay("quickpay").last_sms_code(card.phone)
    bound = stack.client.post(f"/v1/card-bindings/{binding_id}/confirm", {"sms_code": code})
    assert bound.status_code == 200, bound.text
    return bound.json()["id"], binding_id


def sign_again(stack: Stack, card_id: str, card: Any = DEBIT) -> str:
    """A fresh SMS-confirmed binding of a card already held (how a forgotten password is
    reset): its id."""
    started = stack.client.post(
        f"/v1/cards/{card_id}/signings", {"channel": "quickpay", "id_number": card.id_number}
    )
    assert started.status_code == 201, started.text
    code = stack.quickpay("quickpay").last_sms_code(card.phone)
    confirmed = stack.client.post(
        f"/v1/card-bindings/{started.json()['id']}/confirm", {"sms_code": code}
    )
    assert confirmed.status_code == 200, confirmed.text
    return str(started.json()["id"])


def set_password(stack: Stack, customer_id: str, **body: Any) -> Any:
    return stack.client.post(f"/v1/customers/{customer_id}/payment-password", body)


def pay_body(order: str, amount: int, card_id: str) -> dict[str, Any]:
    return {
        "merchant_order_id": order,
        "amount": amount,
        "currency": "CNY",
        "description": "Longjing, spring picking",
        "channel": "quickpay",
        "method": "card",
        "payer_id": card_id,
    }


def flow(stack: Stack, kind: str) -> list[tuple[str, str]]:
    with stack.app.engine.connect() as conn:
        rows = conn.execute(
            select(payment_events.c.status, payment_events.c.detail)
            .where(payment_events.c.kind == kind)
            .order_by(payment_events.c.id)
        ).all()
    return [(r.status, r.detail) for r in rows]


# --- the payment password -------------------------------------------------------------------


def test_a_payment_password_verifies_a_card_payment_above_the_exemption(stack, customer):
    cid = customer(DEBIT)
    card_id, binding_id = bind(stack, cid)
    shown = stack.client.get(f"/v1/customers/{cid}/payment-password")
    assert shown.status_code == 200, shown.text
    assert (shown.json()["set"], shown.json()["tries_left"]) == (False, None)

    body = pay_body("pw-1", 30_000, card_id)
    waiting = stack.client.post("/v1/payments", body)
    assert code_of(waiting) == "VERIFICATION_REQUIRED"
    assert waiting.json()["error"]["methods"] == ["sms"]  # no password to offer yet
    payment_id = waiting.json()["error"]["payment_id"]
    not_set = stack.client.post("/v1/payments", body | {"payment_password": PIN})
    assert (not_set.status_code, code_of(not_set)) == (409, "PAYMENT_PASSWORD_NOT_SET")

    # Setting it needs a proof, and refuses what is guessed first.
    no_proof = set_password(stack, cid, password=PIN)
    assert (no_proof.status_code, code_of(no_proof)) == (422, "PAYMENT_PASSWORD_PROOF_INVALID")
    for weak in ("111111", "123456", "654321", "890123"):
        refused = set_password(stack, cid, password=weak, binding_id=binding_id)
        assert code_of(refused) == "PAYMENT_PASSWORD_WEAK", weak
    strangers = customer(CREDIT)
    theirs = set_password(stack, strangers, password=PIN, binding_id=binding_id)
    assert code_of(theirs) == "PAYMENT_PASSWORD_PROOF_INVALID"  # another customer's binding
    assert code_of(set_password(stack, cid, password="12345")) == "VALIDATION_ERROR"
    with stack.app.engine.connect() as conn:
        assert conn.execute(select(payment_passwords)).all() == []

    done = set_password(stack, cid, password=PIN, binding_id=binding_id)
    assert done.status_code == 200, done.text
    assert (done.json()["set"], done.json()["tries_left"], done.json()["locked_until"]) == (
        True,
        5,
        None,
    )
    # One confirmation sets it once.
    again = set_password(stack, cid, password=OTHER_PIN, binding_id=binding_id)
    assert code_of(again) == "PAYMENT_PASSWORD_PROOF_INVALID"

    # The payment waiting for its verification: a wrong password is counted and sends nothing,
    # the right one sends it, as the merchant's own verification of the payer.
    wrong = stack.client.post("/v1/payments", body | {"payment_password": OTHER_PIN})
    assert (wrong.status_code, code_of(wrong)) == (422, "PAYMENT_PASSWORD_WRONG"), wrong.text
    assert wrong.json()["error"]["tries_left"] == 4
    attempt = stack.payment(payment_id)["attempt"]
    assert attempt["status"] == "CREATED"  # type: ignore[index]
    assert stack.quickpay("quickpay").transaction(attempt["id"]) is None  # type: ignore[index]
    paid = stack.client.post("/v1/payments", body | {"payment_password": PIN})
    assert paid.status_code == 201, paid.text
    assert (paid.json()["id"], paid.json()["attempt"]["status"]) == (payment_id, "PENDING")
    stack.sandboxes.run_due()
    assert stack.payment(payment_id)["status"] == "SUCCEEDED"
    assert len(stack.quickpay("quickpay").sms_outbox(DEBIT.phone)) == 1  # the binding's only
    # The flow record holds each check's outcome, never the value.
    assert flow(stack, "password") == [
        ("PAYMENT_PASSWORD_NOT_SET", "payment password PAYMENT_PASSWORD_NOT_SET"),
        ("PAYMENT_PASSWORD_WRONG", "payment password PAYMENT_PASSWORD_WRONG"),
        ("verified", "payment password verified"),
    ]
    shown = stack.client.get(f"/v1/customers/{cid}/payment-password").json()
    assert shown["tries_left"] == 5  # a right one starts the count again

    # Now the cashier may offer it; the SMS code still works, and both at once is refused.
    other = pay_body("pw-2", 25_000, card_id)
    offered = stack.client.post("/v1/payments", other)
    assert offered.json()["error"]["methods"] == ["sms", "payment_password"]
    both = stack.client.post(
        "/v1/payments", other | {"payment_password": PIN, "verification": "123456"}
    )
    assert code_of(both) == "VALIDATION_ERROR"
    sms = stack.card_payment("pw-2", 25_000, card_id, DEBIT.phone, channel="quickpay")
    assert sms["attempt"]["status"] == "PENDING"
    # Within the exemption no verification is needed; one given must be right.
    small = stack.client.post(
        "/v1/payments", pay_body("pw-3", 1_000, card_id) | {"payment_password": OTHER_PIN}
    )
    assert code_of(small) == "PAYMENT_PASSWORD_WRONG"
    stack.sandboxes.run_due()
    assert stack.app.ledger.check() == []


def test_the_password_is_changed_with_the_current_one_or_reset_by_sms(stack, customer):
    cid = customer(DEBIT)
    card_id, binding_id = bind(stack, cid)
    assert set_password(stack, cid, password=PIN, binding_id=binding_id).status_code == 200
    wrong = set_password(stack, cid, password=OTHER_PIN, current_password=OTHER_PIN)
    assert code_of(wrong) == "PAYMENT_PASSWORD_WRONG"
    changed = set_password(stack, cid, password=OTHER_PIN, current_password=PIN)
    assert changed.status_code == 200, changed.text
    old = stack.client.post(
        "/v1/payments", pay_body("ch-1", 30_000, card_id) | {"payment_password": PIN}
    )
    assert code_of(old) == "PAYMENT_PASSWORD_WRONG"
    # Forgotten: the card signed again (ID number and SMS code) proves the payer, for 15 minutes.
    fresh = sign_again(stack, card_id)
    stack.clock.advance(timedelta(minutes=16))
    late = set_password(stack, cid, password=PIN, binding_id=fresh)
    assert code_of(late) == "PAYMENT_PASSWORD_PROOF_INVALID"
    fresh = sign_again(stack, card_id)
    assert set_password(stack, cid, password=PIN, binding_id=fresh).status_code == 200
    paid = stack.client.post(
        "/v1/payments", pay_body("ch-2", 30_000, card_id) | {"payment_password": PIN}
    )
    assert paid.status_code == 201, paid.text
    # Another merchant's customer is unknown here.
    assert code_of(stack.client.get("/v1/customers/cus_nobody/payment-password")) == (
        "CUSTOMER_NOT_FOUND"
    )


def test_five_wrong_passwords_lock_it_for_three_hours(stack, customer):
    cid = customer(DEBIT)
    card_id, binding_id = bind(stack, cid)
    assert set_password(stack, cid, password=PIN, binding_id=binding_id).status_code == 200
    body = pay_body("lk-1", 30_000, card_id)
    # A right password in between starts the count again.
    for _ in range(2):
        assert code_of(
            stack.client.post("/v1/payments", body | {"payment_password": OTHER_PIN})
        ) == ("PAYMENT_PASSWORD_WRONG")
    passwords = stack.gateway.cards.passwords
    passwords.verify(cid, PIN)
    left = []
    for _ in range(4):
        wrong = stack.client.post("/v1/payments", body | {"payment_password": OTHER_PIN})
        left.append(wrong.json()["error"]["tries_left"])
    assert left == [4, 3, 2, 1]
    fifth = stack.client.post("/v1/payments", body | {"payment_password": OTHER_PIN})
    assert (fifth.status_code, code_of(fifth)) == (409, "PAYMENT_PASSWORD_LOCKED")
    until = fifth.json()["error"]["locked_until"]
    assert until == (stack.clock.now() + timedelta(hours=3)).isoformat()
    # Locked: the right one is refused too, and so is a change with it; the payment waits.
    right = stack.client.post("/v1/payments", body | {"payment_password": PIN})
    assert code_of(right) == "PAYMENT_PASSWORD_LOCKED"
    change = set_password(stack, cid, password=OTHER_PIN, current_password=PIN)
    assert code_of(change) == "PAYMENT_PASSWORD_LOCKED"
    shown = stack.client.get(f"/v1/customers/{cid}/payment-password").json()
    assert (shown["locked_until"], shown["tries_left"]) == (until, 0)
    waiting = stack.client.post("/v1/payments", pay_body("lk-2", 30_000, card_id))
    assert waiting.json()["error"]["methods"] == ["sms"]  # not offered while locked
    stack.clock.advance(timedelta(hours=3))
    later = pay_body("lk-3", 30_000, card_id) | {"payment_password": PIN}
    paid = stack.client.post("/v1/payments", later)
    assert (paid.status_code, paid.json()["attempt"]["status"]) == (201, "PENDING"), paid.text

    # Locked again, a fresh SMS-confirmed binding resets it (the payer proved themselves).
    for _ in range(5):
        with pytest.raises((PaymentPasswordWrong, PaymentPasswordLocked)):
            passwords.verify(cid, OTHER_PIN)
    with pytest.raises(PaymentPasswordLocked):
        passwords.verify(cid, PIN)
    reset = set_password(stack, cid, password=OTHER_PIN, binding_id=sign_again(stack, card_id))
    assert (reset.status_code, reset.json()["locked_until"]) == (200, None)
    passwords.verify(cid, OTHER_PIN)


def test_tries_sent_at_once_are_each_counted(stack, customer):
    """Eight wrong tries in parallel: each is counted under the row's lock, the fifth locks
    it, and no try after the lock is answered as merely wrong."""
    cid = customer(DEBIT)
    _card_id, binding_id = bind(stack, cid)
    assert set_password(stack, cid, password=PIN, binding_id=binding_id).status_code == 200
    passwords = stack.gateway.cards.passwords

    def attempt(_: int) -> str:
        try:
            passwords.verify(cid, OTHER_PIN)
        except (PaymentPasswordWrong, PaymentPasswordLocked) as exc:
            return exc.code
        return "VERIFIED"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = sorted(pool.map(attempt, range(8)))
    assert outcomes.count("PAYMENT_PASSWORD_WRONG") == 4
    assert outcomes.count("PAYMENT_PASSWORD_LOCKED") == 4
    with stack.app.engine.connect() as conn:
        assert conn.execute(select(payment_passwords.c.failed_tries)).scalar_one() == 5


def _dump(stack: Stack) -> str:
    """Every value of every row of every table as text (bytes as Latin-1)."""
    out = []
    with stack.app.engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
        for table in (t for t in metadata.sorted_tables if t.name in present):
            for row in conn.execute(select(table)):
                for value in row:
                    text = (
                        bytes(value).decode("latin-1")
                        if isinstance(value, bytes | memoryview)
                        else str(value)
                    )
                    out.append(f"{table.name}: {text}")
    return "\n".join(out)


def test_the_password_is_never_stored_logged_or_answered(stack, customer, caplog):
    """Set, changed, tried wrong and right, through the API: neither PIN appears in any row,
    log record or answer; only its hash is kept, under a keyed digest (so the plain scrypt of
    the PIN with the stored salt is not it either), and the idempotency record keeps a keyed
    digest of the bodies."""
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    stack.client.http.event_hooks["response"].append(lambda r: answers.append(r.read().decode()))
    cid = customer(DEBIT)
    card_id, binding_id = bind(stack, cid)
    set_password(stack, cid, password=OTHER_PIN, binding_id=binding_id)
    set_password(stack, cid, password=PIN, current_password=OTHER_PIN)
    body = pay_body("sec-1", 30_000, card_id)
    stack.client.post("/v1/payments", body | {"payment_password": OTHER_PIN})
    paid = stack.client.post("/v1/payments", body | {"payment_password": PIN})
    assert paid.status_code == 201, paid.text
    stack.sandboxes.run_due()

    dump = _dump(stack)
    logs = caplog.text + "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    seen = "\n".join(answers)
    assert "payment_passwords" in dump
    assert f"payment password of {cid} set" in logs
    for pin in (PIN, OTHER_PIN):
        assert pin not in dump, "stored"
        assert pin not in logs, "logged"
        assert pin not in seen, "answered"
    with stack.app.engine.connect() as conn:
        row = conn.execute(select(payment_passwords)).one()
        digests = {bytes(d) for d in conn.execute(select(api_idempotency.c.request_hash)).scalars()}
    assert row.kdf == "scrypt:n=32768,r=8,p=1"
    plain = hashlib.scrypt(
        PIN.encode(), salt=bytes(row.salt), n=2**15, r=8, p=1, dklen=32, maxmem=2**26
    )
    assert bytes(row.password_hash) != plain
    scope = f"POST /v1/customers/{cid}/payment-password\n".encode()
    changed = {"password": PIN, "current_password": OTHER_PIN}
    assert hashlib.sha256(scope + json.dumps(changed).encode()).digest() not in digests


# --- combined payments ------------------------------------------------------------------------


def cart(ref: str, card_id: str, *amounts: int, **more: Any) -> dict[str, Any]:
    return {
        "merchant_group_id": ref,
        "currency": "CNY",
        "orders": [
            {"merchant_order_id": f"{ref}-{i}", "amount": amount, "description": f"item {i}"}
            for i, amount in enumerate(amounts)
        ],
        "channel": "card",
        "method": "card",
        "payer_id": card_id,
    } | more


def test_a_combined_card_payment_is_verified_like_a_single_one(stack, customer):
    cid = customer(DEBIT)
    card_id, binding_id = bind(stack, cid)
    body = cart("cart-1", card_id, 18_000, 12_001)  # 300.01 together: above the exemption
    waiting = stack.client.post("/v1/payment-groups", body)
    assert (waiting.status_code, code_of(waiting)) == (402, "VERIFICATION_REQUIRED"), waiting.text
    error = waiting.json()["error"]
    group_id, attempt_id = error["group_id"], error["attempt_id"]
    assert stack.quickpay("quickpay").transaction(attempt_id) is None  # nothing sent
    shown = stack.client.get(f"/v1/payment-groups/{group_id}").json()
    assert shown["status"] == "PROCESSING"
    assert {p["attempt"]["status"] for p in shown["payments"]} == {"CREATED"}

    sent = stack.client.post(f"/v1/payment-groups/{group_id}/sms", {})
    assert sent.status_code == 200, sent.text
    assert (sent.json()["group_id"], sent.json()["attempt_id"]) == (group_id, attempt_id)
    assert (sent.json()["amount"], sent.json()["masked_phone"]) == (30_001, "138****0001")
    assert "300.01" in stack.quickpay("quickpay").sms_outbox(DEBIT.phone)[-1].text
    code = stack.quickpay("quickpay").last_sms_code(DEBIT.phone)
    paid = stack.client.post("/v1/payment-groups", body | {"verification": code})
    assert paid.status_code == 201, paid.text
    assert paid.json()["id"] == group_id
    assert code not in paid.text
    stack.sandboxes.run_due()
    done = stack.client.get(f"/v1/payment-groups/{group_id}").json()
    assert done["status"] == "SUCCEEDED"
    assert sum(p["fee"] for p in done["payments"]) == 150  # 0.5% of 300.01, shared
    again = stack.client.post(f"/v1/payment-groups/{group_id}/sms", {})
    assert (again.status_code, code_of(again)) == (409, "INVALID_STATE")
    assert code_of(stack.client.post("/v1/payment-groups/grp_nothing/sms", {})) == (
        "PAYMENT_NOT_FOUND"
    )

    # With the payer's password, at once; a wrong one leaves the cart waiting.
    assert set_password(stack, cid, password=PIN, binding_id=binding_id).status_code == 200
    second = cart("cart-2", card_id, 20_000, 20_000)
    wrong = stack.client.post("/v1/payment-groups", second | {"payment_password": OTHER_PIN})
    assert code_of(wrong) == "PAYMENT_PASSWORD_WRONG"
    both = stack.client.post(
        "/v1/payment-groups", second | {"payment_password": PIN, "verification": "123456"}
    )
    assert code_of(both) == "VALIDATION_ERROR"
    paid = stack.client.post("/v1/payment-groups", second | {"payment_password": PIN})
    assert paid.status_code == 201, paid.text
    stack.sandboxes.run_due()
    assert stack.client.get(f"/v1/payment-groups/{paid.json()['id']}").json()["status"] == (
        "SUCCEEDED"
    )
    # Within the exemption a cart goes at once.
    small = stack.client.post("/v1/payment-groups", cart("cart-3", card_id, 5_000, 5_000))
    assert small.status_code == 201, small.text
    assert stack.app.ledger.check() == []


# --- unconfirmed bindings ---------------------------------------------------------------------


def binding_row(stack: Stack, binding_id: str) -> Any:
    with stack.app.engine.connect() as conn:
        return conn.execute(select(card_bindings).where(card_bindings.c.id == binding_id)).one()


def test_unconfirmed_bindings_expire_and_their_card_data_is_erased(stack, customer):
    cid = customer(DEBIT)
    started = stack.client.post(f"/v1/customers/{cid}/cards", bind_body(DEBIT, four=True))
    assert started.status_code == 201, started.text
    binding_id = started.json()["id"]
    sealed = binding_row(stack, binding_id).elements_sealed
    assert sealed is not None
    # A confirmed binding is not the purge's business.
    _card_id, confirmed_id = bind(stack, customer(CREDIT), CREDIT, expiry=CREDIT.expiry,
                                  cvv=stack.sandboxes.issuers.printed_cvv(CREDIT.card_no))  # fmt: skip
    stack.clock.advance(timedelta(minutes=14, seconds=59))
    assert stack.gateway.cards.expire_bindings() == 0
    stack.clock.advance(timedelta(seconds=1))
    assert stack.gateway.cards.expire_bindings() == 1
    assert stack.gateway.cards.expire_bindings() == 0  # once
    row = binding_row(stack, binding_id)
    assert (row.status, row.error_code, row.elements_sealed) == (
        "expired",
        "BINDING_EXPIRED",
        None,
    )
    assert binding_row(stack, confirmed_id).status == "confirmed"
    # The sealed elements are nowhere in the database any more.
    assert bytes(sealed).decode("latin-1") not in _dump(stack)
    code = stack.quickpay("quickpay").last_sms_code(DEBIT.phone)
    late = stack.client.post(f"/v1/card-bindings/{binding_id}/confirm", {"sms_code": code})
    assert (late.status_code, code_of(late)) == (409, "BINDING_EXPIRED"), late.text
    assert stack.client.get(f"/v1/customers/{cid}/cards").json() == []

    # A confirmation past the time finds the binding over even before the purge runs.
    started = stack.client.post(f"/v1/customers/{cid}/cards", bind_body(DEBIT))
    late_id = started.json()["id"]
    stack.clock.advance(timedelta(minutes=15))
    code = stack.quickpay("quickpay").last_sms_code(DEBIT.phone)
    late = stack.client.post(f"/v1/card-bindings/{late_id}/confirm", {"sms_code": code})
    assert code_of(late) == "BINDING_EXPIRED"
    assert binding_row(stack, late_id).elements_sealed is None
    shown = stack.gateway.cards.binding(late_id)
    assert (shown["status"], shown["error_code"]) == ("expired", "BINDING_EXPIRED")
    # Binding again works as ever.
    card_id, _ = bind(stack, cid)
    assert [c["id"] for c in stack.client.get(f"/v1/customers/{cid}/cards").json()] == [card_id]


def test_the_serving_workers_and_the_command_line_expire_them(stack, customer, database_url):
    cid = customer(DEBIT)
    first = stack.client.post(f"/v1/customers/{cid}/cards", bind_body(DEBIT)).json()["id"]
    stack.clock.advance(timedelta(minutes=15))
    # The workers of `clearhouse serve`: every sixtieth round (a minute at their pace).
    stop = threading.Event()
    worker = threading.Thread(target=run_workers, args=(stack.gateway, stop, 0.001))
    worker.start()
    try:
        for _ in range(400):
            if binding_row(stack, first).status == "expired":
                break
            stop.wait(0.05)
    finally:
        stop.set()
        worker.join()
    assert binding_row(stack, first).elements_sealed is None

    # Once, by hand (the system clock is past the tests' fixed time).
    second = stack.client.post(f"/v1/customers/{cid}/cards", bind_body(DEBIT)).json()["id"]
    result = CliRunner().invoke(
        cli, ["cards", "expire-bindings", "--json"], env={"CLEARHOUSE_DATABASE_URL": database_url}
    )
    assert result.exit_code == 0, result.output
    assert '"expired": 1' in result.stdout
    assert binding_row(stack, second).elements_sealed is None
    assert expire_bindings(stack.app.engine, stack.clock.now()) == 0
    with stack.app.engine.connect() as conn:  # no binding is left holding card data
        left = conn.execute(
            select(card_bindings.c.id).where(card_bindings.c.elements_sealed.is_not(None))
        ).all()
    assert left == []
