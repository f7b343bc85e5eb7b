"""The simulated WeChat Pay merchant account: orders, refunds, the payer, notifications and the
journal bills are cut from. No HTTP here: ``app`` parses and signs, this decides.

Methods take and return WeChat's JSON shapes (dicts) and raise ``ApiError`` with WeChat's HTTP
status and error code. Thread-safe: the served app and the notifier thread share one instance.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from clearhouse import fees
from clearhouse.clock import Clock
from clearhouse.gateway.channels.wechatpay import protocol
from clearhouse.gateway.channels.wechatpay.protocol import CHINA_TZ, WechatPayCredentials
from clearhouse.money import Money
from clearhouse.sandbox.faults import NO_FAULTS, Fault, FaultPlan, FirstTimeouts, billed_amount
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.wechatpay import bills

# WeChat's notification retry schedule: the waits after the first try.
RETRY_SCHEDULE = tuple(
    timedelta(seconds=s)
    for s in (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
)
REFUND_WINDOW = timedelta(days=365)  # WeChat refuses refunds of payments older than a year
DEFAULT_VALIDITY = timedelta(hours=2)  # an order without time_expire closes after two hours
REORDER_DELAY = timedelta(seconds=90)  # how long a "reordered" notification is held back
DOWNLOAD_VALIDITY = timedelta(minutes=5)
_OUT_NO = re.compile(r"[0-9A-Za-z_\-*|]{6,32}")
_OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-*|@]{1,64}")


def is_ack(response: httpx.Response) -> bool:
    """WeChat takes HTTP 200 or 204 (any 2xx here) as "received"; anything else is retried."""
    return 200 <= response.status_code < 300


def make_notifier(clock: Clock, client: httpx.Client | None = None) -> Notifier:
    return Notifier(clock, RETRY_SCHEDULE, is_ack, client)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class Order:
    out_trade_no: str
    trade_type: str  # NATIVE or JSAPI
    request: dict[str, Any]  # as received: a retry must repeat it exactly
    total: int
    notify_url: str
    description: str
    attach: str
    openid: str
    created_at: datetime
    expires_at: datetime
    credential: dict[str, str]  # {"code_url": ...} or {"prepay_id": ...}
    trade_state: str = "NOTPAY"
    transaction_id: str = ""
    success_time: datetime | None = None
    fee: int = 0
    billed: int = 0  # what the payer was charged: the total, but under BILL_AMOUNT
    refunded: int = 0  # requested so far (processing or done): bounds new refunds
    fee_returned_base: int = 0  # settled refunds so far, for the pro-rata fee share
    extra_transactions: list[str] = field(default_factory=list)  # a duplicate payment's ids
    # Requested so far per extra transaction: each is refundable on its own, up to the total.
    extra_refunded: dict[str, int] = field(default_factory=dict)


@dataclass
class Refund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    request: dict[str, Any]
    amount: int
    total: int
    reason: str
    notify_url: str
    created_at: datetime
    status: str = "PROCESSING"
    success_time: datetime | None = None
    fee_returned: int = 0
    transaction_id: str = ""  # an extra (duplicate) transaction's id; empty: the order's


class WechatPaySandbox:
    def __init__(
        self,
        credentials: WechatPayCredentials,
        clock: Clock,
        faults: FaultPlan = NO_FAULTS,
        fee: fees.FeeSchedule = fees.WECHATPAY,
        notifier: Notifier | None = None,
        auto_pay: bool = False,
        timeout_delay_s: float = 15.0,
        instant_refunds: bool = True,
    ) -> None:
        """``instant_refunds``: a refund succeeds right after it is accepted (its answer still
        says PROCESSING, as WeChat's does); otherwise it waits for ``settle_refunds()``."""
        credentials.require_platform_key()
        self.credentials = credentials
        self.clock = clock
        self.faults = faults
        self.fee = fee
        self.notifier = notifier
        self.auto_pay = auto_pay
        self.timeout_delay_s = timeout_delay_s
        self.instant_refunds = instant_refunds
        self.orders: dict[str, Order] = {}
        self.refunds: dict[str, Refund] = {}
        self.journal: list[bills.Entry] = []
        self._by_transaction: dict[str, str] = {}
        self._downloads: dict[str, tuple[bytes, datetime]] = {}
        self._timeouts = FirstTimeouts()
        self._seq = itertools.count(1)
        self._lock = threading.RLock()

    # --- payments ------------------------------------------------------------------------------

    def create_transaction(self, trade_type: str, body: Mapping[str, Any]) -> dict[str, str]:
        with self._lock:
            order = self._validate_order(trade_type, body)
            existing = self.orders.get(order.out_trade_no)
            if existing is not None:
                self._refresh(existing)
                if existing.trade_state in ("SUCCESS", "REFUND"):
                    raise ApiError(400, "ORDERPAID", "该订单已支付")
                if existing.trade_state == "CLOSED" or existing.request != order.request:
                    raise ApiError(400, "INVALID_REQUEST", "201 商户订单号重复")
                return dict(existing.credential)  # the same request again: the same prepay
            self.orders[order.out_trade_no] = order
            answer = dict(order.credential)
            if self.auto_pay:
                self.pay(order.out_trade_no)
            return answer

    def _validate_order(self, trade_type: str, body: Mapping[str, Any]) -> Order:
        creds, now = self.credentials, self.clock.now()
        if body.get("mchid") != creds.mchid:
            raise ApiError(400, "MCH_NOT_EXISTS", "商户号不存在")
        if body.get("appid") != creds.appid:
            raise ApiError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        out_trade_no = _text(body, "out_trade_no", _OUT_NO)
        description = _text(body, "description", max_len=127)
        notify_url = _url(body.get("notify_url"), required=True)
        total, _currency = _amount(body.get("amount"), "total")
        openid = ""
        if trade_type == "JSAPI":
            payer = body.get("payer")
            openid = payer.get("openid", "") if isinstance(payer, dict) else ""
            if not isinstance(openid, str) or not openid:
                raise ApiError(400, "PARAM_ERROR", "缺少参数 payer.openid")
        expires_at = now + DEFAULT_VALIDITY
        if "time_expire" in body:
            try:
                expires_at = protocol.parse_time(str(body["time_expire"]))
            except ValueError:
                raise ApiError(400, "PARAM_ERROR", "time_expire 格式错误") from None
            if expires_at <= now:
                raise ApiError(400, "PARAM_ERROR", "time_expire 已过期")
        attach = body.get("attach", "")
        token = secrets.token_urlsafe(9)
        credential = (
            {"code_url": f"weixin://wxpay/bizpayurl?pr={token}"}
            if trade_type == "NATIVE"
            else {"prepay_id": f"wx{now.astimezone(CHINA_TZ):%d%H%M%S}{secrets.token_hex(12)}"}
        )
        return Order(
            out_trade_no=out_trade_no,
            trade_type=trade_type,
            request=dict(body),
            total=total,
            notify_url=notify_url,
            description=description,
            attach=attach if isinstance(attach, str) else "",
            openid=openid,
            created_at=now,
            expires_at=expires_at,
            credential=credential,
        )

    def query(self, out_trade_no: str, mchid: str | None) -> dict[str, Any]:
        with self._lock:
            if mchid != self.credentials.mchid:
                raise ApiError(400, "PARAM_ERROR", "mchid 与请求方不一致")
            return self._transaction_view(self._order(out_trade_no))

    def query_by_transaction_id(self, transaction_id: str, mchid: str | None) -> dict[str, Any]:
        with self._lock:
            out_trade_no = self._by_transaction.get(transaction_id)
            if out_trade_no is None:
                raise ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
            return self.query(out_trade_no, mchid)

    def close(self, out_trade_no: str, body: Mapping[str, Any]) -> None:
        with self._lock:
            if body.get("mchid") != self.credentials.mchid:
                raise ApiError(400, "PARAM_ERROR", "mchid 与请求方不一致")
            order = self._order(out_trade_no)
            if order.trade_state in ("SUCCESS", "REFUND"):
                raise ApiError(400, "ORDERPAID", "订单已支付")
            order.trade_state = "CLOSED"  # closing a closed order is accepted again

    def pay(self, out_trade_no: str, openid: str | None = None) -> dict[str, Any]:
        """The payer scans and pays: the order succeeds, its fee is charged and its
        TRANSACTION.SUCCESS notification is queued (faults permitting)."""
        with self._lock:
            order = self._order(out_trade_no)
            if order.trade_state in ("SUCCESS", "REFUND"):
                raise ApiError(400, "ORDERPAID", "订单已支付")
            if order.trade_state != "NOTPAY":
                raise ApiError(400, "ORDER_CLOSED", "订单已关闭")
            now, faults = self.clock.now(), self.faults
            order.openid = order.openid or openid or f"o{secrets.token_urlsafe(20)}"
            order.trade_state = "SUCCESS"
            order.transaction_id = self._new_transaction_id(now)
            order.success_time = booked = now
            if faults.hits(Fault.LATE_RESULT, out_trade_no):
                # Booked just after the day's cut-off, in the next Shanghai business day's bill,
                # while the notification and the query give the moment the payer paid.
                local = now.astimezone(CHINA_TZ)
                midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time())
                booked = midnight.replace(tzinfo=CHINA_TZ) + timedelta(seconds=5)
            # What the bill shows may differ from what the notification and the query say: the
            # payer was charged another amount (the fee follows it), or the payment was revoked.
            order.billed = order.total
            if faults.hits(Fault.BILL_AMOUNT, out_trade_no):
                order.billed = billed_amount(order.total)
            order.fee = self.fee.fee(Money(order.billed, "CNY")).amount
            if faults.hits(Fault.WRONG_FEE, out_trade_no):
                order.fee += 1
            state = "REVOKED" if faults.hits(Fault.BILL_STATUS, out_trade_no) else "SUCCESS"
            self._by_transaction[order.transaction_id] = out_trade_no
            self._journal_payment(order, order.transaction_id, booked, state)
            if faults.hits(Fault.DUPLICATE_PAYMENT, out_trade_no):
                second = self._new_transaction_id(now)
                order.extra_transactions.append(second)
                self._by_transaction[second] = out_trade_no
                self._journal_payment(order, second, booked + timedelta(seconds=3), "SUCCESS")
            view = self._transaction_view(order)
            self._notify(
                order.notify_url,
                out_trade_no,
                "TRANSACTION.SUCCESS",
                "支付成功",
                "transaction",
                view,
            )
            return view

    def _journal_payment(
        self, order: Order, transaction_id: str, at: datetime, trade_state: str
    ) -> None:
        self.journal.append(
            bills.Entry(
                kind="PAYMENT",
                trade_state=trade_state,
                at=at,
                appid=self.credentials.appid,
                mchid=self.credentials.mchid,
                transaction_id=transaction_id,
                out_trade_no=order.out_trade_no,
                openid=order.openid,
                trade_type=order.trade_type,
                description=order.description,
                attach=order.attach,
                amount=order.billed,
                fee=order.fee,
            )
        )

    def _transaction_view(self, order: Order) -> dict[str, Any]:
        self._refresh(order)
        creds = self.credentials
        view: dict[str, Any] = {
            "appid": creds.appid,
            "mchid": creds.mchid,
            "out_trade_no": order.out_trade_no,
            "trade_type": order.trade_type,
            "trade_state": order.trade_state,
            "trade_state_desc": _STATE_DESC[order.trade_state],
            "attach": order.attach,
            "amount": {"total": order.total, "currency": "CNY", "payer_currency": "CNY"},
        }
        if order.success_time is not None:
            view["transaction_id"] = order.transaction_id
            view["bank_type"] = "OTHERS"
            view["success_time"] = protocol.format_time(order.success_time)
            view["payer"] = {"openid": order.openid}
            view["amount"]["payer_total"] = order.total
        return view

    def _refresh(self, order: Order) -> None:
        if order.trade_state == "NOTPAY" and self.clock.now() >= order.expires_at:
            order.trade_state = "CLOSED"

    def _order(self, out_trade_no: str) -> Order:
        order = self.orders.get(out_trade_no)
        if order is None:
            raise ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
        self._refresh(order)
        return order

    def _new_transaction_id(self, now: datetime) -> str:
        digits = "".join(secrets.choice("0123456789") for _ in range(10))
        return f"4200{next(self._seq):06d}{now.astimezone(CHINA_TZ):%Y%m%d}{digits}"

    # --- refunds -------------------------------------------------------------------------------

    def create_refund(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            out_refund_no = _text(body, "out_refund_no", _OUT_REFUND_NO)
            existing = self.refunds.get(out_refund_no)
            if existing is not None:
                if existing.request != dict(body):
                    raise ApiError(400, "INVALID_REQUEST", "商户退款单号已存在, 且参数不一致")
                return self._refund_view(existing)  # a retry: the same refund
            order = self._refund_target(body)
            extra = body.get("transaction_id")
            extra = extra if extra in order.extra_transactions else ""
            refund_amount, _ = _amount(body.get("amount"), "refund")
            total, _ = _amount(body.get("amount"), "total")
            reason = body.get("reason", "")
            if not isinstance(reason, str) or len(reason) > 80:
                raise ApiError(400, "PARAM_ERROR", "reason 格式错误")
            notify_url = _url(body.get("notify_url"), required=False)
            now = self.clock.now()
            if order.success_time is None or order.trade_state not in ("SUCCESS", "REFUND"):
                raise ApiError(400, "INVALID_REQUEST", "订单未支付, 不能退款")
            # A second payment of the order was charged what the bill shows for it.
            if total != (order.billed if extra else order.total):
                raise ApiError(400, "INVALID_REQUEST", "订单金额与原订单不一致")
            if now - order.success_time > REFUND_WINDOW:
                raise ApiError(400, "INVALID_REQUEST", "订单已超过退款期限")
            refunded = order.extra_refunded.get(extra, 0) if extra else order.refunded
            if refund_amount > order.total - refunded:
                raise ApiError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
            refund = Refund(
                out_refund_no=out_refund_no,
                refund_id=self._new_refund_id(now),
                out_trade_no=order.out_trade_no,
                request=dict(body),
                amount=refund_amount,
                total=total,
                reason=reason,
                notify_url=notify_url,
                created_at=now,
                transaction_id=extra,
            )
            self.refunds[out_refund_no] = refund
            if extra:  # the duplicate's money goes back; the order itself is untouched
                order.extra_refunded[extra] = refunded + refund_amount
            else:
                order.refunded += refund_amount
                order.trade_state = "REFUND"
            answer = self._refund_view(refund)
            if self.instant_refunds:
                self._settle(refund)
            return answer

    def _refund_target(self, body: Mapping[str, Any]) -> Order:
        out_trade_no = body.get("out_trade_no")
        transaction_id = body.get("transaction_id")
        if isinstance(transaction_id, str) and transaction_id:
            out_trade_no = self._by_transaction.get(transaction_id)
        elif not isinstance(out_trade_no, str) or not out_trade_no:
            raise ApiError(400, "PARAM_ERROR", "缺少参数 out_trade_no 或 transaction_id")
        order = self.orders.get(out_trade_no) if isinstance(out_trade_no, str) else None
        if order is None:
            raise ApiError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        return order

    def query_refund(self, out_refund_no: str) -> dict[str, Any]:
        with self._lock:
            refund = self.refunds.get(out_refund_no)
            if refund is None:
                raise ApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            return self._refund_view(refund)

    def settle_refunds(self) -> int:
        """Complete every refund still PROCESSING; return how many."""
        with self._lock:
            pending = [r for r in self.refunds.values() if r.status == "PROCESSING"]
            for refund in pending:
                self._settle(refund)
            return len(pending)

    def _settle(self, refund: Refund) -> None:
        order = self.orders[refund.out_trade_no]
        now = self.clock.now()
        paid = Money(order.total, "CNY")
        base = order.fee_returned_base
        if refund.transaction_id:  # an extra transaction's own settled refunds
            base = sum(
                r.amount
                for r in self.refunds.values()
                if r.transaction_id == refund.transaction_id and r.status == "SUCCESS"
            )
        returned = self.fee.refunded_fee(
            paid, Money(order.fee, "CNY"), Money(base, "CNY"), Money(refund.amount, "CNY")
        )
        if not refund.transaction_id:
            order.fee_returned_base += refund.amount
        refund.status, refund.success_time, refund.fee_returned = "SUCCESS", now, returned.amount
        self.journal.append(
            bills.Entry(
                kind="REFUND",
                at=now,
                appid=self.credentials.appid,
                mchid=self.credentials.mchid,
                transaction_id=refund.transaction_id or order.transaction_id,
                out_trade_no=order.out_trade_no,
                openid=order.openid,
                trade_type=order.trade_type,
                description=order.description,
                attach=order.attach,
                amount=refund.amount,
                fee=-returned.amount,
                refund_id=refund.refund_id,
                out_refund_no=refund.out_refund_no,
            )
        )
        if refund.notify_url:
            resource = {
                "mchid": self.credentials.mchid,
                "out_trade_no": order.out_trade_no,
                "transaction_id": refund.transaction_id or order.transaction_id,
                "out_refund_no": refund.out_refund_no,
                "refund_id": refund.refund_id,
                "refund_status": "SUCCESS",
                "success_time": protocol.format_time(now),
                "user_received_account": "支付用户零钱",
                "amount": {
                    "total": order.total,
                    "refund": refund.amount,
                    "payer_total": order.total,
                    "payer_refund": refund.amount,
                },
            }
            self._notify(
                refund.notify_url,
                refund.out_refund_no,
                "REFUND.SUCCESS",
                "退款成功",
                "refund",
                resource,
            )

    def _refund_view(self, refund: Refund) -> dict[str, Any]:
        order = self.orders[refund.out_trade_no]
        view: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": refund.transaction_id or order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": protocol.format_time(refund.created_at),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": refund.total,
                "refund": refund.amount,
                "payer_total": refund.total,
                "payer_refund": refund.amount,
                "settlement_total": refund.total,
                "settlement_refund": refund.amount,
                "discount_refund": 0,
                "currency": "CNY",
                "refund_fee": refund.fee_returned,
            },
        }
        if refund.success_time is not None:
            view["success_time"] = protocol.format_time(refund.success_time)
        return view

    def _new_refund_id(self, now: datetime) -> str:
        digits = "".join(secrets.choice("0123456789") for _ in range(13))
        return f"50{next(self._seq):06d}{now.astimezone(CHINA_TZ):%Y%m%d}{digits}"

    # --- notifications -------------------------------------------------------------------------

    def notification(
        self, event_type: str, summary: str, original_type: str, resource: Mapping[str, Any]
    ) -> Callable[[], tuple[bytes, dict[str, str]]]:
        """A builder of one notification: each call signs it afresh (new timestamp and nonce),
        keeping its id, as WeChat's retries do."""
        notification_id = f"EV-{secrets.token_hex(16)}"

        def build() -> tuple[bytes, dict[str, str]]:
            now = self.clock.now()
            body = protocol.notification_body(
                self.credentials, event_type, summary, resource, original_type, notification_id, now
            )
            headers = protocol.signed_headers(self.credentials, body, now)
            headers["Content-Type"] = "application/json"
            return body, headers

        return build

    def payment_notification(self, out_trade_no: str) -> tuple[bytes, dict[str, str]]:
        """The TRANSACTION.SUCCESS notification of a paid order, built now (for tests and tools)."""
        with self._lock:
            view = self._transaction_view(self._order(out_trade_no))
        return self.notification("TRANSACTION.SUCCESS", "支付成功", "transaction", view)()

    def _notify(
        self,
        url: str,
        subject: str,
        event_type: str,
        summary: str,
        original_type: str,
        resource: Mapping[str, Any],
    ) -> None:
        if self.notifier is None or self.faults.hits(Fault.LOST_NOTIFICATION, subject):
            return
        build = self.notification(event_type, summary, original_type, dict(resource))
        delay = REORDER_DELAY if self.faults.hits(Fault.REORDERED_NOTIFICATION, subject) else None
        copies = 2 if self.faults.hits(Fault.DUPLICATE_NOTIFICATION, subject) else 1
        for _ in range(copies):
            self.notifier.enqueue(url, build, subject, delay or timedelta(0))

    # --- faults, bills -------------------------------------------------------------------------

    def take_timeout(self, operation: str, subject: str) -> bool:
        """Whether this answer must come too late (``FirstTimeouts``)."""
        return self._timeouts.take(self.faults, operation, subject)

    def bill(self, kind: str, day: date, bill_type: str) -> bytes:
        with self._lock:
            entries = list(self.journal)
        if not any(e.business_day() == day for e in entries):
            raise ApiError(400, "NO_STATEMENT_EXIST", "账单不存在")
        if kind == "tradebill":
            return bills.trade_bill(entries, day, bill_type, self.fee.rate)
        return bills.fundflow_bill(entries, day)

    def register_download(self, data: bytes) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._downloads[token] = (data, self.clock.now() + DOWNLOAD_VALIDITY)
        return token

    def download(self, token: str) -> bytes:
        with self._lock:
            found = self._downloads.get(token)
        if found is None or self.clock.now() > found[1]:
            raise ApiError(400, "INVALID_REQUEST", "下载地址已失效")
        return found[0]


_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "CLOSED": "订单已关闭",
}


def _text(
    body: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None, max_len: int = 0
) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, "PARAM_ERROR", f"缺少参数 {name}")
    if (pattern is not None and not pattern.fullmatch(value)) or (max_len and len(value) > max_len):
        raise ApiError(400, "PARAM_ERROR", f"{name} 格式错误")
    return value


def _url(value: object, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ApiError(400, "PARAM_ERROR", "notify_url 格式错误")
    return value


def _amount(value: object, name: str) -> tuple[int, str]:
    """An integer number of fen, positive, in CNY (the only currency of domestic WeChat Pay)."""
    if not isinstance(value, dict):
        raise ApiError(400, "PARAM_ERROR", "缺少参数 amount")
    fen, currency = value.get(name), value.get("currency", "CNY")
    if not isinstance(fen, int) or isinstance(fen, bool) or fen <= 0:
        raise ApiError(400, "PARAM_ERROR", f"amount.{name} 必须为正整数 (分)")
    if currency != "CNY":
        raise ApiError(400, "PARAM_ERROR", "amount.currency 仅支持 CNY")
    return fen, currency
