"""The pages (``/ui``): a learner's compliance, a person, the actions on an obligation, audit.

Server-rendered HTML with plain forms (htmx, vendored, only boosts them). Every route is
declared in :mod:`api.policy`; :func:`api.web.page_principal` applies the declared roles and
the handlers the row-level scope (:func:`api.deps.ensure_visible`, the API's own). Actions call
the same services as the API (``services.assignments.acknowledge`` / ``extend``,
``services.certifications.log_ce_credits``, ``services.people.set_preferences``) and answer
with a redirect back to the page (``?done=`` names a fixed message, never echoed text).

Blocking database work runs in worker threads: sync handlers, or ``committed`` in the async
ones that also await Temporal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep, TemporalDep, ensure_visible, visible_person_ids
from api.web import FormPrincipal, PagePrincipal, render
from domain.bounds import OutOfRange
from domain.contracts.assignment import ExtendDueDate
from domain.contracts.certification import CeCredit
from domain.contracts.obligation import AcknowledgeSignal
from domain.roles import Role
from services import (
    assignments,
    certifications,
    compliance,
    people,
    reminders,
    timeline,
    tracks,
)
from services.errors import Forbidden, Invalid, NotFound
from store import audit
from store.db import committed
from store.models import AuditEntry, Certificate, Notification, Obligation, Person
from store.tokens import Principal

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

#: ``?done=`` keys and what the page then says (fixed text: nothing from the URL is echoed).
DONE = {
    "acknowledged": "Thank you: your acknowledgement is recorded.",
    "already-acknowledged": "This was already acknowledged; nothing changed.",
    "credits": "Your CE credits are logged.",
    "preferences": "Your notification preferences are saved.",
    "extended": "The due date is extended.",
    "exemption-requested": "Your exemption request was sent to HR.",
    "reminded": "The reminder was sent.",
}

CHANNELS = ("email", "sms", "slack", "in_app")

#: Statuses that need nothing more.
DONE_STATUSES = frozenset({"completed", "cancelled", "exempt"})


def _flash(request: Request) -> dict[str, str]:
    key = request.query_params.get("done", "")
    return {"flash": DONE[key]} if key in DONE else {}


def next_step(row: Obligation) -> str:
    """What the person should do next about an obligation, in words."""
    if row.exempt:
        return "Nothing: you are exempt."
    if row.status in DONE_STATUSES:
        return "Nothing: done."
    if row.kind == "certification":
        if row.status in ("expired", "lapsed", "overdue"):
            return "Renew it now and send HR your new certificate."
        if row.ce_credits_short:
            return f"Log {row.ce_credits_short} more CE credits, then renew before it expires."
        return "Keep it current: renew before it expires."
    if row.kind == "apprenticeship":
        return "Log your hours and ask your supervisor to approve them."
    if row.kind == "mentorship":
        return "Meet your mentor and log the session."
    if row.status == "overdue":
        return "Overdue: complete the course today."
    if row.acknowledged_at is None:
        return "Acknowledge the reminder, then complete the course."
    if row.started_at is None:
        return "Start the course."
    return "Finish the course."


def course_link(session: Session, row: Obligation) -> str | None:
    """The course's web address when the pack names one (its xAPI activity id as a URL).

    An apprenticeship links to its own page (hours, periods, evaluations).
    """
    if row.kind == "apprenticeship":
        return f"/ui/apprenticeships/{row.workflow_id}"
    from store.packs import find_version

    version = find_version(session, row.pack_hash) if row.pack_hash not in ("", "builtin") else None
    if version is None:
        return None
    for requirement in version.content.get("requirements", []) or []:
        if isinstance(requirement, dict) and requirement.get("id") == row.requirement_id:
            activity = requirement.get("xapi_activity_id")
            if isinstance(activity, str) and activity.startswith(("https://", "http://")):
                return activity
    return None


def _tracks_of(session: Session, person: Person) -> dict[str, Any]:
    """The person's tracks with their progress and certificates (``GET /people/{id}/tracks``)."""
    return {
        "tracks": tracks.person_tracks(session, person_id=person.id, as_of=datetime.now(UTC)),
        "course_titles": tracks.titles(session),
    }


@dataclass
class Row:
    """An obligation as a page shows it."""

    workflow_id: str
    kind: str
    title: str
    status: str
    due: date | None
    expiry: date | None
    acknowledged: bool
    can_acknowledge: bool
    next_step: str
    course: str | None
    person: str
    person_name: str


