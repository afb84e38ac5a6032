"""The pages of apprenticeships (``/ui/apprenticeships``): the list, one apprenticeship, its forms.

Who sees what is the service's (:func:`services.apprenticeships.readable`): the apprentice
their own, the supervisor their apprentices, managers their reports', HR and the auditor all.
The page reads the record the workflow's activities keep (the read-model row, every hours
entry, every evaluation) and computes the hours by period with the same progress maths the
workflow uses (:func:`rules.apprenticeship.progress`), so it opens without asking Temporal.

Forms call the same services as the API: the apprentice logs hours
(``services.apprenticeships.log_hours``), the supervisor or HR approves or rejects a pending
entry (``review_hours``) and records an evaluation (``evaluate``). Each form carries the
session's CSRF token and a fresh id made when the page was drawn, so sending it twice records
one entry (the workflow's ids are idempotent). Answers are a redirect back with ``?done=``
naming a fixed message.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activities.packs import load_version
from api.deps import SessionDep, TemporalDep
from api.web import FormPrincipal, PagePrincipal, render
from domain.roles import Role
from rules.apprenticeship import (
    EnrollmentStatus,
    Enrolment,
    EntryStatus,
    Evaluation,
    HoursEntry,
    HoursKind,
    Progress,
    progress,
)
from rules.apprenticeship_model import Program
from rules.obligation_facts import local_today
from services import apprenticeships
from services.errors import Invalid
from services.exports import csv_text
from store.apprenticeships import Apprenticeship, ApprenticeshipEvaluation, ApprenticeshipHours
from store.db import committed
from store.tokens import Principal

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

#: ``?done=`` keys and what the page then says (fixed text: nothing from the URL is echoed).
DONE = {
    "logged": "Your hours are logged; they count once your supervisor approves them.",
    "approved": "The entry is approved; its hours count.",
    "rejected": "The entry is rejected; the apprentice sees your reason.",
    "evaluated": "The evaluation is recorded.",
}

#: Compliance statuses listed first on the list page (they need someone to act).
NEEDS_ACTION = ("stalled", "behind")


@dataclass(frozen=True)
class ListRow:
    """An apprenticeship as the list shows it."""

    row: Apprenticeship
    supervisor_left: str | None
    evaluation_overdue: bool
    pending: int

    @property
    def flagged(self) -> bool:
        """Someone should act: no supervisor, stalled or behind, an evaluation overdue."""
        return (
            self.supervisor_left is not None
            or self.row.compliance_status in NEEDS_ACTION
            or self.evaluation_overdue
        )


def _pending_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(ApprenticeshipHours.workflow_id, func.count())
        .where(ApprenticeshipHours.status == EntryStatus.PENDING.value)
        .group_by(ApprenticeshipHours.workflow_id)
    )
    return {workflow_id: count for workflow_id, count in rows}


def _list(session: Session, principal: Principal) -> list[ListRow]:
    """The apprenticeships the caller may see, flagged ones (supervisor left, stalled...) first."""
    pending = _pending_counts(session)
    rows = [
        ListRow(
            row=row,
            supervisor_left=(row.summary or {}).get("supervisor_left"),
            evaluation_overdue=bool((row.summary or {}).get("evaluation_overdue")),
            pending=pending.get(row.workflow_id, 0),
        )
        for row in apprenticeships.list_apprenticeships(session, principal=principal)
    ]
    rows.sort(key=lambda r: (not r.flagged, r.supervisor_left is None, r.row.workflow_id))
    return rows


@router.get("/apprenticeships", response_class=HTMLResponse)
def apprenticeships_page(
    request: Request, session: SessionDep, principal: PagePrincipal
) -> Response:
    """The apprenticeships the caller may see; flagged ones (supervisor left, stalled...) first."""
    return render(request, "apprenticeships.html", {"rows": _list(session, principal)})


#: The columns of ``/ui/apprenticeships.csv`` (the list page's, one value per cell).
LIST_HEADER = [
    "apprenticeship",
    "apprentice",
    "apprentice_name",
    "program",
    "period",
    "supervisor",
    "status",
    "compliance_status",
    "work_hours_approved",
    "classroom_hours_approved",
    "entries_pending",
    "supervisor_left",
    "evaluation_overdue",
]


@router.get("/apprenticeships.csv")
def apprenticeships_csv(session: SessionDep, principal: PagePrincipal) -> Response:
    """The list page as CSV (the one formula-safe writer), in the page's order."""
    rows = [
        [
            r.row.workflow_id,
            r.row.person.external_id,
            r.row.person.name,
            r.row.program_name,
            r.row.period,
            r.row.supervisor or "",
            r.row.status,
            r.row.compliance_status,
            r.row.work_approved,
            r.row.classroom_approved,
            r.pending,
            r.supervisor_left or "",
            "yes" if r.evaluation_overdue else "no",
        ]
        for r in _list(session, principal)
    ]
    return Response(
        csv_text(LIST_HEADER, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="apprenticeships.csv"'},
    )


def _program(session: Session, row: Apprenticeship) -> Program | None:
    pack = load_version(session, row.pack_hash)
    return pack.program(row.program_id) if pack is not None else None


def _entries(row: Apprenticeship, stored: list[ApprenticeshipHours]) -> list[HoursEntry]:
    """The stored entries, plus approved hours the record holds only as a total.

    An apprentice enrolled with hours carried in (a transfer, the demo's stages) has approved
    hours in the read model that no entry row holds: they count as one entry per kind on the
    enrolment day, so the periods add up to the totals the workflow reports.
    """
    entries = [
        HoursEntry(
            id=e.entry_id,
            day=e.day,
            kind=HoursKind(e.kind),
            hours=e.hours,
            status=EntryStatus(e.status),
        )
        for e in stored
    ]
    for kind, total in (
        (HoursKind.WORK, row.work_approved),
        (HoursKind.CLASSROOM, row.classroom_approved),
    ):
        counted = sum(
            e.hours for e in entries if e.kind is kind and e.status is EntryStatus.APPROVED
        )
        if total - counted > 1e-6:
            entries.append(
                HoursEntry(
                    id=f"carried-{kind.value}",
                    day=row.enrolled_on,
                    kind=kind,
                    hours=total - counted,
                    status=EntryStatus.APPROVED,
                )
            )
    return entries


def _progress(
    session: Session,
    row: Apprenticeship,
    stored: list[ApprenticeshipHours],
    evaluations: list[ApprenticeshipEvaluation],
) -> Progress | None:
    program = _program(session, row)
    if program is None:
        return None  # the pinned pack version is gone: the page shows the totals only
    summary = row.summary or {}
    try:
        status_value = EnrollmentStatus(row.status)
    except ValueError:
        status_value = EnrollmentStatus.ACTIVE
    return progress(
        program,
        Enrolment(enrolled_on=row.enrolled_on, status=status_value, period=max(row.period, 1)),
        _entries(row, stored),
        [
            Evaluation(
                day=e.day, score=e.score, skills_signed_off=e.skills_signed_off, final=e.final
            )
            for e in evaluations
        ],
        today=local_today(row.person.time_zone),
        signed_off={s: row.enrolled_on for s in summary.get("skills_signed_off", []) or []},
    )


def _may_review(principal: Principal, row: Apprenticeship) -> bool:
    """The supervisor or HR (the service checks it again)."""
    return principal.role is Role.HR_ADMIN or (
        principal.person_external_id is not None
        and principal.person_external_id == row.supervisor
        and principal.role in (Role.MANAGER, Role.LEARNER)
    )


def _record(session: Session, principal: Principal, workflow_id: str) -> dict[str, Any]:
    row = apprenticeships.readable(session, principal=principal, workflow_id=workflow_id)
    stored = apprenticeships.entries(session, workflow_id=workflow_id)
    evaluations = list(
        session.scalars(
            select(ApprenticeshipEvaluation)
            .where(ApprenticeshipEvaluation.workflow_id == workflow_id)
            .order_by(ApprenticeshipEvaluation.day, ApprenticeshipEvaluation.id)
        )
    )
    active = row.status == EnrollmentStatus.ACTIVE.value
    done = _progress(session, row, stored, evaluations)
    return {
        "row": row,
        "summary": row.summary or {},
        "progress": done,
        "current": next((p for p in done.periods if p.number == row.period), None)
        if done
        else None,
        "entries": stored,
        "pending": [e for e in stored if e.status == EntryStatus.PENDING.value],
        "evaluations": evaluations,
        "may_log": active and principal.person_id == row.person_id,
        "may_review": active and _may_review(principal, row),
        "kinds": [k.value for k in HoursKind],
        "today": local_today(row.person.time_zone),
        "form_id": secrets.token_hex(8),
    }


@router.get("/apprenticeships/{apprenticeship_id:path}", response_class=HTMLResponse)
def apprenticeship_page(
    request: Request, apprenticeship_id: str, session: SessionDep, principal: PagePrincipal
) -> Response:
    """One apprenticeship: period, hours by period, skills, evaluations, status and its rule."""
    record = _record(session, principal, apprenticeship_id)
    key = request.query_params.get("done", "")
    flash = {"flash": DONE[key]} if key in DONE else {}
    return render(request, "apprenticeship.html", {**record, **flash})


def _back(workflow_id: str, done: str) -> RedirectResponse:
    return RedirectResponse(
        f"/ui/apprenticeships/{quote(workflow_id, safe='/')}?done={done}",
        status_code=status.HTTP_303_SEE_OTHER,
    )


async def _visible(session: Session, principal: Principal, workflow_id: str) -> None:
    """404 for an apprenticeship the caller may not see, before the form is read."""
    await committed(
        session,
        lambda: apprenticeships.readable(session, principal=principal, workflow_id=workflow_id),
    )


def _day(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(f"{what} is a date, YYYY-MM-DD") from None


@router.post("/apprenticeships/{apprenticeship_id:path}/log-hours")
async def log_hours(
    apprenticeship_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    temporal: TemporalDep,
    entry_id: Annotated[str, Form(max_length=100)] = "",
    day: Annotated[str, Form(max_length=10)] = "",
    hours: Annotated[str, Form(max_length=10)] = "",
    kind: Annotated[str, Form(max_length=16)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The apprentice logs hours (``services.apprenticeships.log_hours``; 422 says why not)."""
    await _visible(session, principal, apprenticeship_id)
    if not entry_id.strip():
        raise Invalid("the form has no entry id; reload the page and retry")
    try:
        amount = float(hours)
    except ValueError:
        raise Invalid("hours is a number, e.g. 7.5") from None
    if kind not in {k.value for k in HoursKind}:
        raise Invalid("kind is work or classroom")
    entry = HoursEntry(
        id=entry_id,
        day=_day(day, "the day"),
        kind=HoursKind(kind),
        hours=amount,
        description=note.strip(),
    )
    await apprenticeships.log_hours(
        session, await temporal(), workflow_id=apprenticeship_id, entry=entry, principal=principal
    )
    return _back(apprenticeship_id, "logged")


async def _review(
    session: Session,
    temporal: Any,
    principal: Principal,
    workflow_id: str,
    entry_id: str,
    *,
    approve: bool,
    reason: str,
) -> Response:
    await apprenticeships.review_hours(
        session,
        await temporal(),
        workflow_id=workflow_id,
        entry_id=entry_id,
        approve=approve,
        reason=reason.strip() or None,
        principal=principal,
    )
    return _back(workflow_id, "approved" if approve else "rejected")


@router.post("/apprenticeships/{apprenticeship_id:path}/hours/{entry_id}/approve")
async def approve_hours(
    apprenticeship_id: str,
    entry_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    temporal: TemporalDep,
) -> Response:
    """The supervisor (or HR) approves a pending entry."""
    return await _review(
        session, temporal, principal, apprenticeship_id, entry_id, approve=True, reason=""
    )


@router.post("/apprenticeships/{apprenticeship_id:path}/hours/{entry_id}/reject")
async def reject_hours(
    apprenticeship_id: str,
    entry_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    temporal: TemporalDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The supervisor (or HR) rejects a pending entry, with a reason the apprentice can act on."""
    await _visible(session, principal, apprenticeship_id)
    if not reason.strip():
        raise Invalid("give the apprentice a reason for the rejection")
    return await _review(
        session, temporal, principal, apprenticeship_id, entry_id, approve=False, reason=reason
    )


@router.post("/apprenticeships/{apprenticeship_id:path}/evaluate")
async def evaluate(
    apprenticeship_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    temporal: TemporalDep,
    evaluation_id: Annotated[str, Form(max_length=100)] = "",
    day: Annotated[str, Form(max_length=10)] = "",
    score: Annotated[str, Form(max_length=3)] = "",
    skills: Annotated[list[str] | None, Form()] = None,
    final: Annotated[str, Form(max_length=5)] = "",
    notes: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """The supervisor (or HR) records an evaluation: score, skills signed off, notes."""
    await _visible(session, principal, apprenticeship_id)
    if not evaluation_id.strip():
        raise Invalid("the form has no evaluation id; reload the page and retry")
    if not score.strip().isdigit() or not 0 <= int(score) <= 100:
        raise Invalid("the score is a whole number from 0 to 100")
    evaluation = Evaluation(
        day=_day(day, "the evaluation day"),
        score=int(score),
        skills_signed_off=[s for s in (skills or []) if s.strip()][:200],
        final=final == "on",
    )
    await apprenticeships.evaluate(
        session,
        await temporal(),
        workflow_id=apprenticeship_id,
        evaluation_id=evaluation_id,
        evaluation=evaluation,
        notes=notes.strip(),
        principal=principal,
    )
    return _back(apprenticeship_id, "evaluated")
