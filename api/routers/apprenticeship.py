"""Apprenticeships over HTTP: programs, enrolment, hours, reviews, evaluations, HR actions.

Thin: each route maps HTTP to :mod:`services.apprenticeships` (whose errors ``api/errors.py``
maps to status codes). Reads are ``def`` handlers (FastAPI's threadpool); the ``async`` ones,
which await Temporal, reach the database only through ``store.db.committed`` (a worker thread,
committed before the next await), so the event loop never blocks on the database.
``{apprenticeship_id}`` is the workflow id, ``apprenticeship/{person}/{program}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SessionDep, SettingsDep, TemporalDep, require_roles
from api.schemas import ChangeBody, EnrollBody, TransferBody
from domain import Role
from domain.contracts.apprenticeship import ApprenticeshipState, EnrolmentAction
from rules.apprenticeship import Evaluation, HoursEntry, HoursKind
from services import apprenticeships
from services.errors import Invalid, NotFound
from store.apprenticeships import Apprenticeship
from store.db import committed
from store.tokens import Principal

router = APIRouter(tags=["apprenticeships"])

Reader = Annotated[
    Principal,
    Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.LEARNER, Role.AUDITOR)),
]
Person = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.LEARNER))]
HrOnly = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProgramRead(BaseModel):
    """A program as HR defined it in the rules pack."""

    model_config = ConfigDict(extra="allow")


class Enrolled(BaseModel):
    """The started apprenticeship."""

    id: str
    person: str
    program_id: str
    supervisor: str
    enrolled_on: date
    pack_hash: str


class ApprenticeshipItem(BaseModel):
    """An apprenticeship as the read model holds it."""

    id: str
    person: str
    program_id: str
    program_name: str
    supervisor: str | None
    status: str
    compliance_status: str
    decided_by: str
    period: int
    wage_percentage: float
    enrolled_on: date
    expected_completion: date
    completed_on: date | None
    work_approved: float
    classroom_approved: float
    pack_hash: str
    #: The supervisor left the organisation and HR has not transferred it yet.
    supervisor_left: str | None = None


class LogHoursBody(_Body):
    """One hours entry: its id makes a retry idempotent."""

    id: str = Field(min_length=1, max_length=100, description="your id for this entry")
    day: date
    kind: HoursKind
    hours: float
    skills: list[str] = Field(default_factory=list, max_length=50)
    description: str = Field(default="", max_length=2000)
    program_id: str | None = Field(default=None, description="needed when in several programs")
    corrects: str | None = Field(default=None, description="the entry id this one corrects")
    reason: str | None = Field(default=None, max_length=2000, description="why (corrections)")


class ReasonBody(_Body):
    """Why (a rejection needs one)."""

    reason: str | None = Field(default=None, max_length=2000)


class EvaluateBody(_Body):
    """The supervisor's evaluation."""

    id: str = Field(min_length=1, max_length=100, description="your id for this evaluation")
    day: date
    score: int = Field(ge=0, le=100)
    skills_signed_off: list[str] = Field(default_factory=list, max_length=200)
    final: bool = False
    notes: str = Field(default="", max_length=4000)


def _item(row: Apprenticeship) -> ApprenticeshipItem:
    return ApprenticeshipItem(
        id=row.workflow_id,
        person=row.person.external_id,
        program_id=row.program_id,
        program_name=row.program_name,
        supervisor=row.supervisor,
        status=row.status,
        compliance_status=row.compliance_status,
        decided_by=row.decided_by,
        period=row.period,
        wage_percentage=row.wage_percentage,
        enrolled_on=row.enrolled_on,
        expected_completion=row.expected_completion,
        completed_on=row.completed_on,
        work_approved=row.work_approved,
        classroom_approved=row.classroom_approved,
        pack_hash=row.pack_hash,
        supervisor_left=(row.summary or {}).get("supervisor_left"),
    )


@router.get("/apprenticeship/programs", response_model=list[dict[str, Any]])
def list_programs(session: SessionDep, principal: Reader) -> list[dict[str, Any]]:
    """The apprenticeship programs of the active rules pack."""
    return [p.model_dump(mode="json") for p in apprenticeships.programs(session)]


