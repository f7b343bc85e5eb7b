"""Memo classification (R9): the class of a bank line and the reference it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearhouse.reconciliation.memos import MemoClass, MemoKind, classify
from clearhouse.reconciliation.statements import camt053, mt940

BATCH = "wdb_01kf0000000000000000000009"
WITHDRAWAL = "wdr_01kf00000000000000000000c1"
# Full-width letters and ideographic spaces, as Chinese bank systems often write Latin text.
WIDE_STRIPE = (
    "\u3000".join("".join(chr(ord(c) + 0xFEE0) for c in word) for word in ("STRIPE", "PAYOUT"))
    + "\u3000po_1QZx7LkZt8cYw2Pm"
)


@pytest.mark.parametrize(
    ("memo", "kind", "channel", "reference"),
    [
        (
            "STRIPE PAYOUT po_1QZx7LkZt8cYw2PmAbCdEfGh",
            "channel_payout",
            "stripe",
            "po_1QZx7LkZt8cYw2PmAbCdEfGh",
        ),
        ("Stripe Payments Europe Ltd", "channel_payout", "stripe", None),
        (
            WIDE_STRIPE,
            "channel_payout",
            "stripe",
            "po_1QZx7LkZt8cYw2Pm",
        ),
        (
            "支付宝 提现 20260112200040011100960012345678",
            "channel_payout",
            "alipay",
            "20260112200040011100960012345678",
        ),
        ("支付宝\uff08中国\uff09网络技术有限公司 结算款", "channel_payout", "alipay", None),
        ("ALIPAY SETTLEMENT 2026011220004001", "channel_payout", "alipay", "2026011220004001"),
        (
            "财付通 商户结算 1900000109202601120001",
            "channel_payout",
            "wechatpay",
            "1900000109202601120001",
        ),
        ("财付通支付科技有限公司 微信支付结算", "channel_payout", "wechatpay", None),
        ("PAYPAL TRANSFER 5TY05013RG002845M", "channel_payout", "paypal", "5TY05013RG002845M"),
        ("PayPal Europe S.a.r.l. et Cie", "channel_payout", "paypal", None),
        (f"PAYOUT BATCH {BATCH} 2 ITEMS", "withdrawal_batch", None, BATCH),
        (f"/PREF/{BATCH.upper()}//REMI/USTD//TOTAAL 2 VZ/", "withdrawal_batch", None, BATCH),
        ("批量代发 工资", "withdrawal_batch", None, None),
        (f"代发 {WITHDRAWAL}", "withdrawal", None, WITHDRAWAL),
        (f"WITHDRAWAL {WITHDRAWAL} BATCH {BATCH}", "withdrawal", None, WITHDRAWAL),
        (
            f"/RTRN/AC04//EREF/{WITHDRAWAL}//REMI/USTD//RETURNED PAYMENT/",
            "return",
            None,
            WITHDRAWAL,
        ),
        ("退汇 账户已销户", "return", None, None),
        ("汇划费", "bank_fee", None, None),
        ("SERVICE CHARGES DECEMBER", "bank_fee", None, None),
        ("Account maintenance fee", "bank_fee", None, None),
        ("结息", "interest", None, None),
        ("CREDIT INTEREST Q4", "interest", None, None),
        ("COFFEE SHOP", "unknown", None, None),
        ("", "unknown", None, None),
        (None, "unknown", None, None),
    ],
)
def test_memos(memo, kind, channel, reference):
    found = classify(memo)
    assert (found.kind.value, found.channel, found.reference) == (kind, channel, reference)
    assert found.rule != "none" or found.kind is MemoKind.UNKNOWN


def test_references_count_like_the_memo():
    found = classify(None, [None, "2026011200000101", "po_1QZx7LkZt8cYw2PmAbCdEfGh"])
    assert found == MemoClass(
        MemoKind.CHANNEL_PAYOUT, "stripe", "po_1QZx7LkZt8cYw2PmAbCdEfGh", "stripe-payout-id"
    )
    assert classify("TRANSFER", [WITHDRAWAL]).reference == WITHDRAWAL


def test_the_line_kind_marks_a_charge():
    assert classify("MONTHLY", kind="fee").kind is MemoKind.BANK_FEE
    assert classify("MONTHLY", kind="transfer").kind is MemoKind.UNKNOWN


def test_pure_and_deterministic():
    memo = "支付宝 提现 20260112200040011100960012345678"
    assert classify(memo) == classify(memo)


def test_every_line_of_the_sample_statements_is_classified():
    data = Path(__file__).parent / "data"
    camt = camt053.parse((data / "camt053_v08.xml").read_bytes(), "v08.xml")
    kinds = [
        classify(r["memo"], [r["merchant_ref"]], kind=r["kind"]).kind.value
        for r in camt.lines.to_pylist()
    ]
    assert kinds == [
        "channel_payout",
        "channel_payout",
        "withdrawal",
        "withdrawal",
        "bank_fee",
        "interest",
    ]
    swift = mt940.parse((data / "mt940_structured.sta").read_bytes(), "s.sta")
    found = [classify(r["memo"], kind=r["kind"]) for r in swift.lines.to_pylist()]
    assert [(f.kind.value, f.reference) for f in found] == [
        ("withdrawal_batch", "wdb_01kf0000000000000000000001"),
        ("channel_payout", "po_1QZx7LkZt8cYw2PmAbCdEfGh"),
        ("bank_fee", None),
        ("return", "wdr_01kf00000000000000000000b7"),
    ]
