"""decisions: every recorded status decision, for as-of answers and trends

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_key", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("requirement_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=32), nullable=True),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("pack_hash", sa.String(length=64), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("trigger", sa.String(length=300), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_decisions_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint("request_key", name=op.f("uq_decisions_request_key")),
    )
    op.create_index(
        "ix_decisions_workflow_decided", "decisions", ["workflow_id", "decided_at"], unique=False
    )
    op.create_index(
        "ix_decisions_person_requirement_decided",
        "decisions",
        ["person_id", "requirement_id", "decided_at"],
        unique=False,
    )
    op.create_index("ix_decisions_decided_at", "decisions", ["decided_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_decisions_decided_at", table_name="decisions")
    op.drop_index("ix_decisions_person_requirement_decided", table_name="decisions")
    op.drop_index("ix_decisions_workflow_decided", table_name="decisions")
    op.drop_table("decisions")
