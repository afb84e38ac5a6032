"""The one fact builder: what a status rule or an ``unless`` condition sees for an obligation.

Every path that decides or tests an obligation goes through :func:`build_facts`, with plain data
in: ``decide_status`` (from the workflow's request), a stage's ``unless`` (from the reminder
request, in :func:`notifications.planning.plan_delivery`), the nightly sweep and
``rules preview`` (from the read model, which stores every obligation fact the workflows feed).
No database rows come in: callers pass plain data with the fields of
:class:`domain.contracts.obligation.ObligationFacts` (that model, or a light row with the same
names) and :class:`PersonAttributes` (or its dump, built once
per person). So a sweep at the same instant, with the same pack, decides exactly what the
workflow decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from rules.facts import complete_facts


class _HasTimeZone(Protocol):
    @property
    def time_zone(self) -> str: ...


def local_today(person: _HasTimeZone | str, now: datetime | None = None) -> date:
    """Today's date where the person is (their IANA time zone; UTC when unknown).

    Args:
        person: Anything with a ``time_zone`` (a directory entry), or the zone's name.
        now: The instant; the current one when omitted.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    moment = now or datetime.now(UTC)
    name = person if isinstance(person, str) else person.time_zone
    try:
        return moment.astimezone(ZoneInfo(name)).date()
    except (ZoneInfoNotFoundError, ValueError):
        return moment.astimezone(UTC).date()


class PersonAttributes(BaseModel):
    """A person's directory attributes, as facts (``roles``, ``department``...).

    Plain data: the caller builds it from its directory row
    (``activities.packs.person_attributes``).
    """

    model_config = ConfigDict(frozen=True)

    roles: list[str] = []
    department: str = ""
    location: str = ""
    employer: str = ""
    employment_status: str = "active"


class _ObligationFactsSource(Protocol):
    """What :func:`build_facts` reads of an obligation: the fields of ``ObligationFacts``.

    :class:`domain.contracts.obligation.ObligationFacts` is one (the workflows' requests, a
    row's ``facts()``); the nightly sweep passes light read-model rows with the same names
    (:class:`store.sweep.SweepRow`) instead of building a validated model per row.
    """

    # An ObligationKind is a str.
    @property
    def kind(self) -> str: ...
    @property
    def requirement_id(self) -> str: ...
    @property
    def due_date(self) -> date | None: ...
    @property
    def expiry_date(self) -> date | None: ...
    @property
    def completed(self) -> bool: ...
    @property
    def acknowledged(self) -> bool: ...
    @property
    def started(self) -> bool: ...
    @property
    def exempt(self) -> bool: ...
    @property
    def exempt_until(self) -> date | None: ...
    @property
    def ce_credits_short(self) -> int: ...


def build_facts(
    obligation: _ObligationFactsSource,
    person: PersonAttributes | Mapping[str, Any],
    *,
    today: date,
    grace_days: int = 0,
) -> dict[str, Any]:
    """Every known fact (see :data:`rules.facts.FACTS`) of one obligation on ``today``.

    Args:
        obligation: What the workflow knows (or the read model recorded from it).
        person: The person's directory attributes, or their ``model_dump()`` (a caller
            deciding many obligations of one person dumps once; the dump is only read).
        today: The person's local date at the decision's instant.
        grace_days: The requirement's grace period, for ``in_grace``.

    Returns:
        The complete facts, defaults filled in.
    """
    attributes = person.model_dump() if isinstance(person, PersonAttributes) else person
    facts: dict[str, Any] = {
        # str() of an ObligationKind is its value, a plain str (the engine checks exact types).
        "kind": str(obligation.kind),
        "requirement": obligation.requirement_id,
        "completed": obligation.completed,
        "acknowledged": obligation.acknowledged,
        "started": obligation.started,
        # In force through its last day; the workflow lapses it at the end of that day.
        "exempt": obligation.exempt
        and (obligation.exempt_until is None or today <= obligation.exempt_until),
        "ce_credits_short": obligation.ce_credits_short,
        **attributes,
    }
    past = 0
    # A certification is due when it expires: its due date is its expiry date.
    due = obligation.due_date if obligation.due_date is not None else obligation.expiry_date
    for name, day in (("days_until_due", due), ("days_until_expiry", obligation.expiry_date)):
        if day is not None:
            facts[name] = (day - today).days
            past = max(past, -facts[name])
    facts["in_grace"] = not obligation.completed and 0 < past <= grace_days
    return complete_facts(facts)
