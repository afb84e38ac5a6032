"""Activities of the rules layer: decisions land in workflow histories with rule and pack hash.

Workflows never read packs or the directory themselves: they ask these activities, so every
decision (status, rule name, pack hash, the facts used) is recorded in the history where an
auditor can read it and a replay reproduces it without re-deciding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.assigning import AssignmentStarter
from activities.packs import load_version, person_attributes
from activities.sweep import plan_sweep
from domain.calendar import (
    DEFAULT_LADDER_DAYS,
    end_of_day_in_zone,
    plan_ladder_in_zone,
    zone_offset_minutes,
)
from domain.contracts.assignment import AssignmentInput
from domain.contracts.obligation import (
    DecideRequest,
    GateSpec,
    ObligationMessages,
    PlanRequest,
    ReplanSignal,
    StagePlan,
)
from domain.contracts.packs import AdoptPackSignal, RolloutRequest, RolloutResult
from domain.contracts.sweep import ReplanRequest, ReplanResult, SweepRequest, SweepResult
from domain.ids import BUILTIN_PACK
from duly.metrics import DECISIONS, SWEEP_SECONDS
from rules.engine import Decision, FactsError, NoRuleMatched, engine_for
from rules.model import Pack, Requirement
from rules.obligation_facts import build_facts, local_today
from rules.tracks import course_gate
from store.db import Database
from store.decisions import record_decision, refresh_snapshots
from store.models import Obligation, Person
from store.obligations import ReplanTarget, moved_zone_targets
from store.sweep import SweepConflicts, apply_sweep

#: Rows written per transaction by the sweep's write phase (short transactions: SQLite has one
#: writer at a time, and workflows keep recording while a sweep runs).
SWEEP_WRITE_BATCH = 1_000


class RulesActivities:
    """Rules activities bound to one database (and a client, for roll-outs).

    Args:
        db: The rules pack and read-model database.
        client: Signals and starts workflows (roll-outs, re-plans, next cycles).
        start_assignment: Starts the next cycle's workflow
            (:func:`services.assignments.start_assignment`; the shell wires it in, as this
            floor may not import the workflows).
    """

    def __init__(
        self,
        db: Database,
        client: Client | None = None,
        *,
        start_assignment: AssignmentStarter | None = None,
    ) -> None:
        self._db = db
        self._client = client
        self._start_assignment = start_assignment

    def _pack(self, pack_hash: str) -> Pack:
        with self._db.session() as session:
            pack = load_version(session, pack_hash)
        if pack is None:
            raise ApplicationError(
                f"rules pack {pack_hash[:12]} is not stored in this database", non_retryable=True
            )
        return pack

    @activity.defn(name="plan_stages")
    def plan_stages(self, request: PlanRequest) -> StagePlan:
        """The ladder a requirement follows under the pinned pack (``builtin``: the fixed one).

        With a person and a due (expiry) date in the request, every instant the workflow acts
        at is planned here, in the person's IANA time zone as the directory has it now: each
        stage at 09:00 local on its own day (DST-correct), the end of the due day, the renewal
        window and end of grace (certifications), the end of an exemption. Workflows only
        receive instants; a person who moves zone gets a ``replan`` signal and asks again.
        """
        if request.pack_hash == BUILTIN_PACK:
            plan = StagePlan(
                pack_hash=BUILTIN_PACK, found=True, days_before=list(DEFAULT_LADDER_DAYS)
            )
        else:
            pack = self._pack(request.pack_hash)
            requirement = pack.requirement(request.requirement_id)
            if requirement is None:
                return StagePlan(pack_hash=request.pack_hash, found=False)
            policy = pack.policy_for(requirement)
            plan = StagePlan(
                pack_hash=request.pack_hash,
                found=True,
                days_before=[-stage.offset_days for stage in policy.ordered()] if policy else [],
                grace_days=requirement.grace_days,
                max_extension_days=requirement.max_extension_days,
                recurrence_months=requirement.recurrence.months if requirement.recurrence else None,
                basis=requirement.recurrence.basis.value if requirement.recurrence else None,
                anniversary=requirement.recurrence.anniversary if requirement.recurrence else None,
                validity_months=requirement.validity_months,
                renewal_window_days=requirement.renewal_window_days,
                ce_credits=requirement.ce_credits,
                renewal_basis=requirement.renewal_basis.value,
                gate=_gate(requirement, pack, request.track_id),
            )
        if request.person is None or request.due_date is None:
            return plan  # a request recorded before zone-aware planning
        return _in_zone(plan, request, self._time_zone(request.person))

    def _time_zone(self, external_id: str) -> str:
        with self._db.session() as session:
            zone = session.scalar(select(Person.time_zone).where(Person.external_id == external_id))
        if zone is None:
            raise ApplicationError(
                f"person {external_id!r} is not in the directory", non_retryable=True
            )
        return zone

    @activity.defn(name="decide_status")
    def decide_status(self, request: DecideRequest) -> Decision:
        """Decide one obligation's status through durable_rules with its pinned pack.

        Facts: the workflow's (completed, acknowledged, …), the due/expiry distance from the
        person's local today at ``as_of``, and the person's directory attributes as they are now.
        """
        pack = self._pack(request.pack_hash)
        with self._db.session() as session:
            person = session.scalar(select(Person).where(Person.external_id == request.person))
            if person is None:
                raise ApplicationError(
                    f"person {request.person!r} is not in the directory", non_retryable=True
                )
            today = local_today(person.time_zone, request.as_of)
            attributes = person_attributes(person)
        requirement = pack.requirement(request.requirement_id)
        facts = build_facts(
            request.facts(),
            attributes,
            today=today,
            grace_days=requirement.grace_days if requirement else 0,
        )
        try:
            decision = engine_for(pack).evaluate(facts)
        except (NoRuleMatched, FactsError) as error:
            # The pack is broken for these facts; retrying cannot fix it. Lint prevents it.
            raise ApplicationError(str(error), non_retryable=True) from error
        # Kept for as-of answers and trends: what was decided, by which rule, on which facts,
        # at the workflow's instant. A retried attempt writes the same row once.
        with self._db.session() as session:
            record_decision(
                session,
                workflow_id=request.workflow_id,
                person_id=person.id,
                kind=request.kind.value,
                requirement_id=request.requirement_id,
                status=decision.status,
                severity=decision.severity,
                rule=decision.rule,
                pack_hash=decision.pack_hash,
                facts=decision.facts,
                decided_at=request.as_of,
                source="rules",
                trigger=request.trigger,
            )
        DECISIONS.labels(status=decision.status, source="workflow").inc()
        return decision

    @activity.defn(name="roll_out_pack")
    async def roll_out_pack(self, request: RolloutRequest) -> RolloutResult:
        """Signal every open obligation's workflow pinned to another pack to adopt this one.

        Heartbeats its progress so a retried attempt resumes where the last one stopped.
        """
        if self._client is None:
            raise ApplicationError("roll_out_pack needs a Temporal client", non_retryable=True)
        with self._db.session() as session:
            targets = list(
                session.scalars(
                    select(Obligation.workflow_id)
                    .where(Obligation.completed_at.is_(None))
                    .where(Obligation.pack_hash != request.pack_hash)
                    .where(Obligation.status.not_in(("cancelled", "not_applicable")))
                    .order_by(Obligation.workflow_id)
                )
            )
        details = activity.info().heartbeat_details
        start = int(details[0]) if details else 0
        signalled = finished = 0
        signal = AdoptPackSignal(
            pack_hash=request.pack_hash, mode=request.mode, deployed_by=request.deployed_by
        )
        for index in range(start, len(targets)):
            handle = self._client.get_workflow_handle(targets[index])
            try:
                await handle.signal(ObligationMessages.adopt_pack, signal)
                signalled += 1
            except RPCError as error:
                if error.status is not RPCStatusCode.NOT_FOUND:
                    raise
                finished += 1  # completed or cancelled since the read model was written
            activity.heartbeat(index + 1)
        return RolloutResult(signalled=signalled, finished=finished)

    @activity.defn(name="sweep_statuses")
    def sweep_statuses(self, request: SweepRequest) -> SweepResult:
        """Re-decide every open obligation's status with its pinned pack, in batches.

        Statuses move with the calendar (due soon, grace, overdue) while a workflow sleeps
        between stages; the sweep keeps the read model true between steps. It decides from the
        same facts as the workflow (the read model holds them all, see
        :func:`rules.obligation_facts.build_facts`), so at the same instant it agrees with the
        workflow's own decision. The built-in ones and statuses a workflow holds itself
        (cancelled, suspended, revoked) are left to their workflows.

        Read, then write with compare-and-set: a row its workflow wrote after the read (a
        completion landing mid-sweep) is not overwritten; it counts as a conflict. The
        transitions are this activity's result, so they are in the sweep's history.
        """
        started = time.perf_counter()
        with self._db.session() as session:
            try:
                plan = plan_sweep(session, request.as_of, progress=activity.heartbeat)
            except (NoRuleMatched, FactsError) as error:
                raise ApplicationError(str(error), non_retryable=True) from error
        changed = conflicts = 0
        transitions: dict[str, int] = {}
        for first in range(0, len(plan.changes), SWEEP_WRITE_BATCH):
            with self._db.session() as session:
                outcome: SweepConflicts = apply_sweep(
                    session, plan.changes[first : first + SWEEP_WRITE_BATCH]
                )
            changed += outcome.applied
            conflicts += outcome.conflicts
            for transition, count in outcome.transitions.items():
                transitions[transition] = transitions.get(transition, 0) + count
            activity.heartbeat(plan.evaluated, first)
        with self._db.session() as session:
            # The month-end counts the trend and as-of counts start from: rebuilt nightly, so
            # the first dashboard of a month does not pay for them, and a snapshot a late
            # decision raced (store.decisions.refresh_snapshots) is repaired within a day.
            refresh_snapshots(session, now=request.as_of)
        SWEEP_SECONDS.observe(time.perf_counter() - started)
        for transition, count in transitions.items():
            # "due_soon -> overdue": the sweep decided (and wrote) the new status.
            decided = transition.rsplit("->", 1)[-1].strip()
            DECISIONS.labels(status=decided, source="sweep").inc(count)
        return SweepResult(
            evaluated=plan.evaluated,
            changed=changed,
            transitions=transitions,
            skipped=plan.skipped,
            conflicts=conflicts,
        )

    @activity.defn(name="replan_moved")
    async def replan_moved(self, request: ReplanRequest) -> ReplanResult:
        """Signal ``replan`` to every open obligation planned in a zone its person has left.

        The people import signals at once; the nightly sweep runs this too, so a signal the
        import could not send (Temporal down) is sent the next night: nothing is lost.
        """
        if self._client is None:
            raise ApplicationError("replan_moved needs a Temporal client", non_retryable=True)
        with self._db.session() as session:
            targets = moved_zone_targets(session)
        return await signal_replans(self._client, targets, actor=request.actor)

    @activity.defn(name="start_next_cycle")
    async def start_next_cycle(self, request: AssignmentInput) -> bool:
        """Start the next cycle of a recurring requirement as its own workflow.

        Its id (``…/{cycle}``) is the business key: a retried attempt finds it started.
        Not a child workflow: each cycle stands alone, with its own bounded history.
        """
        if self._client is None:
            raise ApplicationError("start_next_cycle needs a Temporal client", non_retryable=True)
        if self._start_assignment is None:
            raise ApplicationError(
                "start_next_cycle needs an assignment starter", non_retryable=True
            )
        return await self._start_assignment(
            client=self._client, task_queue=activity.info().task_queue, inp=request
        )

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [
            self.plan_stages,
            self.decide_status,
            self.roll_out_pack,
            self.sweep_statuses,
            self.replan_moved,
            self.start_next_cycle,
        ]


async def signal_replans(
    client: Client, targets: Sequence[ReplanTarget], *, actor: str
) -> ReplanResult:
    """Send each target's workflow a ``replan`` signal.

    A finished workflow is counted, not an error; other failures propagate so the caller can
    retry (the targets are found again: nothing is marked until the workflow re-plans).
    """
    signalled = finished = 0
    for target in targets:
        handle = client.get_workflow_handle(target.workflow_id)
        try:
            await handle.signal(
                ObligationMessages.replan, ReplanSignal(time_zone=target.time_zone, actor=actor)
            )
            signalled += 1
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            finished += 1
    return ReplanResult(signalled=signalled, finished=finished)


def _gate(requirement: Requirement, pack: Pack, track_id: str | None) -> GateSpec | None:
    """The obligation's assessment gate, None when it has none (the LMS's flag decides).

    The requirement's gate; when a track's enrolment assigned the obligation and that track's
    course sets its own ``passing_score`` (an exam), that pass mark applies instead
    (``rules.tracks.course_gate``); attempts and cool-down stay the requirement's.
    """
    track = pack.tracks.track(track_id) if track_id else None
    course = (
        next((c for c in track.courses if c.requirement == requirement.id), None)
        if track is not None
        else None
    )
    if course is not None:
        gate = course_gate(
            course,
            passing_score=requirement.passing_score,
            max_attempts=requirement.max_attempts,
            retake_after_days=requirement.retake_after_days,
        )
        if gate.passing_score is None and gate.max_attempts is None:
            return None
        return GateSpec(
            passing_score=gate.passing_score,
            max_attempts=gate.max_attempts,
            retake_after_days=gate.retake_after_days,
        )
    if requirement.passing_score is None and requirement.max_attempts is None:
        return None
    return GateSpec(
        passing_score=requirement.passing_score,
        max_attempts=requirement.max_attempts,
        retake_after_days=requirement.retake_after_days or 0,
    )


def _in_zone(plan: StagePlan, request: PlanRequest, time_zone: str) -> StagePlan:
    """``plan`` with every instant planned in ``time_zone`` (UTC when the name is unknown)."""
    assert request.due_date is not None
    try:
        zone: ZoneInfo = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        time_zone, zone = "UTC", ZoneInfo("UTC")
    due = request.due_date
    window = plan.renewal_window_days
    return plan.model_copy(
        update={
            "time_zone": time_zone,
            "stages": plan_ladder_in_zone(due, zone, plan.days_before),
            "due_at": end_of_day_in_zone(due, zone),
            "window_opens_at": (
                end_of_day_in_zone(due - timedelta(days=window + 1), zone)
                if window is not None
                else None
            ),
            "grace_ends_at": end_of_day_in_zone(due + timedelta(days=plan.grace_days), zone),
            "exemption_lapses_at": (
                end_of_day_in_zone(request.exempt_until, zone)
                if request.exempt_until is not None
                else None
            ),
            "utc_offset_minutes": zone_offset_minutes(zone, due),
        }
    )


__all__ = ["BUILTIN_PACK", "RulesActivities"]
