"""The dashboards (``/ui/team``, ``/ui/org``) and their CSV exports (``/ui/export/…``).

Every number comes from :mod:`services.compliance` (the same aggregates as ``/compliance/*``),
over the audience the caller may see (:func:`api.deps.visible_person_ids`); the lists (who is
overdue, due, expiring) are the read model's rows for the same audience. Charts are SVG drawn
here (:mod:`api.charts`). CSV goes through the one formula-safe writer,
:func:`services.exports.csv_text`.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.charts import bar_chart, line_chart
from api.deps import SessionDep, TemporalDep, audit_action, visible_person_ids
from api.web import PagePrincipal, render
from domain.roles import Role
from services import bulk, compliance, evidence, reminders, reports
from services.errors import Invalid, ServiceError
from services.exports import csv_text
from store import packs
from store.db import committed
from store.models import AuditEntry, DeadLetter, Notification, Obligation, Person
from store.tokens import Principal

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

WINDOW = timedelta(days=compliance.WINDOW_DAYS)
NO_STORE = {"Cache-Control": "no-store"}
#: Statuses that count as done (nothing to chase).
CLOSED = ("completed", "compliant", "cancelled", "exempt", "superseded")


#: The lists a dashboard can show (``_lists``).
LISTS = ("overdue", "due_soon", "expiring", "expired")


def _lists(
    session: Session, audience: compliance.Audience, today: date, which: tuple[str, ...] = LISTS
) -> dict[str, Any]:
    """Who is overdue, due in 30 days, certifications expiring in 30 days and expired.

    Only the lists in ``which`` are read (the organisation page shows the certification
    lists only; its overdue people are the at-risk table).
    """

    def rows(*conditions: Any) -> list[Obligation]:
        stmt = audience.where(select(Obligation).join(Person, Person.id == Obligation.person_id))
        stmt = stmt.where(Obligation.status.notin_(CLOSED), *conditions)
        return list(session.scalars(stmt.order_by(Person.name, Obligation.id).limit(200)))

    soon = today + WINDOW
    conditions: dict[str, tuple[Any, ...]] = {
        "overdue": (Obligation.status.in_(("overdue", "non_compliant", "failed")),),
        "due_soon": (
            Obligation.kind != "certification",
            Obligation.status.notin_(("overdue", "non_compliant", "failed")),
            Obligation.due_date >= today,
            Obligation.due_date <= soon,
        ),
        "expiring": (
            Obligation.kind == "certification",
            Obligation.expiry_date >= today,
            Obligation.expiry_date <= soon,
        ),
        "expired": (Obligation.kind == "certification", Obligation.expiry_date < today),
    }
    return {name: rows(*conditions[name]) for name in which}


def _charts(
    audience: compliance.Audience,
    points: list[compliance.TrendPoint],
    by: str,
    groups: list[compliance.BreakdownRow],
) -> dict[str, Any]:
    """The trend line and the bars of ``groups`` (the page's own table, not a second query)."""
    return {
        "trend": points,
        "trend_svg": line_chart(
            f"{audience.label}: compliance rate, last 12 months",
            [(p.month, p.rate) for p in points],
        ),
        "bars_svg": bar_chart(
            f"{audience.label}: compliance rate by {by}",
            [(g.label, g.rate, g.total) for g in groups[:20]],
            ident=f"by-{by}",
        ),
    }


def _team(
    session: Session, principal: Principal, manager: str | None, now: datetime
) -> dict[str, Any]:
    visible = visible_person_ids(session, principal)
    if manager is None and principal.person_id is None:
        # HR without a person of their own: choose whose team.
        leads = session.scalars(
            select(Person)
            .where(Person.id.in_(select(Person.manager_id).where(Person.manager_id.isnot(None))))
            .order_by(Person.name)
        )
        return {"choose": list(leads)}
    audience = compliance.audience(
        session, visible=visible, scope="team", viewer_id=principal.person_id, manager=manager
    )
    today = now.date()
    by_report = compliance.breakdown(session, audience=audience, by="report", today=today)
    return {
        "audience": audience,
        "manager": manager,
        "summary": compliance.summary(session, audience=audience, today=today),
        "by_requirement": compliance.breakdown(
            session, audience=audience, by="requirement", today=today
        ),
        "by_category": compliance.breakdown(session, audience=audience, by="category", today=today),
        "by_report": by_report,
        **_lists(session, audience, today),
        **_charts(
            audience,
            compliance.trend(session, audience=audience, now=now, months=12),
            "report",
            by_report,
        ),
    }


@router.get("/team", response_class=HTMLResponse)
def team_page(
    request: Request,
    session: SessionDep,
    principal: PagePrincipal,
    manager: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """A manager's team: rates overall, by requirement, category and report; who needs what."""
    data = _team(session, principal, manager or None, datetime.now(UTC))
    return render(request, "team.html", data)


def _org(session: Session, principal: Principal, now: datetime, a: str, b: str) -> dict[str, Any]:
    visible = visible_person_ids(session, principal)
    audience = compliance.audience(
        session, visible=visible, scope="org", viewer_id=principal.person_id
    )
    today = now.date()
    versions = packs.versions(session)
    diff: list[str] | None = None
    if a and b:
        old, new = packs.find_version(session, a), packs.find_version(session, b)
        if old is None or new is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such pack version")
        diff = list(
            difflib.unified_diff(
                json.dumps(old.content, indent=2, sort_keys=True).splitlines(),
                json.dumps(new.content, indent=2, sort_keys=True).splitlines(),
                fromfile=a[:12],
                tofile=b[:12],
                lineterm="",
                n=2,
            )
        )[:2000]
    # The headline and the department/location/team tables from one pass over the
    # obligations (they used to be four, and the bars a fifth); the bars are the team table.
    overview = compliance.overview(session, audience=audience, today=today)
    by_team = overview.breakdowns["team"]
    return {
        "audience": audience,
        "summary": overview.summary,
        "by_category": compliance.breakdown(session, audience=audience, by="category", today=today),
        "by_department": overview.breakdowns["department"],
        "by_location": overview.breakdowns["location"],
        "by_team": by_team,
        "at_risk": compliance.at_risk(session, audience=audience, today=today, limit=50),
        **_lists(session, audience, today, ("expiring", "expired")),
        **_charts(
            audience,
            compliance.trend(session, audience=audience, now=now, months=12),
            "team",
            by_team,
        ),
        "failed": list(
            session.scalars(
                select(Notification)
                .where(Notification.status.in_(("failed", "held")))
                .order_by(Notification.id.desc())
                .limit(50)
            )
        ),
        "dead_letters": list(
            session.scalars(
                select(DeadLetter)
                .where(DeadLetter.resolved.is_(False))
                .order_by(DeadLetter.id.desc())
                .limit(50)
            )
        ),
        "versions": versions,
        "diff": diff,
        "a": a,
        "b": b,
        "exemption_requests": reminders.exemption_requests(session),
        "bulk_jobs": list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "assignment.bulk")
                .order_by(AuditEntry.id.desc())
                .limit(10)
            )
        ),
    }


