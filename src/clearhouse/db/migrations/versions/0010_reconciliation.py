"""reconciliation: batches (one run per channel and business date), the differences they find,
and every action taken on them

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clearhouse.db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recon_batches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("inputs_digest", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("totals", sa.Text(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("run_by", sa.String(length=64), nullable=False),
        sa.Column("started_at", clearhouse.db.types.Instant(), nullable=False),
        sa.Column("finished_at", clearhouse.db.types.Instant(), nullable=True),
        sa.Column("superseded_by", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_batches")),
        sa.UniqueConstraint(
            "channel",
            "business_date",
            "inputs_digest",
            name=op.f("uq_recon_batches_channel_business_date_inputs_digest"),
        ),
    )
    op.create_index(
        "ix_recon_batches_day", "recon_batches", ["channel", "business_date"], unique=False
    )
    op.create_table(
        "recon_differences",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", clearhouse.db.types.BigAmount(), nullable=False),
        sa.Column("channel_txn_id", sa.String(length=64), nullable=True),
        sa.Column("merchant_ref", sa.String(length=64), nullable=True),
        sa.Column("attempt_id", sa.String(length=40), nullable=True),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("intent_id", sa.String(length=40), nullable=True),
        sa.Column("payout_id", sa.String(length=64), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("first_batch_id", sa.String(length=40), nullable=False),
        sa.Column("last_batch_id", sa.String(length=40), nullable=False),
        sa.Column("suspense_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("first_seen_at", clearhouse.db.types.Instant(), nullable=False),
        sa.Column("resolved_at", clearhouse.db.types.Instant(), nullable=True),
        sa.ForeignKeyConstraint(
            ["first_batch_id"],
            ["recon_batches.id"],
            name=op.f("fk_recon_differences_first_batch_id_recon_batches"),
        ),
        sa.ForeignKeyConstraint(
            ["last_batch_id"],
            ["recon_batches.id"],
            name=op.f("fk_recon_differences_last_batch_id_recon_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_differences")),
        sa.UniqueConstraint("channel", "key", name=op.f("uq_recon_differences_channel_key")),
    )
    op.create_index(
        "ix_recon_differences_open", "recon_differences", ["status", "channel"], unique=False
    )
    op.create_table(
        "recon_actions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("difference_id", sa.String(length=40), nullable=True),
        sa.Column("batch_id", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("at", clearhouse.db.types.Instant(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["recon_batches.id"], name=op.f("fk_recon_actions_batch_id_recon_batches")
        ),
        sa.ForeignKeyConstraint(
            ["difference_id"],
            ["recon_differences.id"],
            name=op.f("fk_recon_actions_difference_id_recon_differences"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_actions")),
    )
    op.create_index(
        op.f("ix_recon_actions_difference_id"), "recon_actions", ["difference_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_recon_actions_difference_id"), table_name="recon_actions")
    op.drop_table("recon_actions")
    op.drop_index("ix_recon_differences_open", table_name="recon_differences")
    op.drop_table("recon_differences")
    op.drop_index("ix_recon_batches_day", table_name="recon_batches")
    op.drop_table("recon_batches")