@router.get("/apprenticeship/programs/{program_id}", response_model=dict[str, Any])
def get_program(program_id: str, session: SessionDep, principal: Reader) -> dict[str, Any]:
    """One program: periods, hours, skills, wage steps, evaluations, stall, graduation."""
    return apprenticeships.program(session, program_id=program_id).model_dump(mode="json")


@router.post("/apprenticeship/enroll", status_code=status.HTTP_201_CREATED, response_model=Enrolled)
async def enroll(
    body: EnrollBody,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> Enrolled:
    """Enrol a person (HR): starts ``apprenticeship/{person}/{program}`` (409 if enrolled)."""
    inp = await apprenticeships.enroll(
        session,
        await temporal(),
        task_queue=settings.temporal_task_queue,
        person=body.person,
        program_id=body.program_id,
        supervisor=body.supervisor,
        enrolled_on=body.enrolled_on,
        principal=principal,
    )
    return Enrolled(
        id=inp.workflow_id,
        person=inp.person,
        program_id=inp.program_id,
        supervisor=inp.supervisor,
        enrolled_on=inp.enrolled_on,
        pack_hash=inp.pack_hash,
    )


@router.get("/apprenticeship", response_model=list[ApprenticeshipItem])
def list_apprenticeships(
    session: SessionDep, principal: Reader, status: str | None = None
) -> list[ApprenticeshipItem]:
    """Apprenticeships you may see: yours, those you supervise, your reports'; HR/auditor all."""
    rows = apprenticeships.list_apprenticeships(session, principal=principal, status=status)
    return [_item(r) for r in rows]


@router.get("/me/apprenticeship", response_model=list[ApprenticeshipItem])
def my_apprenticeship(session: SessionDep, principal: Person) -> list[ApprenticeshipItem]:
    """Your own apprenticeships (as the apprentice)."""
    return [_item(r) for r in apprenticeships.mine(session, principal=principal)]


@router.get("/me/apprenticeship/progress", response_model=list[ApprenticeshipState])
async def my_progress(
    session: SessionDep, principal: Person, temporal: TemporalDep
) -> list[ApprenticeshipState]:
    """Your progress, live: hours by kind (approved/pending/expected), skills, evaluations."""
    rows = await committed(session, lambda: apprenticeships.mine(session, principal=principal))
    ids = [r.workflow_id for r in rows]
    client = await temporal()
    return [await apprenticeships.state(client, workflow_id=i) for i in ids]


@router.post("/me/apprenticeship/log-hours", response_model=ApprenticeshipState)
async def log_hours(
    body: LogHoursBody, session: SessionDep, principal: Person, temporal: TemporalDep
) -> ApprenticeshipState:
    """Log hours (pending until your supervisor approves them).

    **422** says every reason an entry is refused (negative hours, more than 24 h in a day,
    a future date, a suspended or withdrawn program, an id reused with other content);
    nothing is recorded then, and nothing recorded before is touched.
    """
    mine = await committed(session, lambda: apprenticeships.mine(session, principal=principal))
    rows = [r for r in mine if r.status == "active"]
    if body.program_id is not None:
        rows = [r for r in rows if r.program_id == body.program_id]
    if not rows:
        raise NotFound(
            "you have no active apprenticeship"
            + (f" in {body.program_id!r}" if body.program_id else "")
        )
    if len(rows) > 1:
        raise Invalid("you are in several programs; give program_id")
    entry = HoursEntry(
        id=body.id,
        day=body.day,
        kind=body.kind,
        hours=body.hours,
        skills=body.skills,
        description=body.description,
    )
    return await apprenticeships.log_hours(
        session,
        await temporal(),
        workflow_id=rows[0].workflow_id,
        entry=entry,
        principal=principal,
        corrects=body.corrects,
        reason=body.reason,
    )


@router.post(
    "/apprenticeship/{apprenticeship_id:path}/hours/{entry_id}/approve",
    response_model=ApprenticeshipState,
)
async def approve_hours(
    apprenticeship_id: str,
    entry_id: str,
    session: SessionDep,
    principal: Person,
    temporal: TemporalDep,
    body: ReasonBody | None = None,
) -> ApprenticeshipState:
    """The supervisor (or HR) approves a pending entry; only approved hours count."""
    return await apprenticeships.review_hours(
        session,
        await temporal(),
        workflow_id=apprenticeship_id,
        entry_id=entry_id,
        approve=True,
        reason=body.reason if body else None,
        principal=principal,
    )


@router.post(
    "/apprenticeship/{apprenticeship_id:path}/hours/{entry_id}/reject",
    response_model=ApprenticeshipState,
)
async def reject_hours(
    apprenticeship_id: str,
    entry_id: str,
    body: ReasonBody,
    session: SessionDep,
    principal: Person,
    temporal: TemporalDep,
) -> ApprenticeshipState:
    """The supervisor (or HR) rejects a pending entry, with a reason the apprentice can act on."""
    return await apprenticeships.review_hours(
        session,
        await temporal(),
        workflow_id=apprenticeship_id,
        entry_id=entry_id,
        approve=False,
        reason=body.reason,
        principal=principal,
    )


@router.post(
    "/apprenticeship/{apprenticeship_id:path}/evaluate", response_model=ApprenticeshipState
)
async def evaluate(
    apprenticeship_id: str,
    body: EvaluateBody,
    session: SessionDep,
    principal: Person,
    temporal: TemporalDep,
) -> ApprenticeshipState:
    """The supervisor's evaluation: score, skills signed off (a period completes), notes."""
    return await apprenticeships.evaluate(
        session,
        await temporal(),
        workflow_id=apprenticeship_id,
        evaluation_id=body.id,
        evaluation=Evaluation(
            day=body.day,
            score=body.score,
            skills_signed_off=body.skills_signed_off,
            final=body.final,
        ),
        notes=body.notes,
        principal=principal,
    )


def _change_route(action: EnrolmentAction, doc: str) -> Callable[..., Any]:
    """Register ``POST /apprenticeship/{id}/{action}`` (HR): one enrolment change.

    Suspend, reinstate and withdraw take the same input and differ only in the action, so one
    endpoint body serves all three; each keeps its own path, name (the OpenAPI operation) and
    description.
    """

    async def endpoint(
        apprenticeship_id: str,
        session: SessionDep,
        principal: HrOnly,
        temporal: TemporalDep,
        body: ChangeBody | None = None,
    ) -> ApprenticeshipState:
        return await apprenticeships.change(
            session,
            await temporal(),
            workflow_id=apprenticeship_id,
            action=action,
            reason=body.reason if body else "",
            principal=principal,
        )

    endpoint.__name__ = endpoint.__qualname__ = action.value
    endpoint.__doc__ = doc
    path = f"/apprenticeship/{{apprenticeship_id:path}}/{action.value}"
    return router.post(path, response_model=ApprenticeshipState)(endpoint)


suspend = _change_route(
    EnrolmentAction.SUSPEND, "Suspend (HR): hours cannot be logged, no clock runs, nothing is sent."
)
reinstate = _change_route(
    EnrolmentAction.REINSTATE,
    "Reinstate (HR): the clocks restart; suspended days move the expected completion.",
)
withdraw = _change_route(
    EnrolmentAction.WITHDRAW, "Withdraw (HR): the apprenticeship ends; its record stays."
)


@router.post(
    "/apprenticeship/{apprenticeship_id:path}/transfer-supervisor",
    response_model=ApprenticeshipState,
)
async def transfer_supervisor(
    apprenticeship_id: str,
    body: TransferBody,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
) -> ApprenticeshipState:
    """Hand the apprentice to another supervising journeyworker (HR)."""
    return await apprenticeships.transfer(
        session,
        await temporal(),
        workflow_id=apprenticeship_id,
        supervisor=body.supervisor,
        reason=body.reason,
        principal=principal,
    )
