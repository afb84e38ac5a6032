"""Learning-system integrations: configure, test, schedule and sync connectors.

An integration is a row (:class:`store.integrations.Integration`) plus a Temporal Schedule
(``duly-integration-{id}``) whose :class:`~workflows.integration.IntegrationSyncWorkflow` calls
:func:`run_sync` through an activity. A sync reads the source in batches from the stored cursor,
hands every item to the same intake as ``POST /xapi/statements`` and ``POST /completions``
(:mod:`services.intake`), and stores the batch's cursor only when every item of it was recorded,
found a duplicate, ignored or dead-lettered; a Temporal outage (503) or a source failure stops
the sync with the cursor at the last whole batch. Unmatched records go to the dead letters HR
already resolves (``GET /xapi/dead-letters``), with the integration as their source.

The API (``/integrations``) and the CLI (``duly integrations``) share these functions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client

from activities.packs import active_pack
from domain.bounds import OutOfRange
from domain.contracts.integration import (
    SyncRequest,
    SyncResult,
    integration_schedule_id,
    integration_workflow_id,
)
from domain.statuses import ObligationStatus
from duly.settings import Settings
from services import intake
from services.connectors.base import Batch, Connector, ConnectorError, Enrolment, Sleep
from services.connectors.csvdrop import CsvDropConnector, resolve_folder
from services.connectors.lrs import LrsConnector
from services.connectors.moodle import STUDENT_ROLE, MoodleConnector
from services.errors import Invalid, NotFound
from store import audit
from store.db import Database, committed
from store.integrations import Integration
from store.models import Obligation, Person

log = logging.getLogger("duly.integrations")

Kind = Literal["moodle", "xapi_lrs", "csv_drop"]


class IntegrationInvalid(Invalid, ValueError):
    """The configuration cannot work (the message says what to change); an HTTP 422."""


class UnknownIntegration(NotFound, LookupError):
    """No integration has this id; an HTTP 404."""


# --- configuration ------------------------------------------------------------------------------


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every_minutes: int | None = Field(default=None, ge=1, le=10_080)


class MoodleConfig(_Config):
    """``moodle``: the site, which mapped courses to pull, and enrolment pushing."""

    base_url: HttpUrl
    #: Restrict to these Moodle course ids (default: every course the active pack maps).
    courses: list[int] | None = None
    push_enrolments: bool = True
    role_id: int = Field(default=STUDENT_ROLE, ge=1)


class LrsConfig(_Config):
    """``xapi_lrs``: the LRS's xAPI endpoint and the verbs to pull."""

    endpoint: HttpUrl
    verbs: list[str] | None = None


class CsvDropConfig(_Config):
    """``csv_drop``: the folder, relative to DULY_INTEGRATIONS_DROP_ROOT."""

    folder: str = Field(min_length=1, max_length=300)


_CONFIGS: dict[str, type[_Config]] = {
    "moodle": MoodleConfig,
    "xapi_lrs": LrsConfig,
    "csv_drop": CsvDropConfig,
}
_NEEDS_SECRET = {"moodle", "xapi_lrs"}


def validate_config(kind: str, config: Mapping[str, Any], secret_ref: str | None) -> dict[str, Any]:
    """The config as stored (normalised JSON).

    Raises:
        IntegrationInvalid: Unknown kind, a bad field, a missing or malformed secret reference.
    """
    model = _CONFIGS.get(kind)
    if model is None:
        raise IntegrationInvalid(f"kind must be one of {', '.join(_CONFIGS)}, not {kind!r}")
    try:
        parsed = model.model_validate(dict(config))
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "config"
        raise IntegrationInvalid(f"config.{where}: {error['msg']}") from None
    if kind in _NEEDS_SECRET and not secret_ref:
        raise IntegrationInvalid(f"a {kind} integration needs secret_ref (env:NAME or file:/path)")
    if secret_ref is not None and not secret_ref.startswith(("env:", "file:")):
        raise IntegrationInvalid("secret_ref is env:NAME or file:/path; the secret is not stored")
    return parsed.model_dump(mode="json", exclude_none=True)


def resolve_secret(secret_ref: str | None) -> str:
    """The secret a reference names (read at each sync, never stored or logged).

    Raises:
        ConnectorError: The variable or file is missing or empty.
    """
    if not secret_ref:
        raise ConnectorError("no secret_ref configured")
    kind, _, name = secret_ref.partition(":")
    value: str | None = None
    if kind == "env":
        value = os.environ.get(name)
    elif kind == "file":
        try:
            value = Path(name).read_text(encoding="utf-8")
        except OSError:
            value = None
    if not value or not value.strip():
        raise ConnectorError(f"the secret {secret_ref} is missing or empty on this host")
    return value.strip()


