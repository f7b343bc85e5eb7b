"""customer scoping

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 10:12:40.118204
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clearhouse.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchant_customers",
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("enrolled_at", clearhouse.db.types.Instant(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_merchant_customers_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_merchant_customers_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("merchant_id", "customer_id", name=op.f("pk_merchant_customers")),
    )
    with op.batch_alter_table("merchant_customers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_merchant_customers_customer_id"), ["customer_id"], unique=False
        )

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_sealed", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("phone_masked", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("phone_masked")
        batch_op.drop_column("phone_sealed")

    with op.batch_alter_table("merchant_customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merchant_customers_customer_id"))

    op.drop_table("merchant_customers")
