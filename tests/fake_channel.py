"""A fake of our own ChannelPort for flow tests: scripted answers, no protocol. The real
channels are tested against their sandboxes over HTTP (tests/channels, tests/integration)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from clearhouse.gateway.channels.port import (
    Ack,
    BadNotification,
    ChannelResult,
    ChannelStatus,
    Notification,
    PayOrder,
    RefundOrder,
    RefundResult,
)
from clearhouse.money import Money

SECRET = "fake-channel-signature"


@dataclass
class FakeChannel:
    name: str = "wechatpay"
    orders: dict[str, PayOrder] = field(default_factory=dict)
    state: dict[str, ChannelStatus] = field(default_factory=dict)
    refunds: dict[str, RefundOrder] = field(default_factory=dict)
    refund_state: dict[str, ChannelStatus] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    # Scripted behaviour
    pay_times_out: bool = False  # the order is taken but the answer is lost
    refund_times_out: bool = False
    refund_refusal: str | None = None  # the channel's refusal code for refunds
    paid_at: datetime | None = None
    paid_amount_delta: int = 0

    def pay(self, order: PayOrder) -> ChannelResult:
        self.calls.append(f"pay {order.attempt_id}")
        self.orders[order.attempt_id] = order
        self.state.setdefault(order.attempt_id, ChannelStatus.PENDING)
        if self.pay_times_out:
            return ChannelResult(ChannelStatus.UNKNOWN, "timeout", error_code="TIMEOUT")
        return self._result(order.attempt_id, credential=f"weixin://pay/{order.attempt_id}")

    def query(self, attempt_id: str) -> ChannelResult:
        self.calls.append(f"query {attempt_id}")
        if attempt_id not in self.orders:
            return ChannelResult(
                ChannelStatus.FAILED, "no such order", error_code="ORDER_NOT_EXIST"
            )
        return self._result(attempt_id)

    def close(self, attempt_id: str) -> ChannelResult:
        self.calls.append(f"close {attempt_id}")
        if self.state.get(attempt_id) is ChannelStatus.PENDING:
            self.state[attempt_id] = ChannelStatus.CLOSED
        return self._result(attempt_id) if attempt_id in self.orders else self.query(attempt_id)

    def refund(self, order: RefundOrder) -> RefundResult:
        self.calls.append(f"refund {order.refund_no}")
        if self.refund_refusal:
            return RefundResult(ChannelStatus.FAILED, "refused", error_code=self.refund_refusal)
        self.refunds.setdefault(order.refund_no, order)
        self.refund_state.setdefault(order.refund_no, ChannelStatus.PENDING)
        if self.refund_times_out:
            return RefundResult(ChannelStatus.UNKNOWN, "timeout", error_code="TIMEOUT")
        return self._refund_result(order.refund_no)

    def query_refund(self, refund_no: str, attempt_id: str) -> RefundResult:
        self.calls.append(f"query_refund {refund_no}")
        if refund_no not in self.refunds:
            # As the real channels answer: a refusal with their "no such refund" code.
            return RefundResult(ChannelStatus.FAILED, "not found", error_code="NOT_FOUND")
        return self._refund_result(refund_no)

    # --- the payer and the channel's back office ---

    def payer_pays(self, attempt_id: str) -> None:
        self.state[attempt_id] = ChannelStatus.SUCCEEDED

    def settle_refund(self, refund_no: str) -> None:
        self.refund_state[refund_no] = ChannelStatus.SUCCEEDED

    def notification(self, attempt_id: str, *, signed: bool = True) -> tuple[dict[str, str], bytes]:
        body = json.dumps({"attempt_id": attempt_id, "status": self.state[attempt_id]}).encode()
        return {"x-fake-signature": SECRET if signed else "forged"}, body

    def refund_notification(self, refund_no: str) -> tuple[dict[str, str], bytes]:
        order = self.refunds[refund_no]
        body = json.dumps(
            {"attempt_id": order.attempt_id, "refund_no": refund_no, "status": "SUCCEEDED"}
        ).encode()
        return {"x-fake-signature": SECRET}, body

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        if headers.get("x-fake-signature") != SECRET:
            raise BadNotification("signature does not verify")
        data = json.loads(body)
        if "refund_no" in data:
            return Notification(
                data["attempt_id"],
                body.decode(),
                refund_no=data["refund_no"],
                refund=self._refund_result(data["refund_no"]),
            )
        return Notification(
            data["attempt_id"], body.decode(), payment=self._result(data["attempt_id"])
        )

    def close_client(self) -> None:
        self.calls.append("close_client")

    def ack(self, ok: bool) -> Ack:
        return Ack(200 if ok else 500, "" if ok else "FAIL", "text/plain")

    def _result(self, attempt_id: str, credential: str | None = None) -> ChannelResult:
        status = self.state[attempt_id]
        order = self.orders[attempt_id]
        paid = status is ChannelStatus.SUCCEEDED
        return ChannelResult(
            status,
            raw=json.dumps({"out_trade_no": attempt_id, "state": status.value}),
            channel_txn_id=f"42000{attempt_id[-10:]}" if paid else None,
            amount=Money(order.amount.amount + self.paid_amount_delta, order.amount.currency)
            if paid
            else None,
            paid_at=self.paid_at if paid else None,
            credential=credential,
        )

    def _refund_result(self, refund_no: str) -> RefundResult:
        status = self.refund_state[refund_no]
        return RefundResult(
            status,
            raw=json.dumps({"out_refund_no": refund_no, "status": status.value}),
            channel_refund_id=f"5030{refund_no[-10:]}",
            amount=self.refunds[refund_no].refund,
        )
