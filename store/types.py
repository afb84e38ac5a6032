"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns aware UTC datetimes.

    SQLite has no time-zone type, so naive values read back are declared UTC here instead of
    letting local time leak in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC on the way in; naive values are refused rather than guessed."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return aware UTC datetimes whatever the backend stored."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def utcnow() -> datetime:
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)


class NonFiniteJSON(ValueError):
    """A value for a JSON column holds NaN or an infinity, which JSON cannot represent."""


def check_finite(value: Any, where: str = "value") -> None:
    """Raise :class:`NonFiniteJSON` naming the first NaN or infinity inside ``value``.

    Iterative, so a deeply nested value cannot exhaust the stack here.
    """
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise NonFiniteJSON(f"{path} is {item!r}: JSON holds finite numbers only")
        if isinstance(item, dict):
            stack.extend((child, f"{path}.{key}") for key, child in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (unchanged when there is none).

    Rows written before :class:`StrictJSON` may hold NaN (SQLite stored it as the bare token);
    readers get null there instead of a value no JSON response can carry.
    """
    try:
        check_finite(value)
    except NonFiniteJSON:
        text = json.dumps(value)  # allow_nan: writes the bare tokens read back below
        return json.loads(text, parse_constant=lambda _token: None)
    return value


class StrictJSON(TypeDecorator[Any]):
    """A JSON column that refuses NaN and infinities on write and never returns them on read.

    Python's ``json`` writes NaN as a bare ``NaN`` token that is not JSON: SQLite stored it and
    its JSON functions then failed on the row (every later duplicate lookup answered 500), and
    PostgreSQL refused it mid-transaction. Same DDL as :class:`sqlalchemy.JSON` (no migration).
    """

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Refuse non-finite numbers before anything is written."""
        if value is not None:
            check_finite(value, "JSON column value")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """Return stored values with any NaN or infinity (from older rows) as None."""
        return finite(value)
