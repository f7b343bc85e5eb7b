"""statement files: the register of imported channel and bank statements

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clearhouse.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statement_files",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("totals", sa.Text(), nullable=False),
        sa.Column("superseded_by", sa.String(length=64), nullable=True),
        sa.Column("imported_by", sa.String(length=64), nullable=False),
        sa.Column("imported_at", clearhouse.db.types.Instant(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_statement_files")),
    )
    op.create_index(
        "ix_statement_files_day", "statement_files", ["source", "business_date"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_statement_files_day", table_name="statement_files")
    op.drop_table("statement_files")