class IntegrationRead(BaseModel):
    """An integration as the API and CLI show it (never the secret itself)."""

    id: int
    name: str
    kind: str
    config: dict[str, Any]
    secret_ref: str | None
    enabled: bool
    cursor: dict[str, Any]
    last_sync_at: datetime | None
    last_status: str | None
    last_error: str | None
    error_count: int
    schedule_id: str

    @classmethod
    def of(cls, row: Integration) -> IntegrationRead:
        """The read model of ``row``."""
        return cls(
            id=row.id,
            name=row.name,
            kind=row.kind,
            config=row.config,
            secret_ref=row.secret_ref,
            enabled=row.enabled,
            cursor=row.cursor,
            last_sync_at=row.last_sync_at,
            last_status=row.last_status,
            last_error=row.last_error,
            error_count=row.error_count,
            schedule_id=integration_schedule_id(row.id),
        )


def _get(session: Session, integration_id: int) -> Integration:
    row = session.get(Integration, integration_id)
    if row is None:
        raise UnknownIntegration(f"no integration {integration_id}")
    return row


def list_integrations(session: Session) -> list[IntegrationRead]:
    """Every integration, by id."""
    return [IntegrationRead.of(r) for r in session.scalars(select(Integration).order_by("id"))]


def get_integration(session: Session, *, integration_id: int) -> IntegrationRead:
    """One integration (:class:`UnknownIntegration` when none)."""
    return IntegrationRead.of(_get(session, integration_id))


def create_integration(
    session: Session,
    *,
    name: str,
    kind: str,
    config: Mapping[str, Any],
    secret_ref: str | None,
    enabled: bool,
    actor: str,
    actor_role: str,
) -> IntegrationRead:
    """Store a new integration (audited ``integration.create``); its schedule is separate."""
    stored = validate_config(kind, config, secret_ref)
    if session.scalar(select(Integration.id).where(Integration.name == name)) is not None:
        raise IntegrationInvalid(f"an integration is already named {name!r}")
    row = Integration(
        name=name, kind=kind, config=stored, secret_ref=secret_ref, enabled=enabled, cursor={}
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        actor_role=actor_role,
        action="integration.create",
        target=f"integration/{row.id}",
        after={"name": name, "kind": kind, "config": stored, "secret_ref": secret_ref},
    )
    return IntegrationRead.of(row)


def update_integration(
    session: Session,
    *,
    integration_id: int,
    actor: str,
    actor_role: str,
    config: Mapping[str, Any] | None = None,
    secret_ref: str | None = None,
    enabled: bool | None = None,
    reset_cursor: bool = False,
) -> IntegrationRead:
    """Change an integration (audited ``integration.update``)."""
    row = _get(session, integration_id)
    before = IntegrationRead.of(row).model_dump(mode="json", include={"config", "enabled"})
    new_secret = secret_ref if secret_ref is not None else row.secret_ref
    if config is not None or secret_ref is not None:
        row.config = validate_config(
            row.kind, config if config is not None else row.config, new_secret
        )
        row.secret_ref = new_secret
    if enabled is not None:
        row.enabled = enabled
    if reset_cursor:
        row.cursor = {}
    session.flush()
    audit.record(
        session,
        actor=actor,
        actor_role=actor_role,
        action="integration.update",
        target=f"integration/{row.id}",
        before=before,
        after={"config": row.config, "enabled": row.enabled, "reset_cursor": reset_cursor},
    )
    return IntegrationRead.of(row)


def delete_integration(
    session: Session, *, integration_id: int, actor: str, actor_role: str
) -> None:
    """Remove an integration (audited); delete its schedule with :func:`remove_schedule`."""
    row = _get(session, integration_id)
    audit.record(
        session,
        actor=actor,
        actor_role=actor_role,
        action="integration.delete",
        target=f"integration/{row.id}",
        before={"name": row.name, "kind": row.kind, "cursor": row.cursor},
    )
    session.delete(row)


# --- connectors ---------------------------------------------------------------------------------


@dataclass
class Wiring:
    """How connectors reach their sources (tests give a fake transport and sleep)."""

    transport: httpx.AsyncBaseTransport | None = None
    sleep: Sleep | None = None


