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
    DecideRequest,
    PlanRequest,
    RolloutRequest,
    RolloutResult,
    StagePlan,
)
from rules.engine import Decision, FactsError, NoRuleMatched, engine_for
from rules.facts import complete_facts
from rules.model import Pack
from rules.obligation_facts import local_today, person_facts
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

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [self.plan_stages, self.decide_status, self.roll_out_pack]


def _days(day: date, today: date) -> int:
    return (day - today).days


__all__ = ["BUILTIN_PACK", "RulesActivities"]
