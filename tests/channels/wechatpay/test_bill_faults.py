"""Reconciliation faults in WeChat Pay's trade bill: the planted order differs, nothing else,
and matching the parsed bill with our records finds the intended difference."""

from __future__ import annotations

from datetime import date

import pytest

from clearhouse import fees
from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.wechatpay.protocol import CHINA_TZ, WechatPayCredentials
from clearhouse.money import Money
from clearhouse.reconciliation.matching import match
from clearhouse.reconciliation.statements import wechatpay as parser
from clearhouse.sandbox.faults import NO_FAULTS, Fault, billed_amount
from clearhouse.sandbox.wechatpay.state import WechatPaySandbox
from tests.unit.reconciliation.match_support import lines_table, ours, ours_table

ORDERS = {"att-bill01": 12_345, "att-bill02": 10_000, "att-bill03": 899}


def _pay_all(sandbox: WechatPaySandbox, creds: WechatPayCredentials) -> None:
    for out_trade_no, total in ORDERS.items():
        body = {
            "appid": creds.appid,
            "mchid": creds.mchid,
            "out_trade_no": out_trade_no,
            "description": "Longjing tea",
            "notify_url": "https://shop.example/notify",
            "amount": {"total": total, "currency": "CNY"},
        }
        sandbox.create_transaction("NATIVE", body)
        sandbox.pay(out_trade_no)


def _day(clock: FixedClock) -> date:
    return clock.now().astimezone(CHINA_TZ).date()


def _lines(sandbox: WechatPaySandbox, clock: FixedClock) -> dict[str, dict[str, object]]:
    data = sandbox.bill("tradebill", _day(clock), "ALL")
    statement = parser.parse_trade_bill(data, file="all.csv", bill_date=_day(clock))
    return {row["merchant_ref"]: row for row in statement.lines.to_pylist()}


def _ours(sandbox: WechatPaySandbox, clock: FixedClock) -> list[dict[str, object]]:
    """Our records as the gateway books them: what the query and notification said."""
    return [
        ours(
            merchant_ref=out_trade_no,
            amount=total,
            expected_fee=fees.WECHATPAY.fee(Money(total, "CNY")).amount,
            channel_txn_id=sandbox.orders[out_trade_no].transaction_id,
            confirmed_at=sandbox.orders[out_trade_no].success_time,
            business_date=_day(clock),
        )
        for out_trade_no, total in ORDERS.items()
    ]


@pytest.mark.parametrize(
    ("fault", "intended"),
    [(Fault.BILL_AMOUNT, "AMOUNT_MISMATCH"), (Fault.BILL_STATUS, "STATUS_MISMATCH")],
)
def test_a_bill_fault_changes_only_the_planted_payment_and_is_classified(
    sandbox: WechatPaySandbox,
    creds: WechatPayCredentials,
    clock: FixedClock,
    fault: Fault,
    intended: str,
) -> None:
    sandbox.faults = NO_FAULTS.force(fault, "att-bill01")
    _pay_all(sandbox, creds)
    # What the query says (what we book) is the order as asked, planted or not.
    view = sandbox.query("att-bill01", creds.mchid)
    assert (view["trade_state"], view["amount"]["total"]) == ("SUCCESS", 12_345)

    lines = _lines(sandbox, clock)
    for ref, total in ORDERS.items():
        row = lines[ref]
        planted = ref == "att-bill01"
        amount = billed_amount(total) if planted and fault is Fault.BILL_AMOUNT else total
        status = "REVOKED" if planted and fault is Fault.BILL_STATUS else "SUCCESS"
        assert (row["amount"], row["status"]) == (amount, status)
        assert row["fee"] == fees.WECHATPAY.fee(Money(amount, "CNY")).amount  # on what moved
        assert row["channel_txn_id"] == sandbox.orders[ref].transaction_id
    if fault is Fault.BILL_AMOUNT:
        assert lines["att-bill01"]["amount"] == 12_222  # one percent off: 123.45 -> 122.22

    result = match(lines_table(list(lines.values())), ours_table(_ours(sandbox, clock)))
    found = result.differences.to_pylist()
    assert [(d["type"], d["merchant_ref"], d["attempt_id"]) for d in found] == [
        (intended, "att-bill01", "att-bill01")
    ]
    if fault is Fault.BILL_AMOUNT:
        assert (found[0]["line_amount"], found[0]["our_amount"], found[0]["delta"]) == (
            12_222,
            12_345,
            -123,
        )
    assert result.counts["matched_ref"] == 2


def test_without_the_faults_the_bill_matches_our_records(
    sandbox: WechatPaySandbox, creds: WechatPayCredentials, clock: FixedClock
) -> None:
    _pay_all(sandbox, creds)
    lines = _lines(sandbox, clock)
    result = match(lines_table(list(lines.values())), ours_table(_ours(sandbox, clock)))
    assert result.differences.num_rows == 0
    assert result.counts["matched_ref"] == 3


def test_partial_refunds_repeat_the_order_id_with_the_refunded_amount_and_fee_back(
    sandbox: WechatPaySandbox, creds: WechatPayCredentials, clock: FixedClock
) -> None:
    _pay_all(sandbox, creds)
    payment = sandbox.orders["att-bill02"]
    for number, fen in (("rf-part1", 3_000), ("rf-part2", 2_500)):
        sandbox.create_refund(
            {
                "out_trade_no": "att-bill02",
                "out_refund_no": number,
                "amount": {"refund": fen, "total": 10_000, "currency": "CNY"},
            }
        )
    lines = _lines(sandbox, clock)
    first, second = lines["rf-part1"], lines["rf-part2"]
    assert [(r["kind"], r["amount"], r["fee"]) for r in (first, second)] == [
        ("refund", -3_000, -18),  # 60 fen * 3000 / 10000
        ("refund", -2_500, -15),
    ]
    for row in (first, second):
        assert row["channel_txn_id"] == payment.transaction_id  # the payment's WeChat order id
        assert row["parent_ref"] == "att-bill02"
