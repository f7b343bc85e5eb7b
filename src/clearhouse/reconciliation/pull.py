"""Scheduled statement pulls (R1): each channel's bill API, as the channel (or its sandbox)
serves it, into the statement store.

Per channel and business day, each document the channel issues (WeChat Pay: the trade bill and
the fund-flow bill; Alipay: the trade bill ZIP; Stripe: the itemized balance change report of
the balance transactions created that day in the reporting zone; PayPal: the STL settlement
report; each quick pay acquirer: its daily file; the bank: the day's camt.053 or MT940) is:

- not asked for while the business day is still running (a bill of a running day is partial);
- not asked for again once held, unless ``refresh`` (a channel re-issuing a corrected file);
- fetched with bounded retries and exponential backoff on what may pass (no answer, timeouts,
  5xx, throttling, a download whose hash does not match), through the adapters' own signing;
- when the channel says it does not exist (yet): ``NOT_READY`` before the channel's expected
  time, ``MISSING`` after it, an alert logged at WARNING with the stable code below;
- parsed whole and stored (``intake``): a file that does not parse is ``FAILED`` with its
  ``StatementError`` code and nothing stored; the same bytes again change nothing.

Expected times are each channel's publication promise plus a margin, in the channel's business
zone: WeChat Pay 10:00, Alipay and quick pay 09:00 Beijing time on the next day; Stripe and
PayPal noon of the next day in the reporting zone; the bank 09:00 on the next day in its zone.
"""

from __future__ import annotations

import logging
import re
import time as _time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Protocol
from zoneinfo import ZoneInfo

import httpx

from clearhouse.clock import Clock
from clearhouse.errors import ClearhouseError, ConfigurationError
from clearhouse.gateway.channels.alipay.adapter import AlipayAdapter
from clearhouse.gateway.channels.alipay.adapter import BillUnavailable as AlipayUnavailable
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.channels.paypal.adapter import PaypalAdapter
from clearhouse.gateway.channels.paypal.adapter import ReportUnavailable as PaypalUnavailable
from clearhouse.gateway.channels.quickpay.adapter import FileUnavailable as QuickpayUnavailable
from clearhouse.gateway.channels.quickpay.adapter import QuickpayAdapter
from clearhouse.gateway.channels.stripe.adapter import ReportUnavailable as StripeUnavailable
from clearhouse.gateway.channels.stripe.adapter import StripeAdapter
from clearhouse.gateway.channels.wechatpay.adapter import BillUnavailable as WechatUnavailable
from clearhouse.gateway.channels.wechatpay.adapter import WechatPayAdapter
from clearhouse.reconciliation import formats, intake
from clearhouse.reconciliation.ours import BEIJING, business_zone, day_window
from clearhouse.reconciliation.statements import stripe as stripe_statement
from clearhouse.reconciliation.statements.errors import StatementError
from clearhouse.reconciliation.store import Imported, StatementStore
from clearhouse.wallet.bankwire.adapter import (
    BankAdapter,
    StatementUnavailable,
    bank_from_document,
)

log = logging.getLogger(__name__)

MISSING_CODE = "RECON_STATEMENT_MISSING"  # not there after its expected time
FAILED_CODE = "RECON_PULL_FAILED"  # could not be fetched or parsed after its expected time
BANK_ZONE = BEIJING  # the payout bank's own day (its statements are cut on it)

# Reasons an adapter gives that may pass on a later try.
_TRANSIENT = frozenset(
    {
        "TIMEOUT",
        "NETWORK",
        "BAD_RESPONSE",
        "BAD_HASH",
        "SYSTEM_ERROR",
        "SYSTEM_BUSY",  # quick pay's respCode 06: try again
        "FREQUENCY_LIMITED",
        "rate_limit",
        "20000",
        "ACQ.SYSTEM_ERROR",
        "isp.unknow-error",
    }
)
_HTTP_TRANSIENT = re.compile(r"HTTP[_ ](5\d\d|429)")


class PullStatus(StrEnum):
    STORED = "stored"  # fetched and imported
    ALREADY = "already"  # held before: nothing changed
    NOT_READY = "not_ready"  # not there yet, before its expected time
    MISSING = "missing"  # not there after its expected time: an alert
    FAILED = "failed"  # no usable answer after the retries, a refusal, or a file that is refused


