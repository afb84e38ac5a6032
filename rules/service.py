"""What the CLI and the API do with a pack: run its tests and preview a deploy."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from duly.domain import BUILTIN_PACK, DEFAULT_LADDER_DAYS, stage_label
from rules.engine import NoRuleMatched, engine_for
from rules.model import Pack
from rules.obligation_facts import PersonAttributes, build_facts, local_today
from store.models import Obligation, Person
from store.packs import active_pack, load_version

CLOSED_STATUSES = frozenset({"cancelled"})
#: Statuses a workflow sets itself, not the calendar: a sweep never re-decides them.
WORKFLOW_HELD_STATUSES = ("cancelled", "suspended", "revoked")


@dataclass(frozen=True)
class CaseResult:
    """One pack test case's outcome."""

    name: str
    passed: bool
    expected_status: str
    expected_rule: str | None
    got_status: str | None
    got_rule: str | None
    error: str | None = None

    def diff(self) -> list[str]:
        """Expected vs got, as ``-``/``+`` lines (empty when the case passed)."""
        if self.passed:
            return []
        lines = [f"- expected: status={self.expected_status}"]
        if self.expected_rule:
            lines[0] += f" rule={self.expected_rule}"
        if self.error:
            lines.append(f"+ got:      error: {self.error}")
        else:
            lines.append(f"+ got:      status={self.got_status} rule={self.got_rule}")
        return lines


def run_tests(pack: Pack) -> list[CaseResult]:
    """Run the pack's own test cases through durable_rules."""
    engine = engine_for(pack)
    results = []
    for case in pack.tests:
        expect = case.expect
        try:
            decision = engine.evaluate(case.facts)
        except NoRuleMatched as error:
            results.append(
                CaseResult(case.name, False, expect.status, expect.rule, None, None, str(error))
            )
            continue
        passed = decision.status == expect.status and (
            expect.rule is None or decision.rule == expect.rule
        )
        results.append(
            CaseResult(
                case.name, passed, expect.status, expect.rule, decision.status, decision.rule
            )
        )
    return results


class PreviewRow(BaseModel):
    """One obligation whose status or remaining stages would change."""

    workflow_id: str
    person: str
    requirement_id: str
    status_before: str
    rule_before: str | None
    status_after: str
    rule_after: str | None
    stages_before: list[str]
    stages_after: list[str]
    note: str | None = None

    @property
    def status_changes(self) -> bool:
        """Whether the decided status differs."""
        return self.status_before != self.status_after

    @property
    def stages_change(self) -> bool:
        """Whether the remaining stages differ."""
        return self.stages_before != self.stages_after


class Preview(BaseModel):
    """What deploying a pack would change, against the current directory and obligations."""

    pack_hash: str
    active_hash: str | None
    obligations: int
    status_changes: int
    stage_changes: int
    transitions: dict[str, int]
    rows: list[PreviewRow]
    new_requirements: dict[str, int] = {}


def _remaining(stage_days_before: Sequence[int], due: date | None, today: date) -> list[str]:
    """Labels of the stages that fire after ``today`` (in firing order)."""
    if due is None:
        return []
    return [
        stage_label(d)
        for d in sorted(stage_days_before, reverse=True)
        if date.fromordinal(due.toordinal() - d) > today
    ]


def _stage_days(pack: Pack | None, requirement_id: str) -> list[int]:
    """Days before due of each stage the requirement follows under ``pack`` (None: built-in)."""
    if pack is None:
        return list(DEFAULT_LADDER_DAYS)
    requirement = pack.requirement(requirement_id)
    policy = pack.policy_for(requirement) if requirement else None
    return [-stage.offset_days for stage in policy.stages] if policy else []


@dataclass
class _Packs:
    session: Session
    cache: dict[str, Pack | None] = field(default_factory=dict)

    def get(self, content_hash: str) -> Pack | None:
        if content_hash not in self.cache:
            self.cache[content_hash] = load_version(self.session, content_hash)
        return self.cache[content_hash]


