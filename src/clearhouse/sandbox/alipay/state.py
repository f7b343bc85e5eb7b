"""The simulated Alipay's state: trades, refunds, the per-day journal behind the bills, the payer,
and the asynchronous notifications (``trade_status_sync``) the real service sends.

Thread-safe: the HTTP app, the payer control route and the notifier thread share one instance.
Money is int fen (``Money``); yuan strings only exist in answers and notifications.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

import httpx

from clearhouse import fees
from clearhouse.clock import Clock
from clearhouse.errors import ClearhouseError
from clearhouse.fees import FeeSchedule
from clearhouse.gateway.channels.alipay.protocol import (
    BEIJING,
    CURRENCY,
    SIGN_TYPE,
    AlipayCredentials,
    format_amount,
    format_time,
    sign_notification,
)
from clearhouse.money import Money
from clearhouse.sandbox.faults import NO_FAULTS, Fault, FaultPlan, billed_amount
from clearhouse.sandbox.notifier import Notifier

# Alipay retries an unacknowledged notification 7 more times, at these intervals (about 25 h in
# all), as its asynchronous-notification guide states.
RETRY_SCHEDULE = (
    timedelta(minutes=4),
    timedelta(minutes=10),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=15),
)
# Alipay lets a merchant refund within the contracted window, 3 months unless extended; after it
# the trade turns TRADE_FINISHED and refuses refunds.
DEFAULT_REFUND_WINDOW = timedelta(days=90)
# How long a REORDERED_NOTIFICATION is held back: long enough for later events to overtake it.
REORDER_DELAY = timedelta(minutes=30)


def is_ack(response: httpx.Response) -> bool:
    """Alipay's acknowledgement rule: the body is exactly the seven characters ``success``."""
    return response.status_code == 200 and response.text == "success"


def alipay_notifier(clock: Clock, client: httpx.Client | None = None) -> Notifier:
    return Notifier(clock, RETRY_SCHEDULE, is_ack, client)


NO_ORDER = "SANDBOX_NO_ORDER"


class PayerError(ClearhouseError):
    """The simulated payer cannot pay this order (unknown, closed, expired, already paid)."""

    code = "SANDBOX_PAYER_ERROR"


@dataclass
class Trade:
    out_trade_no: str
    trade_no: str
    subject: str
    total: Money
    notify_url: str | None
    created_at: datetime
    expires_at: datetime | None
    # Real Alipay only knows a precreated trade once the buyer scans its code (or opens the
    # cashier); until then a query answers ACQ.TRADE_NOT_EXIST.
    scanned: bool = False
    status: str = "WAIT_BUYER_PAY"
    paid_at: datetime | None = None
    fee: Money | None = None
    refunded: Money = field(default_factory=lambda: Money.zero(CURRENCY))
    fee_returned: Money = field(default_factory=lambda: Money.zero(CURRENCY))
    buyer_logon_id: str = "buy***@sandbox.com"
    buyer_user_id: str = "2088102177846880"
    # A duplicate payment's other trades (trade_no -> refunded so far): each is refundable on
    # its own, up to the total, by its trade_no.
    extras: dict[str, Money] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refund:
    out_trade_no: str
    out_request_no: str
    amount: Money
    fee_returned: Money
    refunded_at: datetime
    reason: str
    trade_no: str = ""  # an extra (duplicate) trade's; empty: the order's own


@dataclass(frozen=True, slots=True)
class BillLine:
    """One line of the business-detail bill; amounts signed as the bill shows them."""

    kind: str  # "交易" (payment) or "退款" (refund)
    trade_no: str
    out_trade_no: str
    subject: str
    created_at: datetime
    completed_at: datetime
    buyer: str
    amount: Money  # negative for a refund
    fee: Money  # the service fee as the bill shows it: negative when charged, positive returned
    out_request_no: str = ""


def business_day(instant: datetime) -> date:
    return instant.astimezone(BEIJING).date()


