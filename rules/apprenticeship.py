"""Apprenticeship progress: pure maths over a program and what was logged, signed off and scored.

Plain data in, plain data out; no I/O, no clock (``today`` is always given: the apprentice's
local date). The workflow, the API and the status rules all read the same answers from here:

* :func:`progress`: hours by period (approved and pending), the period reached and whether an
  advancement is due, hours expected by today, days since the last approved hours, the next
  evaluation and whether it is overdue, and graduation readiness with what is unmet.
* :func:`check_entry`: whether a new hours entry may be recorded (clear errors otherwise).
* :func:`apprenticeship_facts`: the facts the pack's status rules decide on.

How hours count. Only approved hours count. They fill the periods in order, oldest first: a
period's work (classroom) bucket fills up to its need before the next period gets any, and the
day the need is reached is when the period's hours were met. So hours beyond a period's need,
logged while its skills are still being signed off, are not lost: they count towards the next
period. Hours beyond the whole program stay in the last period. Pending hours are poured the same
way on top of the approved ones, to show where they would land.

How skills count. Skills are signed off in evaluations (compared case-insensitively, see
:func:`rules.apprenticeship_model.skill_key`); the first sign-off counts. A period is complete
when its hours are met and its skills signed off, on the latest of those days. Periods are
reached in order: the apprentice reaches period k+1 once periods 1..k are all complete.

Expected hours: linear over the program's duration. Periods are defined by hours, not by dates
(an apprentice advances when the hours and skills are met, whenever that is), so the only dated
commitment a program makes is its overall duration; linear pacing is the steady pace that
finishes on time, and per-period deadlines would invent dates the pack does not declare. Days
spent suspended do not count (they move the expected completion date too).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.contracts.apprenticeship import (
    EnrollmentStatus,
    EntryStatus,
    Evaluation,
    HoursEntry,
    HoursKind,
)
from rules.apprenticeship_model import LmsApproval, Program, skill_key
from rules.facts import complete_facts

__all__ = [
    "EnrollmentStatus",
    "Enrolment",
    "EntryCheck",
    "EntryStatus",
    "Evaluation",
    "HoursEntry",
    "HoursKind",
    "PeriodProgress",
    "Progress",
    "apprenticeship_facts",
    "check_entry",
    "compliance_status",
    "duration_hours",
    "lms_auto_approved",
    "lms_classroom_entry",
    "program_facts",
    "progress",
]

#: Most hours one day can hold, summed over its entries.
MAX_HOURS_A_DAY = 24
_EPSILON = 1e-6


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Enrolment(_Frozen):
    """One apprentice's enrolment in a program, as the workflow records it.

    Attributes:
        enrolled_on: The enrolment date (the program's clock starts).
        status: Active, suspended, completed or withdrawn.
        period: The period on record (whose wage is paid now).
        active_since: The last day it became active again (reinstatement); None: enrolment.
            Stall and evaluation clocks restart then.
        suspended_on: The first day of the current suspension (with status suspended).
        paused_days: Days spent in earlier suspensions, now over.
    """

    enrolled_on: date
    status: EnrollmentStatus = EnrollmentStatus.ACTIVE
    period: int = Field(default=1, ge=1, le=50)
    active_since: date | None = None
    suspended_on: date | None = None
    paused_days: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Enrolment:
        if self.active_since is not None and self.active_since < self.enrolled_on:
            raise ValueError("active_since is before enrolled_on")
        if self.suspended_on is not None and self.suspended_on < self.enrolled_on:
            raise ValueError("suspended_on is before enrolled_on")
        return self

    def paused_until(self, today: date) -> int:
        """Days spent suspended up to ``today`` (the current suspension included)."""
        ongoing = 0
        if self.status is EnrollmentStatus.SUSPENDED and self.suspended_on is not None:
            ongoing = max(0, (today - self.suspended_on).days)
        return self.paused_days + ongoing

    @property
    def clock_start(self) -> date:
        """Where the stall and evaluation clocks start: reinstatement, else enrolment."""
        return self.active_since or self.enrolled_on


# --------------------------------------------------------------------------------------------
# Progress


@dataclass(frozen=True)
class PeriodProgress:
    """One period's hours and skills.

    Attributes:
        number: The period's number.
        name: Its name.
        wage_percentage: The wage during it.
        work_needed: Its work hours.
        classroom_needed: Its classroom hours.
        work_approved: Approved work hours counted towards it.
        classroom_approved: Approved classroom hours counted towards it.
        work_pending: Pending work hours that would count towards it.
        classroom_pending: Pending classroom hours that would count towards it.
        skills_signed_off: Its skills signed off, in the program's order.
        skills_pending: Its skills not yet signed off.
        hours_met_on: The day its work and classroom hours were both met (None: not yet).
        completed_on: The day its hours and skills were all met (None: not yet).
    """

    number: int
    name: str
    wage_percentage: float
    work_needed: int
    classroom_needed: int
    work_approved: float
    classroom_approved: float
    work_pending: float
    classroom_pending: float
    skills_signed_off: list[str]
    skills_pending: list[str]
    hours_met_on: date | None
    completed_on: date | None

    @property
    def complete(self) -> bool:
        """Whether its hours and skills are all met."""
        return self.completed_on is not None


@dataclass(frozen=True)
class Progress:
    """An apprenticeship's progress on one day (see :func:`progress`).

    Attributes:
        today: The day it was computed for.
        status: The enrolment's status.
        periods: Every period's hours and skills.
        period: The period on record.
        period_reached: The period the apprentice has earned: one after the complete ones
            (the last period at most).
        advancement_due: Active and ``period_reached`` is beyond the period on record.
        work_approved: Approved work hours.
        classroom_approved: Approved classroom hours.
        work_pending: Pending work hours.
        classroom_pending: Pending classroom hours.
        work_expected: Work hours expected by today (linear pacing).
        classroom_expected: Classroom hours expected by today.
        expected_completion: Enrolment plus the program's duration plus days suspended.
        last_approved_on: The latest day with approved hours (None: none yet).
        days_since_approved_hours: Days from that day (or enrolment/reinstatement, if later)
            to today.
        stalled: Active and no approved hours for the program's ``stall.after_days``.
        evaluation_due_on: When the next evaluation is due (None: not active).
        evaluation_due: Active and it is due today or was due before.
        evaluation_overdue: Active and more than the program's ``grace_days`` past due.
        last_evaluation: The latest evaluation, if any.
        below_minimum: The latest evaluation scored below the program's minimum.
        unknown_skills: Skills signed off that the program does not list (ignored).
        unmet: What graduation still needs, in plain language (empty: ready).
    """

    today: date
    status: EnrollmentStatus
    periods: list[PeriodProgress]
    period: int
    period_reached: int
    advancement_due: bool
    work_approved: float
    classroom_approved: float
    work_pending: float
    classroom_pending: float
    work_expected: float
    classroom_expected: float
    expected_completion: date
    last_approved_on: date | None
    days_since_approved_hours: int
    stalled: bool
    evaluation_due_on: date | None
    evaluation_due: bool
    evaluation_overdue: bool
    last_evaluation: Evaluation | None
    below_minimum: bool
    unknown_skills: list[str] = field(default_factory=list)
    unmet: list[str] = field(default_factory=list)

    @property
    def hours_logged(self) -> float:
        """Approved hours, work and classroom."""
        return self.work_approved + self.classroom_approved

    @property
    def hours_expected(self) -> float:
        """Hours expected by today, work and classroom."""
        return self.work_expected + self.classroom_expected

    @property
    def hours_behind(self) -> float:
        """Expected minus approved hours; 0 when ahead."""
        return max(0.0, self.hours_expected - self.hours_logged)

    @property
    def graduation_ready(self) -> bool:
        """Active and nothing graduation needs is unmet."""
        return self.status is EnrollmentStatus.ACTIVE and not self.unmet


def add_years(day: date, years: int) -> date:
    """``day`` plus whole years; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


@dataclass
class _Buckets:
    """Hours poured into the periods' needs in order (one kind of hours)."""

    needs: list[int]
    filled: list[float] = field(default_factory=list)
    met_on: list[date | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.filled = [0.0] * len(self.needs)
        self.met_on = [None] * len(self.needs)

    def full(self, index: int) -> bool:
        # Within a millionth of an hour: sums of fractions such as 0.1 are not exact in binary.
        return self.filled[index] >= self.needs[index] - _EPSILON

    def pour(self, hours: float, day: date | None) -> None:
        index = 0
        while hours > _EPSILON:
            while index < len(self.needs) - 1 and self.full(index):
                index += 1
            room = self.needs[index] - self.filled[index]
            take = hours if index == len(self.needs) - 1 else min(hours, room)
            self.filled[index] += take
            hours -= take
            if day is not None and self.met_on[index] is None and self.full(index):
                self.met_on[index] = day


def _pour(program: Program, entries: Iterable[HoursEntry], kind: HoursKind) -> _Buckets:
    """Approved hours of ``kind`` in the periods, then (separately) where pending ones land."""
    needs = [p.work_hours if kind is HoursKind.WORK else p.classroom_hours for p in program.periods]
    buckets = _Buckets(needs)
    for entry in sorted(
        (e for e in entries if e.kind is kind and e.status is EntryStatus.APPROVED),
        key=lambda e: (e.day, e.id),
    ):
        buckets.pour(max(entry.hours, 0.0), entry.day)
    return buckets


def _pending(approved: _Buckets, entries: Iterable[HoursEntry], kind: HoursKind) -> list[float]:
    after = _Buckets(list(approved.needs))
    after.filled = list(approved.filled)
    pending = sum(
        max(e.hours, 0.0) for e in entries if e.kind is kind and e.status is EntryStatus.PENDING
    )
    after.pour(pending, None)
    return [now - before for now, before in zip(after.filled, approved.filled, strict=True)]


def _latest(*days: date | None) -> date | None:
    if any(day is None for day in days):
        return None
    return max(day for day in days if day is not None)


def _hours(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}".rstrip("0")


def progress(
    program: Program,
    enrolment: Enrolment,
    entries: Sequence[HoursEntry],
    evaluations: Sequence[Evaluation],
    *,
    today: date,
    certifications_held: Collection[str] = (),
    signed_off: Mapping[str, date] | None = None,
) -> Progress:
    """An apprenticeship's progress on ``today``.

    Args:
        program: The program (from the pack version the enrolment is pinned to).
        enrolment: The enrolment's dates, status and period on record.
        entries: Every hours entry (rejected ones are ignored).
        evaluations: Every evaluation; skills are signed off in them.
        today: The apprentice's local date.
        certifications_held: Requirement ids of the certifications the apprentice holds
            (valid today), for graduation.
        signed_off: Skills signed off outside the evaluations given (such as a summary carried
            over from earlier evaluations): skill -> the day it was signed off.

    Returns:
        The progress; see :class:`Progress`.
    """
    active = enrolment.status is EnrollmentStatus.ACTIVE
    work = _pour(program, entries, HoursKind.WORK)
    classroom = _pour(program, entries, HoursKind.CLASSROOM)
    work_pending = _pending(work, entries, HoursKind.WORK)
    classroom_pending = _pending(classroom, entries, HoursKind.CLASSROOM)

    known = {skill_key(s) for s in program.skills}
    signed: dict[str, date] = {}
    unknown: list[str] = []
    sign_offs = [(day, skill) for skill, day in (signed_off or {}).items()]
    sign_offs += [(e.day, skill) for e in evaluations for skill in e.skills_signed_off]
    for day, skill in sorted(sign_offs, key=lambda pair: pair[0]):
        key = skill_key(skill)
        if key in known:
            signed.setdefault(key, day)  # the first sign-off counts
        elif skill not in unknown:
            unknown.append(skill)

    periods: list[PeriodProgress] = []
    for index, period in enumerate(program.periods):
        done = [s for s in period.skills if skill_key(s) in signed]
        # A period that needs no hours of a kind has them from the start.
        hours_met_on = _latest(
            enrolment.enrolled_on if period.work_hours == 0 else work.met_on[index],
            enrolment.enrolled_on if period.classroom_hours == 0 else classroom.met_on[index],
        )
        skills_met_on = (
            max((signed[skill_key(s)] for s in period.skills), default=enrolment.enrolled_on)
            if len(done) == len(period.skills)
            else None
        )
        periods.append(
            PeriodProgress(
                number=period.number,
                name=period.name,
                wage_percentage=period.wage_percentage,
                work_needed=period.work_hours,
                classroom_needed=period.classroom_hours,
                work_approved=work.filled[index],
                classroom_approved=classroom.filled[index],
                work_pending=work_pending[index],
                classroom_pending=classroom_pending[index],
                skills_signed_off=done,
                skills_pending=[s for s in period.skills if skill_key(s) not in signed],
                hours_met_on=hours_met_on,
                completed_on=_latest(hours_met_on, skills_met_on),
            )
        )
    complete_in_order = 0
    for period_progress in periods:
        if not period_progress.complete:
            break
        complete_in_order += 1
    period_reached = min(complete_in_order + 1, len(periods))

    paused = enrolment.paused_until(today)
    end = add_years(enrolment.enrolled_on, program.duration_years)
    total_days = (end - enrolment.enrolled_on).days
    elapsed = min(max((today - enrolment.enrolled_on).days - paused, 0), total_days)
    share = elapsed / total_days

    approved_days = [e.day for e in entries if e.status is EntryStatus.APPROVED]
    last_approved_on = max(approved_days, default=None)
    since = max(last_approved_on or enrolment.clock_start, enrolment.clock_start)
    days_since = max((today - since).days, 0)

    ordered = sorted(evaluations, key=lambda e: e.day)
    last = ordered[-1] if ordered else None
    due_on: date | None = None
    if active:
        base = max(last.day if last else enrolment.clock_start, enrolment.clock_start)
        due_on = base + timedelta(days=program.evaluations.every_days)
        if program.evaluations.at_period_end:
            for period_progress in periods[:complete_in_order]:
                ended = period_progress.completed_on
                assert ended is not None  # complete
                if not any(e.day >= ended for e in ordered):
                    due_on = min(due_on, max(ended, enrolment.clock_start))
                    break
    grace = timedelta(days=program.evaluations.grace_days)

    result = Progress(
        today=today,
        status=enrolment.status,
        periods=periods,
        period=enrolment.period,
        period_reached=period_reached,
        advancement_due=active and period_reached > enrolment.period,
        work_approved=sum(work.filled),
        classroom_approved=sum(classroom.filled),
        work_pending=sum(work_pending),
        classroom_pending=sum(classroom_pending),
        work_expected=program.work_hours * share,
        classroom_expected=program.classroom_hours * share,
        expected_completion=end + timedelta(days=paused),
        last_approved_on=last_approved_on,
        days_since_approved_hours=days_since,
        stalled=active and days_since >= program.stall.after_days,
        evaluation_due_on=due_on,
        evaluation_due=due_on is not None and today >= due_on,
        evaluation_overdue=due_on is not None and today > due_on + grace,
        last_evaluation=last,
        below_minimum=last is not None and last.score < program.evaluations.minimum_score,
        unknown_skills=unknown,
    )
    unmet = _unmet(program, result, ordered, certifications_held)
    return dataclasses.replace(result, unmet=unmet)


def _unmet(
    program: Program,
    done: Progress,
    evaluations: Sequence[Evaluation],
    held: Collection[str],
) -> list[str]:
    """What graduation still needs, in plain language."""
    unmet: list[str] = []
    if done.status is not EnrollmentStatus.ACTIVE:
        unmet.append(f"the apprenticeship is {done.status.value}, not active")
    rules = program.graduation
    if rules.all_hours:
        for what, approved, needed in (
            ("work", done.work_approved, program.work_hours),
            ("classroom", done.classroom_approved, program.classroom_hours),
        ):
            if approved < needed:
                unmet.append(
                    f"{what} hours: {_hours(approved)} of {needed:,} approved"
                    f" ({_hours(needed - approved)} to go)"
                )
    if rules.all_skills:
        for period in done.periods:
            if period.skills_pending:
                listed = ", ".join(period.skills_pending)
                unmet.append(f"skills of period {period.number} not signed off: {listed}")
    if rules.final_evaluation_min_score is not None:
        finals = [e for e in evaluations if e.final]
        needed_score = rules.final_evaluation_min_score
        if not finals:
            unmet.append(f"no final evaluation yet (it needs a score of {needed_score} or more)")
        elif finals[-1].score < needed_score:
            final = finals[-1]
            unmet.append(
                f"the final evaluation on {final.day.isoformat()} scored {final.score},"
                f" below the {needed_score} needed"
            )
    for certification in rules.required_certifications:
        if certification not in held:
            unmet.append(f"certification '{certification}' is not held")
    return unmet


# --------------------------------------------------------------------------------------------
# New hours entries


@dataclass(frozen=True)
class EntryCheck:
    """Whether a new hours entry may be recorded.

    Attributes:
        errors: What is wrong, each saying how to fix it (empty: record it).
        duplicate: An identical entry with the same id is already recorded: accept the
            request and record nothing (idempotent).
    """

    errors: list[str]
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """Whether the entry may be recorded (or is already)."""
        return not self.errors


def check_entry(
    entry: HoursEntry,
    existing: Sequence[HoursEntry],
    *,
    status: EnrollmentStatus,
    today: date,
    enrolled_on: date | None = None,
) -> EntryCheck:
    """Check a new hours entry against the apprenticeship and the entries already recorded.

    Args:
        entry: The entry to record.
        existing: Every entry recorded so far (rejected ones included).
        status: The enrolment's status.
        today: The apprentice's local date.
        enrolled_on: The enrolment date; hours before it are refused (None: not checked).

    Returns:
        The errors (every one found), or that the entry is a duplicate of one recorded.
    """
    status = EnrollmentStatus(status)
    same_id = next((e for e in existing if e.id == entry.id), None)
    if same_id is not None:
        if same_id.same_content(entry):
            return EntryCheck([], duplicate=True)
        changed = _differences(same_id, entry)
        return EntryCheck(
            [
                f"entry {entry.id!r} is already recorded with different content ({changed});"
                " to correct it, log a new entry id with a reason, or resend the same content"
            ]
        )
    errors: list[str] = []
    if status is not EnrollmentStatus.ACTIVE:
        errors.append(
            f"the apprenticeship is {status.value}: hours cannot be logged"
            + (" until it is reinstated" if status is EnrollmentStatus.SUSPENDED else "")
        )
    if not math.isfinite(entry.hours) or entry.hours <= 0:
        shown = _hours(entry.hours) if math.isfinite(entry.hours) else str(entry.hours)
        errors.append(f"hours must be more than 0, not {shown}")
    elif entry.hours > MAX_HOURS_A_DAY:
        errors.append(
            f"{_hours(entry.hours)} hours is more than a day holds ({MAX_HOURS_A_DAY});"
            " split it over the days it was worked"
        )
    else:
        same_day = [
            e for e in existing if e.day == entry.day and e.status is not EntryStatus.REJECTED
        ]
        logged = sum(max(e.hours, 0.0) for e in same_day)
        if logged + entry.hours > MAX_HOURS_A_DAY:
            ids = ", ".join(e.id for e in same_day)
            errors.append(
                f"{entry.day.isoformat()} would have {_hours(logged + entry.hours)} hours logged"
                f" ({_hours(logged)} already, in {ids}); a day holds at most {MAX_HOURS_A_DAY}"
            )
    if entry.day > today:
        errors.append(
            f"{entry.day.isoformat()} is in the future (today is {today.isoformat()});"
            " log hours on or after the day they were worked"
        )
    if enrolled_on is not None and entry.day < enrolled_on:
        errors.append(
            f"{entry.day.isoformat()} is before the enrolment on {enrolled_on.isoformat()};"
            " hours before enrolment do not count"
        )
    return EntryCheck(errors)


def _differences(before: HoursEntry, after: HoursEntry) -> str:
    changes = []
    for name in ("day", "kind", "hours", "skills", "description"):
        old, new = getattr(before, name), getattr(after, name)
        if name == "skills":
            old, new = [skill_key(s) for s in old], [skill_key(s) for s in new]
        if old != new:
            shown = (
                "changed"
                if name == "description"
                else f"{_show(getattr(before, name))} -> {_show(getattr(after, name))}"
            )
            changes.append(f"{name} {shown}")
    return ", ".join(changes)


def _show(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, float):
        return _hours(value)
    return str(value)


# --------------------------------------------------------------------------------------------
# Classroom hours from the LMS (xAPI)

#: An ISO 8601 duration in weeks, days, hours, minutes and seconds (xAPI 1.0.3 4.6). Years and
#: months are refused: their length depends on the calendar, and no class lasts that long.
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_HOURS_PER = {"w": 168.0, "d": 24.0, "h": 1.0, "m": 1 / 60, "s": 1 / 3600}


def duration_hours(text: str) -> float:
    """Hours in an ISO 8601 duration such as ``PT3H30M`` (3.5), rounded to the hundredth.

    Raises:
        ValueError: Not a duration of weeks, days, hours, minutes and seconds.
    """
    match = _DURATION.match(text.strip())
    if match is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(
            f"result.duration {text!r} is not an ISO 8601 duration such as PT3H30M"
            " (weeks, days, hours, minutes, seconds)"
        )
    parts = match.groupdict()
    return round(sum(float(v) * _HOURS_PER[k] for k, v in parts.items() if v is not None), 2)


def lms_classroom_entry(
    program: Program,
    *,
    activity_id: str,
    entry_id: str,
    day: date,
    duration: str | None,
) -> HoursEntry | None:
    """The classroom hours entry an xAPI statement makes, or None (not one of the courses).

    A course with ``hours`` credits them (the course's accredited hours, not the time spent);
    one without credits the statement's ``result.duration``. The entry is pending; the
    program's ``classroom_from_lms.approval`` says whether it is approved at once (see
    :func:`lms_auto_approved`).

    Raises:
        ValueError: The course counts by duration and the statement has none, or a bad one.
    """
    course = program.lms_course(activity_id)
    if course is None:
        return None
    if course.hours is not None:
        hours = course.hours
    elif duration is None:
        raise ValueError(
            f"{course.name or activity_id} counts the time attended, and the statement has no"
            " result.duration (ISO 8601, such as PT3H30M)"
        )
    else:
        hours = duration_hours(duration)
    return HoursEntry(
        id=entry_id,
        day=day,
        kind=HoursKind.CLASSROOM,
        hours=hours,
        description=f"LMS: {course.name or activity_id}"[:2000],
    )


def lms_auto_approved(program: Program) -> bool:
    """Whether the program approves LMS classroom hours as they arrive."""
    return program.classroom_from_lms.approval is LmsApproval.AUTO


# --------------------------------------------------------------------------------------------
# Facts for the status rules


def program_facts(program: Program, done: Progress) -> dict[str, int | bool | str]:
    """The facts an apprenticeship itself gives the status rules (no person attributes).

    What the workflow sends the ``decide_apprenticeship`` activity, which adds the person's
    directory attributes as they are now (see :func:`apprenticeship_facts`).
    """
    logged = math.floor(done.hours_logged)
    expected = math.floor(done.hours_expected)
    return {
        "kind": "apprenticeship",
        "requirement": program.id,
        "program": program.id,
        "apprenticeship_status": done.status.value,
        "completed": done.status is EnrollmentStatus.COMPLETED,
        "days_until_due": (done.expected_completion - done.today).days,
        "period": done.period,
        "hours_logged": logged,
        "hours_expected": expected,
        "hours_behind": max(0, expected - logged),
        "days_since_approved_hours": done.days_since_approved_hours,
        "evaluation_overdue": done.evaluation_overdue,
        "last_evaluation_score": done.last_evaluation.score if done.last_evaluation else 0,
        "below_minimum_score": done.below_minimum,
        "advancement_due": done.advancement_due,
        "graduation_ready": done.graduation_ready,
    }


def apprenticeship_facts(
    program: Program,
    done: Progress,
    person: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The facts a pack's status rules decide an apprenticeship on (see :data:`rules.facts.FACTS`).

    Whole hours are rounded down (a rule compares whole numbers), so ``hours_behind`` is
    ``hours_expected - hours_logged`` of those whole numbers, never negative.

    Args:
        program: The program.
        done: Its progress today (see :func:`progress`).
        person: The person's directory attributes (``roles``, ``department``...), such as
            ``rules.obligation_facts.PersonAttributes.model_dump()``.

    Returns:
        The complete facts, defaults filled in.
    """
    return complete_facts({**(person or {}), **program_facts(program, done)})


# --------------------------------------------------------------------------------------------
# Compliance status

#: Hours behind linear pacing that still count as on track: a week of full-time work, or
#: a tenth of what is expected by today, whichever is more (a holiday is not "behind").
BEHIND_TOLERANCE_HOURS = 40.0
BEHIND_TOLERANCE_SHARE = 0.1


def compliance_status(done: Progress) -> tuple[str, str]:
    """``on_track``, ``behind``, ``stalled`` (or ``inactive``) and the rule that decided it.

    The built-in answer, for a pinned pack with no status rule for programs (one that reads
    no program fact) and for runs recorded before the pack's rules decided. A pack's rules
    (``decide_apprenticeship``, durable_rules) take over where they exist; rule names here are
    ``apprenticeship:*``.
    """
    if done.status is not EnrollmentStatus.ACTIVE:
        return "inactive", f"apprenticeship:{done.status.value}"
    if done.stalled:
        return "stalled", "apprenticeship:no_approved_hours"
    tolerance = max(BEHIND_TOLERANCE_HOURS, BEHIND_TOLERANCE_SHARE * done.hours_expected)
    if done.hours_behind > tolerance:
        return "behind", "apprenticeship:hours_behind"
    if done.evaluation_overdue:
        return "behind", "apprenticeship:evaluation_overdue"
    if done.below_minimum:
        return "behind", "apprenticeship:below_minimum_score"
    return "on_track", "apprenticeship:on_track"
