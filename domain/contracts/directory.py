"""Floor 1 contracts of the directory family: what a directory change is.

:mod:`services.directory` produces a :class:`DirectoryChange` for every person a write changes
(SCIM, the CSV/JSON import, the API); the joiner/mover/leaver automation
(``DirectoryChangeWorkflow``, business key person + change id) takes it as its input, which
is why it lives on the bottom floor: workflows may import it, not the service. The plan that
automation makes (:class:`PersonPlan`) and what it did (:class:`DirectoryOutcome`) live here
too, as do the nightly reconciliation's request and result.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Contact details: shown as this in the audit trail.
REDACTED = "<redacted>"
REDACTED_ATTRIBUTES: frozenset[str] = frozenset({"email", "phone"})

#: The attributes a change record carries (``manager`` is the manager's external id).
ATTRIBUTES: tuple[str, ...] = (
    "name",
    "email",
    "phone",
    "slack_user_id",
    "roles",
    "department",
    "location",
    "time_zone",
    "employer",
    "manager",
    "employment_status",
    "start_date",
)
#: A change of any of these makes a mover: what applies to them may have changed.
MOVER_ATTRIBUTES: frozenset[str] = frozenset({"roles", "department", "location", "employer"})


class ChangeKind(StrEnum):
    """What a directory change means for a person's obligations."""

    JOINER = "joiner"
    MOVER = "mover"
    LEAVER = "leaver"
    REHIRE = "rehire"
    #: Leave of absence starts (``employment_status`` becomes ``leave``).
    LEAVE = "leave"
    #: Back from leave (``leave`` → ``active``).
    RETURN = "return"
    #: Other attributes (name, contact details, time zone, manager): nothing to assign or close.
    UPDATE = "update"


class DirectoryChange(BaseModel):
    """One person's change, as the joiner/mover/leaver automation will receive it.

    Attributes:
        change_id: Unique per change; with the person, the automation's business key.
        person_id: The person's database id.
        external_id: The person's directory key.
        kind: Joiner, mover, leaver, rehire, leave, return or update.
        changed: The attributes that changed (all of them for a joiner).
        before: The attributes before (None for a joiner).
        after: The attributes after.
        source: ``import``, ``scim`` or ``api``.
        actor: The audit actor who made the change.
    """

    model_config = ConfigDict(frozen=True)

    change_id: str
    person_id: int
    external_id: str
    kind: ChangeKind
    changed: list[str]
    before: dict[str, Any] | None
    after: dict[str, Any]
    source: str
    actor: str

    def audit_view(self) -> dict[str, Any]:
        """The change without contact details (email and phone are redacted)."""

        def safe(values: dict[str, Any] | None) -> dict[str, Any] | None:
            if values is None:
                return None
            return {
                k: (REDACTED if k in REDACTED_ATTRIBUTES and v is not None else v)
                for k, v in values.items()
                if k in self.changed
            }

        return {
            "change_id": self.change_id,
            "kind": self.kind.value,
            "source": self.source,
            "changed": self.changed,
            "before": safe(self.before),
            "after": safe(self.after),
        }


# ---------------------------------------------------------------------------------------------
# The joiner/mover/leaver automation (``workflows.directory``)
# ---------------------------------------------------------------------------------------------

#: Why an obligation closes, as recorded in its history and the audit trail.
REASON_LEFT = "left"
#: Why a pause (and the apprenticeship suspension it makes) happens: a resume looks for it.
REASON_LEAVE = "leave of absence"

#: The families a plan closes, pauses and resumes, by the prefix of their workflow id (a track
#: enrolment has no workflow of its own: ``track/{track}/{person}`` names the enrolment row).
FAMILIES: tuple[tuple[str, str], ...] = (
    ("assignment/", "assignment"),
    ("certification/", "certification"),
    ("apprenticeship/", "apprenticeship"),
    ("mentorship/", "mentorship"),
    ("track/", "track"),
)


def family_of(workflow_id: str) -> str:
    """The family a plan's workflow id belongs to (``assignment`` for anything unknown)."""
    return next((name for prefix, name in FAMILIES if workflow_id.startswith(prefix)), "assignment")


def track_enrolment_key(track_id: str, person: str) -> str:
    """The id a plan names a track enrolment by (it has no workflow)."""
    return f"track/{track_id}/{person}"


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Opening(_Plan):
    """An obligation to start: one requirement of the active pack, for one person."""

    requirement_id: str
    title: str
    kind: str
    due_date: date
    cycle: int = Field(default=1, ge=1)
    workflow_id: str


class Closing(_Plan):
    """An open obligation to close, and why."""

    workflow_id: str
    requirement_id: str
    #: ``cancelled`` (a leaver) or ``not_applicable`` (a mover the requirement left behind).
    status: Literal["cancelled", "not_applicable"]
    reason: str

    @property
    def family(self) -> str:
        """``assignment``, ``certification``, ``apprenticeship``, ``mentorship`` or ``track``."""
        return family_of(self.workflow_id)


