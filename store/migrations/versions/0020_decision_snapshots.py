"""decision snapshots: month-end counts, so trends and as-of counts need not read every decision

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

INTERVAL = ["superseded_at", "decided_at", "status", "person_id"]


def upgrade() -> None:
    # Empty at first: readers build a month when they first need it (store.decisions).
    op.create_table(
        "decision_snapshots",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("requirement_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("obligations", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "month", "requirement_id", "status", name=op.f("pk_decision_snapshots")
        ),
    )
    # The interval index also covers requirement_id (a snapshot is built from it alone), and
    # a covering decided_at index answers "recorded since the snapshot" (it serves every
    # decided_at range the plain ix_decisions_decided_at served).
    op.drop_index("ix_decisions_interval", table_name="decisions")
    op.create_index("ix_decisions_interval", "decisions", [*INTERVAL, "requirement_id"])
    op.drop_index("ix_decisions_decided_at", table_name="decisions")
    op.create_index(
        "ix_decisions_decided_cover",
        "decisions",
        ["decided_at", "superseded_at", "status", "requirement_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_decisions_decided_cover", table_name="decisions")
    op.create_index("ix_decisions_decided_at", "decisions", ["decided_at"])
    op.drop_index("ix_decisions_interval", table_name="decisions")
    op.create_index("ix_decisions_interval", "decisions", INTERVAL)
    op.drop_table("decision_snapshots")
