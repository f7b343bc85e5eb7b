"""attempt fx rate: the rate a channel converted a payment at, for reconciliation's FX check

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clearhouse.db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite adds a nullable column in place; PostgreSQL as plain ALTER.
    with op.batch_alter_table("payment_attempts") as batch:
        batch.add_column(sa.Column("fx_rate", clearhouse.db.types.Rate(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_attempts") as batch:
        batch.drop_column("fx_rate")
