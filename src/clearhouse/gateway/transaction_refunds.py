"""Refunds of one channel transaction's money to its payer, outside any payment intent: what
reconciliation sends back when the payer paid an order twice (the second transaction) or paid
an order we had already closed (R5). ``Refunds`` refunds an intent's paid attempt only; these
have no intent of theirs, so nothing here touches the gateway's records or the ledger: the
caller books the outcome.

The channel's refund call is the adapter's own, naming the transaction by the channel's id of
it (WeChat Pay's transaction_id, Alipay's trade_no) and keyed by the caller's refund number,
which the channel deduplicates on (out_refund_no / out_request_no): sending the same request
again never refunds twice.
"""

from __future__ import annotations

from clearhouse.gateway.channels.port import ChannelStatus, RefundOrder, RefundResult
from clearhouse.gateway.channels.registry import Channels

# The channels whose refund call takes a transaction id and whose sandboxes refund an extra
# transaction. Stripe (a charge), PayPal (a capture) and quick pay are not wired: their
# differences stay in the review queue.
COVERED = frozenset({"wechatpay", "alipay"})


class TransactionRefunds:
    """``RefundPort`` of ``reconciliation.handling`` over the gateway's channels."""

    def __init__(self, channels: Channels) -> None:
        self.channels = channels

    def covers(self, channel: str) -> bool:
        return channel in COVERED and channel in self.channels

    def refund_transaction(self, channel: str, order: RefundOrder) -> RefundResult:
        if not order.channel_txn_id or not self.covers(channel):
            why = f"{channel} cannot refund a transaction by its id here"
            return RefundResult(ChannelStatus.FAILED, why, error_code="NOT_SUPPORTED")
        return self.channels.get(channel).port.refund(order)
