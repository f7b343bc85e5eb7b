"""Many to one (R3): a payout, or a bank credit, against the sum of the lines it paid out.

A channel pays its balance out in payouts (Stripe ``po_``, a PayPal or bank batch); the lines
a payout settled carry its ``payout_id``, and a batch-booked bank entry's details carry the
entry's reference the same way. A head is what the money arrived as: the payout's own line,
or a bank credit whose reference names the payout. Each head must equal the net of its items.
A head whose items are not among the lines (they are in another report) is left unverified,
not called a difference; items whose head has not arrived yet are simply waiting.

SQL statements over the ``lines_in`` view, run by ``passes.Passes``.
"""

from __future__ import annotations

ITEMS = """
CREATE TEMP TABLE payout_items AS
SELECT payout_id, count(*) AS n, sum(net) AS net,
       min(currency) AS cur_min, max(currency) AS cur_max
FROM lines_in WHERE payout_id IS NOT NULL AND kind <> 'payout'
GROUP BY payout_id
"""

# A payout leaves the channel's balance (negative on its line); the bank credit arrives
# positive. A transfer that is itself an item of the payout is not its head.
HEADS = """
CREATE TEMP TABLE payout_heads AS
SELECT lid, coalesce(payout_id, channel_txn_id) AS payout_id, source, kind,
       currency, -amount AS paid
FROM lines_in WHERE kind = 'payout' AND coalesce(payout_id, channel_txn_id) IS NOT NULL
UNION ALL
SELECT l.lid, l.merchant_ref, l.source, l.kind, l.currency, l.amount
FROM lines_in l JOIN payout_items i ON l.merchant_ref = i.payout_id
WHERE l.kind = 'transfer' AND l.payout_id IS DISTINCT FROM l.merchant_ref
"""

CHECKS = """
CREATE TEMP TABLE payout_checks AS
SELECT h.lid, h.payout_id, h.source, h.kind, h.currency, h.paid,
       coalesce(i.n, 0) AS items_count, i.net AS items_net,
       CASE WHEN i.n IS NULL THEN 'UNVERIFIED'
            WHEN h.paid = i.net AND i.cur_min = h.currency
                 AND i.cur_max = h.currency THEN 'MATCHED'
            ELSE 'MISMATCH' END AS status
FROM payout_heads h LEFT JOIN payout_items i USING (payout_id)
"""

STATEMENTS = (ITEMS, HEADS, CHECKS)
STATUSES = ("MATCHED", "MISMATCH", "UNVERIFIED")
