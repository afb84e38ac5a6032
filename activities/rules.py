"""Activities of the rules layer: decisions land in workflow histories with rule and pack hash.

Workflows never read packs or the directory themselves: they ask these activities, so every
decision (status, rule name, pack hash, the facts used) is recorded in the history where an
auditor can read it and a replay reproduces it without re-deciding.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from duly.domain import (
    BUILTIN_PACK,
    AdoptPackSignal,
    AssignmentInput,
    DecideRequest,
    PlanRequest,
    RolloutRequest,
    RolloutResult,
    StagePlan,
    SweepRequest,
    SweepResult,
)
from rules.engine import Decision, FactsError, NoRuleMatched, engine_for
from rules.facts import complete_facts
from rules.model import Pack
from rules.obligation_facts import local_today, obligation_facts, person_facts
from store.db import Database
from store.models import Obligation, Person
from store.packs import load_version


class RulesActivities:
    """Rules activities bound to one database (and a client, for roll-outs)."""

    def __init__(self, db: Database, client: Client | None = None) -> None:
        self._db = db
        self._client = client

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
        """The ladder a requirement follows under the pinned pack."""
        pack = self._pack(request.pack_hash)
        requirement = pack.requirement(request.requirement_id)
        if requirement is None:
            return StagePlan(pack_hash=request.pack_hash, found=False)
        policy = pack.policy_for(requirement)
        return StagePlan(
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
        )

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
            today = local_today(person, request.as_of)
            directory = person_facts(person)
        requirement = pack.requirement(request.requirement_id)
        grace = requirement.grace_days if requirement else 0
        facts: dict[str, Any] = {
            "kind": request.kind.value,
            "requirement": request.requirement_id,
            "completed": request.completed,
            "acknowledged": request.acknowledged,
            "started": request.started,
            "exempt": request.exempt,
            "ce_credits_short": request.ce_credits_short,
            **directory,
        }
        past = 0
        for name, day in (
            ("days_until_due", request.due_date),
            ("days_until_expiry", request.expiry_date),
        ):
            if day is not None:
                facts[name] = _days(day, today)
                past = max(past, -facts[name])
        facts["in_grace"] = not request.completed and 0 < past <= grace
        try:
            return engine_for(pack).evaluate(complete_facts(facts))
        except (NoRuleMatched, FactsError) as error:
            # The pack is broken for these facts; retrying cannot fix it. Lint prevents it.
            raise ApplicationError(str(error), non_retryable=True) from error

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
                    .where(Obligation.status != "cancelled")
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
                await handle.signal("adopt_pack", signal)
                signalled += 1
            except RPCError as error:
                if error.status is not RPCStatusCode.NOT_FOUND:
                    raise
                finished += 1  # completed or cancelled since the read model was written
            activity.heartbeat(index + 1)
        return RolloutResult(signalled=signalled, finished=finished)

    @activity.defn(name="sweep_statuses")
    def sweep_statuses(self, request: SweepRequest) -> SweepResult:
        """Re-decide every open obligation's status in batches, one pack at a time.

        Statuses move with the calendar (due soon, grace, overdue) while a workflow sleeps
        between stages; the sweep keeps the read model true between steps. Each obligation is
        decided by the pack it is pinned to; the built-in ones are left to their workflows.
        The transitions are this activity's result, so they are in the sweep's history.
        """
        from collections import Counter

        transitions: Counter[str] = Counter()
        evaluated = skipped = changed = 0
        with self._db.session() as session:
            rows = list(
                session.scalars(
                    select(Obligation)
                    .where(Obligation.completed_at.is_(None))
                    # Statuses a workflow sets itself, not the calendar: left alone.
                    .where(Obligation.status.notin_(("cancelled", "suspended", "revoked")))
                    .where(Obligation.pack_hash != BUILTIN_PACK)
                    .order_by(Obligation.pack_hash, Obligation.id)
                )
            )
            by_pack: dict[str, list[Obligation]] = {}
            for row in rows:
                by_pack.setdefault(row.pack_hash, []).append(row)
            for pack_hash, obligations in by_pack.items():
                pack = load_version(session, pack_hash)
                if pack is None:
                    skipped += len(obligations)
                    continue
                batch: list[tuple[Obligation, dict[str, Any]]] = []
                for row in obligations:
                    requirement = pack.requirement(row.requirement_id)
                    if requirement is None:
                        skipped += 1
                        continue
                    today = local_today(row.person, request.as_of)
                    facts = obligation_facts(
                        row, row.person, today=today, grace_days=requirement.grace_days
                    )
                    batch.append((row, facts))
                try:
                    decisions = engine_for(pack).evaluate_many([facts for _, facts in batch])
                except (NoRuleMatched, FactsError) as error:
                    raise ApplicationError(str(error), non_retryable=True) from error
                evaluated += len(batch)
                for (row, _), decision in zip(batch, decisions, strict=True):
                    if row.status != decision.status and row.as_of <= request.as_of:
                        transitions[f"{row.status} -> {decision.status}"] += 1
                        changed += 1
                        row.status = decision.status
                        row.as_of = request.as_of
                activity.heartbeat(evaluated)
        return SweepResult(
            evaluated=evaluated, changed=changed, transitions=dict(transitions), skipped=skipped
        )

    @activity.defn(name="start_next_cycle")
    async def start_next_cycle(self, request: AssignmentInput) -> bool:
        """Start the next cycle of a recurring requirement as its own workflow.

        Its id (``…/{cycle}``) is the business key: a retried attempt finds it started.
        Not a child workflow: each cycle stands alone, with its own bounded history.
        """
        if self._client is None:
            raise ApplicationError("start_next_cycle needs a Temporal client", non_retryable=True)
        from duly.assignments import start_assignment

        return await start_assignment(self._client, activity.info().task_queue, request)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [
            self.plan_stages,
            self.decide_status,
            self.roll_out_pack,
            self.sweep_statuses,
            self.start_next_cycle,
        ]


def _days(day: date, today: date) -> int:
    return (day - today).days


__all__ = ["BUILTIN_PACK", "RulesActivities"]
