"""track certificates: a completed track's certificate (verification code, title, issue date)

Revision ID: 0016
Revises: 0014a
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("track_enrolments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("certificate_code", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("certificate_title", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("certificate_issued_on", sa.Date(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_track_enrolments_certificate_code"), ["certificate_code"]
        )


def downgrade() -> None:
    with op.batch_alter_table("track_enrolments", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_track_enrolments_certificate_code"), type_="unique")
        batch_op.drop_column("certificate_issued_on")
        batch_op.drop_column("certificate_title")
        batch_op.drop_column("certificate_code")