def _rows(session: Session, obligations: list[Obligation]) -> list[Row]:
    return [
        Row(
            workflow_id=o.workflow_id,
            kind=o.kind,
            title=o.requirement_title,
            status="exempt" if o.exempt else o.status,
            due=o.due_date,
            expiry=o.expiry_date,
            acknowledged=o.acknowledged_at is not None,
            can_acknowledge=o.kind == "training"
            and o.acknowledged_at is None
            and o.status not in DONE_STATUSES
            and not o.exempt,
            next_step=next_step(o),
            course=course_link(session, o),
            person=o.person.external_id,
            person_name=o.person.name,
        )
        for o in obligations
    ]


def _obligations_of(session: Session, person_id: int) -> list[Obligation]:
    return list(
        session.scalars(
            select(Obligation)
            .where(Obligation.person_id == person_id)
            .order_by(Obligation.due_date, Obligation.id)
        )
    )


def _back(request: Request, fallback: str, done: str) -> RedirectResponse:
    """303 to the page the form was on (same site only), with a ``done`` message key."""
    target = request.headers.get("referer", "")
    path = fallback
    if target:
        from urllib.parse import urlsplit

        parts = urlsplit(target)
        if parts.netloc == request.url.netloc and parts.path.startswith("/ui"):
            path = parts.path
    return RedirectResponse(f"{path}?done={quote(done)}", status_code=status.HTTP_303_SEE_OTHER)


# ---------------------------------------------------------------------------------------------
# Learner: My compliance
# ---------------------------------------------------------------------------------------------


def _me(principal: Principal, session: Session) -> Person:
    if principal.person_id is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="this token is not a person's, so it has no own obligations; see the "
            "organisation or audit pages",
        )
    person = session.get(Person, principal.person_id)
    if person is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    return person


@router.get("/me", response_class=HTMLResponse)
def my_compliance(request: Request, session: SessionDep, principal: PagePrincipal) -> Response:
    """Every obligation of the signed-in person, their certificates and preferences."""
    person = _me(principal, session)
    rows = _rows(session, _obligations_of(session, person.id))
    certificates = list(
        session.scalars(
            select(Certificate)
            .where(Certificate.person_id == person.id)
            .order_by(Certificate.expires_on.desc())
        )
    )
    prefs = people.preferences(session, person=person)
    reminders_sent = list(
        session.scalars(
            select(Notification)
            .where(Notification.person_id == person.id, Notification.kind != "sign_in")
            .order_by(Notification.id.desc())
            .limit(10)
        )
    )
    return render(
        request,
        "me.html",
        {
            "person": person,
            "rows": rows,
            "certs": [r for r in rows if r.kind == "certification"],
            "certificates": certificates,
            "prefs": prefs,
            "channels": CHANNELS,
            "messages": reminders_sent,
            "today": datetime.now(UTC).date(),
            **_tracks_of(session, person),
            **_flash(request),
        },
    )


