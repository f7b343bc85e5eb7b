"""The wallet's services, wired once over the gateway's engine, ledger and payments: what the
API, the CLI, the workers and tests share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from clearhouse.accounts.model import Role
from clearhouse.clock import Clock
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway import customers as scope
from clearhouse.gateway.payments import Payments
from clearhouse.ledger import queries
from clearhouse.ledger.service import Ledger
from clearhouse.sealing import Sealer
from clearhouse.wallet import kyc
from clearhouse.wallet.bank import PayoutPort
from clearhouse.wallet.model import RailPolicy
from clearhouse.wallet.topups import TopupRequest, Topups, topup_view
from clearhouse.wallet.transfers import Transfers
from clearhouse.wallet.withdrawals import Withdrawals


@dataclass
class Wallet:
    engine: Engine
    payments: Payments
    transfers: Transfers
    withdrawals: Withdrawals

    def topup(self, merchant_id: str, req: TopupRequest) -> dict[str, Any]:
        """A channel payment into the buyer's balance (see ``wallet/topups.py``)."""
        intent = self.payments.create(merchant_id, req.payment())
        return topup_view(self.payments, intent)

    def balance(self, merchant_id: str, account_id: str, currency: str) -> dict[str, Any]:
        def read(conn: Any) -> dict[str, Any]:
            scope.require_account(conn, merchant_id, account_id)
            _customer, fund = kyc.buyer_balance(conn, account_id, currency, active=False)
            found = queries.balance(conn, fund)
            return {
                "account_id": account_id,
                "role": Role.BUYER_BALANCE.value,
                "currency": currency,
                "posted": found.posted,
                "pending": found.pending_out,
                "available": found.available,
            }

        return run_in_transaction(self.engine, read, readonly=True)

    def close(self) -> None:
        if self.withdrawals.bank is not None:
            self.withdrawals.bank.close()


def build_wallet(
    engine: Engine,
    ledger: Ledger,
    clock: Clock,
    sealer: Sealer,
    payments: Payments,
    bank: PayoutPort | None = None,
    policy: RailPolicy | None = None,
) -> Wallet:
    """Also makes ``payments`` book top-ups into buyer balances."""
    payments.topups = Topups(ledger, payments.channels)
    return Wallet(
        engine=engine,
        payments=payments,
        transfers=Transfers(engine, ledger, clock),
        withdrawals=Withdrawals(engine, ledger, clock, sealer, policy or RailPolicy(), bank),
    )