class AlipayState:
    def __init__(
        self,
        credentials: AlipayCredentials,
        clock: Clock,
        faults: FaultPlan = NO_FAULTS,
        fee: FeeSchedule = fees.ALIPAY,
        notifier: Notifier | None = None,
        auto_pay: bool = False,
        refund_window: timedelta = DEFAULT_REFUND_WINDOW,
    ) -> None:
        self.credentials = credentials
        self.clock = clock
        self.faults = faults  # replaceable at run time (PUT /sandbox/faults)
        self.fee = fee
        self.notifier = notifier
        self.auto_pay = auto_pay
        self.refund_window = refund_window
        self.lock = threading.RLock()
        self.trades: dict[str, Trade] = {}
        self.refunds: dict[tuple[str, str], Refund] = {}
        self.journal: dict[date, list[BillLine]] = {}
        self._seq = itertools.count(1)

    # -- ids -----------------------------------------------------------------------------------

    def new_trade_no(self, at: datetime) -> str:
        # 28 digits like Alipay's: the Beijing date, a fixed middle, a sequence.
        return f"{business_day(at):%Y%m%d}22001{next(self._seq):015d}"

    # -- lifecycle -----------------------------------------------------------------------------

    def refresh(self, trade: Trade) -> None:
        """Apply what time does by itself: expiry of unpaid trades, end of the refund window."""
        now = self.clock.now()
        if trade.status == "WAIT_BUYER_PAY" and trade.expires_at and now >= trade.expires_at:
            trade.status = "TRADE_CLOSED"
        elif (
            trade.status == "TRADE_SUCCESS"
            and trade.paid_at is not None
            and now >= trade.paid_at + self.refund_window
        ):
            trade.status = "TRADE_FINISHED"

    def created(self, trade: Trade) -> None:
        """A new trade was accepted; with ``auto_pay`` the payer pays it at once."""
        self.trades[trade.out_trade_no] = trade
        if self.auto_pay:
            self.pay(trade.out_trade_no)

    def scan(self, out_trade_no: str) -> Trade:
        """The buyer scans the code (or opens the cashier): Alipay now knows the trade."""
        with self.lock:
            trade = self._payable(out_trade_no)
            trade.scanned = True
            return trade

    def pay(self, out_trade_no: str) -> Trade:
        """The buyer pays: TRADE_SUCCESS, the fee charged, the journal written, a notification
        queued; the faults for this order decide the fee, the payment time and the deliveries."""
        with self.lock:
            trade = self._payable(out_trade_no)
            now = booked = self.clock.now()
            if self.faults.hits(Fault.LATE_RESULT, out_trade_no):
                # Booked just after the Beijing midnight that ends the business day (the next
                # day's bill), while the notification gives the moment the payer paid.
                next_day = business_day(now) + timedelta(days=1)
                booked = datetime.combine(next_day, time(0, 0, 5), BEIJING)
            # The bill shows what the payer was charged: the order's total, but under
            # BILL_AMOUNT (the notification still says the total); the fee follows it.
            billed = trade.total
            if self.faults.hits(Fault.BILL_AMOUNT, out_trade_no):
                billed = Money(billed_amount(trade.total.amount), CURRENCY)
            fee = self.fee.fee(billed)
            if self.faults.hits(Fault.WRONG_FEE, out_trade_no):
                fee = fee + Money(1, CURRENCY)
            trade.scanned = True
            trade.status = "TRADE_SUCCESS"
            trade.paid_at = now
            trade.fee = fee
            self._record_payment(trade, trade.trade_no, booked, billed, fee)
            self._notify(trade, self._payment_fields(trade, trade.trade_no))
            if self.faults.hits(Fault.DUPLICATE_PAYMENT, out_trade_no):
                # The payer paid the order a second time: another trade for the same order.
                second = self.new_trade_no(now)
                trade.extras[second] = Money.zero(CURRENCY)
                self._record_payment(trade, second, booked, trade.total, fee)
                self._notify(trade, self._payment_fields(trade, second))
            return trade

    def _payable(self, out_trade_no: str) -> Trade:
        trade = self.trades.get(out_trade_no)
        if trade is None:
            raise PayerError(f"no order {out_trade_no}", code=NO_ORDER, out_trade_no=out_trade_no)
        self.refresh(trade)
        if trade.status != "WAIT_BUYER_PAY":
            raise PayerError(f"order {out_trade_no} is {trade.status}", out_trade_no=out_trade_no)
        return trade

    def _record_payment(
        self, trade: Trade, trade_no: str, at: datetime, amount: Money, fee: Money
    ) -> None:
        line = BillLine(
            kind="交易",
            trade_no=trade_no,
            out_trade_no=trade.out_trade_no,
            subject=trade.subject,
            created_at=trade.created_at,
            completed_at=at,
            buyer=trade.buyer_logon_id,
            amount=amount,
            fee=-fee,
        )
        self.journal.setdefault(business_day(at), []).append(line)

    def record_refund(
        self, trade: Trade, out_request_no: str, amount: Money, reason: str, extra: str = ""
    ) -> Refund:
        """A refund of the trade, or of its ``extra`` trade (a duplicate payment's), which
        leaves the trade itself as it is."""
        now = self.clock.now()
        before = trade.extras[extra] if extra else trade.refunded
        returned = self.fee.refunded_fee(
            trade.total, trade.fee or Money.zero(CURRENCY), before, amount
        )
        refund = Refund(trade.out_trade_no, out_request_no, amount, returned, now, reason, extra)
        self.refunds[(trade.out_trade_no, out_request_no)] = refund
        if extra:
            trade.extras[extra] = before + amount
        else:
            trade.refunded = trade.refunded + amount
            trade.fee_returned = trade.fee_returned + returned
        if trade.refunded == trade.total:
            trade.status = "TRADE_CLOSED"  # a fully refunded trade reads as closed
        line = BillLine(
            kind="退款",
            trade_no=extra or trade.trade_no,
            out_trade_no=trade.out_trade_no,
            subject=trade.subject,
            created_at=trade.created_at,
            completed_at=now,
            buyer=trade.buyer_logon_id,
            amount=-amount,
            fee=returned,
            out_request_no=out_request_no,
        )
        self.journal.setdefault(business_day(now), []).append(line)
        fields = self._payment_fields(trade, extra or trade.trade_no)
        fields.update(
            out_biz_no=out_request_no,
            refund_fee=format_amount(before + amount),  # cumulative, as Alipay sends it
            gmt_refund=now.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            trade_status=trade.status,
        )
        self._notify(trade, fields)
        return refund

    # -- notifications -------------------------------------------------------------------------

    def _payment_fields(self, trade: Trade, trade_no: str) -> dict[str, str]:
        amount = format_amount(trade.total)
        fields = {
            "notify_type": "trade_status_sync",
            "app_id": self.credentials.app_id,
            "auth_app_id": self.credentials.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "trade_no": trade_no,
            "out_trade_no": trade.out_trade_no,
            "seller_id": self.credentials.pid,
            "buyer_id": trade.buyer_user_id,
            "buyer_logon_id": trade.buyer_logon_id,
            "trade_status": trade.status,
            "total_amount": amount,
            "receipt_amount": amount,
            "invoice_amount": amount,
            "buyer_pay_amount": amount,
            "point_amount": "0.00",
            "subject": trade.subject,
            "gmt_create": format_time(trade.created_at),
            "fund_bill_list": f'[{{"amount":"{amount}","fundChannel":"ALIPAYACCOUNT"}}]',
        }
        if trade.paid_at is not None:
            fields["gmt_payment"] = format_time(trade.paid_at)
        return fields

    def _notify(self, trade: Trade, fields: dict[str, str]) -> None:
        if self.notifier is None or not trade.notify_url:
            return
        subject = trade.out_trade_no
        if self.faults.hits(Fault.LOST_NOTIFICATION, subject):
            return
        build = self._builder(fields)
        delay = (
            REORDER_DELAY
            if self.faults.hits(Fault.REORDERED_NOTIFICATION, subject)
            else timedelta(0)
        )
        copies = 2 if self.faults.hits(Fault.DUPLICATE_NOTIFICATION, subject) else 1
        for _ in range(copies):
            self.notifier.enqueue(trade.notify_url, build, subject, delay)

    def _builder(self, fields: dict[str, str]) -> Callable[[], tuple[bytes, dict[str, str]]]:
        key = self.credentials.require_alipay_private_key()

        def build() -> tuple[bytes, dict[str, str]]:
            # Each try is a new notification: new notify_time and notify_id, signed afresh.
            params = dict(fields)
            params["notify_time"] = format_time(self.clock.now())
            params["notify_id"] = secrets.token_hex(16)
            params["sign_type"] = SIGN_TYPE
            body = urlencode(sign_notification(params, key)).encode("ascii")
            headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
            return body, headers

        return build
