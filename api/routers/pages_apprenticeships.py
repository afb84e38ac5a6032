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

HR's forms (HR only, declared in :mod:`api.policy` like the API's routes): enrol an apprentice
on the list page (``services.apprenticeships.enroll``), and on an apprenticeship's page suspend,
reinstate, withdraw (``change``) and transfer the supervisor (``transfer``). Their input is
checked by the API's own body models (:mod:`api.schemas`) and then by the service; a refusal
draws the page again with each message next to its field and everything typed kept
(:func:`api.web.submit_form`), a success redirects (POST-redirect-GET) with a confirmation.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activities.packs import load_version
from api.deps import SessionDep, SettingsDep, TemporalDep
from api.schemas import ChangeBody, EnrollBody, TransferBody
from api.web import FormPrincipal, FormState, PagePrincipal, render, submit_form
from domain.contracts.apprenticeship import EnrolmentAction
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

B = TypeVar("B", bound=BaseModel)

#: ``?done=`` keys and what the page then says (fixed text: nothing from the URL is echoed).
DONE = {
    "logged": "Your hours are logged; they count once your supervisor approves them.",
    "approved": "The entry is approved; its hours count.",
    "rejected": "The entry is rejected; the apprentice sees your reason.",
    "evaluated": "The evaluation is recorded.",
    "enrolled": "The apprentice is enrolled: the apprenticeship has started, and they can log "
    "hours now.",
    "suspended": "The apprenticeship is suspended: no hours can be logged, no clock runs and "
    "nothing is sent until HR reinstates it.",
    "reinstated": "The apprenticeship is reinstated: its clocks run again, and the suspended days "
    "move the expected completion.",
    "withdrawn": "The apprenticeship is withdrawn: it has ended; its record stays.",
    "transferred": "The supervisor is changed: the new supervisor reviews hours and evaluations "
    "from now on.",
}

#: How to fix each field of HR's forms (after pydantic's or the service's message).
HINTS = {
    "person": "type the apprentice's person id from the directory, e.g. p-1020",
    "program_id": "choose a program of the active rules pack",
    "supervisor": "type the supervising journeyworker's person id from the directory, e.g. p-1010",
    "enrolled_on": "a date (YYYY-MM-DD), today or earlier; leave it empty for today",
    "reason": "shorten it to 2,000 characters or fewer",
}

