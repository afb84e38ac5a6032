"""Rules deployment: validate, preview, deploy and roll out packs; list stored versions.

Keyword-only functions the CLI and the API routers call. The deciding is the rules layer's
(pure); this module reads the directory and the obligation read model, stores versions and
starts the roll-out workflow.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.packs import load_version, person_attributes
from domain.calendar import DEFAULT_LADDER_DAYS, stage_label
from notifications.messages import lint_templates
from rules.cases import CaseResult, run_tests
from rules.cases import deploy_blockers as pack_blockers
from rules.engine import NoRuleMatched, engine_for
from rules.lint import Level, lint
from rules.loader import pack_from_files
from rules.model import Pack
from rules.obligation_facts import build_facts, local_today
from store.models import Obligation, Person, RulesPackVersion
from store.packs import Migration, active_version, describe, find_version, versions
from store.packs import deploy as store_deploy

CLOSED_STATUSES = frozenset({"cancelled", "not_applicable"})
#: An uploaded pack's limits (the example packs are a few dozen files, a few hundred kB).
MAX_FILES = 200
MAX_TOTAL_CHARS = 5_000_000

__all__ = [
    "CaseResult",
    "EmptyPack",
    "PackTooLarge",
    "Preview",
    "PreviewRow",
    "ValidationReport",
    "deploy",
    "deploy_blockers",
    "describe",
    "directory",
    "pack_from_upload",
    "preview",
    "run_tests",
    "start_rollout",
    "validate",
]


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
    #: What the directory automation would do once this pack is active (the same plan a
    #: directory change makes): requirement -> people it would be assigned to ...
    would_assign: dict[str, int] = {}
    #: ... whose open obligation would close as ``not_applicable`` ...
    would_close: dict[str, int] = {}
    #: ... and whose obligation stays open although it no longer applies (``keep``).
    would_keep: dict[str, int] = {}


class Issue(BaseModel):
    """One problem at a file position."""

    file: str
    line: int
    column: int
    message: str


class ValidationReport(BaseModel):
    """What validation, lint and the pack's tests found."""

    valid: bool
    content_hash: str | None = None
    name: str | None = None
    issues: list[Issue] = []
    lint: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []


class EmptyPack(ValueError):
    """An upload without files."""


class PackTooLarge(ValueError):
    """An uploaded pack exceeds :data:`MAX_FILES` or :data:`MAX_TOTAL_CHARS`."""


def pack_from_upload(*, files: dict[str, str]) -> Pack:
    """Load a pack sent as its files (the API's upload), within the size limits.

    Raises:
        EmptyPack: No files.
        PackTooLarge: Too many files or characters.
        PackInvalid: Anything the loader finds (file:line:column issues).
    """
    if not files:
        raise EmptyPack("no files in the pack")
    if len(files) > MAX_FILES or sum(len(t) for t in files.values()) > MAX_TOTAL_CHARS:
        raise PackTooLarge(
            f"a pack may have at most {MAX_FILES} files and {MAX_TOTAL_CHARS:,} characters"
        )
    return pack_from_files(files)


def directory(*, session: Session) -> list[Person]:
    """Everyone in the directory (lint checks a pack's ``applies_to`` against them)."""
    return list(session.scalars(select(Person)))


def deploy_blockers(*, pack: Pack, people: Sequence[Any] | None) -> list[str]:
    """Why ``pack`` must not be deployed: lint errors and failing pack tests (empty: deployable).

    Args:
        pack: The pack to deploy.
        people: The directory to lint against (None: directory checks skipped).
    """
    return pack_blockers(pack, people, templates=lint_templates)


def validate(*, session: Session, pack: Pack) -> ValidationReport:
    """Lint ``pack`` against the current directory and run its tests."""
    findings = lint(pack, directory(session=session), templates=lint_templates)
    cases = run_tests(pack)
    return ValidationReport(
        valid=not any(f.level is Level.ERROR for f in findings) and all(c.passed for c in cases),
        content_hash=pack.content_hash,
        name=pack.info.name,
        lint=[
            {
                "level": f.level.value,
                "code": f.code,
                "message": f.message,
                "file": f.file,
                "line": f.line,
            }
            for f in findings
        ],
        tests=[
            {
                "name": c.name,
                "passed": c.passed,
                "expected": {"status": c.expected_status, "rule": c.expected_rule},
                "got": {"status": c.got_status, "rule": c.got_rule},
                "diff": c.diff(),
            }
            for c in cases
        ],
    )


def deploy(
    *,
    session: Session,
    pack: Pack,
    author: str,
    message: str | None,
    migration: Migration,
    actor_role: str = "hr_admin",
) -> RulesPackVersion:
    """Store ``pack`` and make it the active version (audited); the caller commits.

    The caller has checked :func:`deploy_blockers`; roll the pack out with
    :func:`start_rollout` after the commit.
    """
    return store_deploy(
        session, pack, author=author, message=message, migration=migration, actor_role=actor_role
    )


