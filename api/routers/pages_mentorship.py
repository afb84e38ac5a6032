"""The mentorship page (``/ui/mentorship``): find a mentor, ask, answer, log, give feedback.

One page for everyone, in sections that depend on who is signed in:

* as a mentee: their relationships and requests with status, and "find a mentor": the ranked
  matches (``GET /mentorship/find-mentor``) with each factor's plain-language explanation and a
  button that asks (``POST /mentorship/request``);
* as a mentor: capacity, pending requests with accept / decline (optional reason), active
  mentees; on every active relationship, log a session and give midpoint or end feedback;
* HR and the auditor (a manager: their reports'): every relationship with its status, and the
  pending requests that expire within two days.

Each of those tables downloads as CSV (``/ui/mentorship/<table>.csv``): the same rows, read by
the same function (:func:`_tables`), so the caller's scope is the page's.

HR edits anyone's mentor or mentee profile on ``/ui/mentorship/profiles``: the form is sent to
``services.mentorships.put_profile``, the service of ``PUT /mentorship/profile/{side}``, which
validates it with the same model; a refusal draws the form again with each message next to
its field and everything typed kept.

The forms call the same services as the API (:mod:`services.mentorships`), so the same rules
apply (capacity claimed at acceptance, only the mentor accepts, notes kept for their author),
and answer with a redirect back here (``?done=`` names a fixed message). Declared in
:mod:`api.policy`; every form carries the CSRF token and works without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from activities import mentorship_profiles as profiles
from activities.packs import active_pack
from api.deps import DatabaseDep, SessionDep, SettingsDep, TemporalDep
from api.web import FormPrincipal, FormState, PagePrincipal, render, submit_service
from domain.contracts.mentorship import FeedbackPhase, MentorshipType, SessionFormat
from domain.roles import Role
from rules.matching import Match
from rules.mentorship_model import (
    CommunicationStyle,
    MenteeLevel,
    MenteeProfile,
    MentorProfile,
    MentorshipPolicy,
    PreferredTime,
)
from services import mentorships
from services.errors import Invalid, NotFound
from services.exports import csv_text
from store.db import committed
from store.models import Mentorship, MentorshipFeedback, Person
from store.tokens import Principal

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

PAGE = "/ui/mentorship"

#: ``?done=`` keys and what the page then says (fixed text: nothing from the URL is echoed).
DONE = {
    "requested": "Your request was sent; the mentor is notified.",
    "accepted": "Accepted: the mentorship is active.",
    "declined": "Declined; the mentee is told, with their next best matches.",
    "session": "The session is logged.",
    "feedback": "Thank you: your feedback is recorded.",
    "saved": "The profile is saved: matching uses it from now on.",
}

#: Pending requests expiring within this many days are listed for the coordinator.
EXPIRING_WITHIN = timedelta(days=2)

OPEN = ("pending", "active")


@dataclass
class Relationship:
    """A relationship as the page shows it."""

    id: str
    mentee: str
    mentee_name: str
    mentor: str
    mentor_name: str
    status: str
    type: str
    goals: list[str]
    duration_months: int
    requested_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    reason: str | None
    expires_at: datetime
    #: Phases this caller may still give feedback for (active, one of the two sides).
    feedback_due: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        """The relationship's URL under ``/ui/mentorship/``."""
        return self.id.removeprefix("mentorship/")


@dataclass(frozen=True)
class Candidate:
    """A ranked mentor with their name."""

    match: Match
    name: str


def _expiry_days(session: Session) -> int:
    pack = active_pack(session)
    policy = pack.mentorship if pack is not None else MentorshipPolicy()
    return policy.request_expiry_days


