"""token lifecycle: API tokens expire and integration tokens carry scopes

Tokens created before this revision never expired and an integration token could do anything an
integration may. They keep working for 90 days from the upgrade (then expire like new ones), and
existing integration tokens get every integration scope, so no running integration breaks on
upgrade; `duly tokens list` shows them for review.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: Every integration scope at the time of this revision (store.tokens.Scope).
LEGACY_INTEGRATION_SCOPES = [
    "assignments:write",
    "completions:write",
    "people:import",
    "people:read",
    "xapi:write",
]
LEGACY_LIFETIME = timedelta(days=90)


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
    tokens = sa.table(
        "api_tokens",
        sa.column("role", sa.String()),
        sa.column("revoked_at", sa.DateTime(timezone=True)),
        sa.column("expires_at", sa.DateTime(timezone=True)),
        sa.column("scopes", sa.JSON()),
    )
    op.execute(
        tokens.update()
        .where(tokens.c.revoked_at.is_(None))
        .values(expires_at=datetime.now(UTC) + LEGACY_LIFETIME)
    )
    op.execute(
        tokens.update()
        .where(tokens.c.role == "integration")
        .values(scopes=LEGACY_INTEGRATION_SCOPES)
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("scopes")
        batch.drop_column("expires_at")
