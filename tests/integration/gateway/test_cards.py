"""Bank cards end to end over real HTTP, on SQLite and PostgreSQL: binding with real-name
verification and the SMS code (3 and 4 elements, credit cards), paying by card id with and
without the payer's code, routing between the two quick pay acquirers, the issuer's limit
across them, refunds, unbinding, and that card data never lands where it must not."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from clearhouse.accounts.model import KycLevel
from clearhouse.db.schema import (
    api_idempotency,
    card_bindings,
    cards,
    journal_entries,
    metadata,
    payment_events,
    payment_intents,
)
from clearhouse.money import Money
from tests.card_support import BY_HOLDER, CAPPED, CREDIT, DEBIT, bind_body, card_rows
from tests.integration.gateway.live_stack import Stack, credentials, customer, stack

__all__ = ["credentials", "customer", "stack"]

EXPIRED = BY_HOLDER["钱七"]
NOTHING = {"cards": 0, "card_signings": 0, "card_bindings": 0, "card_usage": 0}


def code_of(response: Any) -> str:
    return str(response.json()["error"]["code"])


def intents(stack: Stack) -> int:
    with stack.app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(payment_intents)).scalar() or 0)


def card_row(stack: Stack, card_id: str) -> Any:
    with stack.app.engine.connect() as conn:
        return conn.execute(select(cards).where(cards.c.id == card_id)).one()


def start(stack: Stack, customer_id: str, body: dict[str, Any]) -> Any:
    return stack.client.post(f"/v1/customers/{customer_id}/cards", body)


def confirm(stack: Stack, binding_id: str, code: str) -> Any:
    return stack.client.post(f"/v1/card-bindings/{binding_id}/confirm", {"sms_code": code})


def other_code(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def unseal(stack: Stack, sealed: bytes, purpose: str) -> str:
    return stack.gateway.sealer.unseal(bytes(sealed), purpose).decode()


def pay_body(order: str, amount: int, card_id: str, channel: str = "card") -> dict[str, Any]:
    return {
        "merchant_order_id": order,
        "amount": amount,
        "currency": "CNY",
        "description": "Longjing, spring picking",
        "channel": channel,
        "method": "card",
        "payer_id": card_id,
    }


# --- binding --------------------------------------------------------------------------------


def test_bind_with_three_elements_then_list_the_masked_card(stack, customer):
    cid = customer(DEBIT)
    started = start(stack, cid, bind_body(DEBIT))
    assert started.status_code == 201, started.text
    binding = started.json()
    assert (binding["status"], binding["channel"], binding["card_id"]) == (
        "pending",
        "quickpay",
        None,
    )
    # Three elements: the code goes to the phone the bank has on record.
    assert binding["masked_phone"] == "138****0001"
    code = stack.quickpay("quickpay").last_sms_code(DEBIT.phone)
    bound = confirm(stack, binding["id"], code)
    assert bound.status_code == 200, bound.text
    card = bound.json()
    assert card["masked_card_number"] == "621999*********0010"
    assert (card["card_type"], card["bank"], card["status"]) == ("debit", "沙箱商业银行", "active")
    assert card["signings"] == [
        {
            "channel": "quickpay",
            "status": "active",
            "currency": "CNY",
            "single_limit": 500_000,  # the channel's debit limits, from its bind answer
            "daily_limit": 2_000_000,
        }
    ]
    listed = stack.client.get(f"/v1/customers/{cid}/cards")
    assert listed.status_code == 200
    assert listed.json() == [card]
    # A confirmation sent again (its answer lost) answers the same card.
    assert confirm(stack, binding["id"], code).json()["id"] == card["id"]
    # At rest: sealed, the phone not given is not kept, the binding's copy is gone.
    row = card_row(stack, card["id"])
    assert DEBIT.card_no.encode() not in bytes(row.pan_sealed)
    assert unseal(stack, row.pan_sealed, "card.pan") == DEBIT.card_no
    assert unseal(stack, row.holder_sealed, "card.holder") == DEBIT.holder_name
    assert (row.phone_sealed, row.expiry_sealed) == (None, None)
    with stack.app.engine.connect() as conn:
        kept = conn.execute(select(card_bindings.c.elements_sealed)).scalars().all()
    assert kept == [None]


def test_four_elements_check_the_phone_and_a_refusal_stores_nothing(stack, customer):
    cid = customer(DEBIT)
    wrong = start(stack, cid, bind_body(DEBIT, phone="13900000000"))
    assert (wrong.status_code, code_of(wrong)) == (422, "CARD_REFUSED"), wrong.text
    assert wrong.json()["error"]["reason"] == "CARD_ELEMENTS_MISMATCH"
    assert card_rows(stack.app) == NOTHING
    assert stack.quickpay("quickpay").sms_outbox(DEBIT.phone) == []
    card = stack.bind_card(cid, DEBIT, four=True)
    assert unseal(stack, card_row(stack, card["id"]).phone_sealed, "card.phone") == DEBIT.phone


def test_a_credit_card_needs_its_expiry_and_cvv(stack, customer):
    cid = customer(CREDIT)
    cvv = stack.sandboxes.issuers.printed_cvv(CREDIT.card_no)
    missing = start(stack, cid, bind_body(CREDIT))
    assert (code_of(missing), missing.json()["error"]["reason"]) == (
        "CARD_REFUSED",
        "MISSING_FIELD",
    )
    half = start(stack, cid, bind_body(CREDIT, cvv=cvv))
    assert (code_of(half), half.json()["error"]["field"]) == ("INVALID_CARD", "expiry")
    wrong_cvv = f"{(int(cvv) + 1) % 1000:03d}"
    wrong = start(stack, cid, bind_body(CREDIT, expiry=CREDIT.expiry, cvv=wrong_cvv))
    assert wrong.json()["error"]["reason"] == "CARD_SECURITY_MISMATCH"
    expired_holder = customer(EXPIRED)
    expired_cvv = stack.sandboxes.issuers.printed_cvv(EXPIRED.card_no)
    expired = start(
        stack, expired_holder, bind_body(EXPIRED, expiry=EXPIRED.expiry, cvv=expired_cvv)
    )
    assert expired.json()["error"]["reason"] == "CARD_EXPIRED"
    assert card_rows(stack.app) == NOTHING
    card = stack.bind_card(cid, CREDIT, expiry=CREDIT.expiry, cvv=cvv)
    assert card["card_type"] == "credit"
    assert card["signings"][0]["single_limit"] == 1_000_000  # credit: 10,000.00
    assert unseal(stack, card_row(stack, card["id"]).expiry_sealed, "card.expiry") == "1230"


def test_the_holders_identity_is_checked_before_anything_is_sent(stack, customer):
    someone_else = customer(CREDIT)  # 李四 trying 张三's card
    unverified = customer(CAPPED, kyc=KycLevel.UNVERIFIED)
    zhang = customer(DEBIT)
    refusals = [
        (start(stack, someone_else, bind_body(DEBIT)), 422, "IDENTITY_MISMATCH"),
        (start(stack, zhang, bind_body(DEBIT, id_number=CREDIT.id_number)), 422, "IDENTITY_MISMATCH"),
        (start(stack, zhang, bind_body(DEBIT, holder_name="张三丰")), 422, "IDENTITY_MISMATCH"),
        (start(stack, unverified, bind_body(CAPPED)), 422, "IDENTITY_NOT_VERIFIED"),
        (start(stack, "cus_nobody", bind_body(DEBIT)), 404, "CUSTOMER_NOT_FOUND"),
        (start(stack, zhang, bind_body(DEBIT, card_number="6219990000000000011")), 422, "INVALID_CARD"),
        (start(stack, zhang, bind_body(DEBIT, id_number="1101")), 422, "INVALID_CARD"),
        (start(stack, zhang, bind_body(DEBIT, phone="555-0100")), 422, "INVALID_CARD"),
        (start(stack, zhang, bind_body(DEBIT, channel="wechatpay")), 422, "CHANNEL_NOT_SUPPORTED"),
        (start(stack, zhang, bind_body(DEBIT, pin="123456")), 422, "VALIDATION_ERROR"),
    ]  # fmt: skip
    for response, status, code in refusals:
        assert (response.status_code, code_of(response)) == (status, code), response.text
    fields = [r.json()["error"].get("field") for r, _, c in refusals if c == "INVALID_CARD"]
    assert fields == ["card_number", "id_number", "phone"]
    # Nothing reached the channel, nothing was stored.
    assert stack.quickpay("quickpay").state.bind_requests == {}
    assert stack.quickpay("quickpay").sms_outbox(DEBIT.phone) == []
    assert card_rows(stack.app) == NOTHING


def test_a_wrong_sms_code_can_be_corrected_an_expired_one_ends_the_binding(stack, customer):
    cid = customer(DEBIT)
    binding = start(stack, cid, bind_body(DEBIT)).json()
    code = stack.quickpay("quickpay").last_sms_code(DEBIT.phone)
    wrong = confirm(stack, binding["id"], other_code(code))
    assert (wrong.status_code, code_of(wrong)) == (422, "VERIFICATION_FAILED")
    assert wrong.json()["error"]["reason"] == "SMS_CODE_WRONG"
    assert card_rows(stack.app)["cards"] == 0
    assert confirm(stack, binding["id"], code).status_code == 200

    late = start(stack, cid, bind_body(DEBIT)).json()
    code = stack.quickpay("quickpay").last_sms_code(DEBIT.phone)
    stack.clock.advance(timedelta(minutes=6))
    expired = confirm(stack, late["id"], code)
    assert (code_of(expired), expired.json()["error"]["reason"]) == (
        "VERIFICATION_FAILED",
        "SMS_CODE_EXPIRED",
    )
    over = confirm(stack, late["id"], code)
    assert (over.status_code, code_of(over)) == (409, "INVALID_STATE")
    assert code_of(confirm(stack, "bnd_nothing", code)) == "BINDING_NOT_FOUND"
    malformed = confirm(stack, late["id"], "12ab56")
    assert code_of(malformed) == "VALIDATION_ERROR"


# --- paying ---------------------------------------------------------------------------------


def test_a_small_card_payment_needs_no_code_and_is_refunded(stack, customer):
    cid = customer(DEBIT)
    card = stack.bind_card(cid, DEBIT)
    paid = stack.card_payment("c-1", 8_800, card["id"], DEBIT.phone, channel="quickpay")
    assert paid["status"] == "PROCESSING"
    assert (paid["attempt"]["channel"], paid["attempt"]["status"]) == ("quickpay", "PENDING")
    assert len(stack.quickpay("quickpay").sms_outbox(DEBIT.phone)) == 1  # the binding's only
    stack.sandboxes.run_due()  # the channel's signed notification
    done = stack.payment(paid["id"])
    assert (done["status"], done["fee"]) == ("SUCCEEDED", 44)  # 0.5% of 88.00
    refund = stack.client.post(
        f"/v1/payments/{paid['id']}/refunds", {"amount": 3_000, "currency": "CNY", "reason": "r"}
    )
    assert refund.status_code == 201, refund.text
    stack.sandboxes.run_due()
    stack.clock.advance(timedelta(seconds=6))
    stack.gateway.poller.run_once()
    assert stack.client.get(f"/v1/refunds/{refund.json()['id']}").json()["status"] == "SUCCEEDED"
    issuer_card = stack.sandboxes.issuers.card(DEBIT.card_no)
    assert issuer_card is not None
    assert issuer_card.balance == Money.parse("99942.00", "CNY")
    assert stack.app.ledger.check() == []


def test_above_the_exemption_the_payer_confirms_with_the_sms_code(stack, customer):
    cid = customer(DEBIT)
    card = stack.bind_card(cid, DEBIT)
    body = pay_body("c-2", 30_000, card["id"], channel="quickpay")
    waiting = stack.client.post("/v1/payments", body)
    assert (waiting.status_code, code_of(waiting)) == (402, "VERIFICATION_REQUIRED"), waiting.text
    payment_id = waiting.json()["error"]["payment_id"]
    stored = stack.payment(payment_id)
    attempt_id = stored["attempt"]["id"]  # type: ignore[index]
    assert (stored["status"], stored["attempt"]["status"]) == ("PROCESSING", "CREATED")  # type: ignore[index]
    assert stack.quickpay("quickpay").transaction(attempt_id) is None  # nothing was sent
    sent = stack.client.post(f"/v1/payments/{payment_id}/sms", {})
    assert sent.status_code == 200, sent.text
    assert (sent.json()["masked_phone"], sent.json()["attempt_id"]) == ("138****0001", attempt_id)
    code = stack.quickpay("quickpay").last_sms_code(DEBIT.phone)
    paid = stack.client.post("/v1/payments", body | {"verification": code})
    assert paid.status_code == 201, paid.text
    assert (paid.json()["id"], paid.json()["attempt"]["status"]) == (payment_id, "PENDING")
    assert code not in paid.text
    stack.sandboxes.run_due()
    assert stack.payment(payment_id)["status"] == "SUCCEEDED"
    again = stack.client.post(f"/v1/payments/{payment_id}/sms", {})
    assert (again.status_code, code_of(again)) == (409, "INVALID_STATE")

    # A wrong code fails the attempt with the channel's code, and with it the payment: the
    # same order sent again (even with the right code) is that failed payment; a new order
    # is a new payment the payer can confirm.
    second = pay_body("c-3", 30_000, card["id"], channel="quickpay")
    payment_id = stack.client.post("/v1/payments", second).json()["error"]["payment_id"]
    stack.client.post(f"/v1/payments/{payment_id}/sms", {})
    code = stack.quickpay("quickpay").last_sms_code(DEBIT.phone)
    failed = stack.client.post("/v1/payments", second | {"verification": other_code(code)})
    assert failed.status_code == 201, failed.text
    assert (failed.json()["status"], failed.json()["attempt"]["error_code"]) == (
        "FAILED",
        "SMS_CODE_WRONG",
    )
    retried = stack.client.post("/v1/payments", second | {"verification": code})
    assert (retried.json()["id"], retried.json()["status"]) == (payment_id, "FAILED")
    new = stack.card_payment("c-4", 30_000, card["id"], DEBIT.phone, channel="quickpay")
    stack.sandboxes.run_due()
    assert stack.payment(new["id"])["status"] == "SUCCEEDED"
    assert stack.app.ledger.check() == []

    # A code sent before any was asked for this payment would only be refused (and fail the
    # payment): it waits for its own code instead, even within the exemption.
    early = stack.client.post(
        "/v1/payments", pay_body("c-5", 1_000, card["id"]) | {"verification": code}
    )
    assert code_of(early) == "VERIFICATION_REQUIRED"
    waiting = stack.payment(early.json()["error"]["payment_id"])
    assert waiting["attempt"]["status"] == "CREATED"  # type: ignore[index]
    with stack.app.engine.connect() as conn:
        kinds = conn.execute(select(payment_events.c.kind)).scalars().all()
    assert kinds.count("sms") == 3  # each code sent is on its payment's flow record


def test_an_unbound_card_pays_no_more(stack, customer):
    cid = customer(DEBIT)
    card = stack.bind_card(cid, DEBIT)
    stack.sign_on(card["id"], DEBIT, "quickpay_b")
    unbound = stack.client.post(f"/v1/cards/{card['id']}/unbind", {})
    assert unbound.status_code == 200, unbound.text
    assert unbound.json()["status"] == "unbound"
    assert {s["status"] for s in unbound.json()["signings"]} == {"unbound"}
    for channel in ("quickpay", "quickpay_b"):  # the channels let the tokens go
        assert not any(b.active for b in stack.quickpay(channel).state.bindings.values())
    assert stack.client.get(f"/v1/customers/{cid}/cards").json() == []
    before = intents(stack)
    refused = stack.client.post("/v1/payments", pay_body("u-1", 1_000, card["id"]))
    assert (refused.status_code, code_of(refused)) == (409, "CARD_NOT_ACTIVE"), refused.text
    assert intents(stack) == before
    sign = stack.client.post(
        f"/v1/cards/{card['id']}/signings", {"channel": "quickpay", "id_number": DEBIT.id_number}
    )
    assert code_of(sign) == "CARD_NOT_ACTIVE"
    assert stack.client.post(f"/v1/cards/{card['id']}/unbind", {}).status_code == 200  # again
    assert code_of(stack.client.post("/v1/cards/card_nothing/unbind", {})) == "CARD_NOT_FOUND"
    # Bound again, the same card is active again (a new token at the channel).
    again = stack.bind_card(cid, DEBIT)
    assert (again["id"], again["status"]) == (card["id"], "active")
    paid = stack.card_payment("u-2", 1_000, card["id"], DEBIT.phone)
    assert paid["attempt"]["channel"] == "quickpay"  # no longer signed on quickpay_b


# --- two acquirers --------------------------------------------------------------------------


def routed_channel(stack: Stack, payment: dict[str, Any]) -> str:
    return str(payment["attempt"]["channel"])


def test_card_payments_are_routed_between_the_two_acquirers(stack, customer):
    cid = customer(DEBIT)
    card = stack.bind_card(cid, DEBIT)
    card = stack.sign_on(card["id"], DEBIT, "quickpay_b")
    assert [(s["channel"], s["single_limit"]) for s in card["signings"]] == [
        ("quickpay", 500_000),
        ("quickpay_b", 200_000),  # the second acquirer's own, tighter, limit for the card
    ]
    # Above what quickpay_b takes for this card: only quickpay can carry it.
    big = stack.card_payment("r-big", 300_000, card["id"], DEBIT.phone)
    assert routed_channel(stack, big) == "quickpay"
    decision = stack.client.get(f"/v1/payments/{big['id']}/routing").json()
    excluded = {c["channel"]: c["excluded"] for c in decision["considered"]}
    assert excluded["quickpay_b"] == "OVER_SINGLE_LIMIT"
    # Small ones spread over both by weight (quickpay 100, quickpay_b 50).
    seen: dict[str, int] = {}
    for i in range(40):
        one = stack.card_payment(f"r-{i}", 1_000, card["id"], DEBIT.phone)
        seen[routed_channel(stack, one)] = seen.get(routed_channel(stack, one), 0) + 1
        if len(seen) == 2:
            break
    assert set(seen) == {"quickpay", "quickpay_b"}
    stack.sandboxes.run_due()
    with stack.app.engine.connect() as conn:
        statuses = conn.execute(select(payment_intents.c.status)).scalars().all()
        codes = set(conn.execute(select(journal_entries.c.code)).scalars())
    assert set(statuses) == {"SUCCEEDED"}
    assert codes == {"1001", "1201"}  # quickpay_b books to quick pay's rules
    assert stack.app.ledger.check() == []

    # A card signed on quickpay_b only goes there.
    other = customer(CAPPED)
    capped = stack.bind_card(other, CAPPED, channel="quickpay_b")
    there = stack.card_payment("r-b", 1_000, capped["id"], CAPPED.phone)
    assert routed_channel(stack, there) == "quickpay_b"
    decision = stack.client.get(f"/v1/payments/{there['id']}/routing").json()
    excluded = {c["channel"]: c["excluded"] for c in decision["considered"]}
    assert excluded["quickpay"] == "CARD_NOT_SIGNED"


def test_the_issuers_limit_holds_across_both_acquirers(stack, customer):
    cid = customer(CAPPED)  # the issuer allows 3,000.00 a day for this card, all channels
    card = stack.bind_card(cid, CAPPED)
    stack.sign_on(card["id"], CAPPED, "quickpay_b")
    first = stack.card_payment("i-1", 200_000, card["id"], CAPPED.phone, channel="quickpay")
    stack.sandboxes.run_due()
    assert stack.payment(first["id"])["status"] == "SUCCEEDED"
    before, sent_b = intents(stack), len(stack.quickpay("quickpay_b").state.txns)
    over = stack.client.post("/v1/payments", pay_body("i-2", 150_000, card["id"], "quickpay_b"))
    assert (over.status_code, code_of(over)) == (422, "ISSUER_LIMIT_EXCEEDED"), over.text
    error = over.json()["error"]
    assert (error["limit"], error["issuer_limit"], error["used_today"]) == (
        "daily",
        300_000,
        200_000,
    )
    assert (intents(stack), len(stack.quickpay("quickpay_b").state.txns)) == (before, sent_b)
    last = stack.card_payment("i-3", 100_000, card["id"], CAPPED.phone, channel="quickpay_b")
    stack.sandboxes.run_due()
    assert stack.payment(last["id"])["status"] == "SUCCEEDED"
    issuer_card = stack.sandboxes.issuers.card(CAPPED.card_no)
    assert issuer_card is not None
    assert sum(issuer_card.spent.values(), Money.zero("CNY")) == Money(300_000, "CNY")
    # A payment the payer never confirms closes at its deadline and gives its share back.
    stack.clock.advance(timedelta(days=1))
    waiting = stack.client.post("/v1/payments", pay_body("i-4", 300_000, card["id"]))
    assert code_of(waiting) == "VERIFICATION_REQUIRED"
    assert code_of(stack.client.post("/v1/payments", pay_body("i-5", 1, card["id"]))) == (
        "ISSUER_LIMIT_EXCEEDED"
    )
    stack.clock.advance(timedelta(minutes=31))
    stack.gateway.poller.run_once()
    closed = stack.payment(waiting.json()["error"]["payment_id"])
    assert closed["status"] == "CLOSED"
    assert stack.client.post("/v1/payments", pay_body("i-6", 1, card["id"])).status_code == 201


# --- card data stays where it belongs --------------------------------------------------------


def _dump(stack: Stack) -> str:
    """Every value of every row of every table as text (bytes as Latin-1, so a clear text
    inside a blob would show)."""
    out = []
    with stack.app.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    text = (
                        bytes(value).decode("latin-1")
                        if isinstance(value, bytes | memoryview)
                        else str(value)
                    )
                    out.append(f"{table.name}: {text}")
    return "\n".join(out)


def test_card_data_is_never_stored_logged_or_answered(stack, customer, caplog):
    """After a bind (a refused CVV, then the right one), a signing on the second acquirer
    (the CVV again), payments with and without the SMS code, a refund and an unbind, all
    through the API: the card number, the ID number, the phone and the CVV appear in no row of
    any table, no log record (DEBUG, every thread) and no answer.

    Method: the sealed columns hold AES-GCM ciphertext, so a dump of every row (blobs read as
    Latin-1) holds the card number only if something kept it in clear. A three-digit CVV can
    occur by chance in ids and timestamps, so the CVV is searched in the contexts it would be
    written in (``"cvv": "281"``, ``cvv=281``, ``cvn2=281``...), as JSON, form or repr would
    write it; the long numbers are searched as they are. The idempotency record keeps a keyed
    digest of each body: the plain SHA-256 of the binding's body (from which the CVV could be
    found by trying its thousand values) is not there either."""
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    stack.client.http.event_hooks["response"].append(lambda r: answers.append(r.read().decode()))
    cid = customer(CREDIT)
    cvv = stack.sandboxes.issuers.printed_cvv(CREDIT.card_no)
    wrong = start(stack, cid, bind_body(CREDIT, four=True, expiry=CREDIT.expiry, cvv="000"))
    assert code_of(wrong) == "CARD_REFUSED"
    body = bind_body(CREDIT, four=True, expiry=CREDIT.expiry, cvv=cvv)
    card = stack.bind_card(cid, CREDIT, four=True, expiry=CREDIT.expiry, cvv=cvv)
    stack.sign_on(card["id"], CREDIT, "quickpay_b", cvv=cvv)
    small = stack.card_payment("d-1", 8_800, card["id"], CREDIT.phone)
    big = stack.card_payment("d-2", 30_000, card["id"], CREDIT.phone, channel="quickpay")
    stack.sandboxes.run_due()
    refund = stack.client.post(
        f"/v1/payments/{big['id']}/refunds", {"amount": 10_000, "currency": "CNY", "reason": "r"}
    )
    assert refund.status_code == 201, refund.text
    stack.sandboxes.run_due()
    assert stack.payment(small["id"])["status"] == "SUCCEEDED"
    stack.client.post(f"/v1/cards/{card['id']}/unbind", {})

    secrets = [CREDIT.card_no, CREDIT.id_number, CREDIT.phone]
    secrets += [
        pattern.format(cvv)
        for pattern in ('"cvv": "{}"', '"cvv":"{}"', "'cvv': '{}'", "cvv={}", "cvn2={}", "cvv2={}")
    ]
    dump = _dump(stack)
    logs = caplog.text + "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    seen = "\n".join(answers)
    # The search looks where the data would be: the rows, the server threads' log records
    # and the answers all hold the card's masked number, ids and amounts.
    assert len(answers) > 10
    assert "masked_card_number" in seen
    assert "625999******0007" in dump
    assert f"card {card['id']} signed on quickpay_b" in logs
    for secret in secrets:
        assert secret.lower() not in dump.lower(), f"stored: {secret}"
        assert secret.lower() not in logs.lower(), f"logged: {secret}"
        assert secret.lower() not in seen.lower(), f"answered: {secret}"
    # Still there, sealed: the card number opens with the server's key only.
    assert unseal(stack, card_row(stack, card["id"]).pan_sealed, "card.pan") == CREDIT.card_no
    scope = f"POST /v1/customers/{cid}/cards\n".encode() + json.dumps(body).encode()
    with stack.app.engine.connect() as conn:
        digests = {bytes(d) for d in conn.execute(select(api_idempotency.c.request_hash)).scalars()}
    assert hashlib.sha256(scope).digest() not in digests


def test_signing_needs_the_id_number_and_a_credit_card_its_cvv_again(stack, customer):
    cid = customer(CREDIT)
    cvv = stack.sandboxes.issuers.printed_cvv(CREDIT.card_no)
    credit = stack.bind_card(cid, CREDIT, expiry=CREDIT.expiry, cvv=cvv)
    path = f"/v1/cards/{credit['id']}/signings"
    no_cvv = stack.client.post(path, {"channel": "quickpay_b", "id_number": CREDIT.id_number})
    assert (code_of(no_cvv), no_cvv.json()["error"]["field"]) == ("INVALID_CARD", "cvv")
    wrong_id = stack.client.post(
        path, {"channel": "quickpay_b", "id_number": DEBIT.id_number, "cvv": cvv}
    )
    assert code_of(wrong_id) == "IDENTITY_MISMATCH"
    assert stack.quickpay("quickpay_b").state.bind_requests == {}
    signed = stack.sign_on(credit["id"], CREDIT, "quickpay_b", cvv=cvv)
    assert [s["channel"] for s in signed["signings"]] == ["quickpay", "quickpay_b"]
