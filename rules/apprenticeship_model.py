"""Apprenticeship programs: the ``programs:`` section of a rules pack.

Pure pydantic models, importing only the domain floor's :func:`skill_key`: the pack model
(:mod:`rules.model`) and the progress maths (:mod:`rules.apprenticeship`) build on them.

One program, as HR writes it (``sponsor.contact``, ``evaluations``, ``stall``, ``graduation``
and ``on_new_version`` have the defaults shown where they are optional)::

    programs:
      - id: elevator-mechanic
        name: Elevator Mechanic Apprenticeship
        sponsor: {type: union, name: IUEC Local 1 JATC, contact: jatc@local1.example}
        duration_years: 4
        work_hours: 8000          # on-the-job learning (OJL), the sum of the periods'
        classroom_hours: 576      # related technical instruction (RTI), the sum of the periods'
        periods:                  # numbered 1..n in order; wage percentages never go down
          - number: 1
            name: Probationary
            work_hours: 2000
            classroom_hours: 144
            wage_percentage: 50   # of the journeyworker wage
            skills: [Hoistway safety and fall protection, Lockout/tagout of elevator equipment]
          # ...
        evaluations:
          every_days: 90          # an evaluation is due every 90 days...
          at_period_end: true     # ...and when a period's hours and skills are met
          grace_days: 14          # overdue (and escalated) this many days after its due date
          minimum_score: 70       # 0-100; a lower score is recorded as below the minimum
        stall:
          after_days: 30          # no approved hours for 30 days: the apprenticeship is stalled
          ladder:                 # days after the stall, in order
            - {after_days: 0, notify: apprentice, channels: [email, sms]}
            - {after_days: 7, notify: supervisor, channels: [email]}
            - {after_days: 14, notify: sponsor, channels: [email]}
            - {after_days: 21, notify: hr, channels: [email]}
        graduation:
          all_hours: true
          all_skills: true
          final_evaluation_min_score: 80
          required_certifications: [osha-30-construction]   # requirement ids, kind certification
        awards: [elevator-mechanic-journeyworker]          # requirement ids, kind certification
        on_new_version: grandfather

Cross-checks that need the whole pack (certification ids exist and are certifications, program
ids are unique) are the loader's; the ones below need only the program.
"""

from __future__ import annotations

import itertools
import re
from enum import StrEnum
from typing import Annotated, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from domain.contracts.apprenticeship import skill_key

__all__ = [
    "Evaluations",
    "Graduation",
    "Period",
    "Program",
    "ProgramMigration",
    "Sponsor",
    "SponsorType",
    "StallChannel",
    "StallPolicy",
    "StallRecipient",
    "StallStep",
    "SupervisorLeaves",
    "skill_key",
]

