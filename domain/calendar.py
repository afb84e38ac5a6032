"""Zone-aware calendar maths: ladder stages, due instants, months and recurrences.

Pure: the caller passes a tzinfo (a ZoneInfo built in an activity, since reading the time-zone
database is I/O a workflow may not do).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from domain.base import Contract

#: The skeleton's fixed reminder ladder, in days before the due date (0 = the due day).
DEFAULT_LADDER_DAYS: tuple[int, ...] = (90, 60, 30, 14, 7, 0)

#: Reminders land at this local hour in the learner's time zone.
REMINDER_HOUR = 9


def stage_label(days_before: int) -> str:
    """Name a ladder stage by its offset from the due date (``-30d``, ``0d``, ``+7d``)."""
    if days_before == 0:
        return "0d"
    return f"-{days_before}d" if days_before > 0 else f"+{-days_before}d"


class LadderStage(Contract):
    """One planned reminder: its label, offset and the instant it fires (UTC)."""

    label: str
    days_before_due: int
    fire_at: datetime


def plan_ladder(
    due_date: date,
    utc_offset_minutes: int,
    days: tuple[int, ...] = DEFAULT_LADDER_DAYS,
) -> list[LadderStage]:
    """Plan the reminder ladder for a due date.

    Args:
        due_date: The calendar day the obligation is due.
        utc_offset_minutes: The learner's UTC offset on the due date, so reminders land at
            :data:`REMINDER_HOUR` local time. Resolved by the caller (time-zone data is I/O).
        days: Offsets in days before the due date.

    Returns:
        Stages ordered by firing time.
    """
    tz = timezone(timedelta(minutes=utc_offset_minutes))
    due_at = datetime.combine(due_date, time(REMINDER_HOUR), tzinfo=tz).astimezone(UTC)
    stages = [
        LadderStage(label=stage_label(d), days_before_due=d, fire_at=due_at - timedelta(days=d))
        for d in sorted(days, reverse=True)
    ]
    return stages


def due_instant(due_date: date, utc_offset_minutes: int) -> datetime:
    """The instant an obligation becomes overdue: the end of its due day, learner's local time.

    One fixed offset: kept for workflows started before zone-aware planning (see
    :func:`end_of_day_in_zone`, which the planning activity uses instead).
    """
    tz = timezone(timedelta(minutes=utc_offset_minutes))
    return datetime.combine(due_date + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


def local_instant(day: date, at: time, zone: tzinfo) -> datetime:
    """``day`` at wall-clock time ``at`` in ``zone``, as a UTC instant.

    A wall-clock time that does not exist (skipped by a DST change) resolves to the instant
    just after the gap, as ``zoneinfo`` does for ``fold=0``.
    """
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def plan_ladder_in_zone(
    due_date: date, zone: tzinfo, days: tuple[int, ...] | list[int] = DEFAULT_LADDER_DAYS
) -> list[LadderStage]:
    """Plan the ladder with every stage at :data:`REMINDER_HOUR` local time on its own day.

    Args:
        due_date: The calendar day the obligation is due (or the certificate expires).
        zone: The person's time zone.
        days: Offsets in days before the due date (negative: after it).

    Returns:
        Stages ordered by firing time.
    """
    return [
        LadderStage(
            label=stage_label(d),
            days_before_due=d,
            fire_at=local_instant(due_date - timedelta(days=d), time(REMINDER_HOUR), zone),
        )
        for d in sorted(days, reverse=True)
    ]


def end_of_day_in_zone(day: date, zone: tzinfo) -> datetime:
    """The instant ``day`` ends in ``zone`` (00:00 local on the next day), in UTC."""
    return local_instant(day + timedelta(days=1), time(0), zone)


def zone_offset_minutes(zone: tzinfo, day: date) -> int:
    """The zone's UTC offset at :data:`REMINDER_HOUR` on ``day`` (DST-correct for that date)."""
    offset = datetime.combine(day, time(REMINDER_HOUR), tzinfo=zone).utcoffset()
    return int(offset.total_seconds() // 60) if offset else 0


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, clamped to the month's end (Jan 31 + 1 → Feb 28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def next_due_date(
    *,
    basis: str,
    months: int,
    completed_on: date,
    previous_due: date,
    anniversary: str | None = None,
) -> date:
    """The next cycle's due date.

    * ``from_completion``: the completion date plus the period (late or early, it counts);
    * ``from_previous_due``: the previous due date plus the period (a late completion does not
      shift the schedule, an early one does not pull it forward);
    * ``fixed_anniversary``: the first ``MM-DD`` more than half a period after the previous due
      date (so a first cycle due just before the anniversary is not followed by a second one
      two weeks later); Feb 29 falls on Feb 28 in other years.
    """
    if basis == "from_previous_due":
        return add_months(previous_due, months)
    if basis == "fixed_anniversary" and anniversary:
        month, day = (int(x) for x in anniversary.split("-"))
        threshold = add_months(previous_due, max(1, months // 2))
        year = threshold.year
        while True:
            candidate = date(year, month, min(day, calendar.monthrange(year, month)[1]))
            if candidate > threshold:
                return candidate
            year += 1
    return add_months(completed_on, months)