# Worst first: what a channel's day is reported as.
_SEVERITY = (
    PullStatus.FAILED,
    PullStatus.MISSING,
    PullStatus.NOT_READY,
    PullStatus.STORED,
    PullStatus.ALREADY,
)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a channel's files of a business day are there: the day is over in ``zone``, and they
    should be by ``expected_at`` on the next day there."""

    zone: str
    expected_at: time

    def day_over(self, day: date) -> datetime:
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZoneInfo(self.zone))

    def expected_by(self, day: date) -> datetime:
        return datetime.combine(day + timedelta(days=1), self.expected_at, ZoneInfo(self.zone))


def default_schedule(channel: str, zone: str | None = None) -> Schedule:
    if channel == formats.BANK:
        return Schedule(zone or BANK_ZONE, time(9))
    if channel in formats.QUICKPAY_FILES:
        return Schedule(business_zone(channel, zone), time(9))
    expected = {"wechatpay": time(10), "alipay": time(9)}.get(channel, time(12))
    return Schedule(business_zone(channel, zone), expected)


@dataclass(frozen=True, slots=True)
class Retry:
    """Bounded exponential backoff: ``attempts`` tries, waiting ``first_delay`` seconds after
    the first, times ``factor`` after each next, at most ``max_delay``."""

    attempts: int = 5
    first_delay: float = 2.0
    factor: float = 2.0
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_delay < 0 or self.factor < 1:
            raise ConfigurationError("retry: attempts >= 1, first_delay >= 0, factor >= 1")

    def delays(self) -> Iterator[float]:
        """The waits between tries (one fewer than the tries)."""
        delay = self.first_delay
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay)
            delay *= self.factor


# --- what a channel's fetcher answers ---------------------------------------------------------


class NotThere(Exception):
    """The channel says the file does not exist (yet)."""


class Unavailable(Exception):
    """No file this time; ``transient`` says whether another try may get it."""

    def __init__(self, reason: str, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.reason, self.message, self.transient = reason, message, transient


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    file: str  # the name it is registered under
    account: str | None = None  # given to the parser where the file does not state it


class Fetcher(Protocol):
    """One channel's bill API: the formats it issues per day, and one fetch of one of them."""

    source: str
    documents: tuple[str, ...]

    def fetch(self, fmt: str, day: date) -> Fetched: ...

    def close(self) -> None: ...


def _unavailable(exc: ClearhouseError, not_there: frozenset[str]) -> Exception:
    reason = str(exc.details.get("reason") or exc.code)
    if reason in not_there:
        return NotThere(reason)
    return Unavailable(reason, exc.message, transient=_is_transient(reason))


def _is_transient(reason: str) -> bool:
    if reason in _TRANSIENT or _HTTP_TRANSIENT.fullmatch(reason):
        return True
    # Alipay's download names the httpx exception it met.
    found = getattr(httpx, reason, None)
    return isinstance(found, type) and issubclass(found, httpx.TransportError)


class WechatPayFetcher:
    source = "wechatpay"
    documents: tuple[str, ...] = (formats.WECHATPAY_TRADE, formats.WECHATPAY_FUNDFLOW)
    _KINDS: ClassVar[dict[str, str]] = {
        formats.WECHATPAY_TRADE: "tradebill",
        formats.WECHATPAY_FUNDFLOW: "fundflowbill",
    }
    # NO_STATEMENT_EXIST: no bill of that day (yet); STATEMENT_CREATING: being generated.
    _NOT_THERE = frozenset({"NO_STATEMENT_EXIST", "STATEMENT_CREATING"})

    def __init__(self, adapter: WechatPayAdapter, mchid: str) -> None:
        self._adapter, self._mchid = adapter, mchid

    def fetch(self, fmt: str, day: date) -> Fetched:
        kind = self._KINDS[fmt]
        try:
            data = self._adapter.download_bill(kind, day)
        except WechatUnavailable as exc:
            raise _unavailable(exc, self._NOT_THERE) from None
        # The trade bill names its merchant in every row (the sub-merchant's, for a service
        # provider); the fund-flow bill names none: it is the configured merchant's.
        account = self._mchid if fmt == formats.WECHATPAY_FUNDFLOW else None
        return Fetched(data, f"wechatpay-{kind}-{self._mchid}-{day:%Y%m%d}.csv", account)

    def close(self) -> None:
        self._adapter.close_client()