def preview(session: Session, pack: Pack, *, today: date | None = None) -> Preview:
    """Compare each open obligation's status and remaining stages under ``pack`` with now.

    "Now" is the pack each obligation is pinned to (the built-in rules when none). Facts are
    built from the read model and the directory as of ``today`` (each person's local today by
    default).
    """
    current = active_pack(session)
    packs = _Packs(session)
    engine = engine_for(pack)
    obligations = list(
        session.scalars(
            select(Obligation)
            .where(Obligation.completed_at.is_(None))
            .order_by(Obligation.workflow_id)
        )
    )
    open_ones = [o for o in obligations if o.status not in CLOSED_STATUSES]
    rows: list[PreviewRow] = []
    transitions: Counter[str] = Counter()
    for obligation in open_ones:
        person = obligation.person
        day = today or local_today(person)
        pinned = packs.get(obligation.pack_hash) if obligation.pack_hash != "builtin" else None
        requirement = pack.requirement(obligation.requirement_id)
        note = None
        if requirement is None:
            note = f"requirement {obligation.requirement_id!r} is not in this pack"
        grace = requirement.grace_days if requirement else 0
        known = obligation.facts()
        attributes = PersonAttributes.of(person)
        facts = build_facts(known, attributes, today=day, grace_days=grace)
        try:
            after = engine.evaluate(facts)
            status_after, rule_after = after.status, after.rule
        except NoRuleMatched:
            status_after, rule_after = "<no rule>", None
        status_before, rule_before = obligation.status, None
        if pinned is not None:
            old_req = pinned.requirement(obligation.requirement_id)
            before_facts = build_facts(
                known, attributes, today=day, grace_days=old_req.grace_days if old_req else 0
            )
            try:
                before = engine_for(pinned).evaluate(before_facts)
                status_before, rule_before = before.status, before.rule
            except NoRuleMatched:
                status_before = "<no rule>"
        stages_before = _remaining(
            _stage_days(pinned, obligation.requirement_id), obligation.due_date, day
        )
        stages_after = (
            _remaining(_stage_days(pack, obligation.requirement_id), obligation.due_date, day)
            if requirement
            else stages_before
        )
        row = PreviewRow(
            workflow_id=obligation.workflow_id,
            person=person.external_id,
            requirement_id=obligation.requirement_id,
            status_before=status_before,
            rule_before=rule_before,
            status_after=status_after,
            rule_after=rule_after,
            stages_before=stages_before,
            stages_after=stages_after,
            note=note,
        )
        if row.status_changes:
            transitions[f"{status_before} -> {status_after}"] += 1
        if row.status_changes or row.stages_change or note:
            rows.append(row)
    people = list(session.scalars(select(Person).where(Person.employment_status != "terminated")))
    new_requirements = {}
    have = {(o.person_id, o.requirement_id) for o in obligations}
    for requirement in pack.requirements:
        owe = [
            p
            for p in people
            if requirement.applies_to.applies(
                list(p.roles or []), p.department or "", p.location or "", p.employer or ""
            )
            and (p.id, requirement.id) not in have
        ]
        if owe:
            new_requirements[requirement.id] = len(owe)
    return Preview(
        pack_hash=pack.content_hash,
        active_hash=current.content_hash if current else None,
        obligations=len(open_ones),
        status_changes=sum(1 for r in rows if r.status_changes),
        stage_changes=sum(1 for r in rows if r.stages_change),
        transitions=dict(transitions),
        rows=rows,
        new_requirements=new_requirements,
    )


@dataclass(frozen=True)
class SweepChange:
    """A status the sweep would write: the row as read (id, version) and the new decision."""

    obligation_id: int
    version: int
    status_before: str
    status_after: str
    rule: str


@dataclass
class SweepPlan:
    """The read phase of a sweep: how many rows were decided, skipped, and what changes."""

    evaluated: int = 0
    skipped: int = 0
    changes: list[SweepChange] = field(default_factory=list)


@dataclass
class SweepConflicts:
    """The write phase of (part of) a sweep: rows updated, rows changed since the read."""

    applied: int = 0
    conflicts: int = 0
    transitions: dict[str, int] = field(default_factory=dict)


