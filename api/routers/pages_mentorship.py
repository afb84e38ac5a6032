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

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from activities import mentorship_profiles as profiles
from activities.packs import active_pack
from api.deps import DatabaseDep, SessionDep, SettingsDep, TemporalDep
from api.web import FormPrincipal, PagePrincipal, render
from domain.contracts.mentorship import FeedbackPhase, MentorshipType, SessionFormat
from domain.roles import Role
from rules.matching import Match
from rules.mentorship_model import MentorProfile, MentorshipPolicy
from services import mentorships
from services.errors import Invalid, NotFound
from services.exports import csv_text
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
            "You have no mentee profile yet, so there is nothing to match. Ask HR to import it, "
            "or create it with PUT /mentorship/profile/mentee."
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