def _relationships(session: Session, principal: Principal, *, mine: bool) -> list[Relationship]:
    rows = mentorships.list_visible(session, principal=principal, mine=mine)
    ids = {r["mentee"] for r in rows} | {r["mentor"] for r in rows}
    names = (
        {
            p.external_id: p.name
            for p in session.scalars(select(Person).where(Person.external_id.in_(ids)))
        }
        if ids
        else {}
    )
    expiry = timedelta(days=_expiry_days(session))
    return [
        Relationship(
            id=r["id"],
            mentee=r["mentee"],
            mentee_name=names.get(r["mentee"], r["mentee"]),
            mentor=r["mentor"],
            mentor_name=names.get(r["mentor"], r["mentor"]),
            status=r["status"],
            type=r["type"],
            goals=r["goals"],
            duration_months=r["duration_months"],
            requested_at=r["requested_at"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
            reason=r["reason"],
            expires_at=r["requested_at"] + expiry,
        )
        for r in rows
    ]


def _feedback_due(session: Session, principal: Principal, rows: list[Relationship]) -> None:
    """Mark, on the caller's active relationships, the phases they have not given feedback for."""
    me = principal.person_id
    if me is None:
        return
    given = {
        (f.mentorship_id, f.phase)
        for f in session.scalars(
            select(MentorshipFeedback).where(MentorshipFeedback.author_id == me)
        )
    }
    ids = {
        m.workflow_id: m.id
        for m in session.scalars(
            select(Mentorship).where(Mentorship.workflow_id.in_([r.id for r in rows]))
        )
    }
    for row in rows:
        if row.status == "active":
            row.feedback_due = [
                p.value for p in FeedbackPhase if (ids.get(row.id), p.value) not in given
            ]


def _candidates(session: Session, principal: Principal) -> tuple[list[Candidate], str | None]:
    """The caller's best mentors, or why there are none."""
    try:
        ranked = mentorships.find_mentor(session, principal=principal, person=None, limit=10)
    except NotFound:
        return [], (
            "You have no mentee profile yet, so there is nothing to match. Ask HR to write it "
            "(Mentorship profiles page), or create it with PUT /mentorship/profile/mentee."
        )
    ids = [m.person_id for m in ranked.matches]
    names = (
        {
            p.external_id: p.name
            for p in session.scalars(select(Person).where(Person.external_id.in_(ids)))
        }
        if ids
        else {}
    )
    found = [Candidate(m, names.get(m.person_id, m.person_id)) for m in ranked.matches]
    return found, None if found else "No mentor is accepting mentees and has a free slot now."


def _mentor_profile(principal: Principal, session: Session) -> MentorProfile | None:
    if principal.person_external_id is None:
        return None
    found = profiles.mentor_profiles(session, only=principal.person_external_id)
    return found[0] if found else None


def _flash(request: Request) -> dict[str, str]:
    key = request.query_params.get("done", "")
    return {"flash": DONE[key]} if key in DONE else {}


def _back(done: str) -> RedirectResponse:
    return RedirectResponse(f"{PAGE}?done={quote(done)}", status_code=status.HTTP_303_SEE_OTHER)


def _tables(session: Session, principal: Principal, now: datetime) -> dict[str, list[Relationship]]:
    """The page's tables of relationships, keyed as the page's context names them.

    The caller's own (as mentee, requests waiting for them, their active mentees) when the
    token has a person; every relationship they may see and the pending requests expiring soon
    for HR, the auditor and managers (their reports'). The page and its CSV both read these.
    """
    tables: dict[str, list[Relationship]] = {}
    if principal.person_id is not None:
        mine = _relationships(session, principal, mine=True)
        _feedback_due(session, principal, mine)
        me = principal.person_external_id
        as_mentor = [r for r in mine if r.mentor == me]
        tables.update(
            as_mentee=[r for r in mine if r.mentee == me],
            pending_for_me=[r for r in as_mentor if r.status == "pending"],
            mentees=[r for r in as_mentor if r.status == "active"],
            past_mentees=[r for r in as_mentor if r.status not in OPEN],
            active=[r for r in mine if r.status == "active"],
        )
    if principal.role in (Role.HR_ADMIN, Role.AUDITOR, Role.MANAGER):
        every = _relationships(session, principal, mine=False)
        tables.update(
            every=every,
            expiring=sorted(
                (
                    r
                    for r in every
                    if r.status == "pending" and r.expires_at <= now + EXPIRING_WITHIN
                ),
                key=lambda r: r.expires_at,
            ),
        )
    return tables


@router.get("/mentorship", response_class=HTMLResponse)
def mentorship_page(request: Request, session: SessionDep, principal: PagePrincipal) -> Response:
    """The signed-in person's mentorships (both sides), matches, and the coordinator's view."""
    now = datetime.now(UTC)
    context: dict[str, Any] = {"now": now, "formats": list(SessionFormat), "today": now.date()}
    context.update(_tables(session, principal, now))
    if principal.person_id is not None:
        candidates, hint = _candidates(session, principal)
        context.update(
            mentor_profile=_mentor_profile(principal, session),
            candidates=candidates,
            hint=hint,
            open_mentors={r.mentor for r in context["as_mentee"] if r.status in OPEN},
        )
    return render(request, "mentorship.html", {**context, **_flash(request)})


#: ``/ui/mentorship/<table>.csv``: each downloadable table of the page and its context key.
CSV_TABLES = {
    "mine": "as_mentee",
    "requests": "pending_for_me",
    "mentees": "mentees",
    "expiring": "expiring",
    "relationships": "every",
}

#: The columns of every mentorship CSV (one relationship a row).
CSV_HEADER = [
    "relationship",
    "mentee",
    "mentee_name",
    "mentor",
    "mentor_name",
    "status",
    "reason",
    "type",
    "goals",
    "duration_months",
    "requested_at",
    "expires_at",
    "started_at",
    "ended_at",
]


@router.get("/mentorship/{table}.csv")
def mentorship_csv(table: str, session: SessionDep, principal: PagePrincipal) -> Response:
    """One of the page's tables as CSV: the rows the caller's page shows, in its order.

    404 for a table the caller's page does not have (``mine``, ``requests`` and ``mentees``
    need a token with a person; ``expiring`` and ``relationships`` HR, the auditor or a
    manager).
    """
    key = CSV_TABLES.get(table)
    rows = _tables(session, principal, datetime.now(UTC)).get(key or "")
    if rows is None:
        known = ", ".join(f"{name}.csv" for name in CSV_TABLES)
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"your mentorship page has no such table; the tables are {known}",
        )
    cells = [
        [
            r.id,
            r.mentee,
            r.mentee_name,
            r.mentor,
            r.mentor_name,
            r.status,
            r.reason,
            r.type,
            "; ".join(r.goals),
            r.duration_months,
            r.requested_at,
            r.expires_at if r.status == "pending" else None,
            r.started_at,
            r.ended_at,
        ]
        for r in rows
    ]
    return Response(
        csv_text(CSV_HEADER, cells),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="mentorship-{table}.csv"'},
    )


