"""A stateful Stripe API simulator: ``state`` (PaymentIntents, refunds), ``ledger`` (balance
transactions, payouts), ``events`` (webhooks), ``reports`` (payout reconciliation), ``app``."""
