"""dashboard indexes: the compliance aggregates read obligations from indexes alone

Revision ID: 0014a
Revises: 0018
Create Date: 2026-11-30 17:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0014a"
down_revision = "0018"
branch_labels = None
depends_on = None

#: name -> columns; each serves one dashboard aggregate (see services.compliance).
INDEXES = {
    # a team's or a department's rows (person_id IN …), counted by status
    "ix_obligations_person_status": ["person_id", "status", "due_date"],
    # "due within 30 days": a range read
    "ix_obligations_due": ["due_date", "status", "person_id"],
    # certifications expiring / expired: a range read
    "ix_obligations_expiry": ["kind", "expiry_date", "status", "person_id"],
    # by requirement
    "ix_obligations_requirement": ["requirement_id", "status", "due_date"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "obligations", columns, unique=False)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="obligations")