@router.post("/mentorship/request")
async def ask(
    db: DatabaseDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    principal: FormPrincipal,
    mentor: Annotated[str, Form(max_length=64)] = "",
    goal: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Ask a mentor for oneself (the service of ``POST /mentorship/request``)."""
    if not mentor.strip():
        raise Invalid("choose a mentor from the matches")
    await mentorships.request(
        db,
        temporal,
        principal=principal,
        mentor=mentor.strip(),
        mentee=None,
        type=MentorshipType.GENERAL,
        goals=[goal.strip()] if goal.strip() else [],
        duration_months=6,
        milestones=[],
        message=None,
        task_queue=settings.temporal_task_queue,
    )
    return _back("requested")


async def _relationship(mentee: str, mentor: str, n: str) -> str:
    return f"mentorship/{mentee}/{mentor}/{n}"


Target = Annotated[str, Depends(_relationship)]


@router.post("/mentorship/{mentee}/{mentor}/{n}/accept")
async def accept(
    workflow_id: Target, db: DatabaseDep, temporal: TemporalDep, principal: FormPrincipal
) -> Response:
    """The mentor accepts (a slot is claimed; none free: the page says why)."""
    await mentorships.accept(db, temporal, principal=principal, workflow_id=workflow_id)
    return _back("accepted")


@router.post("/mentorship/{mentee}/{mentor}/{n}/decline")
async def decline(
    workflow_id: Target,
    db: DatabaseDep,
    temporal: TemporalDep,
    principal: FormPrincipal,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """The mentor declines, optionally saying why."""
    await mentorships.decline(
        db, temporal, principal=principal, workflow_id=workflow_id, reason=reason.strip() or None
    )
    return _back("declined")


def _listed(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()][:20]


@router.post("/mentorship/{mentee}/{mentor}/{n}/log-session")
async def log_session(
    workflow_id: Target,
    db: DatabaseDep,
    temporal: TemporalDep,
    principal: FormPrincipal,
    held_on: Annotated[str, Form(max_length=10)] = "",
    duration_minutes: Annotated[str, Form(max_length=5)] = "",
    format: Annotated[str, Form(max_length=16)] = SessionFormat.IN_PERSON.value,
    topics: Annotated[str, Form(max_length=1000)] = "",
    notes: Annotated[str, Form(max_length=4000)] = "",
    rating: Annotated[str, Form(max_length=1)] = "",
) -> Response:
    """Log a session held (either side); the notes are kept for their author and HR."""
    # Validated by the service (after it checks who may see the relationship), as the API is.
    log: dict[str, Any] = {
        "held_on": held_on or None,
        "duration_minutes": duration_minutes or None,
        "format": format,
        "topics": _listed(topics),
        "notes": notes.strip() or None,
        "rating": int(rating) if rating.isdigit() else None,
    }
    await mentorships.log_session(
        db, temporal, principal=principal, workflow_id=workflow_id, log=log
    )
    return _back("session")


@router.post("/mentorship/{mentee}/{mentor}/{n}/feedback")
async def give_feedback(
    workflow_id: Target,
    db: DatabaseDep,
    temporal: TemporalDep,
    principal: FormPrincipal,
    phase: Annotated[str, Form(max_length=16)] = "",
    rating: Annotated[str, Form(max_length=1)] = "",
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Midpoint or end feedback from the mentee or the mentor."""
    body = {
        "phase": phase or None,
        "rating": int(rating) if rating.isdigit() else None,
        "comment": comment.strip() or None,
    }
    await mentorships.feedback(
        db, temporal, principal=principal, workflow_id=workflow_id, body=body
    )
    return _back("feedback")


# --- HR: mentor and mentee profiles -----------------------------------------------------------

PROFILES = "/ui/mentorship/profiles"

#: The fields of each side's form, in order (certifications, active mentees and the track
#: record are computed from Duly's records, never typed in).
PROFILE_FIELDS: dict[mentorships.Side, tuple[str, ...]] = {
    "mentor": (
        "years_experience",
        "specializations",
        "equipment_expertise",
        "accepting_mentees",
        "max_mentees",
        "communication_preferences",
        "availability.hours_per_month",
        "availability.preferred_times",
        "city",
        "region",
        "willing_remote",
    ),
    "mentee": (
        "level",
        "years_experience",
        "career_goal",
        "specialization_interests",
        "skills_to_develop",
        "timeline_months",
        "communication_preferences",
        "availability.hours_per_month",
        "availability.preferred_times",
        "city",
        "region",
        "open_to_remote",
    ),
}
#: Fields typed as comma-separated topics.
TOPICS = frozenset(
    {"specializations", "equipment_expertise", "specialization_interests", "skills_to_develop"}
)
#: Groups of checkboxes (a list) and single checkboxes (yes/no).
CHECKBOX_GROUPS = frozenset({"communication_preferences", "availability.preferred_times"})
CHECKBOXES = frozenset({"accepting_mentees", "willing_remote", "open_to_remote"})

_TOPIC_HINT = "topics separated by commas, each at most 80 characters, at most 50 of them"
#: How to fix each field (after the model's message).
PROFILE_HINTS = {
    "person": "type the person's id from the directory, e.g. p-1010",
    "level": "choose one of the levels",
    "years_experience": "a whole number of years from 0 to 70",
    "specializations": _TOPIC_HINT,
    "equipment_expertise": _TOPIC_HINT,
    "specialization_interests": _TOPIC_HINT,
    "skills_to_develop": _TOPIC_HINT,
    "max_mentees": "a whole number from 1 to 50 (empty: 2)",
    "timeline_months": "a whole number of months from 1 to 60 (empty: 6)",
    "communication_preferences": "tick at least one way to meet",
    "availability.hours_per_month": "a whole number of hours a month from 1 to 200",
    "availability.preferred_times": "tick the times that suit (none: any time)",
    "career_goal": "at most 500 characters",
    "city": "at most 100 characters (empty: unknown)",
    "region": "at most 100 characters (empty: unknown)",
}


def _stored_values(
    side: mentorships.Side, profile: MentorProfile | MenteeProfile
) -> dict[str, Any]:
    """A stored profile as its form's values."""
    dumped = profile.model_dump(mode="json")
    values: dict[str, Any] = {}
    for name in PROFILE_FIELDS[side]:
        head, _, tail = name.partition(".")
        value = dumped[head][tail] if tail else dumped[head]
        if name in TOPICS:
            values[name] = ", ".join(value)
        elif name in CHECKBOX_GROUPS:
            values[name] = list(value)
        elif name in CHECKBOXES:
            values[name] = bool(value)
        else:
            values[name] = "" if value is None else str(value)
    return values


def _posted_values(side: mentorships.Side, posted: Any) -> dict[str, Any]:
    """What the form sent, field by field (a new profile's form: everything empty)."""
    values: dict[str, Any] = {}
    for name in PROFILE_FIELDS[side]:
        if name in CHECKBOX_GROUPS:
            values[name] = [v for v in posted.getlist(name) if isinstance(v, str)][:10]
        elif name in CHECKBOXES:
            values[name] = posted.get(name) == "on"
        else:
            value = posted.get(name)
            values[name] = value.strip() if isinstance(value, str) else ""
    return values


def _profile_body(values: dict[str, Any]) -> dict[str, Any]:
    """The form's values as ``PUT /mentorship/profile/{side}``'s body (the service checks it).

    Topics are split at commas; an empty field is left out, so the model's default applies
    (a required one is then refused, saying so).
    """
    body: dict[str, Any] = {}
    for name, value in values.items():
        if name in TOPICS:
            value = [part.strip() for part in value.split(",") if part.strip()]
        elif value == "":
            continue
        head, _, tail = name.partition(".")
        if tail:
            body.setdefault(head, {})[tail] = value
        else:
            body[head] = value
    return body


def _side(value: str) -> mentorships.Side:
    if value == "mentor":
        return "mentor"
    if value == "mentee":
        return "mentee"
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail="a profile is a mentor or a mentee one")


