"""mapping_layout: the fields each version of a mapping writes and only reads, by fingerprint

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mapping_layout",
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("object", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("written", sa.JSON(), nullable=False),
        sa.Column("read_only", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("system", "object", "fingerprint"),
    )


def downgrade() -> None:
    op.drop_table("mapping_layout")
