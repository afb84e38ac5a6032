"""Compliance dashboards as JSON (and CSV): summary, breakdowns, at-risk people, trend, as-of.

Each route reads the read model with aggregate queries (``services.compliance``) within the
caller's row-level scope (``visible_person_ids``, the API's one policy): a learner's numbers are
their own, a manager's their team's, HR's and auditors' everyone's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from api.deps import ClockDep, SessionDep, require_roles, visible_person_ids
from domain.roles import Role
from services import compliance, reports
from services.errors import Invalid
from services.exports import csv_text
from store.tokens import Principal

router = APIRouter(prefix="/compliance", tags=["compliance"])

#: Who reads dashboards (api/policy.py declares the same); rows are scoped per caller.
Reader = Annotated[
    Principal,
    Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.LEARNER, Role.AUDITOR)),
]
ReportReader = Annotated[
    Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.AUDITOR))
]

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON or CSV"}
}


async def current_instant(clock: ClockDep) -> datetime:
    """The API clock's now (a dependency, so sync handlers get it without awaiting)."""
    return await clock()


NowDep = Annotated[datetime, Depends(current_instant)]
ScopeQuery = Annotated[
    Literal["team", "department", "org"],
    Query(description="team: a manager's reports; department; org: everyone you may see"),
]
ManagerQuery = Annotated[
    str | None, Query(description="team scope: the manager's external id (default: you)")
]
DepartmentQuery = Annotated[
    str | None, Query(description="department scope: its name (default: yours)")
]
FormatQuery = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]


def _audience(
    session: Any, principal: Principal, scope: str, manager: str | None, department: str | None
) -> compliance.Audience:
    return compliance.audience(
        session,
        visible=visible_person_ids(session, principal),
        scope=scope,
        viewer_id=principal.person_id,
        manager=manager,
        department=department,
    )


def reader_audience(
    session: SessionDep,
    principal: Reader,
    scope: ScopeQuery = "org",
    manager: ManagerQuery = None,
    department: DepartmentQuery = None,
) -> compliance.Audience:
    """The people a dashboard route counts: the query's scope within what the caller may see."""
    return _audience(session, principal, scope, manager, department)


#: The scope, manager and department query parameters, resolved for the caller.
AudienceDep = Annotated[compliance.Audience, Depends(reader_audience)]


def _csv(items: list[BaseModel], name: str) -> Response:
    header, rows = compliance.rows_for_csv(items)
    return Response(
        csv_text(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/summary", response_model=compliance.Summary, responses=CSV_RESPONSE)
def summary(
    session: SessionDep,
    audience: AudienceDep,
    now: NowDep,
    format: FormatQuery = "json",
) -> Any:
    """A dashboard's headline numbers.

    Totals, completed / in progress / overdue, due in 30 days, certifications expiring in 30
    days and expired, and the compliance rate of a team, a department or the organisation.
    """
    result = compliance.summary(
        session,
        audience=audience,
        today=now.date(),
    )
    return _csv([result], f"compliance-summary-{audience.scope}") if format == "csv" else result


@router.get("/breakdown", response_model=list[compliance.BreakdownRow], responses=CSV_RESPONSE)
def breakdown(
    session: SessionDep,
    audience: AudienceDep,
    now: NowDep,
    by: Annotated[
        Literal["requirement", "category", "department", "location", "team", "report"],
        Query(description="the grouping; report: each person (team scope: with depth)"),
    ] = "requirement",
    format: FormatQuery = "json",
) -> Any:
    """The dashboard's numbers per group.

    By requirement, category (the obligation's kind), department, location, team (manager) or
    report (each person; in a team scope, direct and indirect, with their depth).
    """
    rows = compliance.breakdown(
        session,
        audience=audience,
        by=by,
        today=now.date(),
    )
    return _csv(list(rows), f"compliance-by-{by}") if format == "csv" else rows


@router.get("/at-risk", response_model=list[compliance.AtRiskPerson], responses=CSV_RESPONSE)
def at_risk(
    session: SessionDep,
    audience: AudienceDep,
    now: NowDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    format: FormatQuery = "json",
) -> Any:
    """People with something overdue or an expired certification, most overdue first."""
    rows = compliance.at_risk(
        session,
        audience=audience,
        today=now.date(),
        limit=limit,
    )
    return _csv(list(rows), "compliance-at-risk") if format == "csv" else rows


@router.get("/trend", response_model=list[compliance.TrendPoint], responses=CSV_RESPONSE)
def trend(
    session: SessionDep,
    audience: AudienceDep,
    now: NowDep,
    months: Annotated[int, Query(ge=1, le=36)] = 12,
    format: FormatQuery = "json",
) -> Any:
    """Compliance at the end of each of the last months, from the recorded decisions."""
    rows = compliance.trend(
        session,
        audience=audience,
        now=now,
        months=months,
    )
    return _csv(list(rows), "compliance-trend") if format == "csv" else rows


@router.get(
    "/as-of",
    response_model=compliance.AsOfDecision | compliance.AsOfCounts,
    responses=CSV_RESPONSE,
)
def as_of(
    session: SessionDep,
    principal: Reader,
    now: NowDep,
    at: Annotated[
        datetime | None, Query(description="the instant (ISO 8601; no offset: UTC); default now")
    ] = None,
    person: Annotated[str | None, Query(description="a person's external id")] = None,
    requirement: Annotated[str | None, Query(description="a requirement id (with person)")] = None,
    scope: ScopeQuery = "org",
    manager: ManagerQuery = None,
    department: DepartmentQuery = None,
    format: FormatQuery = "json",
) -> Any:
    """What was in force at an instant, from the decisions recorded then.

    ``?person=&requirement=``: the status and why (rule, pack hash, facts, the triggering
    event); otherwise a scope's counts and rate. Never re-decided with today's rules.
    """
    instant = now if at is None else at if at.tzinfo else at.replace(tzinfo=UTC)
    result: BaseModel
    if person is not None or requirement is not None:
        if person is None or requirement is None:
            raise Invalid("give both ?person= and ?requirement= (or neither, with ?scope=)")
        result = compliance.as_of_obligation(
            session,
            visible=visible_person_ids(session, principal),
            person=person,
            requirement=requirement,
            at=instant,
        )
    else:
        result = compliance.as_of_counts(
            session,
            audience=_audience(session, principal, scope, manager, department),
            at=instant,
        )
    return _csv([result], "compliance-as-of") if format == "csv" else result


@router.get(
    "/report.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "the PDF report"}},
)
def report_pdf(
    session: SessionDep,
    principal: ReportReader,
    now: NowDep,
    day: Annotated[
        date | None, Query(description="the day the report is as of (UTC); default today")
    ] = None,
    scope: ScopeQuery = "org",
    manager: ManagerQuery = None,
    department: DepartmentQuery = None,
) -> Response:
    """A PDF compliance report of the organisation, a department or a team, as of a day.

    Headline numbers, a 12-month trend chart and a table by requirement, all from the
    decisions recorded up to the end of that day.
    """
    audience = _audience(session, principal, scope, manager, department)
    as_of_day = day or now.date()
    data = reports.compliance_pdf(session, audience=audience, day=as_of_day, generated_at=now)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": (
                f'attachment; filename="compliance-{scope}-{as_of_day.isoformat()}.pdf"'
            )
        },
    )
