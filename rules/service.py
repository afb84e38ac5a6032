"""What the CLI and the API do with a pack: run its tests and preview a deploy."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from duly.domain import DEFAULT_LADDER_DAYS, stage_label
from rules.engine import NoRuleMatched, engine_for
from rules.model import Pack
from rules.obligation_facts import local_today, obligation_facts
from store.models import Obligation, Person
from store.packs import active_pack, load_version

CLOSED_STATUSES = frozenset({"cancelled"})


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
        facts = obligation_facts(obligation, person, today=day, grace_days=grace)
        try:
            after = engine.evaluate(facts)
            status_after, rule_after = after.status, after.rule
        except NoRuleMatched:
            status_after, rule_after = "<no rule>", None
        status_before, rule_before = obligation.status, None
        if pinned is not None:
            old_req = pinned.requirement(obligation.requirement_id)
            before_facts = obligation_facts(
                obligation, person, today=day, grace_days=old_req.grace_days if old_req else 0
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