_ID = r"^[a-z0-9][a-z0-9_.-]*$"
_SPACES = re.compile(r"\s+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

ProgramId = Annotated[str, Field(pattern=_ID, min_length=1, max_length=80)]
RequirementId = Annotated[str, Field(pattern=_ID, min_length=1, max_length=80)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _skill_names(values: list[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        name = _SPACES.sub(" ", value).strip()
        if not name:
            raise ValueError("a skill is empty; remove it or write the skill")
        if skill_key(name) in seen:
            raise ValueError(f"the skill {name!r} is listed twice; remove one")
        seen.add(skill_key(name))
        out.append(name)
    return out


_T = TypeVar("_T")


def _distinct(values: list[_T]) -> list[_T]:
    return list(dict.fromkeys(values))


Skills = Annotated[
    list[Annotated[str, Field(max_length=120)]],
    Field(default_factory=list, max_length=100),
    AfterValidator(_skill_names),
]


class SponsorType(StrEnum):
    """Who runs a registered apprenticeship program."""

    UNION = "union"
    EMPLOYER = "employer"
    SCHOOL = "school"
    CONSORTIUM = "consortium"


class Sponsor(_Strict):
    """The program's sponsor.

    Attributes:
        type: Union (a joint apprenticeship committee), employer, school or consortium.
        name: The sponsor's name, as registered.
        contact: The sponsor's coordinator mailbox: the stall ladder's ``sponsor`` rung and
            period advancement notices go there.
    """

    type: SponsorType
    name: str = Field(min_length=1, max_length=200)
    contact: str = Field(min_length=3, max_length=254)

    @field_validator("contact")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(
                f"the sponsor contact is an email address such as jatc@local1.example,"
                f" not {value!r}"
            )
        return value


class Period(_Strict):
    """One period (step) of a program: its hours, its skills and the wage paid during it.

    Attributes:
        number: 1 for the first period, then 2, 3... in order.
        name: Such as ``Probationary``.
        work_hours: On-the-job (OJL) hours the period needs.
        classroom_hours: Related instruction (RTI) hours the period needs.
        skills: Skills a supervisor must sign off before the apprentice advances.
        wage_percentage: The apprentice's wage during the period, in percent of the
            journeyworker wage.
    """

    number: int = Field(ge=1, le=50)
    name: str = Field(min_length=1, max_length=100)
    work_hours: int = Field(default=0, ge=0, le=20_000)
    classroom_hours: int = Field(default=0, ge=0, le=5_000)
    skills: Skills
    wage_percentage: float = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _some_hours(self) -> Self:
        if self.work_hours == 0 and self.classroom_hours == 0:
            raise ValueError(
                f"period {self.number} needs no hours at all; give it work_hours or"
                " classroom_hours, or remove it"
            )
        return self


class Evaluations(_Strict):
    """When the supervisor evaluates the apprentice, and the score that passes.

    Attributes:
        every_days: An evaluation is due this many days after the last one (or enrolment).
        at_period_end: An evaluation is also due the day a period's hours and skills are met.
        grace_days: An evaluation not done this many days after its due date is overdue.
        minimum_score: Scores are 0-100; below this an evaluation is recorded as failing.
    """

    every_days: int = Field(default=90, ge=7, le=730)
    at_period_end: bool = True
    grace_days: int = Field(default=14, ge=0, le=90)
    minimum_score: int = Field(default=70, ge=0, le=100)


class StallRecipient(StrEnum):
    """Who a stall notice goes to (``sponsor``: the sponsor's contact; ``hr``: the pack's)."""

    APPRENTICE = "apprentice"
    SUPERVISOR = "supervisor"
    SPONSOR = "sponsor"
    HR = "hr"


class StallChannel(StrEnum):
    """How a stall notice is sent: the same values as :class:`rules.model.Channel`.

    Repeated here so this module imports nothing of ours; a test keeps the two in step.
    """

    EMAIL = "email"
    SMS = "sms"
    SLACK = "slack"
    IN_APP = "in_app"


class StallStep(_Strict):
    """One rung of the stall ladder.

    Attributes:
        after_days: Days after the apprenticeship stalled.
        notify: Who is told.
        channels: How.
    """

    after_days: int = Field(ge=0, le=365)
    notify: StallRecipient
    channels: Annotated[
        list[StallChannel],
        Field(default_factory=lambda: [StallChannel.EMAIL], min_length=1, max_length=4),
        AfterValidator(_distinct),
    ]


def _default_ladder() -> list[StallStep]:
    email, sms = StallChannel.EMAIL, StallChannel.SMS
    return [
        StallStep(after_days=0, notify=StallRecipient.APPRENTICE, channels=[email, sms]),
        StallStep(after_days=7, notify=StallRecipient.SUPERVISOR, channels=[email]),
        StallStep(after_days=14, notify=StallRecipient.SPONSOR, channels=[email]),
    ]


class StallPolicy(_Strict):
    """When an apprenticeship counts as stalled, and who is told.

    Attributes:
        after_days: No approved hours for this many days (since the last approved day, or
            enrolment/reinstatement) and the apprenticeship is stalled.
        ladder: The notices, in order of ``after_days`` (counted from the stall); the ladder
            stops when approved hours arrive again.
    """

    after_days: int = Field(default=30, ge=1, le=365)
    ladder: list[StallStep] = Field(default_factory=_default_ladder, min_length=1, max_length=10)

    @field_validator("ladder")
    @classmethod
    def _in_order(cls, ladder: list[StallStep]) -> list[StallStep]:
        for before, after in itertools.pairwise(step.after_days for step in ladder):
            if after <= before:
                raise ValueError(
                    "list the ladder in order of after_days, each later than the one before;"
                    f" found {after} after {before}"
                )
        return ladder


class Graduation(_Strict):
    """What graduating takes.

    Attributes:
        all_hours: Every period's work and classroom hours approved.
        all_skills: Every period's skills signed off.
        final_evaluation_min_score: The final evaluation's score must be at least this;
            None: no final evaluation is required.
        required_certifications: Requirement ids (``kind: certification``) the apprentice
            must hold (valid) to graduate.
    """

    all_hours: bool = True
    all_skills: bool = True
    final_evaluation_min_score: int | None = Field(default=None, ge=0, le=100)
    required_certifications: Annotated[
        list[RequirementId], Field(max_length=20), AfterValidator(_distinct)
    ] = Field(default_factory=list)


class ProgramMigration(StrEnum):
    """What a running enrolment does when a new pack version changes its program.

    The same words as a deploy's migration mode, applied to a program's enrolments:
    """

    #: Keep the program as it was at enrolment until graduation or withdrawal (an
    #: apprenticeship agreement is signed for the program as registered then).
    GRANDFATHER = "grandfather"
    #: Adopt the new version at the next period advancement.
    REBASE = "rebase"
    #: Adopt it at once: approved hours and sign-offs are kept, the period is recomputed.
    APPLY_NOW = "apply_now"


class SupervisorLeaves(StrEnum):
    """What an enrolment does when its supervising journeyworker leaves the organisation."""

    #: Flag it (``supervisor_left``) and tell HR and the sponsor: HR transfers it (default: a
    #: registered program's supervisor is a journeyworker the sponsor approved, and the
    #: leaver's manager often is not one).
    FLAG = "flag"
    #: Transfer it at once to the leaver's manager (the next active one up the chain), and
    #: tell HR, the sponsor and the new supervisor: for crews whose foreman is always a
    #: journeyworker of the trade. HR can still transfer it to someone else.
    TRANSFER_TO_MANAGER = "transfer_to_manager"


class LmsApproval(StrEnum):
    """Whether classroom hours from the LMS wait for the supervisor."""

    #: Pending until the supervisor approves them, like hours the apprentice logs (default:
    #: only approved hours count, and the supervisor signs the record).
    SUPERVISOR = "supervisor"
    #: Approved as they arrive: for an LMS the sponsor treats as the record of attendance (a
    #: registered related-instruction provider's own system).
    AUTO = "auto"


class LmsCourse(_Strict):
    """One LMS activity whose xAPI statements are classroom (related instruction) hours.

    Attributes:
        activity_id: The xAPI activity id (``object.id``) of the course or session.
        hours: The course's classroom hours, credited on the day it is completed or passed
            (at most 24: one day's entry; map a long course by its units). None: each
            statement's ``result.duration`` (ISO 8601, such as ``PT3H30M``) is credited.
        name: What the entry's description calls it (default: the activity id).
    """

    activity_id: str = Field(min_length=1, max_length=2048)
    hours: float | None = Field(default=None, gt=0, le=24)
    name: str = Field(default="", max_length=200)


class ClassroomFromLms(_Strict):
    """Classroom hours from xAPI statements (``POST /xapi/statements``).

    Attributes:
        approval: ``supervisor`` (pending until approved) or ``auto`` (approved at once).
        courses: The activities that count, each with its hours or counted by duration.
    """

    approval: LmsApproval = LmsApproval.SUPERVISOR
    courses: list[LmsCourse] = Field(default_factory=list, max_length=500)

    @field_validator("courses")
    @classmethod
    def _distinct_activities(cls, courses: list[LmsCourse]) -> list[LmsCourse]:
        seen: set[str] = set()
        for course in courses:
            if course.activity_id in seen:
                raise ValueError(
                    f"the activity {course.activity_id!r} is listed twice; a statement must"
                    " credit one course"
                )
            seen.add(course.activity_id)
        return courses


class Program(_Strict):
    """One registered apprenticeship program (an entry of ``programs:``).

    Attributes:
        id: The program's id (enrolments name it).
        name: Its title.
        sponsor: Who runs it.
        duration_years: How long it is planned to take; hours expected by a date are paced
            linearly over it.
        work_hours: Total on-the-job hours: the sum of the periods'.
        classroom_hours: Total related instruction hours: the sum of the periods'.
        periods: The periods, numbered 1..n in order, wage percentages never decreasing.
        evaluations: The evaluation cadence and minimum score.
        stall: When the apprenticeship is stalled and who is told.
        graduation: What graduating takes.
        awards: Requirement ids (``kind: certification``) registered on graduation.
        on_new_version: How running enrolments take up a changed program.
        on_supervisor_leaves: What an enrolment does when its supervisor leaves.
        classroom_from_lms: Which LMS activities credit classroom hours, and whether they
            wait for the supervisor's approval.
    """

    id: ProgramId
    name: str = Field(min_length=1, max_length=200)
    sponsor: Sponsor
    duration_years: int = Field(ge=1, le=10)
    work_hours: int = Field(ge=0, le=50_000)
    classroom_hours: int = Field(ge=0, le=10_000)
    periods: list[Period] = Field(min_length=1, max_length=50)
    evaluations: Evaluations = Field(default_factory=Evaluations)
    stall: StallPolicy = Field(default_factory=StallPolicy)
    graduation: Graduation = Field(default_factory=Graduation)
    awards: Annotated[list[RequirementId], Field(max_length=20), AfterValidator(_distinct)] = Field(
        default_factory=list
    )
    on_new_version: ProgramMigration = ProgramMigration.GRANDFATHER
    on_supervisor_leaves: SupervisorLeaves = SupervisorLeaves.FLAG
    classroom_from_lms: ClassroomFromLms = Field(default_factory=ClassroomFromLms)

    @field_validator("periods")
    @classmethod
    def _periods(cls, periods: list[Period], info: ValidationInfo) -> list[Period]:
        # work_hours and classroom_hours come before periods, so they are in info.data when
        # they are valid; the error then points at the periods, where the fix usually is.
        for what in ("work_hours", "classroom_hours"):
            total = info.data.get(what)
            parts = [getattr(p, what) for p in periods]
            if total is not None and sum(parts) != total:
                shown = " + ".join(f"{n:,}" for n in parts)
                raise ValueError(
                    f"the periods' {what} add up to {sum(parts):,} ({shown}), not the program's"
                    f" {what}: {total:,}; make them equal"
                )
        for index, period in enumerate(periods, start=1):
            if period.number != index:
                raise ValueError(
                    f"number the periods 1, 2, 3... in order; period {index} is numbered"
                    f" {period.number}"
                )
        for before, after in itertools.pairwise(periods):
            if after.wage_percentage < before.wage_percentage:
                raise ValueError(
                    f"wage percentages must never go down: period {after.number} pays"
                    f" {after.wage_percentage:g}% after period {before.number}'s"
                    f" {before.wage_percentage:g}%"
                )
        seen: dict[str, int] = {}
        for period in periods:
            for skill in period.skills:
                first = seen.setdefault(skill_key(skill), period.number)
                if first != period.number:
                    raise ValueError(
                        f"the skill {skill!r} is in period {first} and period {period.number};"
                        " a skill is signed off once, so keep it in one period"
                    )
        return periods

    def lms_course(self, activity_id: str) -> LmsCourse | None:
        """The course whose statements credit classroom hours here (None: not one)."""
        courses = self.classroom_from_lms.courses
        return next((c for c in courses if c.activity_id == activity_id), None)

    @property
    def skills(self) -> list[str]:
        """Every skill of every period, in order."""
        return [skill for period in self.periods for skill in period.skills]

    def period(self, number: int) -> Period:
        """The period numbered ``number`` (1-based).

        Raises:
            ValueError: There is no such period.
        """
        if not 1 <= number <= len(self.periods):
            raise ValueError(
                f"program {self.id!r} has periods 1 to {len(self.periods)}, not {number}"
            )
        return self.periods[number - 1]
