"""When and how a person may be messaged: channels, quiet hours and business days.

A person's ``channels`` preference is honoured for every early reminder. Due-day and overdue
notices are mandatory: a choice that leaves them no reachable channel (``channels: []``, or only
channels the person has no address on) is set aside for them, so they still go out on the usual
fallback order (email first). An SMS opt-out (STOP) is always honoured.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: A stage named by its offset from the due date (``-30d``, ``0d``, ``+7d``), optionally with a
#: certification cycle prefix as the ledger keys it (``c2:0d``).
_OFFSET_STAGE = re.compile(r"^(?:c\d+:)?(?P<days>[+-]?\d+)d$")


def is_mandatory(stage: str, days_before_due: int | None = None) -> bool:
    """Whether a notice is mandatory: on the due day or after it (overdue, escalations).

    Args:
        stage: The stage name (``0d``, ``+7d``, ``c2:0d``; a label such as ``final warning``
            says nothing by itself).
        days_before_due: Days from the learner's today to the due date when the stage fired
            (< 0: overdue), when known; it decides for labelled stages.
    """
    if days_before_due is not None:
        return days_before_due <= 0
    match = _OFFSET_STAGE.match(stage.strip())
    return match is not None and int(match["days"]) >= 0


def permitted_channels(
    chosen: Sequence[str] | None, reachable: Collection[str], *, mandatory: bool
) -> frozenset[str] | None:
    """The channels a message may use under a person's ``channels`` preference.

    Args:
        chosen: The person's allowed channels (None: all).
        reachable: The channels the person has an address on and has not opted out of.
        mandatory: A due-day or overdue notice (:func:`is_mandatory`).

    Returns:
        The permitted channels, or None for any. A mandatory notice whose choice leaves no
        reachable channel gets None: it is never silenced by a preference.
    """
    if chosen is None:
        return None
    if mandatory and not any(channel in reachable for channel in chosen):
        return None
    return frozenset(chosen)


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
