"""Channel notifications (P4): verified and decrypted by the channel's adapter, then applied
like any other answer. Duplicates and stale deliveries change nothing; a notification that does
not verify is refused with the channel's failure answer and changes nothing either."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from clearhouse.gateway.channels.port import Ack, BadNotification
from clearhouse.gateway.errors import RefundNotFound
from clearhouse.gateway.payments import Payments
from clearhouse.gateway.refunds import Refunds

log = logging.getLogger(__name__)


class Notifications:
    def __init__(self, payments: Payments, refunds_: Refunds) -> None:
        self.payments = payments
        self.refunds = refunds_

    def handle(self, channel: str, headers: Mapping[str, str], body: bytes) -> Ack:
        port = self.payments.channels.get(channel).port
        try:
            note = port.parse_notification(headers, body)
        except BadNotification as exc:
            log.warning("refused a %s notification: %s", channel, exc.message)
            return port.ack(False)
        if note.payment is not None:
            if not self.payments.apply(note.attempt_id, note.payment, "notification"):
                log.info("%s notification for %s changed nothing", channel, note.attempt_id)
        elif note.refund is not None and note.refund_no is not None:
            try:
                self.refunds.apply(note.refund_no, note.refund, "refund_notification")
            except RefundNotFound:
                # Signed by the channel but not ours (another system on the same merchant id):
                # acknowledged so the channel stops, and logged.
                log.warning("%s refund notification for unknown %s", channel, note.refund_no)
        return port.ack(True)
