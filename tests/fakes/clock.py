"""A fixed clock for ``create_app(clock=...)``: the API's "now" in tests that need one."""

from __future__ import annotations

from datetime import datetime

from api.deps import Clock


def fixed_clock(at: datetime) -> Clock:
    """A clock that always answers ``at``."""

    async def now() -> datetime:
        return at

    return now