class AlipayFetcher:
    source = "alipay"
    documents: tuple[str, ...] = (formats.ALIPAY,)
    _NOT_THERE = frozenset({"isp.bill_not_exist"})

    def __init__(self, adapter: AlipayAdapter, pid: str) -> None:
        self._adapter, self._pid = adapter, pid

    def fetch(self, fmt: str, day: date) -> Fetched:
        try:
            data = self._adapter.download_bill(day)
        except AlipayUnavailable as exc:
            raise _unavailable(exc, self._NOT_THERE) from None
        return Fetched(data, f"{self._pid}_{day:%Y%m%d}.csv.zip")

    def close(self) -> None:
        self._adapter.close_client()


class StripeFetcher:
    """Runs the itemized balance change report over the business day (in the reporting zone),
    asking for the columns that link a line to our records, and polls the run until it has
    succeeded; a run still pending after ``polls`` is not there. (The payout reconciliation
    report lists the payouts *arriving* on a day, not the day's payments: not the batch's.)"""

    source = "stripe"
    documents: tuple[str, ...] = (formats.STRIPE,)
    _NOT_THERE = frozenset({"NOT_READY", "data_not_available"})

    def __init__(
        self,
        adapter: StripeAdapter,
        account: str,
        zone: str,
        *,
        polls: int = 10,
        poll_delay: float = 3.0,
        sleep: Callable[[float], None] = _time.sleep,
    ) -> None:
        self._adapter, self._account, self._zone = adapter, account, zone
        self._polls, self._poll_delay, self._sleep = polls, poll_delay, sleep

    def fetch(self, fmt: str, day: date) -> Fetched:
        start, end = day_window(self.source, day, self._zone)
        try:
            run_id = self._adapter.start_report_run(
                interval_start=start,
                interval_end=end,
                timezone=self._zone,
                report_type=stripe_statement.DAILY_REPORT,
                columns=stripe_statement.DAILY_COLUMNS,
            )
            for poll in range(self._polls):
                data = self._adapter.report_file(run_id)
                if data is not None:
                    return Fetched(data, f"stripe-{self._account}-{day:%Y%m%d}.csv", self._account)
                if poll + 1 < self._polls:
                    self._sleep(self._poll_delay)
        except StripeUnavailable as exc:
            raise _unavailable(exc, self._NOT_THERE) from None
        raise NotThere(f"report run {run_id} still pending")

    def close(self) -> None:
        self._adapter.close_client()


class PaypalFetcher:
    source = "paypal"
    documents: tuple[str, ...] = (formats.PAYPAL_STL,)
    _NOT_THERE = frozenset({"HTTP_404"})  # no such file (yet) on PayPal's report server

    def __init__(self, adapter: PaypalAdapter) -> None:
        self._adapter = adapter

    def fetch(self, fmt: str, day: date) -> Fetched:
        try:
            data = self._adapter.download_settlement_report(day)
        except PaypalUnavailable as exc:
            raise _unavailable(exc, self._NOT_THERE) from None
        return Fetched(data, f"STL-{day:%Y%m%d}.01.009.CSV")

    def close(self) -> None:
        self._adapter.close_client()


class QuickpayFetcher:
    """One quick pay acquirer's daily file (``fileTransfer.do``); the channel instance it is
    (``adapter.name``) is the statement's source, since the file names only the merchant."""

    _NOT_THERE = frozenset({"FILE_NOT_FOUND"})  # respCode 98: until the Beijing day is over

    def __init__(self, adapter: QuickpayAdapter, mer_id: str) -> None:
        self._adapter, self._mer_id = adapter, mer_id
        self.source = adapter.name
        self.documents: tuple[str, ...] = (formats.QUICKPAY_FILES[adapter.name],)

    def fetch(self, fmt: str, day: date) -> Fetched:
        try:
            data = self._adapter.download_file(day)
        except QuickpayUnavailable as exc:
            raise _unavailable(exc, self._NOT_THERE) from None
        return Fetched(data, f"{self.source}-QPRF_{self._mer_id}_{day:%Y%m%d}.txt")

    def close(self) -> None:
        self._adapter.close_client()


class BankFetcher:
    source = formats.BANK
    _NOT_THERE = frozenset({"NOT_FOUND", "NO_STATEMENT"})
    _SUFFIX: ClassVar[dict[str, str]] = {formats.CAMT053: "xml", formats.MT940: "sta"}

    def __init__(self, adapter: BankAdapter, fmt: str = formats.CAMT053) -> None:
        if fmt not in self._SUFFIX:
            raise ConfigurationError(f"bank statements come as camt053 or mt940, not {fmt!r}")
        self._adapter = adapter
        self.documents: tuple[str, ...] = (fmt,)

    def fetch(self, fmt: str, day: date) -> Fetched:
        try:
            data = self._adapter.download_statement(day, fmt)
        except StatementUnavailable as exc:
            raise _unavailable(exc, self._NOT_THERE) from None
        return Fetched(data, f"bank-{day:%Y%m%d}.{self._SUFFIX[fmt]}")

    def close(self) -> None:
        self._adapter.close()


