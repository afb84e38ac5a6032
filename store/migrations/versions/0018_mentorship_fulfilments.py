"""mentorship: the requirements a mentorship satisfied, and a version on mentor profiles

Revision ID: 0018
Revises: 0014
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every write of a mentor profile (the profile, a slot claimed or given back) adds one:
    # the prepared-profiles cache is keyed by the table's sum of versions (safe across
    # processes, no clock involved).
    with op.batch_alter_table("mentor_profiles") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.create_table(
        "mentorship_fulfilments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mentorship_id", sa.Integer(), nullable=False),
        sa.Column("obligation_workflow_id", sa.String(length=255), nullable=False),
        sa.Column("requirement_id", sa.String(length=64), nullable=False),
        sa.Column("fulfilled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reopened_as", sa.String(length=255), nullable=True),
        sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reopened_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["mentorship_id"],
            ["mentorships.id"],
            name=op.f("fk_mentorship_fulfilments_mentorship_id_mentorships"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mentorship_fulfilments")),
        sa.UniqueConstraint(
            "mentorship_id",
            "obligation_workflow_id",
            name=op.f("uq_mentorship_fulfilments_mentorship_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("mentorship_fulfilments")
    with op.batch_alter_table("mentor_profiles") as batch:
        batch.drop_column("version")
