"""Every table, as SQLAlchemy Core. Migrations in ``migrations/`` create exactly this schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from clearhouse.db.types import BigAmount, BigId, Instant, Rate

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# --- accounts -------------------------------------------------------------------------------

customers = Table(
    "customers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),  # person | company | platform
    Column("name", String(200), nullable=False),
    # HMAC of the normalised ID number: one customer per real identity without storing it in clear.
    Column("id_number_digest", LargeBinary(32), nullable=True, unique=True),
    Column("id_number_masked", String(40), nullable=True),
    Column("kyc_level", SmallInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Instant, nullable=False),
    # The phone a buyer opened through the merchant API gave: sealed under the server's key,
    # shown masked.
    Column("phone_sealed", LargeBinary, nullable=True),
    Column("phone_masked", String(20), nullable=True),
    CheckConstraint("kyc_level BETWEEN 0 AND 3", name="kyc_level"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    Column("login", String(120), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("created_at", Instant, nullable=False),
)

chart_accounts = Table(
    "chart_accounts",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("name", String(120), nullable=False),
    Column("type", String(16), nullable=False),  # asset | liability | equity | income | expense
    Column("normal_side", String(1), nullable=False),
    Column("parent_code", String(16), ForeignKey("chart_accounts.code"), nullable=True),
    Column("is_leaf", Boolean, nullable=False),
    CheckConstraint("normal_side IN ('D', 'C')", name="normal_side"),
)

fund_accounts = Table(
    "fund_accounts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    # Distinguishes several fund accounts of one role: the channel of a clearing account, the bank
    # of a reserve account. Empty for the usual one-per-role account.
    Column("sub", String(32), nullable=False, server_default=""),
    Column("chart_code", String(16), ForeignKey("chart_accounts.code"), nullable=False),
    Column("normal_side", String(1), nullable=False),
    Column("non_negative", Boolean, nullable=False),
    Column("shards", SmallInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Instant, nullable=False),
    UniqueConstraint("account_id", "role", "currency", "sub"),
    CheckConstraint("shards BETWEEN 1 AND 256", name="shards"),
    CheckConstraint("NOT (non_negative AND shards > 1)", name="sharded_unconstrained"),
)

# KYC usage: what an identity has moved per limit window, shared by all its accounts (A1).
limit_usage = Table(
    "limit_usage",
    metadata,
    Column("customer_id", String(40), ForeignKey("customers.id"), primary_key=True),
    Column("kind", String(16), primary_key=True),  # payment | withdrawal
    Column("period", String(8), primary_key=True),  # day | year
    Column("period_start", Date, primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("used_minor", BigInteger, nullable=False),
)

# --- ledger ---------------------------------------------------------------------------------

# The sub-ledger: one row per fund account shard. TigerBeetle's four counters; the signed balance
# and the available amount are derived from them and the account's normal side.
balances = Table(
    "balances",
    metadata,
    Column("fund_account_id", BigInteger, ForeignKey("fund_accounts.id"), primary_key=True),
    Column("shard", SmallInteger, primary_key=True),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("last_at", Instant, nullable=False),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("code", String(8), nullable=False),  # transaction code of the posting rule
    Column("kind", String(16), nullable=False),  # posted | pending | post_pending | void | reversal
    # The hold a post_pending / void closes, or the entry a reversal undoes. Unique: a hold closes
    # once and an entry is reversed once, enforced by the database, not only by the code.
    Column(
        "ref_entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=True, unique=True
    ),
    Column("posted_at", Instant, nullable=False, index=True),
    Column("memo", String(200), nullable=True),
)

# postings, balance_history and ledger_requests carry no foreign keys: they are written only in
# the same statement as their entry, and their row triggers cost more than the rest of the
# insert on PostgreSQL. ledger.eod.check verifies every reference instead (ADR 0001).
postings = Table(
    "postings",
    metadata,
    Column("entry_id", BigInteger, primary_key=True),
    # leg * 2 + (0 debit | 1 credit): a partial capture finds each leg of its hold by number.
    Column("seq", SmallInteger, primary_key=True),
    Column("fund_account_id", BigInteger, nullable=False),
    Column("shard", SmallInteger, nullable=False),
    Column("side", String(1), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("side IN ('D', 'C')", name="side"),
    sqlite_with_rowid=False,
)

# One row per change of a balance row, with the counters after it: balance_at() is one index seek.
balance_history = Table(
    "balance_history",
    metadata,
    Column("fund_account_id", BigInteger, primary_key=True),
    Column("shard", SmallInteger, primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("entry_id", BigInteger, nullable=False),
    Column("at", Instant, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Index(None, "fund_account_id", "shard", "at"),
    sqlite_with_rowid=False,
)

holds = Table(
    "holds",
    metadata,
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), primary_key=True),
    Column("status", String(16), nullable=False),  # pending | posted | voided | expired
    Column("expires_at", Instant, nullable=True),
    Column("closed_by_entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=True),
    Index(None, "status", "expires_at"),
)

# Idempotency: one row per request key, with the payload's hash and its outcome (success or
# rejection), so a retry gets the first answer back and never acts twice.
ledger_requests = Table(
    "ledger_requests",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("operation", String(16), nullable=False),
    Column("payload_hash", LargeBinary(32), nullable=False),
    Column("status", String(8), nullable=False),  # ok | rejected
    Column("reason", String(40), nullable=True),
    Column("detail", Text, nullable=True),
    Column("entry_id", BigInteger, nullable=True),
    Column("created_at", Instant, nullable=False),
    sqlite_with_rowid=False,
)

# The general ledger: per business day, chart account and currency, the posted totals.
gl_daily = Table(
    "gl_daily",
    metadata,
    Column("business_date", Date, primary_key=True),
    Column("chart_code", String(16), ForeignKey("chart_accounts.code"), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("debit_total", BigAmount, nullable=False),
    Column("credit_total", BigAmount, nullable=False),
    Column("entry_count", Integer, nullable=False),
)

ledger_days = Table(
    "ledger_days",
    metadata,
    Column("business_date", Date, primary_key=True),
    Column("timezone", String(64), nullable=False),
    Column("closed_at", Instant, nullable=False),
    Column("entry_count", Integer, nullable=False),
)

# --- gateway --------------------------------------------------------------------------------

merchants = Table(
    "merchants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # active | suspended
    # The ledger account holding the merchant's fund accounts (merchant_settlement, ...).
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, unique=True),
    Column("currency", String(3), nullable=False),
    Column("commission_bps", Integer, nullable=False),
    Column("webhook_url", String(500), nullable=True),
    Column("webhook_secret_sealed", LargeBinary, nullable=False),
    Column("created_at", Instant, nullable=False),
    # A marketplace's sellers are its sub-merchants: it may take one combined payment for
    # orders of several of them (P11) and refund any of those orders.
    Column("parent_id", String(40), ForeignKey("merchants.id"), nullable=True, index=True),
    CheckConstraint("commission_bps BETWEEN 0 AND 10000", name="commission_bps"),
)

# Which merchants may act for a customer (gateway/customers.py): the merchant that enrolled it,
# and that merchant's sellers. A customer outside a merchant's scope is, to it, no customer.
merchant_customers = Table(
    "merchant_customers",
    metadata,
    Column("merchant_id", String(40), ForeignKey("merchants.id"), primary_key=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), primary_key=True, index=True),
    Column("enrolled_at", Instant, nullable=False),
)

# Request-signing keys. The secret is needed to verify an HMAC, so it is stored encrypted under
# the server's key, never in clear (ADR 0004); the id is public.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.id"), nullable=False, index=True),
    Column("secret_sealed", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),  # active | revoked
    Column("created_at", Instant, nullable=False),
)

# Nonces seen inside the signature window; older rows are pruned.
api_nonces = Table(
    "api_nonces",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    Column("seen_at", Instant, nullable=False, index=True),
    sqlite_with_rowid=False,
)

# Idempotency-Key of the merchant API: the stored response is what a retry gets back.
api_idempotency = Table(
    "api_idempotency",
    metadata,
    Column("merchant_id", String(40), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("request_hash", LargeBinary(32), nullable=False),
    Column("state", String(16), nullable=False),  # in_flight | done
    Column("status_code", SmallInteger, nullable=True),
    Column("response", Text, nullable=True),
    Column("created_at", Instant, nullable=False),
    Column("locked_until", Instant, nullable=True),
    sqlite_with_rowid=False,
)

# One payment for several orders (combined, P11) or one order paid several ways (mixed, P12).
payment_groups = Table(
    "payment_groups",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.id"), nullable=False),
    Column("merchant_group_id", String(64), nullable=False),  # the caller's reference
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("request_hash", LargeBinary(32), nullable=False),
    Column("created_at", Instant, nullable=False),
    UniqueConstraint("merchant_id", "merchant_group_id"),
    CheckConstraint("amount > 0", name="amount_positive"),
)

payment_intents = Table(
    "payment_intents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.id"), nullable=False),
    Column("merchant_order_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", String(128), nullable=False),
    Column("settlement", String(16), nullable=False),  # instant | escrow
    Column("commission", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("request_hash", LargeBinary(32), nullable=False),
    Column("expires_at", Instant, nullable=False),
    Column("succeeded_attempt_id", String(40), nullable=True),
    Column("fee", BigInteger, nullable=True),
    Column("refunded", BigInteger, nullable=False),
    Column("refund_count", Integer, nullable=False),
    Column("paid_at", Instant, nullable=True),
    # The merchant's reference for the payer: the cashier puts their last method first.
    Column("payer_ref", String(64), nullable=True),
    Column("group_id", String(40), ForeignKey("payment_groups.id"), nullable=True, index=True),
    # order | topup; a top-up credits the payer's buyer balance (wallet), not a merchant.
    Column("purpose", String(16), nullable=False, server_default="order"),
    Column("payer_account_id", String(40), ForeignKey("accounts.id"), nullable=True),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
    UniqueConstraint("merchant_id", "merchant_order_id"),
    Index("ix_payment_intents_payer", "merchant_id", "payer_ref", "paid_at"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunded_range"),
)

payment_attempts = Table(
    "payment_attempts",
    metadata,
    Column("id", String(40), primary_key=True),  # our out_trade_no at the channel
    Column("intent_id", String(40), ForeignKey("payment_intents.id"), nullable=False, index=True),
    # A combined payment's one channel order: intent_id is its first order's.
    Column("group_id", String(40), ForeignKey("payment_groups.id"), nullable=True, index=True),
    # What the channel is asked for; NULL (rows from before groups) means the intent's amount.
    Column("amount", BigInteger, nullable=True),
    Column("channel", String(16), nullable=False),
    Column("method", String(16), nullable=False),
    Column("payer_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("channel_txn_id", String(64), nullable=True),
    Column("credential", String(1000), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
    # The poller's schedule: NULL once the attempt is final.
    Column("next_poll_at", Instant, nullable=True, index=True),
    Column("polls", Integer, nullable=False),
    # The channel converted the payment into another currency at this rate: units of its
    # settlement currency per unit of ours, as it reported when the payment was confirmed.
    # Reconciliation checks the converted amount on its statement against it (FX_DIFFERENCE).
    Column("fx_rate", Rate, nullable=True),
)

# The parts of a mixed payment (P12) that are not its channel attempt: the payer's balance and
# the platform's subsidy, each reserved by a ledger hold until the channel part succeeds.
payment_legs = Table(
    "payment_legs",
    metadata,
    Column("intent_id", String(40), ForeignKey("payment_intents.id"), primary_key=True),
    Column("method", String(16), primary_key=True),  # balance | subsidy
    Column("amount", BigInteger, nullable=False),
    Column("account_id", String(40), nullable=True),  # the payer's, for balance
    Column("hold_entry_id", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),  # held | captured | voided
    Column("refunded", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunded_range"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(40), primary_key=True),  # our out_refund_no: the same on every retry
    Column("intent_id", String(40), ForeignKey("payment_intents.id"), nullable=False, index=True),
    Column("attempt_id", String(40), ForeignKey("payment_attempts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("fee_returned", BigInteger, nullable=False),  # the channel's fee share, given back
    Column("commission_returned", BigInteger, nullable=False),
    Column("settled", Boolean, nullable=False),  # taken back from the merchant, not escrow
    # The ledger hold reserving the refund's money from acceptance until the channel answers.
    Column("hold_entry_id", BigInteger, nullable=True),
    # A mixed payment's refund goes first to the payer's balance (it costs no channel fee):
    # that part, held apart, is booked with the channel's part when the channel answers.
    Column("balance_part", BigInteger, nullable=False, server_default="0"),
    Column("balance_hold_entry_id", BigInteger, nullable=True),
    # The merchant's Idempotency-Key: a retried request finds its refund, never makes another.
    Column("request_key", String(128), nullable=True),
    Column("reason", String(80), nullable=False),
    Column("status", String(24), nullable=False),
    Column("channel_refund_id", String(64), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
    Column("next_poll_at", Instant, nullable=True, index=True),
    Column("polls", Integer, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    UniqueConstraint("intent_id", "request_key"),
)

# The payment flow record (P3): every request, channel answer, notification and state change,
# append-only. It is the evidence reconciliation works from.
payment_events = Table(
    "payment_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("intent_id", String(40), nullable=False, index=True),
    Column("attempt_id", String(40), nullable=True),
    Column("refund_id", String(40), nullable=True),
    Column("kind", String(24), nullable=False),
    Column("status", String(24), nullable=True),
    Column("detail", Text, nullable=False),
    Column("at", Instant, nullable=False),
)

# Events for merchants, written in the transaction of the change they announce.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("merchant_id", String(40), nullable=False),
    Column("type", String(48), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Instant, nullable=False),
    # Webhook delivery state: NULL next_attempt_at means delivered or given up.
    Column("delivery_state", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Instant, nullable=True, index=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", BigInteger, ForeignKey("outbox.id"), nullable=False, index=True),
    Column("url", String(500), nullable=False),
    Column("status_code", SmallInteger, nullable=True),
    Column("error", String(200), nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("manual", Boolean, nullable=False),
    Column("at", Instant, nullable=False),
)

# --- routing --------------------------------------------------------------------------------

# Each channel's recent record for routing (gateway/routing.py): decayed counts in millionths
# (integers, so both databases round-trip them exactly) and its circuit breaker.
channel_health = Table(
    "channel_health",
    metadata,
    Column("channel", String(16), primary_key=True),
    Column("paid_e6", BigInteger, nullable=False),
    Column("settled_e6", BigInteger, nullable=False),
    Column("calls_e6", BigInteger, nullable=False),
    Column("errors_e6", BigInteger, nullable=False),
    Column("circuit", String(16), nullable=False),  # closed | open | half_open
    Column("open_until", Instant, nullable=True),
    Column("openings", Integer, nullable=False),
    Column("updated_at", Instant, nullable=False),
)

# What each channel (and each card on it) has carried per business day, for daily limits.
# Counted when an attempt is stored, given back when it fails or closes.
channel_usage = Table(
    "channel_usage",
    metadata,
    Column("channel", String(16), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("card", String(64), primary_key=True),  # "" for the channel's total
    Column("used_minor", BigInteger, nullable=False),
    CheckConstraint("used_minor >= 0", name="used_minor_non_negative"),
    sqlite_with_rowid=False,
)

# Every routing decision, with what was considered and why (visible through the API).
routing_decisions = Table(
    "routing_decisions",
    metadata,
    Column("intent_id", String(40), ForeignKey("payment_intents.id"), primary_key=True),
    Column("requested", String(16), nullable=False),  # the channel or family asked for
    Column("method", String(16), nullable=False),
    Column("chosen", String(16), nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("draw", BigInteger, nullable=False),
    Column("considered", Text, nullable=False),  # JSON list, one object per channel
    Column("created_at", Instant, nullable=False),
)

# --- cards ----------------------------------------------------------------------------------

# Bank cards bound by real-name customers for quick pay (gateway/cards.py). The card number,
# holder name, phone and expiry are sealed (AES-GCM under the server's key); the keyed digest
# of the number finds the same card again. The CVV is never stored, in any form.
cards = Table(
    "cards",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    Column("pan_digest", LargeBinary(32), nullable=False),
    Column("pan_sealed", LargeBinary, nullable=False),
    Column("masked_pan", String(24), nullable=False),  # first six and last four digits
    Column("bank", String(80), nullable=True),
    Column("bank_code", String(16), nullable=True),
    Column("card_type", String(8), nullable=False),  # debit | credit
    Column("expiry_sealed", LargeBinary, nullable=True),  # credit cards
    Column("holder_sealed", LargeBinary, nullable=False),
    Column("phone_sealed", LargeBinary, nullable=True),  # when bound with four elements
    Column("status", String(16), nullable=False),  # active | unbound
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
    UniqueConstraint("customer_id", "pan_digest"),
)

# A card signed on one channel: the channel's token for it and the limits its bind answer
# gave (the channel's per card, and the issuer's across every channel).
card_signings = Table(
    "card_signings",
    metadata,
    Column("card_id", String(40), ForeignKey("cards.id"), primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("token", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("single_limit", BigInteger, nullable=True),
    Column("daily_limit", BigInteger, nullable=True),
    Column("issuer_single_limit", BigInteger, nullable=True),
    Column("issuer_daily_limit", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),  # active | unbound
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
)

# A binding waiting for its SMS code. A new card's elements (number, holder, phone, expiry;
# never the CVV) are sealed here until the confirmation creates the card; signing a known card
# on another channel names it instead.
card_bindings = Table(
    "card_bindings",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False, index=True),
    Column("merchant_id", String(40), nullable=True),  # who started it, for the record
    Column("channel", String(16), nullable=False),
    Column("request_id", String(40), nullable=False),  # the bind request's id at the channel
    Column("card_id", String(40), ForeignKey("cards.id"), nullable=True),
    Column("elements_sealed", LargeBinary, nullable=True),
    Column("masked_phone", String(20), nullable=True),
    Column("expires_at", Instant, nullable=True),  # of the SMS code
    Column("status", String(16), nullable=False),  # pending | confirmed | failed | expired
    Column("error_code", String(64), nullable=True),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
    UniqueConstraint("channel", "request_id"),
    # The purge of bindings never confirmed (their sealed elements) finds them by age.
    Index("ix_card_bindings_pending", "status", "created_at"),
)

# A payer's payment password (a 6-digit PIN), the alternative to a payment's SMS code. Only a
# salted scrypt hash of a keyed digest of it is kept (``gateway/payment_passwords.py``), with
# the KDF's parameters, so they can be raised later; wrong tries in a row lock it for a while.
payment_passwords = Table(
    "payment_passwords",
    metadata,
    Column("customer_id", String(40), ForeignKey("customers.id"), primary_key=True),
    Column("password_hash", LargeBinary(64), nullable=False),
    Column("salt", LargeBinary(32), nullable=False),
    Column("kdf", String(64), nullable=False),  # scrypt:n=..,r=..,p=..
    Column("failed_tries", Integer, nullable=False),  # wrong in a row
    Column("locked_until", Instant, nullable=True),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),  # last set or changed
    CheckConstraint("failed_tries >= 0", name="failed_tries_non_negative"),
)

# What each card has been charged per day of its card network (Beijing days), all channels
# together: the issuer's daily limit is checked against it before anything is sent. Counted
# when a payment is routed, given back when its attempt fails or closes; refunds give nothing
# back, as issuers do not.
card_usage = Table(
    "card_usage",
    metadata,
    Column("card_id", String(40), ForeignKey("cards.id"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("used_minor", BigInteger, nullable=False),
    CheckConstraint("used_minor >= 0", name="used_minor_non_negative"),
    sqlite_with_rowid=False,
)

# --- wallet: transfers and withdrawals of buyer balances --------------------------------------

wallet_transfers = Table(
    "wallet_transfers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.id"), nullable=False),
    Column("transfer_ref", String(64), nullable=False),  # the caller's id: idempotency
    Column("request_hash", LargeBinary(32), nullable=False),
    Column("payer_account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("payee_account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("created_at", Instant, nullable=False),
    UniqueConstraint("merchant_id", "transfer_ref"),
    CheckConstraint("amount > 0", name="amount_positive"),
)

# One submission to the bank: the rail, how many withdrawals and their total.
withdrawal_batches = Table(
    "withdrawal_batches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("rail", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # SUBMITTED | ANSWERED | UNANSWERED
    Column("created_at", Instant, nullable=False),
    Column("answered_at", Instant, nullable=True),
)

withdrawals = Table(
    "withdrawals",
    metadata,
    Column("id", String(40), primary_key=True),  # also the bank's de-duplication key
    Column("merchant_id", String(40), ForeignKey("merchants.id"), nullable=False),
    Column("withdrawal_ref", String(64), nullable=False),  # the caller's id: idempotency
    Column("request_hash", LargeBinary(32), nullable=False),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("card_id", String(40), ForeignKey("cards.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("rail", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("due_at", Instant, nullable=False),  # the earliest batch that may carry it
    Column("hold_entry_id", BigInteger, nullable=False),
    Column("kyc_day", Date, nullable=False),  # the KYC window its amount was counted in
    Column("short_errors", Integer, nullable=False),
    Column("batch_id", String(40), ForeignKey("withdrawal_batches.id"), nullable=True),
    Column("bank_txn_id", String(64), nullable=True),
    Column("error_code", String(32), nullable=True),
    Column("paid_at", Instant, nullable=True),
    Column("created_at", Instant, nullable=False),
    Column("updated_at", Instant, nullable=False),
    UniqueConstraint("merchant_id", "withdrawal_ref"),
    Index("ix_withdrawals_due", "status", "due_at"),
    CheckConstraint("amount > 0", name="amount_positive"),
)

# The withdrawal's flow record (P3): request, submissions, the bank's answers, changes.
withdrawal_events = Table(
    "withdrawal_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("withdrawal_id", String(40), ForeignKey("withdrawals.id"), nullable=False, index=True),
    Column("batch_id", String(40), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(32), nullable=True),
    Column("detail", Text, nullable=False),
    Column("at", Instant, nullable=False),
)

# --- reconciliation -------------------------------------------------------------------------

# One row per imported statement file (its lines are Parquet partitions beside the database):
# the digest makes a re-import of the same bytes change nothing.
statement_files = Table(
    "statement_files",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("source", String(16), nullable=False),
    Column("format", String(32), nullable=False),
    Column("account", String(64), nullable=False),
    Column("business_date", Date, nullable=False),
    Column("file", String(255), nullable=False),  # the name it came under
    Column("path", String(255), nullable=False),  # its lines, relative to the store's root
    Column("lines", Integer, nullable=False),
    Column("totals", Text, nullable=False),  # the file's own totals, as declared (JSON)
    # A later file of the same source, account, day and format (a re-issued bill) replaces it.
    Column("superseded_by", String(64), nullable=True),
    Column("imported_by", String(64), nullable=False),
    Column("imported_at", Instant, nullable=False),
    Index("ix_statement_files_day", "source", "business_date"),
)

# --- reconciliation runs and their differences ------------------------------------------------

recon_batches = Table(
    "recon_batches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("business_date", Date, nullable=False),
    # sha256 over what the run read (current statement files, our records, the configuration):
    # a run over the same inputs is the same batch, and answers with it.
    Column("inputs_digest", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # done | failed
    # Counts and sums of both sides per currency, and differences per type (JSON).
    Column("totals", Text, nullable=False),
    Column("counts", Text, nullable=False),
    Column("run_by", String(64), nullable=False),
    Column("started_at", Instant, nullable=False),
    Column("finished_at", Instant, nullable=True),
    # A later run of the same channel and day over other inputs replaces this one.
    Column("superseded_by", String(40), nullable=True),
    UniqueConstraint("channel", "business_date", "inputs_digest"),
    Index("ix_recon_batches_day", "channel", "business_date"),
)

recon_differences = Table(
    "recon_differences",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("channel", String(16), nullable=False),
    # Stable across runs: digest of channel, type and both sides' references, so the same
    # difference found again is the same row (its age counts from the first sighting).
    Column("key", String(64), nullable=False),
    Column("type", String(24), nullable=False),  # a DifferenceType
    Column("business_date", Date, nullable=False),  # of the run that first found it
    # open (in review) | carried (short, waiting for the next days' bills) | resolved
    Column("status", String(16), nullable=False),
    Column("resolution", String(32), nullable=True),  # how it was closed: rule or action
    Column("currency", String(3), nullable=False),
    # What the difference is worth, signed as the channel's view minus ours (minor units).
    Column("amount", BigAmount, nullable=False),
    Column("channel_txn_id", String(64), nullable=True),
    Column("merchant_ref", String(64), nullable=True),
    Column("attempt_id", String(40), nullable=True),
    Column("refund_id", String(40), nullable=True),
    Column("intent_id", String(40), nullable=True),
    Column("payout_id", String(64), nullable=True),
    Column("evidence", Text, nullable=False),  # both records as the run saw them (JSON)
    Column("alert", Boolean, nullable=False),  # above the review threshold
    Column("first_batch_id", String(40), ForeignKey("recon_batches.id"), nullable=False),
    Column("last_batch_id", String(40), ForeignKey("recon_batches.id"), nullable=False),
    Column("suspense_entry_id", BigInteger, nullable=True),  # parked in suspense while open
    Column("first_seen_at", Instant, nullable=False),
    Column("resolved_at", Instant, nullable=True),
    UniqueConstraint("channel", "key"),
    Index("ix_recon_differences_open", "status", "channel"),
)

recon_actions = Table(
    "recon_actions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column(
        "difference_id", String(40), ForeignKey("recon_differences.id"), nullable=True, index=True
    ),
    Column("batch_id", String(40), ForeignKey("recon_batches.id"), nullable=True),
    # auto rules (mark_paid, refund, carry, resolve_carried, break) and manual actions
    # (confirm, write_off, adjust, rerun)
    Column("action", String(24), nullable=False),
    Column("actor", String(64), nullable=False),  # "system" for the rules
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),  # JSON
    Column("entry_id", BigInteger, nullable=True),  # the ledger entry the action posted, if any
    Column("at", Instant, nullable=False),
)
