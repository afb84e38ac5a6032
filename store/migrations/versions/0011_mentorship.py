"""mentorship: mentor and mentee profiles, relationships, sessions and feedback

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    for table in ("mentor_profiles", "mentee_profiles"):
        extra = (
            [
                sa.Column("accepting_mentees", sa.Boolean(), nullable=False),
                sa.Column("max_mentees", sa.Integer(), nullable=False),
                sa.Column("active_mentees", sa.Integer(), nullable=False),
            ]
            if table == "mentor_profiles"
            else []
        )
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("person_id", sa.Integer(), nullable=False),
            sa.Column("profile", sa.JSON(), nullable=False),
            *extra,
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            _fk(table, "person_id", "people"),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
            sa.UniqueConstraint("person_id", name=op.f(f"uq_{table}_person_id")),
        )
    op.create_table(
        "mentorships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("mentee_id", sa.Integer(), nullable=False),
        sa.Column("mentor_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("goals", sa.JSON(), nullable=False),
        sa.Column("milestones", sa.JSON(), nullable=False),
        sa.Column("duration_months", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("holds_slot", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        _fk("mentorships", "mentee_id", "people"),
        _fk("mentorships", "mentor_id", "people"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mentorships")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_mentorships_workflow_id")),
    )
    op.create_index("ix_mentorships_mentee_id", "mentorships", ["mentee_id"])
    op.create_index("ix_mentorships_mentor_id", "mentorships", ["mentor_id"])
    op.create_table(
        "mentorship_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mentorship_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("mentorship_sessions", "mentorship_id", "mentorships"),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["people.id"],
            name=op.f("fk_mentorship_sessions_author_id_people"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mentorship_sessions")),
    )
    op.create_index(
        "ix_mentorship_sessions_mentorship_id", "mentorship_sessions", ["mentorship_id"]
    )
    op.create_table(
        "mentorship_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mentorship_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("mentorship_feedback", "mentorship_id", "mentorships"),
        _fk("mentorship_feedback", "author_id", "people"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mentorship_feedback")),
        sa.UniqueConstraint(
            "mentorship_id", "side", "phase", name=op.f("uq_mentorship_feedback_mentorship_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("mentorship_feedback")
    op.drop_index("ix_mentorship_sessions_mentorship_id", table_name="mentorship_sessions")
    op.drop_table("mentorship_sessions")
    op.drop_index("ix_mentorships_mentor_id", table_name="mentorships")
    op.drop_index("ix_mentorships_mentee_id", table_name="mentorships")
    op.drop_table("mentorships")
    op.drop_table("mentee_profiles")
    op.drop_table("mentor_profiles")
