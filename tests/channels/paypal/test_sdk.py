"""PayPal's server SDK, unchanged but for its base URL, drives the sandbox over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from apimatic_core.exceptions.auth_validation_exception import AuthValidationException
from paypalserversdk.configuration import Configuration, Server
from paypalserversdk.exceptions.error_exception import ErrorException
from paypalserversdk.exceptions.o_auth_provider_exception import OAuthProviderException
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.models.amount_with_breakdown import AmountWithBreakdown
from paypalserversdk.models.checkout_payment_intent import CheckoutPaymentIntent
from paypalserversdk.models.money import Money as SdkMoney
from paypalserversdk.models.order_request import OrderRequest
from paypalserversdk.models.purchase_unit_request import PurchaseUnitRequest
from paypalserversdk.models.refund_request import RefundRequest
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

from clearhouse.gateway.channels.paypal.protocol import PaypalCredentials
from clearhouse.sandbox.paypal import PaypalSandbox
from clearhouse.sandbox.serving import ServedApp


def sdk_client(base_url: str, client_id: str, secret: str) -> PaypalServersdkClient:
    class SandboxConfiguration(Configuration):  # type: ignore[misc]
        def get_base_uri(self, server: Server = Server.DEFAULT) -> str:
            return base_url  # the only change: where the SDK sends requests

    credentials = ClientCredentialsAuthCredentials(
        o_auth_client_id=client_id, o_auth_client_secret=secret
    )
    config = SandboxConfiguration(client_credentials_auth_credentials=credentials, timeout=5)
    return PaypalServersdkClient(config=config)


@pytest.fixture
def client(creds: PaypalCredentials, served: ServedApp) -> Iterator[PaypalServersdkClient]:
    made = sdk_client(served.base_url, creds.client_id, creds.client_secret)
    yield made
    made.config.http_client.session.close()  # the SDK keeps its session open otherwise


def create(client: PaypalServersdkClient, custom_id: str, value: str = "25.00") -> Any:
    unit = PurchaseUnitRequest(
        amount=AmountWithBreakdown(currency_code="USD", value=value),
        reference_id="default",
        custom_id=custom_id,
        invoice_id=custom_id,
    )
    request = OrderRequest(intent=CheckoutPaymentIntent.CAPTURE, purchase_units=[unit])
    return client.orders.create_order(
        {"body": request, "paypal_request_id": custom_id, "prefer": "return=representation"}
    )


def test_order_approve_capture_refund(
    client: PaypalServersdkClient, sandbox: PaypalSandbox
) -> None:
    created = create(client, "sdk-att-1")
    assert created.status_code == 201
    order = created.body
    assert order.status == "CREATED"
    approve = next(link.href for link in order.links if link.rel == "approve")
    assert approve.endswith(f"/checkoutnow?token={order.id}")

    again = create(client, "sdk-att-1")  # the same PayPal-Request-Id: the same order
    assert again.body.id == order.id
    assert len(sandbox.orders) == 1

    with pytest.raises(ErrorException) as early:
        client.orders.capture_order({"id": order.id, "paypal_request_id": "sdk-cap-0"})
    assert early.value.response_code == 422
    assert early.value.details[0].issue == "ORDER_NOT_APPROVED"

    sandbox.approve(order.id)
    captured = client.orders.capture_order(
        {"id": order.id, "paypal_request_id": "sdk-cap-1", "prefer": "return=representation"}
    )
    assert captured.body.status == "COMPLETED"
    capture = captured.body.purchase_units[0].payments.captures[0]
    breakdown = capture.seller_receivable_breakdown
    # 3.49% of 25.00 is 0.8725 -> 0.87, plus 0.49 fixed.
    assert (breakdown.gross_amount.value, breakdown.paypal_fee.value) == ("25.00", "1.36")
    assert breakdown.net_amount.value == "23.64"
    replay = client.orders.capture_order({"id": order.id, "paypal_request_id": "sdk-cap-1"})
    assert replay.body.id == order.id  # idempotent: no second capture
    assert len(sandbox.captures) == 1
    with pytest.raises(ErrorException) as twice:
        client.orders.capture_order({"id": order.id, "paypal_request_id": "sdk-cap-2"})
    assert twice.value.details[0].issue == "ORDER_ALREADY_CAPTURED"

    fetched = client.orders.get_order({"id": order.id}).body
    assert (fetched.status, fetched.purchase_units[0].custom_id) == ("COMPLETED", "sdk-att-1")

    partial = client.payments.refund_captured_payment(
        {
            "capture_id": capture.id,
            "paypal_request_id": "sdk-ref-1",
            "prefer": "return=representation",
            "body": RefundRequest(
                amount=SdkMoney(currency_code="USD", value="10.00"), invoice_id="sdk-ref-1"
            ),
        }
    ).body
    assert (partial.status, partial.amount.value) == ("COMPLETED", "10.00")
    # The percentage part comes back prorated: 0.87 * 10/25 = 0.348 -> 0.35.
    assert partial.seller_payable_breakdown.paypal_fee.value == "0.35"
    rest = client.payments.refund_captured_payment(
        {
            "capture_id": capture.id,
            "paypal_request_id": "sdk-ref-2",
            "prefer": "return=representation",
        }
    ).body
    assert rest.amount.value == "15.00"  # no amount: the remainder
    assert rest.seller_payable_breakdown.paypal_fee.value == "0.52"  # 0.87 - 0.35; 0.49 kept
    assert client.payments.get_refund({"refund_id": rest.id}).body.status == "COMPLETED"

    with pytest.raises(ErrorException) as exceeded:
        client.payments.refund_captured_payment(
            {
                "capture_id": capture.id,
                "paypal_request_id": "sdk-ref-3",
                "body": RefundRequest(amount=SdkMoney(currency_code="USD", value="0.01")),
            }
        )
    assert exceeded.value.response_code == 422
    assert exceeded.value.details[0].issue in ("REFUND_AMOUNT_EXCEEDED", "CAPTURE_FULLY_REFUNDED")


def test_refund_more_than_captured(client: PaypalServersdkClient, sandbox: PaypalSandbox) -> None:
    order = create(client, "sdk-att-2", "5.00").body
    sandbox.approve(order.id)
    captured = client.orders.capture_order({"id": order.id, "prefer": "return=representation"})
    capture_id = captured.body.purchase_units[0].payments.captures[0].id
    with pytest.raises(ErrorException) as exceeded:
        client.payments.refund_captured_payment(
            {
                "capture_id": capture_id,
                "body": RefundRequest(amount=SdkMoney(currency_code="USD", value="5.01")),
            }
        )
    assert exceeded.value.response_code == 422
    assert exceeded.value.name == "UNPROCESSABLE_ENTITY"
    assert exceeded.value.details[0].issue == "REFUND_AMOUNT_EXCEEDED"
    assert exceeded.value.debug_id


def test_wrong_secret_is_refused(
    creds: PaypalCredentials, served: ServedApp, request: pytest.FixtureRequest
) -> None:
    client = sdk_client(served.base_url, creds.client_id, "not-the-secret")
    request.addfinalizer(client.config.http_client.session.close)
    # The SDK swallows the token endpoint's 401 invalid_client and refuses to send the call.
    with pytest.raises(AuthValidationException):
        client.orders.get_order({"id": "ANY"})
    token = client.o_auth_authorization
    with pytest.raises(OAuthProviderException) as refused:
        token.request_token({"authorization": client.oauth_2.build_basic_auth_header()})
    assert (refused.value.response_code, refused.value.error) == (401, "invalid_client")
