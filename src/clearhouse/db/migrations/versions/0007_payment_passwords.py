"""payment passwords, and the purge of unconfirmed card bindings

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 10:12:05.114270
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clearhouse.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_passwords",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("password_hash", sa.LargeBinary(length=64), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("kdf", sa.String(length=64), nullable=False),
        sa.Column("failed_tries", sa.Integer(), nullable=False),
        sa.Column("locked_until", clearhouse.db.types.Instant(), nullable=True),
        sa.Column("created_at", clearhouse.db.types.Instant(), nullable=False),
        sa.Column("updated_at", clearhouse.db.types.Instant(), nullable=False),
        sa.CheckConstraint(
            "failed_tries >= 0", name=op.f("ck_payment_passwords_failed_tries_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_payment_passwords_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_payment_passwords")),
    )
    with op.batch_alter_table("card_bindings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_card_bindings_pending"), ["status", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("card_bindings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_card_bindings_pending"))

    op.drop_table("payment_passwords")
