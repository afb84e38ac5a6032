"""When a person may be messaged: quiet hours and business days, in their own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _clock(value: str | None) -> time | None:
    if not value:
        return None
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def in_quiet_hours(local: datetime, start: time, end: time) -> bool:
    """Whether the local wall-clock time falls in [start, end) (overnight when start > end)."""
    now = local.time().replace(tzinfo=None)
    if start <= end:
        return start <= now < end
    return now >= start or now < end


def next_allowed(
    moment: datetime,
    time_zone: str | None,
    *,
    quiet_start: str | None = None,
    quiet_end: str | None = None,
    business_days_only: bool = False,
) -> datetime:
    """The first instant at or after ``moment`` outside quiet hours (and on a weekday).

    Args:
        moment: When the message is due (aware).
        time_zone: The recipient's IANA time zone (UTC when unknown).
        quiet_start: Start of quiet hours, "HH:MM" local (None: no quiet hours).
        quiet_end: End of quiet hours, "HH:MM" local.
        business_days_only: Skip Saturdays and Sundays.

    Returns:
        ``moment`` itself when allowed, else the next allowed instant (aware, UTC).
    """
    zone = _zone(time_zone)
    start, end = _clock(quiet_start), _clock(quiet_end)
    local = moment.astimezone(zone)
    for _ in range(14):  # at most a weekend plus a night: a bounded walk, never a loop
        if business_days_only and local.weekday() >= 5:
            day = local.date() + timedelta(days=7 - local.weekday())
            local = datetime.combine(day, end or time(0), tzinfo=zone)
            continue
        if start is not None and end is not None and in_quiet_hours(local, start, end):
            day = (
                local.date()
                if local.time().replace(tzinfo=None) < end
                else local.date() + timedelta(days=1)
            )
            local = datetime.combine(day, end, tzinfo=zone)
            continue
        break
    return local.astimezone(UTC) if local != moment.astimezone(zone) else moment
