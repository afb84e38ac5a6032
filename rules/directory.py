"""What the directory says a person owes: the joiner/mover/leaver plan (pure).

One function, :func:`plan_person`, decides for one person, from the active pack, their
directory attributes and their obligations in the read model, what to start and what to
close. The ``DirectoryChangeWorkflow`` (one change), the nightly reconciliation (everyone), a
pack deploy (everyone, the new pack) and the import's dry run all call it, so they agree.

The plan converges on the directory as it is now, not on the change that triggered it: a
second run (a retried workflow, the reconciliation after a change) finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from domain.contracts.directory import (
    REASON_LEFT,
    ChangeKind,
    Closing,
    Opening,
    PersonPlan,
    Resuming,
    family_of,
)
from domain.ids import assignment_workflow_id
from domain.kinds import ObligationKind
from domain.statuses import EmploymentStatus
from rules.model import NoLongerApplicable, Pack, Requirement
from rules.tracks import auto_enrolments

#: Read-model statuses of an obligation that is over (nothing to close; may be re-assigned).
CLOSED = frozenset({"cancelled", "not_applicable", "revoked", "superseded"})
#: A joiner whose requirement has no ``due_in_days`` (a pack error lint reports) gets this.
DEFAULT_DUE_DAYS = 30


@dataclass(frozen=True)
class PersonFacts:
    """A person as the directory describes them (plain data)."""

    person_id: int
    external_id: str
    roles: list[str]
    department: str | None
    location: str | None
    employer: str | None
    employment_status: str
    start_date: date | None = None


@dataclass(frozen=True)
class HeldObligation:
    """One obligation row of the read model."""

    workflow_id: str
    requirement_id: str
    kind: str
    status: str
    cycle: int
    pack_hash: str
    completed: bool = False

    @property
    def assignment(self) -> bool:
        """Whether an ``AssignmentWorkflow`` runs it.

        Certifications, apprenticeships, mentorships and track enrolments have their own
        workflows (or rows); the automation closes and pauses those through their own messages.
        """
        return self.workflow_id.startswith("assignment/")

    @property
    def certification(self) -> bool:
        """Whether a ``CertificationWorkflow`` runs it (a certificate the person holds)."""
        return self.workflow_id.startswith("certification/")

    @property
    def open(self) -> bool:
        """Whether the obligation still runs (not completed, cancelled, revoked...)."""
        return not self.completed and self.status != "completed" and self.status not in CLOSED


#: Statuses of an apprenticeship, mentorship or track enrolment that still runs.
ENGAGED = {
    "apprenticeship": frozenset({"active", "suspended"}),
    "mentorship": frozenset({"pending", "active"}),
    "track": frozenset({"enrolled"}),
}


@dataclass(frozen=True)
class Engagement:
    """An apprenticeship, mentorship or track enrolment of the person.

    These are not rows of the obligation read model (each family has its own), but a leaver's
    must close and a leave must pause them all the same.

    Attributes:
        workflow_id: The workflow's id; a track enrolment's
            :func:`~domain.contracts.directory.track_enrolment_key`.
        ref: The program id, the other party's external id, or the track id.
        status: The family's own status (``active``, ``suspended``, ``pending``, ``enrolled``,
            ``withdrawn``, ``completed``...).
        role: In a mentorship, ``mentee`` or ``mentor``.
    """

    workflow_id: str
    ref: str
    status: str
    role: str | None = None

    @property
    def family(self) -> str:
        """``apprenticeship``, ``mentorship`` or ``track``."""
        return family_of(self.workflow_id)

    @property
    def open(self) -> bool:
        """Whether it still runs (a leaver's closes, a leave pauses it)."""
        return self.status in ENGAGED.get(self.family, frozenset())

    def closing(self, reason: str) -> Closing:
        """Close it as ``cancelled`` with ``reason``."""
        what = f"{self.role} of {self.ref}" if self.role else self.ref
        return Closing(
            workflow_id=self.workflow_id,
            requirement_id=f"{self.family}:{what}"[:200],
            status="cancelled",
            reason=reason,
        )


@dataclass(frozen=True)
class Extensions:
    """``extend_due_on_leave`` of each requirement of the packs obligations are pinned to."""

    by_pack: dict[str, dict[str, bool]] = field(default_factory=dict)

    def extend(self, obligation: HeldObligation) -> bool:
        """Whether a leave moves this obligation's due date (default: yes)."""
        return self.by_pack.get(obligation.pack_hash, {}).get(obligation.requirement_id, True)


def applies(requirement: Requirement, person: PersonFacts) -> bool:
    """Whether the requirement's ``applies_to`` covers the person."""
    return requirement.applies_to.applies(
        list(person.roles or []),
        person.department or "",
        person.location or "",
        person.employer or "",
    )


def _why_not(requirement: Requirement, person: PersonFacts) -> str:
    described = ", ".join(
        f"{name}={value}"
        for name, value in (
            ("roles", "|".join(person.roles) or "-"),
            ("department", person.department or "-"),
            ("location", person.location or "-"),
            ("employer", person.employer or "-"),
        )
    )
    return f"no longer applies: {requirement.id} applies_to does not cover {described}"


def due_date(
    requirement: Requirement, *, today: date, start_date: date | None, joiner: bool
) -> date:
    """When a new obligation is due: ``due_in_days`` from the start date (a joiner) or today.

    A joiner's start date in the future (pre-boarding) counts from that day; one in the past
    counts from it too, but never gives a due date before today.
    """
    days = requirement.due_in_days if requirement.due_in_days is not None else DEFAULT_DUE_DAYS
    base = start_date if joiner and start_date is not None else today
    return max(base + timedelta(days=days), today)


def plan_person(
    *,
    pack: Pack | None,
    person: PersonFacts,
    obligations: Sequence[HeldObligation],
    today: date,
    kind: ChangeKind | str = "reconcile",
    manager_change: str | None = None,
    extensions: Extensions | None = None,
    engagements: Sequence[Engagement] = (),
) -> PersonPlan:
    """What one person's obligations need to match the directory and the pack.

    Args:
        pack: The active pack (None: nothing applies, nothing is assigned or closed as a
            mover; a leaver's obligations still close).
        person: The person now.
        obligations: Every obligation row of theirs (all cycles).
        today: Due dates count from it.
        kind: The change (``reconcile`` for the nightly run): a leave pauses and a return
            resumes only on those changes.
        manager_change: ``old -> new`` when the manager changed (recorded only).
        extensions: Each pinned pack's ``extend_due_on_leave``, for a return.
        engagements: The person's apprenticeships, mentorships (either side) and track
            enrolments: a leaver's close, a leave pauses the ones with reminders.

    Returns:
        The plan: obligations to start and to close (each with why), pauses, resumes and
        learning paths to enrol in.
    """
    kind = str(kind.value if isinstance(kind, ChangeKind) else kind)
    plan: dict[str, object] = {
        "person_id": person.person_id,
        "external_id": person.external_id,
        "kind": kind,
        "pack_hash": pack.content_hash if pack is not None else None,
        "today": today,
        "manager_change": manager_change,
    }
    open_ = [o for o in obligations if o.open]
    engaged = [e for e in engagements if e.open]
    status = person.employment_status
    if status == EmploymentStatus.TERMINATED.value:
        # Every family closes: assignments (track courses among them), held certifications,
        # apprenticeships, mentorships on either side, track enrolments.
        closes = [
            Closing(
                workflow_id=o.workflow_id,
                requirement_id=o.requirement_id,
                status="cancelled",
                reason=REASON_LEFT,
            )
            for o in open_
            if o.assignment or o.certification
        ]
        closes += [e.closing(REASON_LEFT) for e in engaged]
        return PersonPlan(
            **plan,
            close=closes,
            revoke_tokens=kind in (ChangeKind.LEAVER.value, "reconcile"),
        )
    assignable = [o for o in open_ if o.assignment]
    if status == EmploymentStatus.LEAVE.value:
        # On leave: nothing new starts and nothing closes until they are back. Certifications
        # are not paused: a leave does not move an expiry date (see the README).
        pause: list[str] = []
        if kind == ChangeKind.LEAVE.value:
            pause = [o.workflow_id for o in assignable]
            pause += [
                e.workflow_id
                for e in engaged
                if (e.family == "apprenticeship" and e.status == "active")
                or e.family == "mentorship"
            ]
        return PersonPlan(**plan, pause=pause)
    resume: list[Resuming] = []
    if kind == ChangeKind.RETURN.value:
        ext = extensions or Extensions()
        resume = [
            Resuming(workflow_id=o.workflow_id, extend_due_date=ext.extend(o)) for o in assignable
        ]
        # An apprenticeship resumes only if the leave suspended it (the activity checks that
        # the suspension was the directory's, not HR's); a mentorship resumes for this side.
        resume += [
            Resuming(workflow_id=e.workflow_id, extend_due_date=False)
            for e in engaged
            if (e.family == "apprenticeship" and e.status == "suspended")
            or e.family == "mentorship"
        ]
    if pack is None:
        return PersonPlan(**plan, resume=resume)
    latest: dict[str, HeldObligation] = {}
    for o in sorted(obligations, key=lambda o: o.cycle):
        latest[o.requirement_id] = o
    joiner = kind == ChangeKind.JOINER.value
    assign: list[Opening] = []
    close: list[Closing] = []
    keep: list[str] = []
    needed: list[str] = []
    for requirement in pack.requirements:
        held = latest.get(requirement.id)
        still_open = [o for o in open_ if o.requirement_id == requirement.id]
        if applies(requirement, person):
            if requirement.kind is ObligationKind.CERTIFICATION:
                opening = _obtain(requirement, person, obligations, today=today, joiner=joiner)
                if opening is not _HELD:
                    needed.append(requirement.id)
                if isinstance(opening, Opening):
                    assign.append(opening)
                continue
            if still_open:
                continue
            if held is not None and held.status not in CLOSED:
                continue  # completed: a recurring one starts its next cycle itself
            cycle = held.cycle + 1 if held is not None else 1
            assign.append(
                Opening(
                    requirement_id=requirement.id,
                    title=requirement.title,
                    kind=requirement.kind.value,
                    due_date=due_date(
                        requirement, today=today, start_date=person.start_date, joiner=joiner
                    ),
                    cycle=cycle,
                    workflow_id=assignment_workflow_id(person.external_id, requirement.id, cycle),
                )
            )
            continue
        for o in still_open:
            if not o.assignment:
                continue  # a held certificate is not withdrawn by a move
            if requirement.on_no_longer_applicable is NoLongerApplicable.KEEP:
                keep.append(requirement.id)
                continue
            close.append(
                Closing(
                    workflow_id=o.workflow_id,
                    requirement_id=requirement.id,
                    status="not_applicable",
                    reason=_why_not(requirement, person),
                )
            )
    enrol: list[str] = []
    changes = (ChangeKind.JOINER.value, ChangeKind.MOVER.value, ChangeKind.REHIRE.value)
    if kind in (*changes, "reconcile"):
        tracks_ = [e for e in engagements if e.family == "track"]
        # A change reopens a withdrawn enrolment (a rehire); the nightly reconciliation only
        # adds the ones that are missing: someone HR withdrew stays withdrawn.
        live = {e.ref for e in tracks_ if kind == "reconcile" or e.status != "withdrawn"}
        enrol = [
            track.id
            for track in auto_enrolments(
                pack.tracks,
                roles=list(person.roles or []),
                department=person.department or "",
                location=person.location or "",
                employer=person.employer or "",
            )
            if track.id not in live
        ]
    return PersonPlan(
        **plan,
        assign=assign,
        close=close,
        keep=sorted(set(keep)),
        certificates_needed=needed,
        resume=resume,
        enrol=enrol,
    )


#: :func:`_obtain`'s answer when the certificate is held (nothing is needed).
_HELD = "held"


def _obtain(
    requirement: Requirement,
    person: PersonFacts,
    obligations: Sequence[HeldObligation],
    *,
    today: date,
    joiner: bool,
) -> Opening | str | None:
    """The obligation to obtain a certification that applies, if one must start.

    A certification is *held* while its ``CertificationWorkflow`` runs (registered with
    ``POST /certifications``). Until then the person owes it: an assignment
    (``assignment/{person}/{certification}/{cycle}``) due ``due_in_days`` from the start date
    (a joiner) or today, which registering the certificate completes.

    Returns:
        :data:`_HELD` when the certificate is held; the :class:`Opening` to start; None when
        an obligation to obtain it is open already (or just completed: its certificate is
        being registered).
    """
    mine = [o for o in obligations if o.requirement_id == requirement.id]
    certificates = [o for o in mine if o.certification]
    if any(o.open for o in certificates):
        return _HELD
    obtains = sorted((o for o in mine if o.assignment), key=lambda o: o.cycle)
    if any(o.open for o in obtains):
        return None
    latest = obtains[-1] if obtains else None
    if latest is not None and latest.status not in CLOSED and not certificates:
        return None  # obtained: the certificate's own workflow has not recorded itself yet
    cycle = latest.cycle + 1 if latest is not None else 1
    return Opening(
        requirement_id=requirement.id,
        title=requirement.title,
        kind=requirement.kind.value,
        due_date=due_date(requirement, today=today, start_date=person.start_date, joiner=joiner),
        cycle=cycle,
        workflow_id=assignment_workflow_id(person.external_id, requirement.id, cycle),
    )
