"""The bank sandbox's settlement account statements: generated from its state, read back by the
statement parsers, and served over its signed HTTP interface."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.money import Money
from clearhouse.reconciliation.memos import MemoKind, classify
from clearhouse.reconciliation.statements import camt053, mt940
from clearhouse.sandbox.bank import PayoutBank, create_app, statements
from clearhouse.sandbox.serving import ServedApp
from clearhouse.wallet.bankwire import protocol
from clearhouse.wallet.bankwire.protocol import BankCredentials

DAY = date(2026, 11, 2)
BATCH_A = "wdb_01kf0000000000000000000a01"
BATCH_B = "wdb_01kf0000000000000000000b01"


def withdrawal(n: int) -> str:
    return f"wdr_01kf00000000000000000000{n:02d}"


def submit(bank: PayoutBank, batch_no: str, items: list[tuple[str, str, str, str]]) -> None:
    """Items are (ref, amount, card, name)."""
    total = sum(Money.parse(a, "CNY").amount for _, a, _, _ in items)
    bank.submit(
        {
            "batch_no": batch_no,
            "rail": "batch",
            "currency": "CNY",
            "count": len(items),
            "total": str(Money(total, "CNY").to_decimal()),
            "items": [
                {"ref": r, "amount": a, "account_no": c, "account_name": n} for r, a, c, n in items
            ],
        }
    )


@pytest.fixture
def bank() -> PayoutBank:
    # 10:00 in Shanghai on DAY.
    clock = FixedClock(datetime(2026, 11, 2, 2, 0, tzinfo=UTC))
    bank = PayoutBank(BankCredentials.generate(), clock)
    submit(
        bank,
        BATCH_A,
        [
            (withdrawal(1), "100.25", "6219990000000000010", "张三"),
            (withdrawal(2), "200.00", "6229990000000000035", "王五"),
            (withdrawal(3), "300.00", "6229990000000000035", "李四"),  # refused: wrong name
        ],
    )
    clock.advance(timedelta(hours=1))
    bank.receive(
        Money.parse("5000.00", "CNY"), "STRIPE PAYMENTS UK LTD", "STRIPE PAYOUT po_1QZx7LkZt8cYw2Pm"
    )
    bank.receive(
        Money.parse("1234.56", "CNY"),
        "支付宝\uff08中国\uff09网络技术有限公司",
        "支付宝 提现 20261102200040011100960012345678",
        end_to_end_id="2026110200001",
    )
    clock.advance(timedelta(hours=2))
    submit(bank, BATCH_B, [(withdrawal(4), "49.99", "6219990000000000010", "张三")])
    # 01:30 in Shanghai the next day: on the next day's statement.
    clock.set(datetime(2026, 11, 2, 17, 30, tzinfo=UTC))
    submit(
        bank,
        "wdb_01kf0000000000000000000c01",
        [(withdrawal(5), "10.00", "6229990000000000035", "王五")],
    )
    return bank


def test_camt053_round_trip(bank):
    s = camt053.parse(statements.camt053(bank, DAY), "camt.xml")
    assert (s.account, s.business_date) == (bank.settlement_account, DAY)
    rows = s.lines.to_pylist()
    debits = [r for r in rows if r["amount"] < 0]
    # One line per paid withdrawal (the refused one is no movement), grouped per batch.
    assert [(r["merchant_ref"], r["amount"]) for r in debits] == [
        (withdrawal(1), -10025),
        (withdrawal(2), -20000),
        (withdrawal(4), -4999),
    ]
    assert len({r["payout_id"] for r in debits[:2]}) == 1
    assert debits[0]["payout_id"] != debits[2]["payout_id"]
    paid = {p.ref: p.bank_txn_id for p in bank.paid()}
    assert all(r["channel_txn_id"] == paid[r["merchant_ref"]] for r in debits)
    assert [classify(r["memo"], [r["merchant_ref"]]).kind for r in debits] == [
        MemoKind.WITHDRAWAL
    ] * 3
    credits = [r for r in rows if r["amount"] > 0]
    assert [r["amount"] for r in credits] == [500000, 123456]
    assert credits[1]["merchant_ref"] == "2026110200001"
    assert classify(credits[0]["memo"]).reference == "po_1QZx7LkZt8cYw2Pm"
    assert classify(credits[1]["memo"]).channel == "alipay"
    assert s.totals[0].amount == 500000 + 123456 - 10025 - 20000 - 4999


def test_mt940_round_trip(bank):
    s = mt940.parse(statements.mt940(bank, DAY), "day.sta")
    assert (s.account, s.business_date) == (bank.settlement_account, DAY)
    rows = s.lines.to_pylist()
    # MT940 has no transaction details: a batch is one line, our batch id in its :86:.
    assert [r["amount"] for r in rows] == [-30025, 500000, 123456, -4999]
    batches = [classify(r["memo"]) for r in rows if r["amount"] < 0]
    assert [(c.kind, c.reference) for c in batches] == [
        (MemoKind.WITHDRAWAL_BATCH, BATCH_A),
        (MemoKind.WITHDRAWAL_BATCH, BATCH_B),
    ]
    assert rows[2]["merchant_ref"] == "2026110200001"
    camt = camt053.parse(statements.camt053(bank, DAY), "camt.xml")
    assert s.totals[0].amount == camt.totals[0].amount
    # Both formats name the batch entry by the same bank reference.
    assert rows[0]["channel_txn_id"] == camt.lines.to_pylist()[0]["payout_id"]


def test_days_follow_on_and_statements_are_stable(bank):
    first, second = statements.book(bank, DAY), statements.book(bank, DAY + timedelta(days=1))
    assert first.opening == bank.opening_balance_minor
    assert second.opening == first.closing
    assert [e.amount for e in second.entries] == [-1000]
    assert statements.camt053(bank, DAY) == statements.camt053(bank, DAY)
    assert statements.mt940(bank, DAY) == statements.mt940(bank, DAY)
    quiet = DAY - timedelta(days=1)
    for parse, fmt in ((camt053.parse, "camt053"), (mt940.parse, "mt940")):
        body, _ = statements.render(bank, quiet, fmt)
        s = parse(body, "quiet")
        assert s.lines.num_rows == 0
        assert s.totals[0].amount == 0


def test_long_memos_wrap_within_the_mt940_limits(bank):
    bank.clock.set(datetime(2026, 11, 4, 2, 0, tzinfo=UTC))  # type: ignore[attr-defined]
    memo = "PAYPAL TRANSFER 5TY05013RG002845M " + "X" * 40 + " REMITTANCE DETAILS " * 3
    bank.receive(Money.parse("1.00", "CNY"), "PAYPAL", memo)
    body = statements.mt940(bank, date(2026, 11, 4))
    assert all(len(line) <= 65 + 4 for line in body.decode().split("\r\n"))
    (row,) = mt940.parse(body, "w.sta").lines.to_pylist()
    assert row["memo"] == memo.strip()
    assert classify(row["memo"]).reference == "5TY05013RG002845M"


def test_unknown_format():
    bank = PayoutBank(BankCredentials.generate(), FixedClock(datetime(2026, 11, 2, tzinfo=UTC)))
    with pytest.raises(ValueError, match="unknown statement format"):
        statements.render(bank, DAY, "bai2")


# --- over HTTP ----------------------------------------------------------------------------


def signed_get(client: httpx.Client, bank: PayoutBank, path: str, **params: str) -> httpx.Response:
    headers = protocol.request_headers(bank.credentials, "GET", path, b"", bank.clock.now())
    return client.get(path, params=params, headers=headers)


def test_statements_over_http(bank):
    with ServedApp(create_app(bank)) as served, httpx.Client(base_url=served.base_url) as client:
        path = f"/statements/{DAY.isoformat()}"
        answer = signed_get(client, bank, path, format="mt940")
        assert answer.status_code == 200
        protocol.verify_answer(bank.credentials, dict(answer.headers), answer.content)
        assert answer.content == statements.mt940(bank, DAY)
        assert answer.headers["content-type"].startswith("text/plain")
        answer = signed_get(client, bank, path)  # camt.053 unless told otherwise
        assert answer.status_code == 200
        assert answer.content == statements.camt053(bank, DAY)
        assert camt053.parse(answer.content, "http.xml").lines.num_rows == 5

        unsigned = client.get(path, params={"format": "mt940"})
        assert unsigned.status_code == 401
        assert unsigned.json()["code"] == "SIGNATURE_INVALID"
        assert signed_get(client, bank, path, format="bai2").status_code == 400
        assert signed_get(client, bank, "/statements/2026-13-01").status_code == 400

        credit = client.post(
            "/sandbox/credits",
            content=json.dumps(
                {"amount": "88.00", "payer": "PAYPAL PTE LTD", "memo": "PAYPAL 5TY05013RG002845M"}
            ),
        )
        assert credit.status_code == 200
        assert bank.received()[-1].amount == Money(8800, "CNY")
        bad = client.post("/sandbox/credits", content=b'{"amount": "-1", "payer": "x", "memo": ""}')
        assert bad.status_code == 400