def moodle_courses(session: Session, config: Mapping[str, Any]) -> dict[int, str]:
    """Moodle course id → requirement id, from the active pack (``moodle_course_id``).

    Raises:
        ConnectorError: A configured course is not mapped by the active pack.
    """
    pack = active_pack(session)
    mapped = {
        r.moodle_course_id: r.id
        for r in (pack.requirements if pack is not None else [])
        if r.moodle_course_id is not None
    }
    wanted = config.get("courses")
    if wanted is None:
        return mapped
    unmapped = [c for c in wanted if c not in mapped]
    if unmapped:
        raise ConnectorError(
            f"the active pack maps no requirement to Moodle course(s) {unmapped} (moodle_course_id)"
        )
    return {c: mapped[c] for c in wanted}


def build_connector(
    row: Integration, settings: Settings, wiring: Wiring, courses: dict[int, str] | None = None
) -> Connector:
    """The connector an integration row describes."""
    config = row.config
    if row.kind == "moodle":
        return MoodleConnector(
            str(config["base_url"]),
            resolve_secret(row.secret_ref),
            courses=courses or {},
            integration_id=row.id,
            role_id=int(config.get("role_id", STUDENT_ROLE)),
            transport=wiring.transport,
            sleep=wiring.sleep,
        )
    if row.kind == "xapi_lrs":
        key, sep, secret = resolve_secret(row.secret_ref).partition(":")
        if not sep:
            raise ConnectorError("the LRS secret must be key:secret (HTTP Basic)")
        verbs = tuple(config.get("verbs") or intake.PULLED_VERBS)
        return LrsConnector(
            str(config["endpoint"]),
            key,
            secret,
            verbs=verbs,
            transport=wiring.transport,
            sleep=wiring.sleep,
        )
    if row.kind == "csv_drop":
        folder = resolve_folder(settings.drop_root, str(config["folder"]))
        return CsvDropConnector(folder, integration_id=row.id)
    raise ConnectorError(f"unknown kind {row.kind!r}")


async def _close(connector: Connector) -> None:
    close = getattr(connector, "close", None)
    if close is not None:
        await close()


async def check_connection(
    session: Session, *, integration_id: int, settings: Settings, wiring: Wiring | None = None
) -> tuple[bool, str]:
    """Whether the source answers with these credentials, and what it said (never the secret)."""
    row = await committed(session, lambda: _get(session, integration_id))
    try:
        courses = (
            await committed(session, lambda: moodle_courses(session, row.config))
            if row.kind == "moodle"
            else None
        )
        connector = build_connector(row, settings, wiring or Wiring(), courses)
        try:
            detail = await connector.test()
        finally:
            await _close(connector)
    except ConnectorError as problem:
        return False, str(problem)
    if courses is not None:
        detail += f"; {len(courses)} mapped course(s)"
    return True, detail


# --- syncing ------------------------------------------------------------------------------------


@dataclass
class _Tally:
    pulled: int = 0
    recorded: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    pushed: int = 0

    def add(self, results: list[intake.ItemResult]) -> None:
        for item in results:
            self.pulled += 1
            if item.outcome == "recorded":
                self.recorded += 1
            elif item.outcome == "dead_letter":
                self.dead_lettered += 1
            else:
                self.skipped += 1