#: HR's enrolment changes: the ``?done=`` key of each.
CHANGED = {
    EnrolmentAction.SUSPEND: "suspended",
    EnrolmentAction.REINSTATE: "reinstated",
    EnrolmentAction.WITHDRAW: "withdrawn",
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


def _list_page(
    request: Request,
    session: Session,
    principal: Principal,
    form: FormState | None = None,
    status_code: int = 200,
) -> Response:
    """The list page (blocking); with HR's enrolment form, drawn again when ``form`` is refused."""
    context: dict[str, Any] = {"rows": _list(session, principal)}
    if principal.role is Role.HR_ADMIN:
        context["programs"] = apprenticeships.programs(session)
        context["form"] = form
    if form is not None:
        context["flash"] = "Nobody was enrolled: see what to fix under Enrol an apprentice."
        context["flash_kind"] = "bad"
    return render(request, "apprenticeships.html", context, status_code=status_code)


@router.get("/apprenticeships", response_class=HTMLResponse)
def apprenticeships_page(
    request: Request, session: SessionDep, principal: PagePrincipal
) -> Response:
    """The apprenticeships the caller may see; flagged ones (supervisor left, stalled...) first."""
    return _list_page(request, session, principal)


@router.post("/apprenticeships/enroll")
async def enrol(
    request: Request,
    session: SessionDep,
    principal: FormPrincipal,
    temporal: TemporalDep,
    settings: SettingsDep,
    person: Annotated[str, Form(max_length=1000)] = "",
    program_id: Annotated[str, Form(max_length=1000)] = "",
    supervisor: Annotated[str, Form(max_length=1000)] = "",
    enrolled_on: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """HR enrols an apprentice (``POST /apprenticeship/enroll``'s model and service)."""
    form = FormState(
        "enrol",
        {
            "person": person.strip(),
            "program_id": program_id.strip(),
            "supervisor": supervisor.strip(),
            "enrolled_on": enrolled_on.strip(),
        },
    )

    async def call(body: EnrollBody) -> object:
        return await apprenticeships.enroll(
            session,
            await temporal(),
            task_queue=settings.temporal_task_queue,
            person=body.person,
            program_id=body.program_id,
            supervisor=body.supervisor,
            enrolled_on=body.enrolled_on,
            principal=principal,
        )

    # An empty date is "today", as the API's omitted enrolled_on.
    data = {**form.values, "enrolled_on": form.values["enrolled_on"] or None}
    refused = await submit_form(form, EnrollBody, data, HINTS, call)
    if refused is not None:
        return await committed(
            session, lambda: _list_page(request, session, principal, form, refused)
        )
    workflow_id = apprenticeships.workflow_id_of(form.values["person"], form.values["program_id"])
    return _back(workflow_id, "enrolled")


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
        "may_manage": principal.role is Role.HR_ADMIN,
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


def _record_page(
    request: Request,
    session: Session,
    principal: Principal,
    workflow_id: str,
    form: FormState,
    status_code: int,
) -> Response:
    """An apprenticeship's page (blocking) with HR's refused ``form`` drawn again."""
    record = _record(session, principal, workflow_id)
    context = {
        **record,
        "form": form,
        "flash": "Nothing was changed: see what to fix under HR actions.",
        "flash_kind": "bad",
    }
    return render(request, "apprenticeship.html", context, status_code=status_code)


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


async def _hr_form(
    request: Request,
    session: Session,
    principal: Principal,
    workflow_id: str,
    form: FormState,
    model: type[B],
    call: Callable[[B], Awaitable[object]],
    done: str,
) -> Response:
    """Submit one of HR's forms on an apprenticeship; redraw it refused, or redirect back."""
    refused = await submit_form(form, model, form.values, HINTS, call)
    if refused is None:
        return _back(workflow_id, done)
    return await committed(
        session, lambda: _record_page(request, session, principal, workflow_id, form, refused)
    )


def _change_route(action: EnrolmentAction, doc: str) -> Any:
    """Register ``POST /ui/apprenticeships/{id}/{action}`` (HR): suspend, reinstate or withdraw.

    The three take the same form (a reason) and call the same service as the API's
    ``POST /apprenticeship/{id}/{action}``; each keeps its own path (declared in api.policy).
    """

    async def endpoint(
        request: Request,
        apprenticeship_id: str,
        session: SessionDep,
        principal: FormPrincipal,
        temporal: TemporalDep,
        reason: Annotated[str, Form(max_length=20_000)] = "",
    ) -> Response:
        async def call(body: ChangeBody) -> object:
            return await apprenticeships.change(
                session,
                await temporal(),
                workflow_id=apprenticeship_id,
                action=action,
                reason=body.reason,
                principal=principal,
            )

        form = FormState(action.value, {"reason": reason.strip()})
        return await _hr_form(
            request, session, principal, apprenticeship_id, form, ChangeBody, call, CHANGED[action]
        )

    endpoint.__name__ = endpoint.__qualname__ = f"page_{action.value}"
    endpoint.__doc__ = doc
    path = f"/apprenticeships/{{apprenticeship_id:path}}/{action.value}"
    return router.post(path)(endpoint)


suspend = _change_route(EnrolmentAction.SUSPEND, "HR suspends an apprenticeship (with a reason).")
reinstate = _change_route(EnrolmentAction.REINSTATE, "HR reinstates a suspended apprenticeship.")
withdraw = _change_route(EnrolmentAction.WITHDRAW, "HR withdraws an apprenticeship (it ends).")


@router.post("/apprenticeships/{apprenticeship_id:path}/transfer-supervisor")
async def transfer_supervisor(
    request: Request,
    apprenticeship_id: str,
    session: SessionDep,
    principal: FormPrincipal,
    temporal: TemporalDep,
    supervisor: Annotated[str, Form(max_length=1000)] = "",
    reason: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """HR hands the apprentice to another supervisor (the API's model and service)."""

    async def call(body: TransferBody) -> object:
        return await apprenticeships.transfer(
            session,
            await temporal(),
            workflow_id=apprenticeship_id,
            supervisor=body.supervisor,
            reason=body.reason,
            principal=principal,
        )

    form = FormState("transfer", {"supervisor": supervisor.strip(), "reason": reason.strip()})
    return await _hr_form(
        request, session, principal, apprenticeship_id, form, TransferBody, call, "transferred"
    )
