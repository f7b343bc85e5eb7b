"""A small marketplace day, posted through the posting rules: the story behind `clearhouse demo`.

Deterministic: simulated time (an injected clock) and fixed amounts, so every run tells the same
story. Each step goes through the same public API a payment service would use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from clearhouse.accounts import handlers
from clearhouse.accounts.model import (
    PLATFORM_ACCOUNT_ID,
    CustomerKind,
    KycLevel,
    LimitBreach,
    LimitKind,
    Role,
)
from clearhouse.bootstrap import App
from clearhouse.clock import FixedClock
from clearhouse.db.transaction import run_in_transaction
from clearhouse.ledger.requests import Outcome
from clearhouse.money import Money, allocate

SHANGHAI = ZoneInfo("Asia/Shanghai")
CURRENCY = "CNY"
COMMISSION_BPS = 500  # the platform keeps 5.00% of a completed order
WECHAT_FEE_BPS = 60  # 0.60%, per transaction, half up: the usual WeChat Pay merchant rate


@dataclass
class Event:
    at: datetime
    what: str
    outcome: Outcome

    @property
    def result(self) -> str:
        if self.outcome.ok:
            return f"entry {self.outcome.entry_id}" + (
                " (replayed)" if self.outcome.replayed else ""
            )
        assert self.outcome.rejection is not None
        return f"rejected: {self.outcome.rejection.reason}"


@dataclass
class DayReport:
    business_date: str
    events: list[Event] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    named_funds: dict[str, int] = field(default_factory=dict)


def _m(minor: int) -> str:
    return Money(minor, CURRENCY).format()


def fee_half_up(amount: int, bps: int) -> int:
    """A per-transaction fee in basis points, rounded half up to the minor unit."""
    return (amount * bps + 5_000) // 10_000


def run_day(app: App, clock: FixedClock) -> DayReport:
    day = clock.now().astimezone(SHANGHAI).date()
    report = DayReport(business_date=day.isoformat())
    ledger = app.ledger

    def step(minutes: int, what: str, outcome: Outcome) -> Outcome:
        clock.advance(timedelta(minutes=minutes))
        report.events.append(Event(clock.now(), what, outcome))
        return outcome

    people = _open_people(app)
    report.named_funds = {
        "merchant A settlement": people["shop_a"].fund_accounts[Role.MERCHANT_SETTLEMENT],
        "merchant B settlement": people["shop_b"].fund_accounts[Role.MERCHANT_SETTLEMENT],
        "buyer Li balance": people["li"].fund_accounts[Role.BUYER_BALANCE],
        "buyer Wang balance": people["wang"].fund_accounts[Role.BUYER_BALANCE],
    }
    shop_a, shop_b = people["shop_a"].account_id, people["shop_b"].account_id
    li, wang = people["li"].account_id, people["wang"].account_id

    step(
        1,
        "capital paid in: 100,000.00",
        ledger.post("cap-1", "9001", CURRENCY, {"amount": 10_000_000}),
    )
    step(
        5,
        "Li tops up 500.00 by WeChat Pay",
        ledger.post("topup-li", "4002", CURRENCY, {"amount": 50_000}, parties={"buyer": li}),
    )
    orders = [
        ("o-1001", "1002", 12_800, shop_a, "WeChat Pay"),
        ("o-1002", "1003", 45_900, shop_b, "Alipay"),
        ("o-1003", "1001", 8_850, shop_a, "quick pay"),
        ("o-1004", "1002", 23_333, shop_b, "WeChat Pay"),
    ]
    for order, code, amount, _, channel in orders:
        step(
            7,
            f"{order} paid {_m(amount)} by {channel} into escrow",
            ledger.post(f"pay-{order}", code, CURRENCY, {"amount": amount}),
        )
        if code == "1002":
            fee = fee_half_up(amount, WECHAT_FEE_BPS)
            step(
                0,
                f"{order} WeChat fee {_m(fee)}",
                ledger.post(f"fee-{order}", "1202", CURRENCY, {"fee": fee}),
            )
    step(
        3,
        "o-1005 paid 120.00 from Li's balance",
        ledger.post("pay-o-1005", "1009", CURRENCY, {"amount": 12_000}, parties={"buyer": li}),
    )
    step(
        1,
        "the same payment retried (network timeout on the caller's side)",
        ledger.post("pay-o-1005", "1009", CURRENCY, {"amount": 12_000}, parties={"buyer": li}),
    )
    step(
        2,
        "Wang tries to pay 50.00 from an empty balance",
        ledger.post("pay-o-1006", "1009", CURRENCY, {"amount": 5_000}, parties={"buyer": wang}),
    )

    for order, _, amount, merchant, _ in orders[:3]:
        merchant_part, commission = allocate(amount, [10_000 - COMMISSION_BPS, COMMISSION_BPS])
        step(
            45,
            f"{order} completed: settle {_m(merchant_part)}, commission {_m(commission)}",
            ledger.post(
                f"settle-{order}",
                "2001",
                CURRENCY,
                {"merchant_amount": merchant_part, "commission": commission},
                parties={"merchant": merchant},
            ),
        )
    step(
        10,
        "o-1004 cancelled before settlement: refund 233.33 through WeChat Pay",
        ledger.post("refund-o-1004", "3002", CURRENCY, {"amount": 23_333}),
    )
    merchant_back, commission_back = allocate(4_590, [10_000 - COMMISSION_BPS, COMMISSION_BPS])
    step(
        15,
        "o-1002 partly refunded after settlement (45.90 through Alipay)",
        ledger.post(
            "refund-o-1002-1",
            "3103",
            CURRENCY,
            {"merchant_amount": merchant_back, "commission": commission_back},
            parties={"merchant": shop_b},
        ),
    )
    for channel, code in (("wechatpay", "6002"), ("alipay", "6003")):
        # The channel pays out what it holds for us: the clearing account's balance, net of fees.
        due = ledger.balance(_platform_fund(app, Role.CHANNEL_CLEARING, channel)).posted
        step(
            60,
            f"{channel} settles {_m(due)} to the bank",
            ledger.post(f"bank-{channel}", code, CURRENCY, {"amount": due}),
        )
    hold = step(
        20,
        "merchant A asks to withdraw 150.00: held",
        ledger.hold(
            "wd-a-1",
            "5001",
            CURRENCY,
            {"amount": 15_000},
            parties={"merchant": shop_a},
            expires_at=clock.now() + timedelta(hours=4),
        ),
    )
    step(
        1,
        "merchant A tries to move the held money again",
        ledger.post("wd-a-2", "5001", CURRENCY, {"amount": 10_000}, parties={"merchant": shop_a}),
    )
    if hold.entry_id is not None:
        step(
            30,
            "bank confirms 150.00: hold captured",
            ledger.commit_hold("wd-a-1-done", hold.entry_id),
        )
    step(
        5,
        "Li sends Wang 80.00",
        ledger.post(
            "p2p-1", "8001", CURRENCY, {"amount": 8_000}, parties={"payer": li, "payee": wang}
        ),
    )

    _kyc_note(app, report, people["wang"].customer_id)
    # Close the business day in Shanghai once it is over (plus the grace period).
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=SHANGHAI)
    clock.set(end + timedelta(minutes=10))
    ledger.close_day(day)
    return report


def _platform_fund(app: App, role: Role, sub: str) -> int:
    def find(conn: Connection) -> int:
        fid = handlers.find_fund_account(conn, PLATFORM_ACCOUNT_ID, role, CURRENCY, sub)
        assert fid is not None, f"platform {role}.{sub} is seeded by db upgrade"
        return fid

    return run_in_transaction(app.engine, find, readonly=True)


def _open_people(app: App) -> dict[str, handlers.Holder]:
    now = app.clock.now()
    specs = {
        "shop_a": (
            "Shop A Trading Co.",
            CustomerKind.COMPANY,
            KycLevel.CLASS_III,
            (Role.MERCHANT_SETTLEMENT, Role.MERCHANT_DEPOSIT),
        ),
        "shop_b": (
            "Shop B Outfitters",
            CustomerKind.COMPANY,
            KycLevel.CLASS_III,
            (Role.MERCHANT_SETTLEMENT,),
        ),
        "li": ("Li Lei", CustomerKind.PERSON, KycLevel.CLASS_II, (Role.BUYER_BALANCE,)),
        "wang": ("Wang Fang", CustomerKind.PERSON, KycLevel.CLASS_I, (Role.BUYER_BALANCE,)),
    }

    def work(conn: Connection) -> dict[str, handlers.Holder]:
        out = {}
        for login, (name, kind, kyc, roles) in specs.items():
            out[login] = handlers.open_holder(
                conn,
                app.chart,
                name=name,
                login=login,
                kind=kind,
                kyc_level=kyc,
                roles=roles,
                currency=CURRENCY,
                pii_key=app.settings.pii_key,
                now=now,
            )
        return out

    return run_in_transaction(app.engine, work)


def _kyc_note(app: App, report: DayReport, wang_customer: str) -> None:
    """Class I identities may pay 1,000.00 a year in all: the check the gateway will call."""
    on = app.clock.now().astimezone(SHANGHAI).date()
    for amount in (60_000, 60_000):

        def reserve(conn: Connection, amount: int = amount) -> LimitBreach | None:
            return handlers.reserve_limit(
                conn,
                customer_id=wang_customer,
                kind=LimitKind.PAYMENT,
                currency=CURRENCY,
                amount_minor=amount,
                on=on,
            )

        breach = run_in_transaction(app.engine, reserve)
        if breach is None:
            report.notes.append(f"KYC: Wang (class I) pays {_m(amount)}: within limits")
        else:
            report.notes.append(
                f"KYC: Wang (class I) pays {_m(amount)}: refused, {breach.limit.period} limit "
                f"{_m(breach.limit.amount_minor)}, already used {_m(breach.used_minor)}"
            )