async def _batch(
    session: Session,
    row: Integration,
    batch: Batch,
    ctx: intake.StatementContext,
    tally: _Tally,
) -> None:
    """Hand one batch to the intake; :class:`ConnectorError` when any item must be retried."""
    results: list[intake.ItemResult] = []
    if batch.statements:
        parsed: list[intake.Parsed] = []
        raws: list[dict[str, Any]] = []
        for index, raw in enumerate(batch.statements):
            try:
                parsed.append(intake.validate_statement(raw, f"statement[{index}]"))
                raws.append(raw)
            except intake.Refused as refused:
                sid = raw.get("id") if isinstance(raw.get("id"), str) else None
                letter = await committed(
                    session,
                    partial(intake.dead_letter, session, ctx.source, str(refused), raw, sid),
                )
                results.append(
                    intake.ItemResult(
                        index=index,
                        status=422,
                        outcome="dead_letter",
                        detail=str(refused),
                        dead_letter_id=letter,
                    )
                )
        results += await intake.process_statements(session, ctx, raws, parsed)
    for index, completion in enumerate(batch.completions):
        try:
            ctx.window.check("completed_at", completion.completed_at)
        except OutOfRange as problem:
            body = completion.body
            key = f"completion:{body.idempotency_key}" if body.idempotency_key else None
            letter = await committed(
                session,
                partial(
                    intake.dead_letter,
                    session,
                    ctx.source,
                    str(problem),
                    body.model_dump(mode="json"),
                    key,
                ),
            )
            results.append(
                intake.ItemResult(
                    index=index,
                    status=422,
                    outcome="dead_letter",
                    detail=str(problem),
                    dead_letter_id=letter,
                )
            )
            continue
        results.append(
            await intake.process_completion(
                session,
                ctx.caller,
                ctx.signaller,
                completion.body,
                completion.completed_at,
                source=ctx.source,
                index=index,
            )
        )
    for reject in batch.rejects:
        await committed(
            session,
            partial(
                intake.dead_letter, session, ctx.source, reject.reason, reject.payload, reject.key
            ),
        )
        results.append(
            intake.ItemResult(index=0, status=422, outcome="dead_letter", detail=reject.reason)
        )
    tally.add(results)
    unavailable = [r for r in results if r.outcome == "unavailable"]
    if unavailable:
        raise ConnectorError(
            f"{len(unavailable)} item(s) of {batch.label or 'a batch'} could not be recorded"
            f" ({unavailable[0].detail}); the cursor stays before them"
        )


async def _push_enrolments(
    session: Session, row: Integration, connector: MoodleConnector, ctx: intake.StatementContext
) -> int:
    """Enrol in Moodle every open obligation created since the last push (cursor)."""
    through = int(row.cursor.get("enrolled_through", 0))
    courses = {requirement: course for course, requirement in connector.courses.items()}

    def _pending() -> list[Enrolment]:
        rows = session.execute(
            select(Obligation, Person)
            .join(Person, Person.id == Obligation.person_id)
            .where(
                Obligation.id > through,
                Obligation.completed_at.is_(None),
                Obligation.status != ObligationStatus.CANCELLED.value,
                Obligation.requirement_id.in_(list(courses)),
            )
            .order_by(Obligation.id)
            .limit(200)
        )
        return [Enrolment(o.id, p.external_id, p.email, courses[o.requirement_id]) for o, p in rows]

    pushed = 0
    while pending := await committed(session, _pending):
        results = await connector.push(pending)
        for enrolment, problem in results:
            if problem is None:
                pushed += 1
                continue
            payload = {
                "person": enrolment.person_external_id,
                "moodle_course_id": enrolment.course_id,
                "obligation_id": enrolment.obligation_id,
            }
            await committed(
                session,
                partial(
                    intake.dead_letter,
                    session,
                    ctx.source,
                    f"enrolment not pushed: {problem}",
                    payload,
                    f"moodle-enrol:{row.id}:{enrolment.obligation_id}",
                ),
            )
        through = max(e.obligation_id for e in pending)
        await _save_cursor(session, row.id, {**row.cursor, "enrolled_through": through})
        row.cursor = {**row.cursor, "enrolled_through": through}
    return pushed


async def _save_cursor(session: Session, integration_id: int, cursor: dict[str, Any]) -> None:
    def _save() -> None:
        stored = _get(session, integration_id)
        stored.cursor = cursor

    await committed(session, _save)


