"""notification delivery: receipts, acknowledgements, fallbacks; per-person preferences

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("recipient_role", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("channel_ref", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("error_reason", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("fallback_of", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_notifications_provider_message_id", ["provider_message_id"])
        batch.create_index("ix_notifications_status", ["status"])
    op.create_table(
        "notification_preferences",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=True),
        sa.Column("sms_opt_out", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("quiet_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_end", sa.String(length=5), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_notification_preferences_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_notification_preferences")),
    )


def downgrade() -> None:
    op.drop_table("notification_preferences")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_index("ix_notifications_status")
        batch.drop_index("ix_notifications_provider_message_id")
        for column in (
            "updated_at",
            "fallback_of",
            "acknowledged_at",
            "delivered_at",
            "error_reason",
            "channel_ref",
            "recipient_role",
        ):
            batch.drop_column(column)
