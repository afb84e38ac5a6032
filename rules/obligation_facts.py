"""Build the facts of one obligation from Duly's tables (for preview, sweeps and activities)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.facts import complete_facts
from store.models import Obligation, Person


def local_today(person: Person, now: datetime | None = None) -> date:
    """Today's date where the person is (their time zone; UTC when unknown)."""
    moment = now or datetime.now(UTC)
    try:
        return moment.astimezone(ZoneInfo(person.time_zone)).date()
    except (ZoneInfoNotFoundError, ValueError):
        return moment.astimezone(UTC).date()


def person_facts(person: Person) -> dict[str, Any]:
    """The directory facts of a person."""
    return {
        "roles": list(person.roles or []),
        "department": person.department or "",
        "location": person.location or "",
        "employer": person.employer or "",
        "employment_status": person.employment_status,
    }


def obligation_facts(
    obligation: Obligation,
    person: Person,
    *,
    today: date | None = None,
    grace_days: int = 0,
) -> dict[str, Any]:
    """Every known fact for ``obligation`` as of ``today`` (the person's local date by default).

    Args:
        obligation: The read-model row.
        person: Its person.
        today: The evaluation date; the person's local today when omitted.
        grace_days: The requirement's grace period, for ``in_grace``.
    """
    day = today or local_today(person)
    completed = obligation.completed_at is not None
    facts: dict[str, Any] = {
        "kind": obligation.kind,
        "requirement": obligation.requirement_id,
        "completed": completed,
        "acknowledged": obligation.acknowledged_at is not None,
        **person_facts(person),
    }
    past_due = 0
    if obligation.due_date is not None:
        facts["days_until_due"] = (obligation.due_date - day).days
        past_due = max(past_due, -facts["days_until_due"])
    if obligation.expiry_date is not None:
        facts["days_until_expiry"] = (obligation.expiry_date - day).days
        past_due = max(past_due, -facts["days_until_expiry"])
    facts["in_grace"] = not completed and 0 < past_due <= grace_days
    return complete_facts(facts)