def fetchers_from_document(
    document: dict[str, Any],
    clock: Clock,
    *,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = _time.sleep,
) -> dict[str, Fetcher]:
    """The fetchers of every channel in a channels document (the one ``clearhouse serve``
    reads) that issues statements, and of its bank. Optional per entry: ``report_timezone``
    (Stripe, PayPal: the account's reporting zone) and, for the bank, ``statement_format``."""
    fetchers: dict[str, Fetcher] = {}
    for name, port in ports_from_document(document, clock, timeout).items():
        entry, creds = document[name], document[name]["credentials"]
        if isinstance(port, WechatPayAdapter):
            fetchers[name] = WechatPayFetcher(port, str(creds["mchid"]))
        elif isinstance(port, AlipayAdapter):
            fetchers[name] = AlipayFetcher(port, str(creds["pid"]))
        elif isinstance(port, StripeAdapter):
            zone = business_zone(name, entry.get("report_timezone"))
            fetchers[name] = StripeFetcher(port, str(creds["account_id"]), zone, sleep=sleep)
        elif isinstance(port, PaypalAdapter):
            fetchers[name] = PaypalFetcher(port)
        elif isinstance(port, QuickpayAdapter) and port.name in formats.QUICKPAY_FILES:
            fetchers[name] = QuickpayFetcher(port, str(creds["mer_id"]))
        else:
            port.close_client()  # a quick pay instance no statement format knows
    bank = bank_from_document(document, clock, timeout)
    if bank is not None:
        fmt = str(document[formats.BANK].get("statement_format", formats.CAMT053))
        fetchers[formats.BANK] = BankFetcher(bank, fmt)
    return fetchers


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocumentPull:
    fmt: str
    status: PullStatus
    imported: Imported | None = None
    code: str | None = None  # MISSING_CODE, the channel's reason, or a StatementCode
    message: str = ""
    attempts: int = 0  # requests made (0: nothing was asked of the channel)
    alert: bool = False  # MISSING, or FAILED after the expected time

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.fmt,
            "status": self.status.value,
            "code": self.code,
            "message": self.message,
            "attempts": self.attempts,
            "alert": self.alert,
        }
        if self.imported is not None:
            out |= {
                "sha256": self.imported.sha256,
                "account": self.imported.account,
                "lines": self.imported.lines,
                "already": self.imported.already,
            }
        return out


@dataclass(frozen=True, slots=True)
class PullResult:
    channel: str
    business_date: date
    expected_by: datetime
    documents: tuple[DocumentPull, ...] = field(default_factory=tuple)

    @property
    def status(self) -> PullStatus:
        """The worst of its documents'."""
        return min((d.status for d in self.documents), key=_SEVERITY.index)

    @property
    def alert(self) -> bool:
        return any(d.alert for d in self.documents)

    @property
    def imported(self) -> list[Imported]:
        return [d.imported for d in self.documents if d.imported is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "business_date": self.business_date.isoformat(),
            "status": self.status.value,
            "alert": self.alert,
            "expected_by": self.expected_by.isoformat(),
            "documents": [d.to_dict() for d in self.documents],
        }


# --- the puller -------------------------------------------------------------------------------