class Resuming(_Plan):
    """An obligation paused for a leave, to resume (the due date moves by the leave or not)."""

    workflow_id: str
    extend_due_date: bool

    @property
    def family(self) -> str:
        """The family of the paused workflow (see :func:`family_of`)."""
        return family_of(self.workflow_id)


class PersonPlan(_Plan):
    """What a change (or the reconciliation) does to one person's obligations.

    Computed by :func:`rules.directory.plan_person` from the directory, the active pack and
    the obligation read model; recorded in the workflow's history before anything is done.
    """

    person_id: int
    external_id: str
    kind: str
    pack_hash: str | None = None
    #: The day the plan was made for (due dates and enrolments count from it).
    today: date | None = None
    assign: list[Opening] = Field(default_factory=list)
    close: list[Closing] = Field(default_factory=list)
    #: Requirements that no longer apply but stay open (``on_no_longer_applicable: keep``).
    keep: list[str] = Field(default_factory=list)
    #: Certifications that apply and are not held (an obligation to obtain each is open or
    #: in ``assign``); HR registers the certificate when it is held (``POST /certifications``).
    certificates_needed: list[str] = Field(default_factory=list)
    #: Workflow ids to pause for a leave: assignments, apprenticeships, mentorships.
    pause: list[str] = Field(default_factory=list)
    resume: list[Resuming] = Field(default_factory=list)
    #: Learning paths (tracks with ``auto_enrol``) that select the person and hold no live
    #: enrolment of theirs (a joiner, mover or rehire is enrolled).
    enrol: list[str] = Field(default_factory=list)
    revoke_tokens: bool = False
    #: ``old -> new`` manager external ids when the manager changed (recorded, nothing to do).
    manager_change: str | None = None

    def is_empty(self) -> bool:
        """Whether there is nothing to do."""
        return not (
            self.assign
            or self.close
            or self.pause
            or self.resume
            or self.enrol
            or self.revoke_tokens
        )

    def summary(self) -> dict[str, Any]:
        """The plan as the dry run and the audit trail show it (no personal data)."""
        return {
            "external_id": self.external_id,
            "kind": self.kind,
            "assign": [o.requirement_id for o in self.assign],
            "close": [
                {"requirement_id": c.requirement_id, "status": c.status, "reason": c.reason}
                for c in self.close
            ],
            "keep": list(self.keep),
            "certificates_needed": list(self.certificates_needed),
            "pause": len(self.pause),
            "resume": len(self.resume),
            "enrol": list(self.enrol),
            "revoke_tokens": self.revoke_tokens,
            "manager_change": self.manager_change,
        }


class DirectoryChangeInput(_Plan):
    """Input of ``DirectoryChangeWorkflow``: one person's change."""

    change: DirectoryChange


class PlanChangeRequest(_Plan):
    """Input of the ``plan_directory_change`` activity."""

    change: DirectoryChange
    #: The workflow's day: due dates count from it (or from a joiner's later start date).
    today: date


class ApplyPlanRequest(_Plan):
    """Input of the ``apply_directory_plan`` activity."""

    plan: PersonPlan
    actor: str
    change_id: str


class DirectoryOutcome(_Plan):
    """What a change's automation did (the workflow's result)."""

    change_id: str
    external_id: str
    kind: str
    started: list[str] = Field(default_factory=list)
    #: Already existed (Temporal refused the duplicate business key).
    existing: list[str] = Field(default_factory=list)
    closed: list[Closing] = Field(default_factory=list)
    kept: list[str] = Field(default_factory=list)
    certificates_needed: list[str] = Field(default_factory=list)
    paused: int = 0
    resumed: int = 0
    #: Learning paths the person was enrolled in (or re-enrolled in, after a rehire).
    enrolled: list[str] = Field(default_factory=list)
    tokens_revoked: int = 0
    manager_change: str | None = None
    errors: list[str] = Field(default_factory=list)


class ReconcileRequest(_Plan):
    """Input of the reconciliation (nightly schedule, or after a pack deploy)."""

    actor: str = "nightly reconciliation"
    #: ``as_of`` for due dates (the workflow's today).
    today: date | None = None
    #: Only report what would change (nothing is started or closed).
    dry_run: bool = False


class ReconcileResult(_Plan):
    """What the reconciliation repaired: counts and the first fixes, described."""

    people: int = 0
    started: int = 0
    closed: int = 0
    paused: int = 0
    tokens_revoked: int = 0
    #: Learning paths people were missing from and are now enrolled in.
    enrolled: int = 0
    #: Track completion notices started for learners nobody had told yet.
    track_notices: int = 0
    fixes: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
