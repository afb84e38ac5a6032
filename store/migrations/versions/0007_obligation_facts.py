"""obligation facts: every fact a workflow decides with, a planning zone, and a row version

The sweep and `rules preview` decide from the read model; these columns make it hold what the
workflows know (started, exemption and its end, CE credits short, a status the workflow holds
itself). ``version`` is incremented by every write, so the sweep can compare-and-set.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("obligations") as batch:
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("exempt", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("exempt_until", sa.Date(), nullable=True))
        batch.add_column(
            sa.Column("ce_credits_short", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("suspended", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    # Rows written before this revision: a suspended certification is recognisable by status.
    op.execute("UPDATE obligations SET suspended = true WHERE status = 'suspended'")


def downgrade() -> None:
    with op.batch_alter_table("obligations") as batch:
        for column in (
            "version",
            "time_zone",
            "suspended",
            "ce_credits_short",
            "exempt_until",
            "exempt",
            "started_at",
        ):
            batch.drop_column(column)
