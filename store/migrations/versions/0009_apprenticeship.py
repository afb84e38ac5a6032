"""apprenticeships: enrolment read model, hours entries (idempotent ids), evaluations

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "apprenticeships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.String(length=80), nullable=False),
        sa.Column("program_name", sa.String(length=200), nullable=False),
        sa.Column("pack_hash", sa.String(length=64), nullable=False),
        sa.Column("supervisor", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("compliance_status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=120), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("wage_percentage", sa.Float(), nullable=False),
        sa.Column("enrolled_on", sa.Date(), nullable=False),
        sa.Column("expected_completion", sa.Date(), nullable=False),
        sa.Column("completed_on", sa.Date(), nullable=True),
        sa.Column("work_approved", sa.Float(), nullable=False),
        sa.Column("classroom_approved", sa.Float(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("as_of", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_apprenticeships_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprenticeships")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_apprenticeships_workflow_id")),
    )
    op.create_index("ix_apprenticeships_person_id", "apprenticeships", ["person_id"])
    op.create_table(
        "apprenticeship_hours",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("entry_id", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("corrects", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("logged_by", sa.String(length=120), nullable=False),
        sa.Column("reviewed_by", sa.String(length=120), nullable=True),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.Column("reviewed_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprenticeship_hours")),
        sa.UniqueConstraint("workflow_id", "entry_id", name="uq_apprenticeship_hours_entry"),
    )
    op.create_table(
        "apprenticeship_evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("evaluation_id", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("skills_signed_off", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("evaluator", sa.String(length=120), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprenticeship_evaluations")),
        sa.UniqueConstraint(
            "workflow_id", "evaluation_id", name="uq_apprenticeship_evaluations_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("apprenticeship_evaluations")
    op.drop_table("apprenticeship_hours")
    op.drop_index("ix_apprenticeships_person_id", table_name="apprenticeships")
    op.drop_table("apprenticeships")
