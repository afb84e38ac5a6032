"""obligations (status, kind, due_date) replaces (status): the breakdown by category without a sort

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30 23:30:00

``GROUP BY kind, status`` (every dashboard's "by category" table) read the whole
``(kind, expiry_date, …)`` index into a temporary B-tree to sort it on SQLite; from
``(status, kind, due_date)`` it is one streaming pass of a covering index (SQLite matches a
GROUP BY in any column order), and the due window per kind comes from the same entries. The
new index starts with ``status``, so it answers everything the plain ``(status)`` index did,
which it replaces (one index to keep on every write, not two). Leading with ``kind`` instead
would have drawn SQLite's planner away from ``ix_obligations_expiry`` for the certification
windows (``kind = ? AND expiry_date <= ?``).
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_obligations_status_kind", "obligations", ["status", "kind", "due_date"], unique=False
    )
    op.drop_index("ix_obligations_status", table_name="obligations")


def downgrade() -> None:
    op.create_index("ix_obligations_status", "obligations", ["status"], unique=False)
    op.drop_index("ix_obligations_status_kind", table_name="obligations")
