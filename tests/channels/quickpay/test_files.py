"""The daily reconciliation file: layout, exact fen amounts with half-up fees, detail lines that
add up to the trailer, and the faults reconciliation must see (wrong fee, duplicate payment,
late result)."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.quickpay.adapter import FileUnavailable, QuickpayAdapter
from clearhouse.gateway.channels.quickpay.protocol import QuickpayCredentials
from clearhouse.money import Money
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.quickpay import QuickpaySandbox
from clearhouse.sandbox.quickpay.files import parse_daily_file, trailer_of
from clearhouse.sandbox.serving import ServedApp

from .conftest import DEBIT, bind, elements, order
from .test_adapter import refund

DAY = date(2026, 11, 2)


def fen(amount: int) -> Money:
    return Money(amount, "CNY")


@pytest.fixture
def token(adapter: QuickpayAdapter, sandbox: QuickpaySandbox) -> str:
    bound = bind(adapter, sandbox, elements(DEBIT))
    assert bound.token is not None
    return bound.token


def test_file_layout_and_totals(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, token: str, clock: FixedClock,
    creds: QuickpayCredentials, served: ServedApp,
) -> None:  # fmt: skip
    adapter.pay(order("f-1", token, "100.00"))  # fee 50 fen
    adapter.pay(order("f-2", token, "7.50"))  # fee 3.75 fen: half-up makes it 4
    adapter.pay(order("f-3", token, "0.50"))  # fee 0.25 fen: not charged
    adapter.refund(refund("rf-1", "f-1", "30.00", total="100.00"))  # 15 fen of fee back
    with pytest.raises(FileUnavailable) as caught:
        adapter.download_file(DAY)  # the Beijing day is not over
    assert caught.value.details["reason"] == "FILE_NOT_FOUND"
    clock.advance(timedelta(days=1))
    text = adapter.download_file(DAY).decode("utf-8")
    assert text == httpx.get(f"{served.base_url}/sandbox/files/20261102").text
    lines = text.splitlines()
    assert lines[0] == f"H|QPRF|1|{creds.mer_id}|20261102|20261103100000"
    assert lines[1].startswith("D|1|01|f-1||")
    assert lines[1].endswith("|621999*********0010|10000|50|9950")
    assert lines[4].startswith("D|4|04|rf-1|f-1|")
    assert lines[4].endswith("|-3000|-15|-2985")
    parsed = parse_daily_file(text)
    assert (parsed.mer_id, parsed.day) == (creds.mer_id, DAY)
    assert [line.fee for line in parsed.lines] == [fen(50), fen(4), fen(0), fen(-15)]
    t = parsed.trailer
    assert t == trailer_of(parsed.lines)
    assert (t.details, t.consumes, t.refunds) == (4, 3, 1)
    assert (t.consume_sum, t.refund_sum) == (fen(10800), fen(3000))
    assert (t.fee_sum, t.net_sum) == (fen(39), fen(10800 - 3000 - 39))
    assert lines[-1] == "T|4|3|10800|1|3000|39|7761"
    # The next day's file is empty but well formed.
    clock.advance(timedelta(days=1))
    empty = parse_daily_file(adapter.download_file(DAY + timedelta(days=1)).decode())
    assert (empty.lines, empty.trailer.net_sum) == ((), fen(0))


def test_faults_show_in_the_file(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, token: str, clock: FixedClock
) -> None:
    sandbox.faults = (
        FaultPlan()
        .force(Fault.WRONG_FEE, "w-1")
        .force(Fault.DUPLICATE_PAYMENT, "w-2")
        .force(Fault.LATE_RESULT, "w-3")
    )
    adapter.pay(order("w-1", token, "100.00"))
    adapter.pay(order("w-2", token, "10.00"))
    adapter.pay(order("w-3", token, "20.00"))
    clock.advance(timedelta(days=2))
    day = parse_daily_file(adapter.download_file(DAY).decode())
    by_order: dict[str, list[Money]] = {}
    for line in day.lines:
        by_order.setdefault(line.order_id, []).append(line.fee)
    assert by_order == {"w-1": [fen(51)], "w-2": [fen(5), fen(5)]}  # one fen too much; twice
    assert len({line.query_id for line in day.lines}) == 3
    assert day.trailer == trailer_of(day.lines)
    late = parse_daily_file(adapter.download_file(DAY + timedelta(days=1)).decode())
    assert [line.order_id for line in late.lines] == ["w-3"]
    assert sandbox.issuers.cards[DEBIT.card_no].balance == Money(100000_00 - 14000, "CNY")


def test_parse_refuses_a_broken_file() -> None:
    with pytest.raises(ValueError, match="header"):
        parse_daily_file("garbage\n")
    with pytest.raises(ValueError, match="net"):
        parse_daily_file(
            "H|QPRF|1|898000000000001|20261102|20261103000000\n"
            "D|1|01|o|||20261102100000|20261102100000|621999*********0010|100|1|98\n"
            "T|1|1|100|0|0|1|99\n"
        )