def plan_sweep(
    session: Session, as_of: datetime, *, progress: Callable[[int], None] | None = None
) -> SweepPlan:
    """Read every open pinned obligation and decide it with its pack as of ``as_of``.

    Facts come from the read model through the one fact builder, so a row decided by its
    workflow at ``as_of`` gets the same status here. Rows whose pack is not stored, or lacks
    the requirement, are skipped; statuses a workflow holds itself are not read at all.

    Args:
        session: A session (only read).
        as_of: The sweep's instant; "today" is each person's local date at it.
        progress: Called with the number decided so far after each pack (heartbeats).

    Raises:
        NoRuleMatched, FactsError: A pack cannot decide some facts (lint prevents it).
    """
    rows = list(
        session.scalars(
            select(Obligation)
            .where(Obligation.completed_at.is_(None))
            .where(Obligation.status.notin_(WORKFLOW_HELD_STATUSES))
            .where(Obligation.suspended.is_(False))
            .where(Obligation.pack_hash != BUILTIN_PACK)
            .order_by(Obligation.pack_hash, Obligation.id)
        )
    )
    by_pack: dict[str, list[Obligation]] = {}
    for row in rows:
        by_pack.setdefault(row.pack_hash, []).append(row)
    plan = SweepPlan()
    for pack_hash, obligations in by_pack.items():
        pack = load_version(session, pack_hash)
        if pack is None:
            plan.skipped += len(obligations)
            continue
        batch: list[tuple[Obligation, dict[str, Any]]] = []
        for row in obligations:
            requirement = pack.requirement(row.requirement_id)
            if requirement is None:
                plan.skipped += 1
                continue
            facts = build_facts(
                row.facts(),
                PersonAttributes.of(row.person),
                today=local_today(row.person, as_of),
                grace_days=requirement.grace_days,
            )
            batch.append((row, facts))
        decisions = engine_for(pack).evaluate_many([facts for _, facts in batch])
        plan.evaluated += len(batch)
        for (row, _), decision in zip(batch, decisions, strict=True):
            # A row its workflow wrote after ``as_of`` is fresher than this decision.
            if row.status != decision.status and row.as_of <= as_of:
                plan.changes.append(
                    SweepChange(row.id, row.version, row.status, decision.status, decision.rule)
                )
        if progress is not None:
            progress(plan.evaluated)
    return plan


def apply_sweep(session: Session, changes: Sequence[SweepChange]) -> SweepConflicts:
    """Write the sweep's decisions, each only if its row is still at the version read.

    Compare-and-set (``UPDATE … WHERE id = … AND version = …``): a row its workflow wrote in
    between (a completion, an exemption, a new due date) keeps what the workflow wrote. The
    sweep does not move ``as_of`` (the workflow's clock): a workflow update is never refused
    because a sweep ran.
    """
    outcome = SweepConflicts()
    for change in changes:
        result = session.execute(
            update(Obligation)
            .where(Obligation.id == change.obligation_id)
            .where(Obligation.version == change.version)
            .values(status=change.status_after, version=Obligation.version + 1),
            execution_options={"synchronize_session": False},
        )
        if getattr(result, "rowcount", 0) == 1:
            outcome.applied += 1
            key = f"{change.status_before} -> {change.status_after}"
            outcome.transitions[key] = outcome.transitions.get(key, 0) + 1
        else:
            outcome.conflicts += 1
    return outcome


def preview_json(result: Preview) -> dict[str, Any]:
    """The preview as JSON-ready data."""
    return result.model_dump(mode="json")


def deploy_blockers(pack: Pack, people: Sequence[Any] | None) -> list[str]:
    """Why ``pack`` must not be deployed: lint errors and failing pack tests (empty: deployable)."""
    from rules.lint import Level, lint

    problems = [str(f) for f in lint(pack, people) if f.level is Level.ERROR]
    for case in run_tests(pack):
        if not case.passed:
            problems.append(f"test '{case.name}' fails: " + " / ".join(case.diff()))
    return problems


async def start_rollout(
    client: Any, task_queue: str, pack_hash: str, mode: str, deployed_by: str
) -> str:
    """Start the roll-out of ``pack_hash`` to running workflows; returns its workflow id.

    A second roll-out of the same pack and mode attaches to the first (business-key id).
    """
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from duly.domain import PackMigration, RolloutRequest
    from workflows.rollout import PackRolloutWorkflow, rollout_workflow_id

    workflow_id = rollout_workflow_id(pack_hash, mode)
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            PackRolloutWorkflow.run,
            RolloutRequest(pack_hash=pack_hash, mode=PackMigration(mode), deployed_by=deployed_by),
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    return workflow_id
