"""The days after the simulated day: the channels publish their bills, Clearhouse pulls them
through each channel's bill API and reconciles (the T+1 run), then does it again a day later,
when the payments that completed after the first day's cut-off show up.

The Chinese channels cut their bills on Beijing days; Stripe and PayPal on days of the account's
reporting zone, in which the Beijing day of the story spans two dates, so both are
reconciled. The clock moves past every bill's expected time before anything is pulled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from clearhouse.bootstrap import App
from clearhouse.clock import FixedClock
from clearhouse.gateway.transaction_refunds import TransactionRefunds
from clearhouse.reconciliation.daily import DayRun, Recon, run_day
from clearhouse.reconciliation.ours import day_window
from clearhouse.reconciliation.pull import Puller
from clearhouse.simulation.gateway_day import SHANGHAI, DayStack

RUN_BY = "t+1-run"


@dataclass
class ReconDays:
    runs: list[DayRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [run.to_dict() for run in self.runs]}


def channel_days(puller: Puller, channel: str, day: date) -> list[date]:
    """The channel's business dates that overlap the Beijing ``day``."""
    start, end = day_window("wechatpay", day)
    zone = ZoneInfo(puller.schedule(channel).zone)
    first = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def reconcile_days(
    app: App, clock: FixedClock, stack: DayStack, day: date, root: Path, *, days: int = 2
) -> ReconDays:
    """Pull and reconcile the Beijing ``day`` and the ``days - 1`` after it, each channel on
    its own business dates, the way a T+1 job would have run each morning. A channel's date
    already reconciled (a reporting-zone date spanning two Beijing days) is not run twice."""
    gateway = stack.gateway
    refunds = TransactionRefunds(gateway.payments.channels)
    recon = Recon.of(app, payments=gateway.payments, refunds=refunds, root=root)
    puller = Puller.from_document(recon.store, stack.document, clock, sleep=lambda _s: None)
    out = ReconDays()
    done: set[tuple[str, date]] = set()

    def dates(channel: str, beijing: date) -> list[date]:
        todo = [d for d in channel_days(puller, channel, beijing) if (channel, d) not in done]
        done.update((channel, d) for d in todo)
        return todo

    try:
        # Past every bill's expected time (the reporting zone's noon of the next day is the
        # latest), so nothing is pulled before it is due.
        clock.set(datetime.combine(day + timedelta(days=days + 1), time(6), tzinfo=SHANGHAI))
        for n in range(days):
            beijing = day + timedelta(days=n)
            run = run_day(
                recon,
                beijing,
                by=RUN_BY,
                puller=puller,
                dates=partial(dates, beijing=beijing),
            )
            out.runs.append(run)
    finally:
        puller.close()
    return out
