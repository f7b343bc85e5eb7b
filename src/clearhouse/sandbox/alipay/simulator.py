"""``AlipaySandbox``: the simulated Alipay as one object, for the HTTP app, tests and the CLI."""

from __future__ import annotations

from datetime import date, timedelta

from clearhouse import fees
from clearhouse.clock import Clock
from clearhouse.fees import FeeSchedule
from clearhouse.gateway.channels.alipay.protocol import AlipayCredentials
from clearhouse.sandbox.alipay.bills import bill_zip
from clearhouse.sandbox.alipay.methods import Answer, Gateway
from clearhouse.sandbox.alipay.state import DEFAULT_REFUND_WINDOW, AlipayState, Trade
from clearhouse.sandbox.faults import NO_FAULTS, FaultPlan
from clearhouse.sandbox.notifier import Notifier


class AlipaySandbox:
    def __init__(
        self,
        credentials: AlipayCredentials,
        clock: Clock,
        faults: FaultPlan = NO_FAULTS,
        fee: FeeSchedule = fees.ALIPAY,
        notifier: Notifier | None = None,
        auto_pay: bool = False,
        timeout_delay_s: float = 30,
        refund_window: timedelta = DEFAULT_REFUND_WINDOW,
    ) -> None:
        """``credentials`` must hold Alipay's private key (the sandbox signs as Alipay).
        ``notifier``: None sends no notifications (build one with ``alipay_notifier``).
        ``timeout_delay_s``: how late the answer comes under a TIMEOUT fault."""
        credentials.require_alipay_private_key()
        self.state = AlipayState(credentials, clock, faults, fee, notifier, auto_pay, refund_window)
        self.gateway = Gateway(self.state, timeout_delay_s)

    @property
    def credentials(self) -> AlipayCredentials:
        return self.state.credentials

    @property
    def faults(self) -> FaultPlan:
        return self.state.faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        with self.state.lock:
            self.state.faults = plan

    @property
    def notifier(self) -> Notifier | None:
        return self.state.notifier

    def handle(self, params: dict[str, str], base_url: str) -> Answer:
        """One gateway.do call; ``base_url`` is where this sandbox is reachable (for URLs)."""
        return self.gateway.handle(params, base_url)

    def scan(self, out_trade_no: str) -> Trade:
        return self.state.scan(out_trade_no)

    def pay(self, out_trade_no: str) -> Trade:
        """The payer pays the order now (raises ``PayerError`` if it cannot be paid)."""
        return self.state.pay(out_trade_no)

    def trade(self, out_trade_no: str) -> Trade | None:
        with self.state.lock:
            trade = self.state.trades.get(out_trade_no)
            if trade is not None:
                self.state.refresh(trade)
            return trade

    def bill(self, day: date) -> bytes:
        """The trade bill ZIP of one Beijing business day."""
        with self.state.lock:
            lines = list(self.state.journal.get(day, []))
        return bill_zip(self.credentials.pid, day, lines, self.state.clock.now())
