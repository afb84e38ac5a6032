"""Replacing a failed, stuck or closed obligation run with a fresh one under the same key.

Workflow ids are business keys (``assignment/{person}/{requirement}/{cycle}``,
``certification/{person}/{certification}``), so a run that cannot make progress — its input
overflowed date arithmetic before bounds existed, a bug fails its workflow task, it closed on
wrong data — would otherwise hold its key forever: a new ``POST /assignments`` answers
``created: false``. A restart (HR only, audited, with a reason and the corrected values)
terminates the run if it is still running and starts a fresh one under the same id, for that
call only allowing the duplicate. The API (``POST /assignments/{id}/restart``,
``POST /certifications/{id}/restart``) and the CLI (``duly assignments restart``,
``duly certifications restart``) share these functions.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.assigning import assignment_input, utc_offset_minutes
from activities.packs import active_pack, load_version
from domain.bounds import MAX_CYCLE, DateWindow, OutOfRange
from domain.contracts.assignment import AssignmentInput
from domain.contracts.certification import (
    CeCredit,
    CertificateRecord,
    CertificationInput,
    ClosedCycle,
)
from domain.ids import BUILTIN_PACK, ID_PATTERN
from domain.kinds import ObligationKind
from domain.statuses import EmploymentStatus
from duly.settings import Settings
from rules.model import Pack
from store import audit
from store.db import committed
from store.models import AuditEntry, Obligation, Person
from workflows.assignment import AssignmentWorkflow
from workflows.certification import CertificationWorkflow

log = logging.getLogger("duly.restarts")

#: Audit actions that begin a certification cycle's CE-credit tally.
_CYCLE_STARTS = ("certification.register", "certification.renew")


class UnknownObligation(LookupError):
    """There is nothing under this id to restart (or the person is not in the directory)."""


class RestartRefused(ValueError):
    """The restart cannot go ahead as asked; the message says why and what to do instead."""


class InvalidField(ValueError):
    """A value the restart needs is missing or unusable; the API answers 422 naming it.

    Args:
        field: The request field to give or correct.
        value: What was given or found (None when missing).
        message: What is wrong and how to fix it.
    """

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}: {message}")
        self.message = message

    def error(self, loc: tuple[str | int, ...] = ("body",)) -> dict[str, object]:
        """This problem as one item of a 422 ``detail`` list (FastAPI's validation shape)."""
        shown = self.value.isoformat() if isinstance(self.value, date) else self.value
        return {
            "type": "missing" if self.value is None else "value_error",
            "loc": (*loc, self.field),
            "msg": f"{self.field}: {self.message}",
            "input": shown,
        }


@dataclass(frozen=True)
class PreviousRun:
    """The latest run under a business key, as a restart found it."""

    run_id: str | None
    #: Temporal's status in lower case: running, completed, failed, terminated, …
    status: str
    #: The attempt of its pending workflow task; above 1 the task keeps failing (stuck).
    workflow_task_attempts: int
    #: Its input as recorded in its history (raw JSON: it may be out of today's bounds).
    input: dict[str, Any] | None

    @property
    def running(self) -> bool:
        """Still running (possibly stuck), so a restart terminates it."""
        return self.status == "running"


@dataclass(frozen=True)
class Restarted:
    """A restart's outcome: the fresh run and the one it replaced."""

    workflow_id: str
    run_id: str | None
    previous: PreviousRun
    terminated: bool
    input: AssignmentInput | CertificationInput
    #: Certifications: logged CE credits the corrected dates no longer admit (kept in the audit).
    dropped_credits: list[CeCredit] = field(default_factory=list)


# --- Temporal -----------------------------------------------------------------------------------


async def describe_previous(client: Client, workflow_id: str) -> PreviousRun | None:
    """The latest run under ``workflow_id`` and its recorded input; None when there is none."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    raw = description.raw_description
    attempts = raw.pending_workflow_task.attempt if raw.HasField("pending_workflow_task") else 0
    status = (description.status or WorkflowExecutionStatus.RUNNING).name.lower()
    return PreviousRun(
        run_id=description.run_id,
        status=status,
        workflow_task_attempts=attempts,
        input=await _recorded_input(client, workflow_id, description.run_id),
    )


async def _recorded_input(client: Client, workflow_id: str, run_id: str) -> dict[str, Any] | None:
    """The run's input from its first history event, as plain JSON data (never validated).

    Read raw on purpose: the run being replaced is often the one whose input is out of range.
    """
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        async for event in handle.fetch_history_events(page_size=1):
            if not event.HasField("workflow_execution_started_event_attributes"):
                return None
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            if not payloads:
                return None
            [value] = await client.data_converter.decode(payloads[:1], [dict[str, Any]])
            return dict(value) if isinstance(value, dict) else None
    except Exception as exc:  # noqa: BLE001 - the input only fills defaults; asked for otherwise
        log.warning("cannot read the recorded input of %s: %s", workflow_id, type(exc).__name__)
    return None


async def replace_run(
    client: Client,
    run: Any,
    arg: BaseModel,
    *,
    workflow_id: str,
    task_queue: str,
    previous: PreviousRun,
    reason: str,
) -> tuple[str | None, bool]:
    """Terminate ``previous`` if it runs, then start ``run(arg)`` under the same id.

    Only this call allows a duplicate of the id (every other start path rejects it), and it
    terminates whatever else may have started under the id in between.

    Returns:
        The fresh run's id, and whether the previous run was terminated.
    """
    terminated = False
    if previous.running:
        try:
            await client.get_workflow_handle(workflow_id, run_id=previous.run_id).terminate(
                reason=reason
            )
            terminated = True
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:  # it closed meanwhile: nothing to end
                raise
    handle = await client.start_workflow(
        run,
        arg,
        id=workflow_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
    )
    return handle.result_run_id, terminated


# --- helpers ------------------------------------------------------------------------------------


def _person(session: Session, external_id: str, workflow_id: str) -> Person:
    person = session.scalar(select(Person).where(Person.external_id == external_id))
    if person is None:
        raise UnknownObligation(f"{workflow_id}: person {external_id!r} is not in the directory")
    if person.employment_status == EmploymentStatus.TERMINATED:
        raise RestartRefused(
            f"person {external_id!r} has left (employment_status=terminated); there is nothing"
            " to restart for them"
        )
    return person


def _recorded_date(value: object) -> date | None:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _in_window(window: DateWindow, name: str, value: date, given: bool) -> None:
    """The window check; a value taken from the previous run says to give a corrected one."""
    try:
        window.check(name, value)
    except OutOfRange as problem:
        if given:
            raise
        raise InvalidField(
            name,
            value,
            f"the previous run's {name} {value.isoformat()} is out of range ({problem.detail});"
            f" give a corrected {name}",
        ) from problem


def _first_error(exc: ValidationError, prefix: str = "") -> InvalidField:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    name = f"{prefix}{where}" if where else prefix.rstrip(".") or "input"
    return InvalidField(name, error.get("input"), str(error["msg"]))


def _pack_for(
    session: Session, requirement_id: str, pinned: object, kind: ObligationKind | None = None
) -> Pack | None:
    """The active pack when it defines the requirement, else the pack the old run was pinned to.

    A restart is a fresh start, so it takes the active pack like a new assignment would; a
    requirement the active pack dropped keeps the version it was assigned under.
    """
    candidates = [active_pack(session)]
    if isinstance(pinned, str):
        candidates.append(load_version(session, pinned))
    for pack in candidates:
        requirement = pack.requirement(requirement_id) if pack is not None else None
        if requirement is not None and (kind is None or requirement.kind is kind):
            return pack
    return None


def _parse_id(workflow_id: str, prefix: str, parts_count: int) -> list[str]:
    parts = workflow_id.split("/")
    if (
        len(parts) != parts_count
        or parts[0] != prefix
        or not all(re.match(ID_PATTERN, p) for p in parts[1:3])
    ):
        raise UnknownObligation(f"unknown {prefix} id {workflow_id!r}")
    return parts


# --- assignments ----------------------------------------------------------------------------


def parse_assignment_id(workflow_id: str) -> tuple[str, str, int]:
    """``assignment/{person}/{requirement}/{cycle}`` → its parts.

    Raises:
        UnknownObligation: Not an assignment id.
        OutOfRange: The cycle is outside 1 … 1000 (such a key can never run again; end it
            with ``temporal workflow terminate``).
    """
    parts = _parse_id(workflow_id, "assignment", 4)
    if not parts[3].isdigit():
        raise UnknownObligation(f"unknown assignment id {workflow_id!r}")
    cycle = int(parts[3])
    if not 1 <= cycle <= MAX_CYCLE:
        raise OutOfRange(
            "cycle",
            cycle,
            1,
            MAX_CYCLE,
            "this key can never run; end it with `temporal workflow terminate`",
        )
    return parts[1], parts[2], cycle


async def restart_assignment(
    session: Session,
    client: Client,
    *,
    settings: Settings,
    workflow_id: str,
    reason: str,
    actor: str,
    actor_role: str,
    due_date: date | None = None,
    title: str | None = None,
    today: date | None = None,
) -> Restarted:
    """Replace an assignment's latest run with a fresh one under the same business key.

    The fresh run is built exactly as ``POST /assignments`` builds one (the active pack when
    it defines the requirement), from the corrected ``due_date``/``title`` or, when omitted,
    the previous run's (its recorded input, else the read model); ``today`` (default: the
    date in UTC) anchors the due-date window. Audited as
    ``assignment.restart`` with the previous run (id, status, input) before and the reason and
    the fresh run after.

    Raises:
        UnknownObligation: No such assignment (or person).
        RestartRefused: The person has left, or the id's requirement resolves elsewhere.
        OutOfRange: A given value is outside the settings' window (or the cycle is).
        InvalidField: A value is missing, or the previous run's is unusable.
    """
    person_id, requirement_id, cycle = parse_assignment_id(workflow_id)
    window = settings.due_date_window(today)
    if due_date is not None:
        window.check("due_date", due_date)
    person = await committed(session, lambda: _person(session, person_id, workflow_id))
    previous = await describe_previous(client, workflow_id)
    if previous is None:
        raise UnknownObligation(
            f"nothing runs or ran under {workflow_id}; create it with POST /assignments"
        )
    old = previous.input or {}
    row = await committed(
        session,
        lambda: session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id)),
    )
    title = title or old.get("requirement_title") or (row.requirement_title if row else None)
    if not isinstance(title, str) or not title:
        raise InvalidField("requirement", None, "the previous run's title is unknown; give it")
    if due_date is None:
        due_date = _recorded_date(old.get("due_date")) or (row.due_date if row else None)
        if due_date is None:
            raise InvalidField("due_date", None, "the previous run's due date is unknown; give it")
        _in_window(window, "due_date", due_date, given=False)
    pack = await committed(
        session, lambda: _pack_for(session, requirement_id, old.get("pack_hash"))
    )
    try:
        inp = assignment_input(
            person,
            title=title,
            due_date=due_date,
            requirement_id=requirement_id,
            cycle=cycle,
            assigned_by=f"{actor} (restart: {reason})"[:300],
            pack=pack,
        )
    except ValidationError as exc:
        raise _first_error(exc) from exc
    if inp.workflow_id != workflow_id:  # pragma: no cover - the pack defines requirement_id
        raise RestartRefused(f"{workflow_id} would start as {inp.workflow_id}; not restarted")
    run_id, terminated = await replace_run(
        client,
        AssignmentWorkflow.run,
        inp,
        workflow_id=workflow_id,
        task_queue=settings.temporal_task_queue,
        previous=previous,
        reason=f"restarted by {actor}: {reason}",
    )
    await _audit(
        session, actor, actor_role, "assignment.restart", previous, run_id, terminated, reason, inp
    )
    return Restarted(workflow_id, run_id, previous, terminated, inp)


async def _audit(
    session: Session,
    actor: str,
    actor_role: str,
    action: str,
    previous: PreviousRun,
    run_id: str | None,
    terminated: bool,
    reason: str,
    inp: BaseModel,
    **extra: Any,
) -> None:
    await committed(
        session,
        lambda: audit.record(
            session,
            actor=actor,
            actor_role=actor_role,
            action=action,
            target=str(getattr(inp, "workflow_id", "")),
            before={
                "run_id": previous.run_id,
                "status": previous.status,
                "workflow_task_attempts": previous.workflow_task_attempts,
                "terminated": terminated,
                "input": previous.input,
            },
            after={
                "reason": reason,
                "run_id": run_id,
                "input": inp.model_dump(mode="json"),
                **extra,
            },
        ),
    )


# --- certifications -------------------------------------------------------------------------


def cycle_credits(session: Session, workflow_id: str) -> list[CeCredit]:
    """The CE credits logged in a certification's current cycle, from the audit log.

    The audit log, not the run: a stuck run cannot answer a query. Every credit the workflow
    accepted was audited (``certification.ce_credits``) after it was; a register or renew starts
    a new cycle's tally, a restart carries its own.
    """
    entries = session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.target == workflow_id,
            AuditEntry.action.in_(
                [*_CYCLE_STARTS, "certification.restart", "certification.ce_credits"]
            ),
        )
        .order_by(AuditEntry.id)
    )
    credits: list[CeCredit] = []
    for entry in entries:
        after = entry.after or {}
        if entry.action in _CYCLE_STARTS:
            credits = []
        elif entry.action == "certification.restart":
            carried = (after.get("input") or {}).get("ce_credits") or []
            credits = [CeCredit.model_validate(c) for c in carried]
        else:
            credits.append(CeCredit.model_validate(after))
    return credits


async def restart_certification(
    session: Session,
    client: Client,
    *,
    settings: Settings,
    workflow_id: str,
    reason: str,
    actor: str,
    actor_role: str,
    issued_on: date | None = None,
    expires_on: date | None = None,
    certificate_number: str | None = None,
    today: date | None = None,
) -> Restarted:
    """Replace a certification's latest run with a fresh one for the same cycle.

    The fresh run keeps the cycle, the verification code and every closed cycle of the
    previous run's input; ``issued_on``/``expires_on``/``certificate_number`` correct its
    certificate. The CE credits logged this cycle (from the audit log) are carried over;
    those the corrected dates no longer admit (earned before ``issued_on``) are dropped and
    listed. Audited as ``certification.restart``.

    Raises:
        UnknownObligation: No such certification (or person).
        RestartRefused: The person has left, or the previous input cannot be read.
        OutOfRange: A given date is outside its window.
        InvalidField: A date is unusable (expiry not after issue, previous run's out of range).
    """
    parts = _parse_id(workflow_id, "certification", 3)
    due_window = settings.due_date_window(today)
    past_window = settings.past_date_window(today)
    if issued_on is not None:
        past_window.check("issued_on", issued_on)
    if expires_on is not None:
        due_window.check("expires_on", expires_on)
    person = await committed(session, lambda: _person(session, parts[1], workflow_id))
    previous = await describe_previous(client, workflow_id)
    if previous is None:
        raise UnknownObligation(
            f"nothing runs or ran under {workflow_id}; register it with POST /certifications"
        )
    old = previous.input
    if not old or not isinstance(old.get("certificate"), dict):
        raise RestartRefused(
            f"the input of {workflow_id}'s run cannot be read; register the certificate again"
            " with POST /certifications"
        )
    old_cert: dict[str, Any] = dict(old["certificate"])
    if issued_on is None:
        issued_on = _recorded_date(old_cert.get("issued_on"))
        if issued_on is None:
            raise InvalidField("issued_on", None, "the previous run's is unreadable; give it")
        _in_window(past_window, "issued_on", issued_on, given=False)
    if expires_on is None:
        expires_on = _recorded_date(old_cert.get("expires_on"))
        if expires_on is None:
            raise InvalidField("expires_on", None, "the previous run's is unreadable; give it")
        _in_window(due_window, "expires_on", expires_on, given=False)
    if expires_on <= issued_on:
        raise InvalidField(
            "expires_on",
            expires_on,
            f"must be after issued_on ({issued_on.isoformat()})",
        )
    try:
        certificate = CertificateRecord.model_validate(
            {
                **old_cert,
                "issued_on": issued_on,
                "expires_on": expires_on,
                "certificate_number": certificate_number or old_cert.get("certificate_number"),
            }
        )
        history = [ClosedCycle.model_validate(h) for h in old.get("history") or []]
    except ValidationError as exc:
        raise _first_error(exc, "certificate.") from exc
    today_limit = past_window.latest
    carried = await committed(session, lambda: cycle_credits(session, workflow_id))
    kept = [c for c in carried if issued_on <= c.earned_on <= today_limit]
    dropped = [c for c in carried if c not in kept]
    pack = await committed(
        session,
        lambda: _pack_for(session, parts[2], old.get("pack_hash"), ObligationKind.CERTIFICATION),
    )
    requirement = pack.requirement(parts[2]) if pack is not None else None
    title = requirement.title if requirement is not None else old.get("title")
    try:
        inp = CertificationInput(
            person=person.external_id,
            certification_id=parts[2],
            title=title or parts[2],
            certificate=certificate,
            pack_hash=pack.content_hash if pack is not None else BUILTIN_PACK,
            utc_offset_minutes=utc_offset_minutes(person.time_zone, expires_on),
            registered_by=f"{actor} (restart: {reason})"[:300],
            history=history,
            ce_credits=kept,
        )
    except ValidationError as exc:
        raise _first_error(exc) from exc
    run_id, terminated = await replace_run(
        client,
        CertificationWorkflow.run,
        inp,
        workflow_id=workflow_id,
        task_queue=settings.temporal_task_queue,
        previous=previous,
        reason=f"restarted by {actor}: {reason}",
    )
    await _audit(
        session,
        actor,
        actor_role,
        "certification.restart",
        previous,
        run_id,
        terminated,
        reason,
        inp,
        ce_credits_dropped=[c.model_dump(mode="json") for c in dropped],
    )
    return Restarted(workflow_id, run_id, previous, terminated, inp, dropped)
