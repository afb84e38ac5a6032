"""decision intervals: each decision's superseded_at, so as-of counts read each row once

Revision ID: 0019
Revises: 0015
Create Date: 2026-11-30 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
    # Backfill: the decided_at of the workflow's next decision in (decided_at, id) order.
    # A correlated subquery (not UPDATE … FROM) runs unchanged on SQLite and PostgreSQL and
    # is answered from ix_decisions_workflow_decided.
    op.execute(
        """
        UPDATE decisions SET superseded_at = (
            SELECT nxt.decided_at FROM decisions AS nxt
            WHERE nxt.workflow_id = decisions.workflow_id
              AND (nxt.decided_at > decisions.decided_at
                   OR (nxt.decided_at = decisions.decided_at AND nxt.id > decisions.id))
            ORDER BY nxt.decided_at, nxt.id
            LIMIT 1
        )
        """
    )
    op.create_index(
        "ix_decisions_interval",
        "decisions",
        ["superseded_at", "decided_at", "status", "person_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_decisions_interval", table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("superseded_at")