class Puller:
    def __init__(
        self,
        store: StatementStore,
        fetchers: dict[str, Fetcher],
        clock: Clock,
        *,
        schedules: dict[str, Schedule] | None = None,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = _time.sleep,
        by: str = "scheduled-pull",
    ) -> None:
        """``schedules``: a channel's own (zone, expected time); ``default_schedule`` otherwise.
        ``sleep`` waits between retries (tests pass one that does not)."""
        own = schedules or {}
        self._store, self._fetchers, self._clock = store, fetchers, clock
        self._schedules = {n: own.get(n) or default_schedule(n) for n in fetchers}
        self._retry, self._sleep, self._by = retry or Retry(), sleep, by

    @classmethod
    def from_document(
        cls,
        store: StatementStore,
        document: dict[str, Any],
        clock: Clock,
        *,
        timeout: float = 30.0,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = _time.sleep,
        by: str = "scheduled-pull",
    ) -> Puller:
        """Pullers for the channels document ``clearhouse serve --channels`` reads."""
        fetchers = fetchers_from_document(document, clock, timeout=timeout, sleep=sleep)
        schedules = {
            name: default_schedule(name, document[name].get("report_timezone"))
            for name in fetchers
            if name != formats.BANK
        }
        return cls(store, fetchers, clock, schedules=schedules, retry=retry, sleep=sleep, by=by)

    def channels(self) -> list[str]:
        return sorted(self._fetchers)

    def schedule(self, channel: str) -> Schedule:
        self._fetcher(channel)
        return self._schedules[channel]

    def pull(self, channel: str, business_date: date, *, refresh: bool = False) -> PullResult:
        """Every document of ``channel``'s ``business_date`` (see the module's rules)."""
        fetcher = self._fetcher(channel)
        schedule = self._schedules[channel]
        results = tuple(
            self._document(channel, fetcher, schedule, fmt, business_date, refresh)
            for fmt in fetcher.documents
        )
        return PullResult(channel, business_date, schedule.expected_by(business_date), results)

    def pull_due(self, lookback: int = 3) -> list[PullResult]:
        """The scheduled run: for every channel, each of the last ``lookback`` business days
        that is over, whatever is not held yet (held days answer ``ALREADY`` without a call)."""
        now = self._clock.now()
        out = []
        for channel in self.channels():
            schedule = self._schedules[channel]
            today = now.astimezone(ZoneInfo(schedule.zone)).date()
            for back in range(lookback, 0, -1):
                out.append(self.pull(channel, today - timedelta(days=back)))
        return out

    def close(self) -> None:
        for fetcher in self._fetchers.values():
            fetcher.close()

    def _fetcher(self, channel: str) -> Fetcher:
        try:
            return self._fetchers[channel]
        except KeyError:
            raise formats.UnknownFormat(
                f"no statements are pulled for {channel!r}", known=self.channels()
            ) from None

    def _document(
        self,
        channel: str,
        fetcher: Fetcher,
        schedule: Schedule,
        fmt: str,
        day: date,
        refresh: bool,
    ) -> DocumentPull:
        now = self._clock.now()
        if now < schedule.day_over(day):
            return DocumentPull(fmt, PullStatus.NOT_READY, message="the business day is not over")
        if not refresh and self._store.current(fetcher.source, day, fmt):
            return DocumentPull(fmt, PullStatus.ALREADY, message="held already")
        late = now >= schedule.expected_by(day)
        attempts = 0
        delays = self._retry.delays()
        while True:
            attempts += 1
            try:
                fetched = fetcher.fetch(fmt, day)
                break
            except NotThere as exc:
                return self._absent(channel, fmt, day, str(exc), attempts, late)
            except Unavailable as exc:
                wait = next(delays, None) if exc.transient else None
                if wait is None:
                    return self._failed(channel, fmt, day, exc.reason, exc.message, attempts, late)
                log.info("pull %s %s %s: %s, retry in %.1fs", channel, fmt, day, exc.reason, wait)
                self._sleep(wait)
        try:
            imported = intake.import_file(
                self._store,
                fetched.data,
                by=self._by,
                fmt=fmt,
                business_date=day,
                account=fetched.account,
                file=fetched.file,
            )[0]
        except StatementError as exc:
            return self._failed(channel, fmt, day, exc.code.value, str(exc), attempts, late)
        status = PullStatus.ALREADY if imported.already else PullStatus.STORED
        return DocumentPull(fmt, status, imported, attempts=attempts)

    def _absent(
        self, channel: str, fmt: str, day: date, reason: str, attempts: int, late: bool
    ) -> DocumentPull:
        if not late:
            return DocumentPull(fmt, PullStatus.NOT_READY, code=reason, attempts=attempts)
        message = f"{channel} {fmt} of {day} is not there after its expected time ({reason})"
        log.warning("%s %s", MISSING_CODE, message)
        return DocumentPull(
            fmt,
            PullStatus.MISSING,
            code=MISSING_CODE,
            message=message,
            attempts=attempts,
            alert=True,
        )

    def _failed(
        self,
        channel: str,
        fmt: str,
        day: date,
        reason: str,
        message: str,
        attempts: int,
        late: bool,
    ) -> DocumentPull:
        text = f"{channel} {fmt} of {day}: {reason}: {message}"
        if late:
            log.warning("%s %s", FAILED_CODE, text)
        else:
            log.info("pull failed, before its expected time: %s", text)
        return DocumentPull(
            fmt, PullStatus.FAILED, code=reason, message=text, attempts=attempts, alert=late
        )