async def _bulk_progress(client: Any, principal: Principal, jobs: list[AuditEntry]) -> list[Any]:
    """Each job's live progress, or why it is unavailable (never fails the page)."""
    answers: list[Any] = []
    for job in jobs:
        bulk_id = str((job.after or {}).get("bulk_id", ""))
        try:
            run = await asyncio.wait_for(
                bulk.progress(client, bulk_id=bulk_id, principal=principal), timeout=5
            )
            answers.append(run)
        except (ServiceError, TimeoutError) as exc:
            answers.append(f"progress unavailable ({type(exc).__name__})")
    return answers


@router.get("/org", response_class=HTMLResponse)
async def org_page(
    request: Request,
    session: SessionDep,
    principal: PagePrincipal,
    temporal: TemporalDep,
    a: Annotated[str, Query(max_length=64)] = "",
    b: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """HR's organisation: totals, rates by category/department/location/team, what is stuck."""
    data = await committed(session, lambda: _org(session, principal, datetime.now(UTC), a, b))
    progress: list[Any] = []
    if data["bulk_jobs"]:
        try:
            client = await temporal()
        except HTTPException:
            progress = ["progress unavailable (Temporal unreachable)"] * len(data["bulk_jobs"])
        else:
            progress = await _bulk_progress(client, principal, data["bulk_jobs"])
    data["bulk"] = list(zip(data["bulk_jobs"], progress, strict=True))
    return render(request, "org.html", data)


#: ``/ui/export/<table>.csv``: what each table is.
EXPORTS = (
    "summary",
    "by-requirement",
    "by-category",
    "by-department",
    "by-location",
    "by-team",
    "by-report",
    "at-risk",
    "trend",
    "overdue",
    "due-soon",
    "expiring",
    "expired",
)


def _export(
    session: Session, principal: Principal, table: str, scope: str, manager: str | None
) -> tuple[list[str], list[list[Any]]]:
    if scope not in ("team", "org") or (scope == "org" and principal.role is Role.MANAGER):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    now = datetime.now(UTC)
    audience = compliance.audience(
        session,
        visible=visible_person_ids(session, principal),
        scope=scope,
        viewer_id=principal.person_id,
        manager=manager,
    )
    today = now.date()
    if table == "summary":
        headline = compliance.summary(session, audience=audience, today=today)
        return compliance.rows_for_csv([headline])
    if table.startswith("by-"):
        by = table[3:]
        return compliance.rows_for_csv(
            list(compliance.breakdown(session, audience=audience, by=by, today=today))
        )
    if table == "at-risk":
        return compliance.rows_for_csv(
            list(compliance.at_risk(session, audience=audience, today=today, limit=10_000))
        )
    if table == "trend":
        return compliance.rows_for_csv(
            list(compliance.trend(session, audience=audience, now=now, months=12))
        )
    name = table.replace("-", "_")
    rows = _lists(session, audience, today, (name,))[name]
    header = ["person", "name", "obligation", "requirement", "kind", "status", "due", "expires"]
    return header, [
        [
            o.person.external_id,
            o.person.name,
            o.workflow_id,
            o.requirement_title,
            o.kind,
            o.status,
            o.due_date,
            o.expiry_date,
        ]
        for o in rows
    ]


@router.get("/export/{table}")
def export_csv(
    table: str,
    session: SessionDep,
    principal: PagePrincipal,
    scope: Annotated[str, Query(max_length=10)] = "team",
    manager: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """A dashboard table as CSV (cells made safe against spreadsheet formulas)."""
    name = table.removesuffix(".csv")
    if name not in EXPORTS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    header, rows = _export(session, principal, name, scope, manager or None)
    return Response(
        csv_text(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{scope}-{name}.csv"',
            "Cache-Control": "no-store",
        },
    )


# ---------------------------------------------------------------------------------------------
# Evidence pack (ZIP) and PDF report
# ---------------------------------------------------------------------------------------------


def _day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{field}: not a date ({value[:12]!r}); use YYYY-MM-DD") from None


@router.get("/evidence.zip")
async def evidence_zip(
    session: SessionDep,
    principal: PagePrincipal,
    temporal: TemporalDep,
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    person: Annotated[str, Query(max_length=64)] = "",
    team: Annotated[str, Query(max_length=64)] = "",
    requirement: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """The evidence pack (``services.evidence``, as ``GET /audit/evidence``), from a form."""
    first, last = _day(since, "since"), _day(until, "until")

    def read() -> evidence.Evidence:
        gathered = evidence.gather(
            session,
            since=first,
            until=last,
            person=person or None,
            team=team or None,
            requirement=requirement or None,
        )
        audit_action(
            session,
            principal,
            "evidence.export",
            "evidence",
            {**gathered.selection, "since": first.isoformat(), "until": last.isoformat()},
        )
        return gathered

    gathered = await committed(session, read)
    try:
        fetch: evidence.HistoryFetcher | None = evidence.history_fetcher(await temporal())
    except HTTPException:
        fetch = None
    data = await evidence.evidence_pack(gathered, fetch=fetch, generated_at=datetime.now(UTC))
    name = evidence.file_name(gathered.selection, first, last)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE},
    )


@router.get("/report.pdf")
def report_pdf(
    session: SessionDep,
    principal: PagePrincipal,
    scope: Annotated[str, Query(max_length=10)] = "team",
    manager: Annotated[str | None, Query(max_length=64)] = None,
    day: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    """The PDF compliance report (``services.reports``) of the caller's team or the org."""
    if scope not in ("team", "org") or (scope == "org" and principal.role is Role.MANAGER):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    now = datetime.now(UTC)
    audience = compliance.audience(
        session,
        visible=visible_person_ids(session, principal),
        scope=scope,
        viewer_id=principal.person_id,
        manager=manager or None,
    )
    as_of = _day(day, "day") if day else now.date()
    data = reports.compliance_pdf(session, audience=audience, day=as_of, generated_at=now)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="compliance-{scope}-{as_of}.pdf"',
            **NO_STORE,
        },
    )
