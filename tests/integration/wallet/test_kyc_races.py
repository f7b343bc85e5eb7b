"""KYC limits hold under concurrent requests: many transfers and withdrawals of one identity,
from two of its accounts at once, race for the last of a daily limit. At most the limit moves
(SQLite serialises writers; PostgreSQL relies on the usage rows' locks)."""

from __future__ import annotations

import threading
from collections import Counter

from clearhouse.accounts.model import LimitKind, Role
from clearhouse.errors import ClearhouseError
from clearhouse.money import Money
from clearhouse.wallet.transfers import TransferRequest
from clearhouse.wallet.withdrawals import WithdrawalRequest
from tests.conftest import open_party
from tests.gateway_support import enrol
from tests.wallet_support import add_buyer, available, fund_reserve, posted, second_account, used

THREADS_PER_KIND = 16
EACH = 100_000  # 1,000.00; class II may pay 10,000.00 and withdraw 10,000.00 a day
DAY_LIMIT = 1_000_000


def test_racing_movements_of_one_identity_never_pass_its_limits(app, gateway, merchant):
    fund_reserve(app)
    alice = add_buyer(app, "alice", merchant_id=merchant.id, balance=2_000_000)
    other = second_account(app, alice, balance=2_000_000)
    accounts = [alice.account_id, other]
    bob = open_party(app, "bob", (Role.BUYER_BALANCE,))
    enrol(app, merchant.id, bob.customer_id)
    start = threading.Barrier(THREADS_PER_KIND * 2)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def attempt(kind: str, i: int) -> None:
        source = accounts[i % 2]
        start.wait()
        try:
            if kind == "transfer":
                req = TransferRequest(f"t-{i}", source, bob.account_id, Money(EACH, "CNY"))
                gateway.wallet.transfers.create(merchant.id, req)
            else:
                ask = WithdrawalRequest(f"w-{i}", source, alice.card_id, Money(EACH, "CNY"))
                gateway.wallet.withdrawals.request(merchant.id, ask)
            result = "ok"
        except ClearhouseError as exc:
            result = exc.code
        with lock:
            outcomes[f"{kind}:{result}"] += 1

    threads = [
        threading.Thread(target=attempt, args=(kind, i))
        for kind in ("transfer", "withdrawal")
        for i in range(THREADS_PER_KIND)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    fits = DAY_LIMIT // EACH
    assert outcomes == {
        "transfer:ok": fits,
        "transfer:KYC_LIMIT_EXCEEDED": THREADS_PER_KIND - fits,
        "withdrawal:ok": fits,
        "withdrawal:KYC_LIMIT_EXCEEDED": THREADS_PER_KIND - fits,
    }
    assert used(app, alice.customer_id, LimitKind.PAYMENT) == DAY_LIMIT
    assert used(app, alice.customer_id, LimitKind.WITHDRAWAL) == DAY_LIMIT
    assert posted(app, bob.fund_accounts[Role.BUYER_BALANCE]) == DAY_LIMIT
    funds = [alice.fund_id, _fund(app, other)]
    # What left the identity's two balances: the transfers, plus the withdrawals' holds.
    assert sum(available(app, f) for f in funds) == 4_000_000 - 2 * DAY_LIMIT
    assert app.ledger.check() == []


def _fund(app, account_id: str) -> int:  # type: ignore[no-untyped-def]
    from clearhouse.accounts.handlers import find_fund_account

    with app.engine.connect() as conn:
        found = find_fund_account(conn, account_id, Role.BUYER_BALANCE, "CNY")
    assert found is not None
    return found
