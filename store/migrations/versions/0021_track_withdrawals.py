"""track withdrawals: an enrolment withdrawn (a leaver, or HR) keeps its row with when and why

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("track_enrolments") as batch:
        batch.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("withdrawn_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("track_enrolments") as batch:
        batch.drop_column("withdrawn_reason")
        batch.drop_column("withdrawn_at")
