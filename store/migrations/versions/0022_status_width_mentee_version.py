"""status width and mentee versions: ``apprenticeships.compliance_status`` holds 32
characters, and ``mentee_profiles`` gets a version (the prepared-mentees cache's key)

A pack's status for programs longer than 16 characters failed when the workflow recorded it;
the column now holds what ``obligations.status`` holds (32), and packs are refused at load
time when a status is longer (``domain.statuses.STATUS_MAX_CHARS``). ``find-mentee`` reads
prepared mentee profiles from a cache keyed, as the mentors' one, by the sum of versions.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apprenticeships") as batch:
        batch.alter_column(
            "compliance_status",
            existing_type=sa.String(length=16),
            type_=sa.String(length=32),
            existing_nullable=False,
        )
    with op.batch_alter_table("mentee_profiles") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("mentee_profiles") as batch:
        batch.drop_column("version")
    # Statuses longer than 16 characters are cut to fit (the next record rewrites them).
    op.execute(
        sa.text(
            "UPDATE apprenticeships SET compliance_status = substr(compliance_status, 1, 16)"
            " WHERE length(compliance_status) > 16"
        )
    )
    with op.batch_alter_table("apprenticeships") as batch:
        batch.alter_column(
            "compliance_status",
            existing_type=sa.String(length=32),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