@router.post("/me/preferences")
def save_preferences(
    request: Request,
    session: SessionDep,
    principal: FormPrincipal,
    channels: Annotated[list[str] | None, Form()] = None,
    quiet_start: Annotated[str, Form(max_length=5)] = "",
    quiet_end: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    """Save the signed-in person's channels and quiet hours."""
    person = _me(principal, session)
    chosen = [c for c in (channels or []) if c in CHANNELS]
    if not chosen:
        raise Invalid("choose at least one channel")
    start, end = quiet_start.strip() or None, quiet_end.strip() or None
    for value in (start, end):
        if value is not None and not _is_clock(value):
            raise Invalid("quiet hours are HH:MM, e.g. 21:00")
    if (start is None) != (end is None):
        raise Invalid("give both ends of the quiet hours, or neither")
    current = people.preferences(session, person=person)
    people.set_preferences(
        session,
        person=person,
        principal=principal,
        channels=chosen,
        sms_opt_out=bool(current and current.sms_opt_out),
        quiet_start=start,
        quiet_end=end,
    )
    return _back(request, "/ui/me", "preferences")


def _is_clock(value: str) -> bool:
    hours, _, minutes = value.partition(":")
    return (
        len(value) == 5
        and hours.isdigit()
        and minutes.isdigit()
        and int(hours) < 24
        and int(minutes) < 60
    )


def _visible_obligation(session: Session, principal: Principal, workflow_id: str) -> Obligation:
    row = session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    ensure_visible(session, principal, row.person_id)
    return row


@router.post("/obligations/{workflow_id:path}/acknowledge")
async def acknowledge(
    request: Request,
    workflow_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    temporal: TemporalDep,
) -> Response:
    """Acknowledge an assignment's reminders (``services.assignments.acknowledge``)."""
    row = await committed(session, lambda: _visible_obligation(session, principal, workflow_id))
    if row.kind != "training":
        raise Invalid("only training assignments are acknowledged")
    signal = AcknowledgeSignal(
        acknowledged_at=datetime.now(UTC), actor=principal.actor, channel="web"
    )
    sent = await assignments.acknowledge(
        session,
        await temporal(),
        workflow_id=workflow_id,
        acknowledgement=signal,
        principal=principal,
    )
    return _back(request, "/ui/me", "acknowledged" if sent else "already-acknowledged")


@router.post("/obligations/{workflow_id:path}/ce-credits")
async def log_credits(
    request: Request,
    workflow_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    temporal: TemporalDep,
    settings: SettingsDep,
    credits: Annotated[str, Form(max_length=10)] = "",
    activity: Annotated[str, Form(max_length=300)] = "",
    earned_on: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Log CE credits on a certification (``services.certifications.log_ce_credits``)."""
    row = await committed(session, lambda: _visible_obligation(session, principal, workflow_id))
    if row.kind != "certification":
        raise Invalid("CE credits are logged on a certification")
    try:
        amount = float(credits)
        earned = date.fromisoformat(earned_on)
        settings.past_date_window(datetime.now(UTC).date()).check("earned_on", earned)
        credit = CeCredit(
            credits=amount, activity=activity.strip(), earned_on=earned, actor=principal.actor
        )
    except OutOfRange as exc:
        raise Invalid(str(exc)) from None
    except ValueError as exc:
        raise Invalid(f"check the credits, activity and date: {_first_line(exc)}") from None
    await certifications.log_ce_credits(
        session, await temporal(), workflow_id=workflow_id, credit=credit, principal=principal
    )
    return _back(request, "/ui/me", "credits")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


# ---------------------------------------------------------------------------------------------
# A person (drill-down) and a manager's actions
# ---------------------------------------------------------------------------------------------


@router.get("/people/{external_id}", response_class=HTMLResponse)
def person_page(
    request: Request, external_id: str, session: SessionDep, principal: PagePrincipal
) -> Response:
    """One person's obligations and messages, with the actions the caller may take."""
    person = session.scalar(select(Person).where(Person.external_id == external_id))
    if person is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    ensure_visible(session, principal, person.id)
    rows = _rows(session, _obligations_of(session, person.id))
    messages = list(
        session.scalars(
            select(Notification)
            .where(Notification.person_id == person.id, Notification.kind != "sign_in")
            .order_by(Notification.id.desc())
            .limit(25)
        )
    )
    own = principal.person_id == person.id
    return render(
        request,
        "person.html",
        {
            "person": person,
            "rows": rows,
            "messages": messages,
            "may_act": principal.role in (Role.MANAGER, Role.HR_ADMIN) and not own,
            "today": datetime.now(UTC).date(),
            **_tracks_of(session, person),
            **_flash(request),
        },
    )


def _actionable(session: Session, principal: Principal, workflow_id: str) -> Obligation:
    """Visible (else 404) and not the manager's own (else 403)."""
    row = _visible_obligation(session, principal, workflow_id)
    if principal.role is Role.MANAGER and principal.person_id == row.person_id:
        raise Forbidden("managers cannot act on their own obligations")
    return row


@router.post("/obligations/{workflow_id:path}/extend")
async def extend(
    request: Request,
    workflow_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    temporal: TemporalDep,
    settings: SettingsDep,
    new_due_date: Annotated[str, Form(max_length=10)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Extend a training assignment's due date (``services.assignments.extend``)."""
    row = await committed(session, lambda: _actionable(session, principal, workflow_id))
    if row.kind != "training":
        raise Invalid("only training assignments have a due date to extend here")
    try:
        new_date = date.fromisoformat(new_due_date)
        settings.due_date_window(datetime.now(UTC).date()).check("new_due_date", new_date)
        update = ExtendDueDate(new_due_date=new_date, reason=reason.strip(), actor=principal.actor)
    except OutOfRange as exc:
        raise Invalid(str(exc)) from None
    except ValueError as exc:
        raise Invalid(f"give a new due date and a reason: {_first_line(exc)}") from None
    person = row.person
    await assignments.extend(
        session,
        await temporal(),
        workflow_id=workflow_id,
        person=person,
        update=update,
        principal=principal,
    )
    return _back(request, f"/ui/people/{person.external_id}", "extended")


@router.post("/obligations/{workflow_id:path}/request-exemption")
def request_exemption(
    request: Request,
    workflow_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Ask HR to exempt the person from this obligation (recorded and audited)."""
    row = _actionable(session, principal, workflow_id)
    reminders.request_exemption(
        session, workflow_id=workflow_id, reason=reason, principal=principal
    )
    return _back(request, f"/ui/people/{row.person.external_id}", "exemption-requested")


@router.post("/obligations/{workflow_id:path}/remind")
def remind(
    request: Request,
    workflow_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    settings: SettingsDep,
) -> Response:
    """Remind the learner now: at most once per obligation per day."""
    row = _actionable(session, principal, workflow_id)
    reminders.remind_now(
        session,
        settings=settings,
        workflow_id=workflow_id,
        principal=principal,
        now=datetime.now(UTC),
    )
    return _back(request, f"/ui/people/{row.person.external_id}", "reminded")


# ---------------------------------------------------------------------------------------------
# Auditor
# ---------------------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    principal: PagePrincipal,
    q: Annotated[str, Query(max_length=200)] = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    scope: Annotated[str, Query(max_length=12)] = "org",
    who: Annotated[str, Query(max_length=100)] = "",
    at: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """Find any obligation; counts as of an instant; the audit log with chain verification."""
    as_of = None
    if at:
        instant = _instant(at)
        audience = compliance.audience(
            session,
            visible=visible_person_ids(session, principal),
            scope=scope,
            viewer_id=principal.person_id,
            manager=who.strip() or None if scope == "team" else None,
            department=who.strip() or None if scope == "department" else None,
        )
        as_of = compliance.as_of_counts(session, audience=audience, at=instant)
    found: list[Obligation] = []
    needle = q.strip()
    if needle:
        like = f"%{needle.replace('%', '').replace('_', '')}%"
        found = list(
            session.scalars(
                select(Obligation)
                .join(Person, Obligation.person_id == Person.id)
                .where(
                    Obligation.workflow_id.ilike(like)
                    | Obligation.requirement_id.ilike(like)
                    | Obligation.requirement_title.ilike(like)
                    | Person.external_id.ilike(like)
                    | Person.name.ilike(like)
                )
                .order_by(Obligation.workflow_id)
                .limit(50)
            )
        )
    entries = list(
        session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(50).offset(offset))
    )
    broken = audit.verify_chain(session)
    return render(
        request,
        "audit.html",
        {
            "q": needle,
            "found": found,
            "entries": entries,
            "broken": broken,
            "offset": offset,
            "as_of": as_of,
            "scope": scope,
            "who": who,
            "at": at,
        },
    )


def _instant(value: str) -> datetime:
    """A ``datetime-local`` (or ISO) value as an aware instant (UTC when no offset is given)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(f"not a date and time: {value[:32]!r}; use YYYY-MM-DDTHH:MM") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _obligation_record(session: Session, workflow_id: str) -> dict[str, Any]:
    row = session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
    if row is None:
        raise NotFound("no such obligation")
    entries = list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.target == workflow_id).order_by(AuditEntry.id)
        )
    )
    messages = list(
        session.scalars(
            select(Notification)
            .where(Notification.workflow_id == workflow_id)
            .order_by(Notification.id)
        )
    )
    return {"row": row, "person": row.person, "entries": entries, "messages": messages}


@router.get("/audit/obligations/{workflow_id:path}/history.json")
async def raw_history(
    workflow_id: str, session: SessionDep, principal: PagePrincipal, temporal: TemporalDep
) -> Response:
    """Download the obligation's raw Temporal history (JSON the Replayer accepts)."""
    await committed(session, lambda: _obligation_record(session, workflow_id))
    data = await timeline.history_json(await temporal(), workflow_id)
    name = workflow_id.replace("/", "_")
    return Response(
        json.dumps(data, indent=2),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.history.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/audit/obligations/{workflow_id:path}", response_class=HTMLResponse)
async def obligation_audit(
    request: Request,
    workflow_id: str,
    session: SessionDep,
    principal: PagePrincipal,
    temporal: TemporalDep,
    at: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """One obligation's timeline, and the status in force at an instant (as recorded).

    The timeline: decisions, messages and receipts, signals, who did what.
    """
    record = await committed(session, lambda: _obligation_record(session, workflow_id))
    if at:
        instant = _instant(at)
        row = record["row"]
        record["as_of"] = await committed(
            session,
            lambda: compliance.as_of_obligation(
                session,
                visible=None,
                person=row.person.external_id,
                requirement=row.requirement_id,
                at=instant,
            ),
        )
    events: list[dict[str, Any]] = []
    history_problem = None
    try:
        events = await timeline.timeline(session, await temporal(), workflow_id)
    except NotFound:
        history_problem = "Temporal no longer has this workflow's history (closed and expired)."
    except HTTPException as exc:
        history_problem = str(exc.detail)
    for entry in record["entries"]:
        events.append(
            {
                "at": entry.at.isoformat(),
                "event": f"audit: {entry.action}",
                "actor": entry.actor,
                "input": entry.after,
            }
        )
    events.sort(key=lambda item: str(item["at"]))
    return render(
        request,
        "obligation_audit.html",
        {"as_of": None, **record, "events": events, "history_problem": history_problem, "at": at},
    )
