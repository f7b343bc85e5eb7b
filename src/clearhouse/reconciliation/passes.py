"""The matching passes as DuckDB SQL, in the order ``matching.match`` runs them.

Each step creates temporary tables from the ones before: ``j`` (the reference join, integers
and flags only), ``odd`` (what it did not settle), ``lx`` / ``ox`` (those lines and records
fetched whole), ``cand`` / ``id_won`` / ``id_lost`` (pairs by id, one to one), ``fuzzy_won``,
``pairs`` and ``diffs``. See ``matching`` for what each pass decides.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from clearhouse.money import Rounding
from clearhouse.reconciliation import payouts as payout_sql
from clearhouse.reconciliation.classify import (
    CONFIRMED,
    DifferenceType,
    LineState,
    MatchPass,
    line_state,
)
from clearhouse.reconciliation.fee_sql import (
    expected_line_fee_expr,
    line_fee_check_expr,
    round_div,
)

if TYPE_CHECKING:
    from clearhouse.reconciliation.matching import MatchConfig


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_MATCHABLE = "('payment', 'refund')"
_CONFIRMED = "(" + ", ".join(quote(s) for s in sorted(CONFIRMED)) + ")"
_RATE_SCALE = 10**12  # OURS.fx_rate is DECIMAL(38, 12)
# What the passes and the evidence read of a line (not its account, memo or net).
_LINE_DETAIL = (
    "lid, source, kind, business_date, occurred_at, channel_txn_id, channel_refund_id, "
    "merchant_ref, status, currency, amount, fee, payout_id, line_no"
)


class Passes:
    """One run over the ``lines_in`` and ``ours_in`` views of one DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, config: MatchConfig) -> None:
        self.con = con
        self.config = config
        self.seconds: dict[str, float] = {}  # wall time per step, for diagnostics
        self.as_of = "NULL::DATE"
        self.matchable_count = 0
        self.ours_count = 0
        self._state_sql: str | None = None

    def sql(self, statement: str) -> None:
        self.con.execute(statement)

    def arrow(self, query: str) -> pa.Table:
        table = self.con.sql(query).to_arrow_table()
        assert table is not None
        return table

    def scalar(self, query: str) -> Any:
        row = self.con.execute(query).fetchone()
        assert row is not None
        return row[0]

    def timed(self, step: Callable[[], None]) -> None:
        started = time.perf_counter()
        step()
        self.seconds[step.__name__] = round(time.perf_counter() - started, 4)

    def run(
        self, matched_path: str | os.PathLike[str] | None
    ) -> tuple[pa.Table | None, pa.Table, pa.Table, dict[str, int]]:
        """Every pass, then the outputs: (matched or None, differences, payouts, counts)."""
        counts = self.totals()
        for step in (
            self.reference_join,
            self.remainders,
            self.payouts,
            self.details,
            self.id_pairs,
            self.fuzzy_pairs,
            self.classify,
        ):
            self.timed(step)
        started = time.perf_counter()
        differences = self.differences()
        payouts = self.arrow("SELECT * FROM payout_checks ORDER BY lid")
        # Exact pairs: every paired row of the join but the few that were not settled there.
        matched_sql = (
            "SELECT lid, oid, 'REF' AS pass FROM j WHERE lid IS NOT NULL AND oid IS NOT NULL "
            "AND lid NOT IN (SELECT lid FROM odd WHERE NOT exact AND lid IS NOT NULL) "
            "UNION ALL SELECT lid, oid, pass FROM pairs WHERE type IS NULL ORDER BY lid"
        )
        matched: pa.Table | None = None
        if matched_path is None:
            matched = self.arrow(matched_sql)
        else:
            target = quote(os.fspath(Path(matched_path)))
            self.sql(f"COPY ({matched_sql}) TO {target} (FORMAT parquet)")
        counts |= self.summary(differences)
        self.seconds["outputs"] = round(time.perf_counter() - started, 4)
        return matched, differences, payouts, counts

    def totals(self) -> dict[str, int]:
        row = self.con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE kind IN {_MATCHABLE}), "
            "max(business_date) FROM lines_in"
        ).fetchone()
        assert row is not None
        ours_count, ours_latest = self.con.execute(
            "SELECT count(*), max(business_date) FROM ours_in"
        ).fetchone() or (0, None)
        as_of = self.config.as_of or row[2] or ours_latest
        self.as_of = "NULL::DATE" if as_of is None else f"DATE '{as_of.isoformat()}'"
        self.matchable_count, self.ours_count = int(row[1]), int(ours_count)
        return {"lines": row[0], "lines_matchable": row[1], "ours": ours_count}

    def state_sql(self) -> str:
        """``classify.line_state`` of each line as SQL over ``source`` and ``status``.

        A file carries a handful of distinct status words: they are read once in Python, so
        the scan only tests the raw words that do not mean money moved (usually none)."""
        if self._state_sql is None:
            found = self.con.execute(
                f"SELECT DISTINCT source, status FROM lines_in WHERE kind IN {_MATCHABLE}"
            ).fetchall()
            odd = {
                (source, status): line_state(source, status)
                for source, status in found
                if line_state(source, status) is not LineState.OK
            }
            if not odd:
                self._state_sql = "'ok'"
            else:
                words = ", ".join(quote(w) for w in sorted({w for _, w in odd}))
                branches = " ".join(
                    f"WHEN source = {quote(src)} AND status = {quote(w)} THEN '{state.value}'"
                    for (src, w), state in sorted(odd.items())
                )
                self._state_sql = (
                    f"(CASE WHEN status IN ({words}) THEN (CASE {branches} ELSE 'ok' END) "
                    "ELSE 'ok' END)"
                )
        return self._state_sql

    # -- pass 1: the reference join over everything --------------------------------------------

    def reference_join(self) -> None:
        fee = line_fee_check_expr(
            self.config.schedules,
            "l.source",
            "l.kind",
            "l.amount",
            "o.parent_amount",
            "o.refunded_before",
            "o.expected_fee",
        )
        state = self.state_sql()
        # Only integers and flags leave the join (a line's state as one flag: moved money or
        # not): carrying strings through it for ten million rows costs more than fetching the
        # few that differ afterwards.
        self.sql(
            f"""
            CREATE TEMP TABLE j AS
            SELECT l.lid, o.oid, l.moved, o.confirmed,
                   l.currency = o.currency AND l.amount = o.amount AS same_money,
                   CASE WHEN {self._fee_checkable()} THEN l.fee = {fee} END AS fee_ok
            FROM (SELECT lid, source, kind, merchant_ref, currency, amount, fee,
                         {state} = 'ok' AS moved
                  FROM lines_in WHERE kind IN {_MATCHABLE}) l
            FULL JOIN (SELECT oid, channel, kind, merchant_ref, currency, amount,
                              status IN {_CONFIRMED} AS confirmed,
                              parent_amount, refunded_before, expected_fee
                       FROM ours_in) o
              ON l.merchant_ref = o.merchant_ref AND l.kind = o.kind AND l.source = o.channel
            """
        )
        # A record two lines point at (or a line two records claim) is settled in pass 2. In
        # a full join each line appears once unless it met two records, and each record once
        # unless two lines met it: counting the rows says whether any is contested, and only
        # then is the (ten-million-group) aggregation worth running.
        row = self.con.execute("SELECT count(lid), count(oid) FROM j").fetchone()
        assert row is not None
        for side, rows, inputs in (
            ("o", row[1], self.ours_count),
            ("l", row[0], self.matchable_count),
        ):
            key = f"{side}id"
            where = "lid IS NOT NULL AND oid IS NOT NULL" if rows > inputs else "false"
            self.sql(
                f"CREATE TEMP TABLE contested_{side} AS SELECT {key} FROM j "
                f"WHERE {where} GROUP BY {key} HAVING count(*) > 1"
            )
        # What is not settled here, read once: pairs that disagree or compete, lines and
        # records the reference did not pair, and exact pairs whose fee is off.
        self.sql(
            """
            CREATE TEMP TABLE odd AS
            SELECT lid, oid, exact FROM (
              SELECT lid, oid, moved, fee_ok,
                     lid IS NOT NULL AND oid IS NOT NULL AND same_money
                     AND moved = confirmed
                     AND oid NOT IN (SELECT oid FROM contested_o)
                     AND lid NOT IN (SELECT lid FROM contested_l) AS exact
              FROM j)
            WHERE NOT exact OR (moved AND fee_ok = false)
            """
        )

    def remainders(self) -> None:
        self.sql(
            "CREATE TEMP TABLE rest AS SELECT lid, oid FROM odd "
            "WHERE lid IS NOT NULL AND oid IS NOT NULL AND NOT exact"
        )
        self.sql("CREATE TEMP TABLE free_l AS SELECT lid FROM odd WHERE oid IS NULL")
        self.sql("CREATE TEMP TABLE free_o AS SELECT oid FROM odd WHERE lid IS NULL")
        self.sql("CREATE TEMP TABLE fee_bad AS SELECT lid, oid FROM odd WHERE exact")

    def payouts(self) -> None:
        for statement in payout_sql.STATEMENTS:
            self.sql(statement)

    # -- the rows that need a closer look, fetched whole once -----------------------------------

    def details(self) -> None:
        # The wanted positions first, as small tables, so each input is read once more with a
        # plain semi-join; fuzzy keys and states are then computed on the rows fetched, not on
        # every row read.
        self.sql(
            """
            CREATE TEMP TABLE want_l AS
            SELECT DISTINCT lid FROM (
              SELECT lid FROM odd WHERE lid IS NOT NULL
              UNION ALL SELECT lid FROM payout_checks WHERE status = 'MISMATCH')
            """
        )
        self.sql("CREATE TEMP TABLE want_o AS SELECT DISTINCT oid FROM odd WHERE oid IS NOT NULL")
        self.sql(
            f"CREATE TEMP TABLE lx_raw AS SELECT {_LINE_DETAIL} FROM lines_in "
            "WHERE lid IN (SELECT lid FROM want_l)"
        )
        self.sql(
            "CREATE TEMP TABLE ox_raw AS SELECT * FROM ours_in "
            "WHERE oid IN (SELECT oid FROM want_o)"
        )
        state = self.state_sql()
        self.sql(
            f"""
            CREATE TEMP TABLE lx AS
            SELECT *, {state} AS state, {self._fuzzy("merchant_ref")} AS fuzzy,
                   CASE WHEN kind = 'refund' THEN channel_refund_id ELSE channel_txn_id END
                       AS txn_key
            FROM lx_raw
            """
        )
        self.sql(
            f"""
            CREATE TEMP TABLE ox AS
            SELECT *, status IN {_CONFIRMED} AS confirmed,
                   {self._fuzzy("merchant_ref")} AS fuzzy,
                   CASE WHEN kind = 'refund' THEN channel_refund_id ELSE channel_txn_id END
                       AS txn_key,
                   coalesce(confirmed_at, created_at) AS seen_at
            FROM ox_raw
            """
        )

    def _fuzzy(self, column: str) -> str:
        key = f"regexp_replace(upper(coalesce({column}, '')), '[^A-Z0-9]', '', 'g')"
        prefixes = sorted({p.upper() for p in self.config.strip_prefixes if p}, key=len)
        branches = " ".join(
            f"WHEN starts_with({key}, {quote(p)}) THEN substr({key}, {len(p) + 1})"
            for p in reversed(prefixes)  # the longest prefix first
        )
        return f"(CASE {branches} ELSE {key} END)" if branches else key

    # -- pass 2: pairs by id that disagree or compete, settled one to one ------------------------

    def id_pairs(self) -> None:
        self.sql(
            f"""
            CREATE TEMP TABLE cand AS
            SELECT lid, oid, '{MatchPass.REFERENCE.value}' AS pass FROM rest
            UNION ALL
            SELECT l.lid, o.oid, '{MatchPass.TXN.value}'
            FROM lx l JOIN ox o
              ON l.txn_key = o.txn_key AND l.kind = o.kind AND l.source = o.channel
            WHERE l.kind IN {_MATCHABLE}
              AND l.lid IN (SELECT lid FROM free_l) AND o.oid IN (SELECT oid FROM free_o)
            """
        )
        self.sql(
            f"""
            CREATE TEMP TABLE cand_typed AS
            SELECT c.lid, c.oid, c.pass, {self._type_sql()} AS type,
                   l.state, l.occurred_at
            FROM cand c JOIN lx l USING (lid) JOIN ox o USING (oid)
            """
        )
        self.sql(
            f"""
            CREATE TEMP TABLE id_ranked AS
            SELECT *,
              row_number() OVER (PARTITION BY oid ORDER BY type IS NULL DESC,
                                 state = 'ok' DESC, occurred_at, lid) AS rank_o,
              row_number() OVER (PARTITION BY lid ORDER BY type IS NULL DESC,
                                 pass = '{MatchPass.REFERENCE.value}' DESC, oid) AS rank_l
            FROM cand_typed
            """
        )
        self.sql(
            "CREATE TEMP TABLE id_won AS SELECT lid, oid, pass, type FROM id_ranked "
            "WHERE rank_o = 1 AND rank_l = 1"
        )
        # A line whose record went to another line: the same payment (or refund) twice.
        self.sql(
            """
            CREATE TEMP TABLE id_lost AS
            SELECT lid, oid, pass FROM id_ranked
            WHERE rank_l = 1 AND lid NOT IN (SELECT lid FROM id_won) AND state = 'ok'
              AND oid IN (SELECT oid FROM id_won)
            """
        )

    # -- pass 3: fuzzy, on what is left ---------------------------------------------------------

    def fuzzy_pairs(self) -> None:
        window_us = self.config.time_window // timedelta(microseconds=1)
        tolerance = int(self.config.amount_tolerance)
        self.sql(
            f"""
            CREATE TEMP TABLE fl AS SELECT * FROM lx
            WHERE kind IN {_MATCHABLE} AND lid NOT IN (SELECT lid FROM fee_bad)
              AND lid NOT IN (SELECT lid FROM id_won) AND lid NOT IN (SELECT lid FROM id_lost)
            """
        )
        self.sql(
            """
            CREATE TEMP TABLE fo AS SELECT * FROM ox
            WHERE oid NOT IN (SELECT oid FROM fee_bad) AND oid NOT IN (SELECT oid FROM id_won)
            """
        )
        self.sql(
            f"""
            CREATE TEMP TABLE fuzzy_ranked AS
            WITH c AS (
              SELECT l.lid, o.oid, abs(l.amount - o.amount) AS gap,
                     abs(epoch_us(l.occurred_at) - epoch_us(o.seen_at)) AS lag
              FROM fl l JOIN fo o
                ON l.fuzzy = o.fuzzy AND l.kind = o.kind AND l.source = o.channel
               AND l.currency = o.currency
              WHERE l.fuzzy <> '' AND abs(l.amount - o.amount) <= {tolerance}
                AND abs(epoch_us(l.occurred_at) - epoch_us(o.seen_at)) <= {window_us}
            )
            SELECT *,
              row_number() OVER (PARTITION BY oid ORDER BY gap, lag, lid) AS rank_o,
              row_number() OVER (PARTITION BY lid ORDER BY gap, lag, oid) AS rank_l
            FROM c
            """
        )
        self.sql(
            f"""
            CREATE TEMP TABLE fuzzy_won AS
            SELECT f.lid, f.oid, '{MatchPass.FUZZY.value}' AS pass, {self._type_sql()} AS type
            FROM fuzzy_ranked f JOIN lx l USING (lid) JOIN ox o USING (oid)
            WHERE f.rank_o = 1 AND f.rank_l = 1
            """
        )

    # -- classification ---------------------------------------------------------------------------

    def _fee_checkable(self) -> str:
        """Whether a pair's fee can be checked: always in one currency; across currencies only
        a payment's, whose fee the schedule takes on the line's own amount (a refund's share
        is prorated on our payment, in our currency)."""
        scheduled = ", ".join(quote(n) for n in sorted(self.config.schedules)) or "NULL"
        return f"(l.currency = o.currency OR (l.kind = 'payment' AND l.source IN ({scheduled})))"

    def _fx_expected(self) -> str:
        """Our amount in the line's currency at the rate we recorded, rounded half up."""
        rate = f"CAST(CAST(o.fx_rate AS DECIMAL(38, 12)) * {_RATE_SCALE} AS HUGEINT)"
        unit_l = "(SELECT unit FROM currency_units WHERE code = l.currency)"
        unit_o = "(SELECT unit FROM currency_units WHERE code = o.currency)"
        return round_div(
            f"CAST(o.amount AS HUGEINT) * {rate} * {unit_l}",
            f"CAST({_RATE_SCALE} AS HUGEINT) * {unit_o}",
            Rounding.HALF_UP,
        )

    def _agrees(self) -> str:
        # An unknown currency (no unit) makes the comparison NULL: that is no agreement.
        return (
            "coalesce(CASE WHEN l.currency = o.currency THEN l.amount = o.amount "
            "WHEN o.fx_rate IS NULL THEN false "
            f"ELSE abs(l.amount - {self._fx_expected()}) <= 1 END, false)"
        )

    def _type_sql(self) -> str:
        """``classify.classify_pair`` over ``l`` (lx) and ``o`` (ox)."""
        moved = "l.state = 'ok'"
        paid_by_other = (
            "(o.kind = 'payment' AND o.paid_by_attempt_id IS NOT NULL "
            "AND o.paid_by_attempt_id <> o.attempt_id)"
        )
        t = DifferenceType
        return f"""(CASE
            WHEN {moved} AND NOT o.confirmed AND l.kind = 'payment' AND {paid_by_other}
                THEN '{t.DUPLICATE.value}'
            WHEN {moved} AND NOT o.confirmed THEN '{t.LONG.value}'
            WHEN NOT {moved} AND o.confirmed AND l.state = 'pending' THEN '{t.SHORT.value}'
            WHEN NOT {moved} AND o.confirmed THEN '{t.STATUS.value}'
            WHEN NOT {moved} THEN NULL
            WHEN NOT {self._agrees()} AND l.currency = o.currency THEN '{t.AMOUNT.value}'
            WHEN NOT {self._agrees()} THEN '{t.FX.value}'
            END)"""

    def classify(self) -> None:
        fee = expected_line_fee_expr(
            self.config.schedules,
            "l.source",
            "l.kind",
            "l.amount",
            "o.parent_amount",
            "o.refunded_before",
            "o.expected_fee",
        )
        self.sql(
            "CREATE TEMP TABLE pairs AS SELECT * FROM id_won UNION ALL SELECT * FROM fuzzy_won"
        )
        t = DifferenceType
        fx_delta = f"l.amount - {self._fx_expected()}"
        self.sql(
            f"""
            CREATE TEMP TABLE diffs AS
            -- paired, and something disagrees
            SELECT p.type, p.pass, p.lid, p.oid,
                   CASE WHEN p.type = '{t.FX.value}' THEN {self._fx_expected()} END AS expected,
                   CASE WHEN p.type = '{t.AMOUNT.value}' THEN l.amount - o.amount
                        WHEN p.type = '{t.FX.value}' THEN {fx_delta} END AS delta,
                   NULL::VARCHAR AS payout_id, NULL::BIGINT AS items_count
            FROM pairs p JOIN lx l USING (lid) JOIN ox o USING (oid)
            WHERE p.type IS NOT NULL
            UNION ALL
            -- a second line for a record another line took
            SELECT '{t.DUPLICATE.value}', pass, lid, oid, NULL, NULL, NULL, NULL FROM id_lost
            UNION ALL
            -- matched, money moved, and the fee is not the schedule's
            SELECT '{t.FEE.value}', pass, lid, oid, fee, line_fee - fee, NULL, NULL
            FROM (SELECT m.pass, m.lid, m.oid, l.fee AS line_fee, l.state,
                         {self._fee_checkable()} AS same, CAST({fee} AS BIGINT) AS fee
                  FROM (SELECT lid, oid, '{MatchPass.REFERENCE.value}' AS pass FROM fee_bad
                        UNION ALL SELECT lid, oid, pass FROM pairs WHERE type IS NULL) m
                  JOIN lx l USING (lid) JOIN ox o USING (oid))
            WHERE state = 'ok' AND same AND line_fee <> fee
            UNION ALL
            -- money on the channel's side only
            SELECT '{t.LONG.value}', NULL, lid, NULL, NULL, NULL, NULL, NULL FROM fl
            WHERE state = 'ok' AND lid NOT IN (SELECT lid FROM fuzzy_won)
            UNION ALL
            -- money on our side only
            SELECT '{t.SHORT.value}', NULL, NULL, oid, NULL, NULL, NULL, NULL FROM fo
            WHERE confirmed AND oid NOT IN (SELECT oid FROM fuzzy_won)
            UNION ALL
            SELECT '{t.PAYOUT.value}', NULL, lid, NULL, items_net, paid - items_net,
                   payout_id, items_count
            FROM payout_checks WHERE status = 'MISMATCH'
            """
        )

    def differences(self) -> pa.Table:
        return self.arrow(
            f"""
            SELECT d.type, d.pass, d.lid, d.oid,
                   coalesce(l.source, o.channel) AS source,
                   coalesce(l.kind, o.kind) AS kind,
                   coalesce(l.business_date, o.business_date) AS business_date,
                   l.line_no, l.channel_txn_id, l.merchant_ref, l.status AS line_status,
                   l.currency AS line_currency, l.amount AS line_amount, l.fee AS line_fee,
                   o.attempt_id, o.refund_id, o.intent_id, o.merchant_order_id,
                   o.status AS our_status, o.currency AS our_currency, o.amount AS our_amount,
                   CAST(d.expected AS BIGINT) AS expected, CAST(d.delta AS BIGINT) AS delta,
                   d.payout_id, d.items_count,
                   CAST({self.as_of} - coalesce(l.business_date, o.business_date) AS INTEGER)
                       AS age_days
            FROM diffs d LEFT JOIN lx l USING (lid) LEFT JOIN ox o USING (oid)
            ORDER BY d.type, d.lid NULLS LAST, d.oid NULLS LAST, d.payout_id
            """
        )

    def summary(self, differences: pa.Table) -> dict[str, int]:
        counts: dict[str, int] = {}
        exact = self.scalar(
            "SELECT count(*) FROM j WHERE lid IS NOT NULL AND oid IS NOT NULL"
        ) - self.scalar("SELECT count(*) FROM rest")
        for p in MatchPass:
            counts[f"matched_{p.value.lower()}"] = int(
                self.scalar(f"SELECT count(*) FROM pairs WHERE type IS NULL AND pass = '{p.value}'")
            ) + (int(exact) if p is MatchPass.REFERENCE else 0)
        kinds = differences.column("type").to_pylist()
        for t in DifferenceType:
            counts[f"diff_{t.value.lower()}"] = kinds.count(t.value)
        # Left alone on purpose: a line that moved no money, a record that holds none.
        counts["lines_unpaired_without_money"] = int(
            self.scalar(
                "SELECT count(*) FROM fl WHERE state <> 'ok' "
                "AND lid NOT IN (SELECT lid FROM fuzzy_won)"
            )
        )
        counts["ours_unpaired_open"] = int(
            self.scalar(
                "SELECT count(*) FROM fo WHERE NOT confirmed "
                "AND oid NOT IN (SELECT oid FROM fuzzy_won)"
            )
        )
        for status in payout_sql.STATUSES:
            counts[f"payouts_{status.lower()}"] = int(
                self.scalar(f"SELECT count(*) FROM payout_checks WHERE status = '{status}'")
            )
        return counts
