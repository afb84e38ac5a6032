"""Learning-system integrations: one row per configured connector (Moodle, LRS pull, CSV drop).

The row holds what a sync needs between runs: the connector's ``config`` (URLs, folder, options;
never a secret), a ``secret_ref`` naming where its token lives (``env:NAME`` or ``file:/path``),
the ``cursor`` (how far the source was committed; a sync advances it only past what was
recorded), when it last synced and how it went.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from store.models import Base
from store.types import StrictJSON, UTCDateTime, utcnow


class Integration(Base):
    """A configured connector to a learning system."""

    __tablename__ = "integrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    #: ``moodle``, ``xapi_lrs`` or ``csv_drop``.
    kind: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(StrictJSON, default=dict)
    #: Where the credential lives (``env:NAME`` / ``file:/path``); the secret is never stored.
    secret_ref: Mapped[str | None] = mapped_column(String(300))
    cursor: Mapped[dict[str, Any]] = mapped_column(StrictJSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: ``ok`` or ``failed`` (None: never synced).
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(String(500))
    #: Failed syncs since the last one that succeeded.
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