async def run_sync(
    db: Database,
    client_factory: Callable[[], Any],
    settings: Settings,
    request: SyncRequest,
    *,
    now: datetime | None = None,
    wiring: Wiring | None = None,
) -> SyncResult:
    """Sync one integration: pull batches from its cursor, record them, push enrolments.

    The cursor is stored after each whole batch; the row's ``last_sync_at``, ``last_status``,
    ``last_error`` and ``error_count`` (failures since the last success) after the sync.
    A disabled integration is not synced (``ok`` with nothing done).

    Args:
        db: The database.
        client_factory: Returns the Temporal client (awaitable), as the API's lazy client does.
        settings: Settings (evidence window, drop root, task queue).
        request: Which integration.
        now: The instant evidence is judged against (default: the clock).
        wiring: Transport and sleep for the connectors (tests).
    """
    wiring = wiring or Wiring()
    moment = now or datetime.now(UTC)
    session = db.sessionmaker()
    tally = _Tally()
    try:
        row = await committed(session, lambda: _get(session, request.integration_id))
        if not row.enabled:
            return SyncResult(integration_id=row.id, ok=True, error="disabled")
        ctx = intake.StatementContext(
            caller=intake.Caller(actor=f"integration:{row.name}"[:100], role="integration"),
            signaller=intake.Signaller(client_factory),
            window=settings.evidence_window(moment),
            settings=settings,
            source=f"{row.kind}:{row.id}"[:32],
        )
        error: str | None = None
        try:
            courses = (
                await committed(session, lambda: moodle_courses(session, row.config))
                if row.kind == "moodle"
                else None
            )
            connector = build_connector(row, settings, wiring, courses)
            try:
                async for batch in connector.pull(dict(row.cursor)):
                    await _batch(session, row, batch, ctx, tally)
                    await _save_cursor(session, row.id, batch.cursor)
                    row.cursor = batch.cursor
                if isinstance(connector, MoodleConnector) and row.config.get(
                    "push_enrolments", True
                ):
                    tally.pushed = await _push_enrolments(session, row, connector, ctx)
            finally:
                await _close(connector)
        except ConnectorError as problem:
            error = str(problem)[:500]
        await committed(session, lambda: _finish(session, row.id, moment, error))
        log.info(
            "integration %s synced (%s): %s pulled, %s recorded, %s dead letters, %s pushed%s",
            row.id,
            request.trigger,
            tally.pulled,
            tally.recorded,
            tally.dead_lettered,
            tally.pushed,
            f"; failed: {error}" if error else "",
        )
        return SyncResult(
            integration_id=row.id,
            ok=error is None,
            pulled=tally.pulled,
            recorded=tally.recorded,
            skipped=tally.skipped,
            dead_lettered=tally.dead_lettered,
            pushed=tally.pushed,
            error=error,
        )
    finally:
        session.close()


def _finish(session: Session, integration_id: int, moment: datetime, error: str | None) -> None:
    row = _get(session, integration_id)
    row.last_sync_at = moment
    row.last_status = "ok" if error is None else "failed"
    row.last_error = error
    row.error_count = 0 if error is None else row.error_count + 1


# --- Temporal -----------------------------------------------------------------------------------


def _interval(row: IntegrationRead, settings: Settings) -> timedelta:
    minutes = row.config.get("every_minutes") or settings.integrations_sync_minutes
    return timedelta(minutes=int(minutes))


async def ensure_schedule(client: Client, row: IntegrationRead, settings: Settings) -> str:
    """Create or update the integration's schedule (idempotent); paused while disabled.

    Returns:
        ``created`` or ``updated``.
    """
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleState,
        ScheduleUpdate,
        ScheduleUpdateInput,
    )

    from workflows.integration import IntegrationSyncWorkflow

    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            IntegrationSyncWorkflow.run,
            SyncRequest(integration_id=row.id),
            id=integration_workflow_id(row.id),
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=_interval(row, settings))]),
        # A sync still running when the next is due: skip, the next one catches up.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(paused=not row.enabled, note=f"integration {row.name}"),
    )
    schedule_id = integration_schedule_id(row.id)
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        async def _update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(_update)
        return "updated"
    return "created"


async def remove_schedule(client: Client, integration_id: int) -> bool:
    """Delete the integration's schedule; False when there was none."""
    from temporalio.service import RPCError, RPCStatusCode

    try:
        await client.get_schedule_handle(integration_schedule_id(integration_id)).delete()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def ensure_all_schedules(client: Client, db: Database, settings: Settings) -> int:
    """Create or update every integration's schedule (the worker runs it at start)."""
    with db.session() as session:
        rows = list_integrations(session)
    for row in rows:
        await ensure_schedule(client, row, settings)
    return len(rows)


async def sync_now(
    client: Client, *, integration_id: int, settings: Settings, trigger: str = "api"
) -> str:
    """Start a sync at once (outside the schedule); returns the workflow id.

    One manual sync per integration at a time: while one runs, its id is returned.
    """
    from temporalio.common import WorkflowIDConflictPolicy

    from workflows.integration import IntegrationSyncWorkflow

    workflow_id = f"{integration_workflow_id(integration_id)}/now"
    await client.start_workflow(
        IntegrationSyncWorkflow.run,
        SyncRequest(integration_id=integration_id, trigger=trigger),
        id=workflow_id,
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return workflow_id


__all__ = [
    "IntegrationInvalid",
    "IntegrationRead",
    "UnknownIntegration",
    "Wiring",
    "check_connection",
    "create_integration",
    "delete_integration",
    "ensure_schedule",
    "get_integration",
    "list_integrations",
    "remove_schedule",
    "run_sync",
    "sync_now",
    "update_integration",
]
