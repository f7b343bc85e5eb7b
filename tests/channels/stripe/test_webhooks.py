"""Webhook endpoints and signatures as stripe-python sees them, and the signature rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.stripe import protocol
from clearhouse.gateway.channels.stripe.protocol import StripeCredentials
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.serving import ServedApp
from clearhouse.sandbox.stripe.state import StripeSandbox
from tests.channels.receiver import ScriptedReceiver


def test_sdk_verifies_sandbox_webhooks(
    creds: StripeCredentials,
    served: ServedApp,
    sandbox: StripeSandbox,
    notifier: Notifier,
    receiver: ScriptedReceiver,
    request: pytest.FixtureRequest,
) -> None:
    http = stripe.RequestsClient()
    request.addfinalizer(http.close)  # the SDK keeps its session open otherwise
    client = stripe.StripeClient(
        creds.secret_key, base_addresses={"api": served.base_url}, http_client=http
    )
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": ["charge.refunded", "payout.paid"]}
    )
    assert endpoint.secret is not None
    assert endpoint.secret.startswith("whsec_")
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id).to_dict()

    intent = client.v1.payment_intents.create(
        params={
            "amount": 999,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"attempt_id": "att-w"},
        }
    )
    client.v1.refunds.create(params={"payment_intent": intent.id})
    notifier.run_due()
    by_type: dict[str, tuple[dict[str, str], bytes]] = {}
    for headers, body in receiver.received:
        by_type.setdefault(json.loads(body)["type"], (headers, body))
    # The default endpoint gets what the adapter handles; the new one what it asked for.
    assert {
        "payment_intent.succeeded",
        "refund.created",
        "refund.updated",
        "charge.refunded",
    } <= set(by_type)
    headers, body = by_type["charge.refunded"]
    event = stripe.Webhook.construct_event(
        body.decode(), headers["stripe-signature"], endpoint.secret
    )
    assert event.type == "charge.refunded"
    assert event.data.object["amount_refunded"] == 999
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            body.decode().replace("999", "111"), headers["stripe-signature"], endpoint.secret
        )
    with pytest.raises(stripe.SignatureVerificationError):  # signed for the other endpoint
        stripe.Webhook.construct_event(
            body.decode(), headers["stripe-signature"], creds.webhook_secret
        )
    headers, body = by_type["payment_intent.succeeded"]
    event = stripe.Webhook.construct_event(
        body.decode(), headers["stripe-signature"], creds.webhook_secret
    )
    assert event.data.object["metadata"]["attempt_id"] == "att-w"
    assert client.v1.events.retrieve(event.id).type == "payment_intent.succeeded"


def test_signature_rules() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    payload, secret = b'{"id":"evt_1"}', protocol.new_webhook_secret()
    header = protocol.signature_header(payload, secret, now)
    assert header.startswith(f"t={int(now.timestamp())},v1=")
    assert protocol.verify_signature(payload, header, secret, now) == int(now.timestamp())
    later = now + timedelta(seconds=300)
    protocol.verify_signature(payload, header, secret, later)  # the edge of the tolerance
    bad = [
        (payload, header, secret, now + timedelta(seconds=301)),
        (payload, header, secret, now - timedelta(seconds=301)),  # from the future
        (payload + b" ", header, secret, now),
        (payload, header, protocol.new_webhook_secret(), now),
        (payload, header.split(",")[1], secret, now),
        (payload, header.split(",")[0], secret, now),
        (payload, "", secret, now),
    ]
    for args in bad:
        with pytest.raises(protocol.SignatureError):
            protocol.verify_signature(*args)


def test_form_encoding_round_trip() -> None:
    params = {
        "amount": 1200,
        "confirm": True,
        "metadata": {"order": "o 1&x", "0": "zero"},
        "expand": ["latest_charge", "customer"],
        "parameters": {"columns": ["gross", "net"]},
    }
    text = protocol.encode_form(params)
    assert "metadata[order]=o+1%26x" in text
    assert "expand[0]=latest_charge" in text
    assert protocol.decode_form(text) == {
        "amount": "1200",
        "confirm": "true",
        "metadata": {"order": "o 1&x", "0": "zero"},
        "expand": ["latest_charge", "customer"],
        "parameters": {"columns": ["gross", "net"]},
    }
    assert protocol.decode_form("expand[]=a&expand[]=b") == {"expand": ["a", "b"]}
    with pytest.raises(protocol.StripeProtocolError):
        protocol.decode_form("a=1&a[b]=2")
    with pytest.raises(protocol.StripeProtocolError):
        protocol.decode_form("a[b]=2&a=1")
    with pytest.raises(TypeError):
        protocol.encode_form({"amount": 12.5})


def test_credentials_round_trip(clock: FixedClock) -> None:
    creds = StripeCredentials.generate()
    assert creds.secret_key.startswith("sk_test_")
    assert StripeCredentials.from_dict(creds.to_dict()) == creds
    assert creds.merchant_view() == creds