class _NoForm:
    """An empty form (``getlist``/``get`` of nothing): a new profile's starting values."""

    def getlist(self, _name: str) -> list[str]:
        return []

    def get(self, name: str) -> str | None:
        return "on" if name == "accepting_mentees" else None


def _profiles_page(
    request: Request,
    session: Session,
    principal: Principal,
    side: mentorships.Side,
    person: str,
    form: FormState | None = None,
    status_code: int = 200,
) -> Response:
    """HR's profile page (blocking): find a person, then their profile's form."""
    context: dict[str, Any] = {
        "side": side,
        "person": person,
        "styles": list(CommunicationStyle),
        "times": list(PreferredTime),
        "levels": list(MenteeLevel),
        **_flash(request),
    }
    if person:
        try:
            who = mentorships.subject(session, principal, person, read=True)
        except NotFound as exc:
            lookup = FormState("lookup", {"person": person})
            lookup.errors["person"] = f"{exc.detail}: {PROFILE_HINTS['person']}"
            context["lookup"] = lookup
            return render(request, "mentorship_profiles.html", context, status_code=404)
        try:
            stored = mentorships.get_profile(
                session, principal=principal, side=side, person=who.external_id
            )
        except NotFound:
            stored = None
        if form is None:
            values = _stored_values(side, stored) if stored else _posted_values(side, _NoForm())
            form = FormState("profile", values)
        ids = {name: "pf-" + name.replace(".", "-").replace("_", "-") for name in form.values}
        context.update(who=who, stored=stored, form=form, ids=ids)
    return render(request, "mentorship_profiles.html", context, status_code=status_code)