def list_versions(*, session: Session) -> list[dict[str, object]]:
    """Every stored version as plain data (no file contents), newest deploy first."""
    return [describe(v) for v in versions(session)]


def active(*, session: Session) -> dict[str, object] | None:
    """The active version as plain data (None: no pack deployed, the built-in rules apply)."""
    version = active_version(session)
    return describe(version) if version is not None else None


def show_version(*, session: Session, content_hash: str) -> dict[str, object] | None:
    """One version with its files (a unique hash prefix of 8+ characters works), or None."""
    version = find_version(session, content_hash)
    if version is None:
        return None
    return {**describe(version), "content": version.content["files"]}


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


def preview(*, session: Session, pack: Pack, today: date | None = None) -> Preview:
    """Compare each open obligation's status and remaining stages under ``pack`` with now.

    "Now" is the pack each obligation is pinned to (the built-in rules when none). Facts are
    built from the read model and the directory as of ``today`` (each person's local today by
    default).
    """
    current = active_version(session)
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
        day = today or local_today(person.time_zone)
        pinned = packs.get(obligation.pack_hash) if obligation.pack_hash != "builtin" else None
        requirement = pack.requirement(obligation.requirement_id)
        note = None
        if requirement is None:
            note = f"requirement {obligation.requirement_id!r} is not in this pack"
        grace = requirement.grace_days if requirement else 0
        known = obligation.facts()
        attributes = person_attributes(person)
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
    assign, close, keep = _directory_effect(session, pack, today)
    return Preview(
        pack_hash=pack.content_hash,
        active_hash=current.content_hash if current else None,
        obligations=len(open_ones),
        status_changes=sum(1 for r in rows if r.status_changes),
        stage_changes=sum(1 for r in rows if r.stages_change),
        transitions=dict(transitions),
        rows=rows,
        new_requirements=new_requirements,
        would_assign=assign,
        would_close=close,
        would_keep=keep,
    )


def _directory_effect(
    session: Session, pack: Pack, today: date | None
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Per requirement, how many people the automation would assign, close and keep."""
    from activities.directory import held_obligations, person_facts
    from rules.directory import plan_person

    day = today or datetime.now(UTC).date()
    people = list(
        session.scalars(
            select(Person).where(Person.employment_status == "active").order_by(Person.id)
        ).unique()
    )
    held = held_obligations(session, [p.id for p in people])
    assign: Counter[str] = Counter()
    close: Counter[str] = Counter()
    keep: Counter[str] = Counter()
    for person in people:
        plan = plan_person(
            pack=pack, person=person_facts(person), obligations=held[person.id], today=day
        )
        assign.update(o.requirement_id for o in plan.assign)
        close.update(c.requirement_id for c in plan.close)
        keep.update(plan.keep)
    return dict(sorted(assign.items())), dict(sorted(close.items())), dict(sorted(keep.items()))


def audience_changes(*, session: Session, pack: Pack) -> list[str]:
    """Requirements whose audience a deploy of ``pack`` changes (vs the active pack).

    Added or removed requirements, a changed ``applies_to`` or ``on_no_longer_applicable``.
    Empty for the first pack (the nightly reconciliation assigns it) or the same pack.
    """
    from activities.packs import active_pack

    current = active_pack(session)
    if current is None or current.content_hash == pack.content_hash:
        return []
    old = {r.id: r for r in current.requirements}
    new = {r.id: r for r in pack.requirements}
    changed = set(old) ^ set(new)
    for key in set(old) & set(new):
        a, b = old[key], new[key]
        if (a.applies_to, a.on_no_longer_applicable) != (b.applies_to, b.on_no_longer_applicable):
            changed.add(key)
    return sorted(changed)


async def start_directory_reconcile(
    *, client: Any, task_queue: str, pack_hash: str, deployed_by: str
) -> str:
    """Reconcile the directory with a newly deployed pack whose audiences changed.

    Business-key id per pack: a second deploy of the same pack attaches to the first run.

    Returns:
        The reconciliation's workflow id.
    """
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from domain.contracts.directory import ReconcileRequest
    from workflows.directory import DirectoryReconcileWorkflow, reconcile_workflow_id

    workflow_id = reconcile_workflow_id(f"pack-{pack_hash[:16]}")
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            DirectoryReconcileWorkflow.run,
            ReconcileRequest(actor=f"pack deploy by {deployed_by}"[:128]),
            id=workflow_id,
            task_queue=task_queue,
        )
    return workflow_id


async def start_rollout(
    *, client: Any, task_queue: str, pack_hash: str, mode: str, deployed_by: str
) -> str:
    """Start the roll-out of ``pack_hash`` to running workflows; returns its workflow id.

    A second roll-out of the same pack and mode attaches to the first (business-key id).
    """
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from domain.contracts.packs import PackMigration, RolloutRequest
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
