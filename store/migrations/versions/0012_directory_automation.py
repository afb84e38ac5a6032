"""directory automation: people.start_date (joiner due dates) and people.user_name (SCIM)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.add_column(sa.Column("start_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("user_name", sa.String(length=200), nullable=True))
        batch.create_unique_constraint(op.f("uq_people_user_name"), ["user_name"])


def downgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.drop_constraint(op.f("uq_people_user_name"), type_="unique")
        batch.drop_column("user_name")
        batch.drop_column("start_date")