@router.get("/mentorship/profiles", response_class=HTMLResponse)
def profiles_page(
    request: Request,
    session: SessionDep,
    principal: PagePrincipal,
    side: Annotated[str, Query(max_length=10)] = "mentor",
    person: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """HR: a person's mentor or mentee profile to create or edit."""
    return _profiles_page(request, session, principal, _side(side), person.strip())


@router.post("/mentorship/profiles/{side}")
async def save_profile(
    request: Request, side: str, session: SessionDep, principal: FormPrincipal
) -> Response:
    """HR saves a profile (the service of ``PUT /mentorship/profile/{side}``)."""
    which = _side(side)
    posted = await request.form()
    person = posted.get("person")
    whom = person.strip() if isinstance(person, str) else ""
    form = FormState("profile", _posted_values(which, posted))
    body = _profile_body(form.values)

    def save() -> object:
        return mentorships.put_profile(
            session, principal=principal, side=which, person=whom or None, data=body
        )

    refused = await submit_service(form, PROFILE_HINTS, lambda: committed(session, save))
    if refused is not None:
        return await committed(
            session,
            lambda: _profiles_page(request, session, principal, which, whom, form, refused),
        )
    return RedirectResponse(
        f"{PROFILES}?side={which}&person={quote(whom)}&done=saved",
        status_code=status.HTTP_303_SEE_OTHER,
    )
