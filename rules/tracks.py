"""Track progress and go-live readiness: pure maths over plain data.

Nothing here reads the store or the clock: the caller passes what is recorded about a person's
courses (:class:`CourseRecord`), the enrolment date and the instant to judge at (``as_of``). The
same call answers "as of" a past instant: starts, completions and failures recorded after it are
ignored.

Per course the status is ``completed`` (completion recorded), ``failed`` (attempts exhausted),
``in_progress`` (started, or at least one attempt) or ``not_started``. A milestone is due
``days_to_complete`` days after enrolment and a required course not completed by then is
overdue from the day after. Optional courses are shown but never overdue and never block.

Per track the percentage is the share of required courses completed, rounded down (so 100 % means
done); the track is ``completed`` when every required course is, ``failed`` when one of them
failed, ``in_progress`` once any course has started, else ``not_started``.

Go-live readiness (:func:`readiness`) looks at the team's tracks that are ``required_for_go_live``
and says ready or not, the percentage ready and, in plain language, who and what blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from rules.assessment import Gate
from rules.tracks_model import Track, TrackCourse, TracksSection

__all__ = [
    "CourseProgress",
    "CourseRecord",
    "CourseStatus",
    "PersonGap",
    "Readiness",
    "TeamMember",
    "TrackProgress",
    "TrackReadiness",
    "TrackStatus",
    "auto_enrolments",
    "course_gate",
    "readiness",
    "track_progress",
]


class CourseStatus(StrEnum):
    """Where a person is with one course of a track."""

    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


#: A track's status uses the same words.
TrackStatus = CourseStatus


@dataclass(frozen=True)
class CourseRecord:
    """What is recorded about one person's course (one requirement).

    Attributes:
        requirement_id: The requirement the course completes.
        started_at: When they started (first launch, first attempt); None: not yet.
        completed_at: When it was completed; None: not yet.
        failed_at: When its attempts were exhausted; None: not failed (or HR granted more).
        score: The exam score, in percent, of the last counted attempt.
        attempts: Counted exam attempts so far.
    """

    requirement_id: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    score: float | None = None
    attempts: int = 0


@dataclass(frozen=True)
class CourseProgress:
    """One course of a person's track, as of an instant.

    Attributes:
        requirement_id: The course's requirement.
        order: Its place in the track.
        required: Whether it counts towards completion.
        exam: Whether it has an exam.
        passing_score: The course's own pass mark (None: the requirement's, or no exam).
        status: Not started, in progress, completed or failed.
        score: The last counted exam score, in percent.
        attempts: Counted exam attempts.
        started_at: When it started (None: not yet, as of the instant).
        completed_at: When it was completed (None: not yet, as of the instant).
        due_on: The milestone (enrolment + ``days_to_complete``); None without one.
        overdue: A required course not completed by ``due_on``.
        days_overdue: Days past ``due_on`` (0 when not overdue).
        completed_late: Completed after ``due_on``.
    """

    requirement_id: str
    order: int
    required: bool
    exam: bool
    passing_score: float | None
    status: CourseStatus
    score: float | None
    attempts: int
    started_at: datetime | None
    completed_at: datetime | None
    due_on: date | None
    overdue: bool
    days_overdue: int
    completed_late: bool

    @property
    def done(self) -> bool:
        """Whether the course is completed."""
        return self.status is CourseStatus.COMPLETED


@dataclass(frozen=True)
class TrackProgress:
    """A person's progress through one track, as of an instant.

    Attributes:
        track_id: The track.
        name: The track's name.
        enrolled_on: The enrolment date milestones count from.
        status: Not started, in progress, completed or failed.
        percent: Required courses completed, in percent, rounded down.
        required_done: Required courses completed.
        required_total: Required courses.
        optional_done: Optional courses completed.
        courses: Every course, in order.
        due_on: The track's window end (None without a window).
        overdue: Not completed by ``due_on``, or a required course is overdue.
        completed_at: When the last required course was completed (None: not completed).
        next_course: The first required course in order not yet completed.
    """

    track_id: str
    name: str
    enrolled_on: date
    status: TrackStatus
    percent: int
    required_done: int
    required_total: int
    optional_done: int
    courses: tuple[CourseProgress, ...]
    due_on: date | None
    overdue: bool
    completed_at: datetime | None
    next_course: str | None

    @property
    def missing(self) -> tuple[CourseProgress, ...]:
        """The required courses not completed, in order."""
        return tuple(c for c in self.courses if c.required and not c.done)


def _seen(moment: datetime | None, as_of: datetime) -> datetime | None:
    """The instant if it had happened by ``as_of``."""
    return moment if moment is not None and moment <= as_of else None


def _course(
    course: TrackCourse, record: CourseRecord | None, enrolled_on: date, as_of: datetime
) -> CourseProgress:
    started = completed = failed = None
    if record is not None:
        started = _seen(record.started_at, as_of)
        completed = _seen(record.completed_at, as_of)
        failed = _seen(record.failed_at, as_of)
    if completed is not None:
        status = CourseStatus.COMPLETED
        started = started or completed
    elif failed is not None:
        status = CourseStatus.FAILED
    elif started is not None or (record is not None and record.attempts and not record.started_at):
        # Attempts without a recorded start (an LMS that reports results only) mean started.
        status = CourseStatus.IN_PROGRESS
    else:
        status = CourseStatus.NOT_STARTED
    due_on = None
    if course.days_to_complete is not None:
        due_on = enrolled_on + timedelta(days=course.days_to_complete)
    late_by = (as_of.date() - due_on).days if due_on is not None else 0
    overdue = course.required and completed is None and late_by > 0
    return CourseProgress(
        requirement_id=course.requirement,
        order=course.order,
        required=course.required,
        exam=course.exam,
        passing_score=course.passing_score,
        status=status,
        score=record.score
        if record is not None and status is not CourseStatus.NOT_STARTED
        else None,
        attempts=record.attempts if record is not None else 0,
        started_at=started,
        completed_at=completed,
        due_on=due_on,
        overdue=overdue,
        days_overdue=late_by if overdue else 0,
        completed_late=completed is not None and due_on is not None and completed.date() > due_on,
    )


def track_progress(
    track: Track,
    *,
    enrolled_on: date,
    records: Mapping[str, CourseRecord] | Iterable[CourseRecord],
    as_of: datetime,
) -> TrackProgress:
    """A person's progress through ``track`` as of an instant.

    Args:
        track: The track (from the pack).
        enrolled_on: The enrolment date (in the person's time zone); milestones count from it.
        records: What is recorded about their courses: by requirement id, or a list. Records of
            requirements that are not courses of the track are ignored.
        as_of: The instant to judge at; anything recorded after it is ignored, and its date is
            compared with the milestones (pass it in the person's time zone).

    Returns:
        The progress.
    """
    by_id = (
        dict(records)
        if isinstance(records, Mapping)
        else {record.requirement_id: record for record in records}
    )
    courses = tuple(
        _course(course, by_id.get(course.requirement), enrolled_on, as_of)
        for course in track.ordered_courses
    )
    required = [c for c in courses if c.required]
    done = [c for c in required if c.done]
    if len(done) == len(required):
        status = TrackStatus.COMPLETED
    elif any(c.status is CourseStatus.FAILED for c in required):
        status = TrackStatus.FAILED
    elif any(c.status is not CourseStatus.NOT_STARTED for c in courses):
        status = TrackStatus.IN_PROGRESS
    else:
        status = TrackStatus.NOT_STARTED
    completed_at = None
    if status is TrackStatus.COMPLETED:
        completed_at = max(c.completed_at for c in done if c.completed_at is not None)
    due_on = None
    if track.days_to_complete is not None:
        due_on = enrolled_on + timedelta(days=track.days_to_complete)
    window_passed = due_on is not None and as_of.date() > due_on
    overdue = status is not TrackStatus.COMPLETED and (
        window_passed or any(c.overdue for c in courses)
    )
    return TrackProgress(
        track_id=track.id,
        name=track.name,
        enrolled_on=enrolled_on,
        status=status,
        percent=len(done) * 100 // len(required),
        required_done=len(done),
        required_total=len(required),
        optional_done=sum(1 for c in courses if not c.required and c.done),
        courses=courses,
        due_on=due_on,
        overdue=overdue,
        completed_at=completed_at,
        next_course=next((c.requirement_id for c in required if not c.done), None),
    )


def course_gate(
    course: TrackCourse,
    *,
    passing_score: float | None,
    max_attempts: int | None,
    retake_after_days: int | None,
) -> Gate:
    """The assessment gate of a track course: its requirement's, with the course's pass mark.

    Args:
        course: The course.
        passing_score: The requirement's ``passing_score``.
        max_attempts: The requirement's ``max_attempts``.
        retake_after_days: The requirement's ``retake_after_days``.

    Returns:
        The gate (attempt limit and cool-down always the requirement's).
    """
    own = course.passing_score if course.exam and course.passing_score is not None else None
    return Gate(
        passing_score=own if own is not None else passing_score,
        max_attempts=max_attempts,
        retake_after_days=retake_after_days or 0,
    )


def auto_enrolments(
    section: TracksSection, *, roles: list[str], department: str, location: str, employer: str
) -> list[Track]:
    """The learning paths a person is enrolled in automatically.

    Inactive tracks enrol nobody new; people already enrolled keep their progress (the caller
    keeps their enrolment).

    Args:
        section: The pack's ``tracks`` section.
        roles: The person's roles.
        department: Their department ("" when unknown).
        location: Their location ("" when unknown).
        employer: Their employer ("" when unknown).

    Returns:
        The active learning paths that select them, in pack order.
    """
    return [
        track
        for track in section.tracks
        if track.active
        and track.auto_enrol is not None
        and track.auto_enrol.selects(roles, department, location, employer)
    ]


# --------------------------------------------------------------------------------------------
# Go-live readiness


@dataclass(frozen=True)
class TeamMember:
    """A person on a project team and the tracks the project needs from them.

    Attributes:
        person_id: Their person id.
        name: How they are named in the explanation.
        tracks: The track ids the project needs them to complete.
        progress: Their progress per track id (see :func:`track_progress`); a track missing
            here is one they are not enrolled in.
    """

    person_id: str
    name: str
    tracks: Sequence[str]
    progress: Mapping[str, TrackProgress]


@dataclass(frozen=True)
class PersonGap:
    """One person who has not completed a track the go-live needs.

    Attributes:
        person_id: Their person id.
        name: Their name.
        track_id: The track.
        status: Their track status (``not_enrolled`` when they are not enrolled).
        missing: The required courses they have not completed, in order.
        explanation: One plain-language line.
    """

    person_id: str
    name: str
    track_id: str
    status: str
    missing: tuple[str, ...]
    explanation: str


@dataclass(frozen=True)
class TrackReadiness:
    """One go-live track across the team.

    Attributes:
        track_id: The track.
        name: Its name.
        required: How many people must complete it.
        completed: How many have.
        in_progress: How many are in progress.
        failed: How many failed it (a required course's attempts exhausted).
        not_started: How many have not started it or are not enrolled.
        ready: ``completed >= required``.
        waiting_for: Everyone on the team who needs it and has not completed it.
    """

    track_id: str
    name: str
    required: int
    completed: int
    in_progress: int
    failed: int
    not_started: int
    ready: bool
    waiting_for: tuple[PersonGap, ...]

    @property
    def explanation(self) -> str:
        """The track's line in plain language."""
        state = "ready" if self.ready else "blocking"
        line = f"{self.name}: {self.completed} of {self.required} needed completed ({state})"
        if not self.ready and self.waiting_for:
            names = ", ".join(gap.name for gap in self.waiting_for)
            line += f"; waiting for {names}"
        return line


@dataclass(frozen=True)
class Readiness:
    """Whether a project can go live.

    Attributes:
        ready: Every go-live track has enough people who completed it.
        percent: Required courses completed over those needed, rounded down (100: ready).
        tracks: Every go-live track, in the order the team first needs them.
        blocking: The people and courses that block, track by track.
        ignored: Tracks the team was given that are not ``required_for_go_live`` or unknown,
            each with why.
        summary: One plain-language sentence.
    """

    ready: bool
    percent: int
    tracks: tuple[TrackReadiness, ...]
    blocking: tuple[PersonGap, ...]
    ignored: tuple[str, ...]
    summary: str


def _title(requirement_id: str, titles: Mapping[str, str]) -> str:
    return titles.get(requirement_id, requirement_id)


def _gap(member: TeamMember, track: Track, titles: Mapping[str, str]) -> PersonGap | None:
    progress = member.progress.get(track.id)
    if progress is None:
        courses = tuple(c.requirement for c in track.required_courses)
        return PersonGap(
            member.person_id,
            member.name,
            track.id,
            "not_enrolled",
            courses,
            f"{member.name} is not enrolled in {track.name} ({len(courses)} required"
            " course(s) to do)",
        )
    if progress.status is TrackStatus.COMPLETED:
        return None
    parts = []
    for course in progress.missing:
        words = course.status.value.replace("_", " ")
        if course.status is CourseStatus.FAILED:
            words = "failed, no attempt left"
        elif course.exam and course.attempts:
            words += f", {course.attempts} attempt(s)"
        if course.overdue and course.due_on is not None:
            words += f", {course.days_overdue} day(s) overdue since {course.due_on.isoformat()}"
        elif course.due_on is not None:
            words += f", due {course.due_on.isoformat()}"
        parts.append(f"{_title(course.requirement_id, titles)} ({words})")
    done = f"{progress.required_done} of {progress.required_total}"
    return PersonGap(
        member.person_id,
        member.name,
        track.id,
        progress.status.value,
        tuple(c.requirement_id for c in progress.missing),
        f"{member.name}, {track.name}: {done} required courses done; left: {'; '.join(parts)}",
    )


def readiness(
    team: Sequence[TeamMember],
    tracks: Iterable[Track],
    *,
    as_of: datetime,
    needed: Mapping[str, int] | None = None,
    titles: Mapping[str, str] | None = None,
) -> Readiness:
    """Whether a project's team has completed what its go-live needs.

    Args:
        team: The team, with the tracks the project needs from each and their progress
            (computed with :func:`track_progress` at ``as_of``).
        tracks: The pack's tracks (any superset of those the team needs).
        as_of: The instant the progress was computed at (named in the summary).
        needed: How many people must complete each track (by id); by default everyone on the
            team who needs it. More than the team holds can never be ready.
        titles: Requirement id → title, for the explanations (ids by default).

    Returns:
        The readiness, with what blocks in plain language.
    """
    catalogue = {track.id: track for track in tracks}
    names = titles or {}
    order: list[str] = []
    ignored: list[str] = []
    for member in team:
        for track_id in member.tracks:
            if track_id in order or any(i.startswith(f"{track_id}:") for i in ignored):
                continue
            track = catalogue.get(track_id)
            if track is None:
                ignored.append(f"{track_id}: not a track of the pack")
            elif not track.required_for_go_live:
                ignored.append(f"{track_id}: not required for go-live")
            else:
                order.append(track_id)
    summaries: list[TrackReadiness] = []
    blocking: list[PersonGap] = []
    done_courses = total_courses = 0
    for track_id in order:
        track = catalogue[track_id]
        members = [m for m in team if track_id in m.tracks]
        required = needed.get(track_id, len(members)) if needed else len(members)
        counts = dict.fromkeys(TrackStatus, 0)
        gaps: list[PersonGap] = []
        done_counts: list[int] = []
        for member in members:
            progress = member.progress.get(track_id)
            status = progress.status if progress is not None else TrackStatus.NOT_STARTED
            counts[status] += 1
            done = progress.required_done if progress is not None else 0
            # Progress computed against another version of the track counts at most its courses.
            done_counts.append(min(done, len(track.required_courses)))
            gap = _gap(member, track, names)
            if gap is not None:
                gaps.append(gap)
        completed = counts[TrackStatus.COMPLETED]
        ready = completed >= required
        summaries.append(
            TrackReadiness(
                track_id=track_id,
                name=track.name,
                required=required,
                completed=completed,
                in_progress=counts[TrackStatus.IN_PROGRESS],
                failed=counts[TrackStatus.FAILED],
                not_started=counts[TrackStatus.NOT_STARTED],
                ready=ready,
                waiting_for=tuple(gaps),
            )
        )
        if not ready:
            blocking += gaps
        # The best `required` people's courses count: a track needing 2 of 5 people is as far
        # along as its two most advanced people (missing people count as none done).
        best = sorted(done_counts, reverse=True)[:required]
        per_person = len(track.required_courses)
        done_courses += sum(best)
        total_courses += required * per_person
    is_ready = all(summary.ready for summary in summaries)
    # Ready tracks have their `required` best people at 100 %, so only ready is 100 %.
    percent = 100 if total_courses == 0 else done_courses * 100 // total_courses
    when = as_of.date().isoformat()
    if is_ready:
        summary = (
            f"ready as of {when}: every go-live track is complete"
            if summaries
            else f"ready as of {when}: no go-live track is needed"
        )
    else:
        blockers = [s for s in summaries if not s.ready]
        summary = (
            f"not ready as of {when} ({percent} %): {len(blockers)} track(s) block go-live: "
            + "; ".join(s.explanation for s in blockers)
        )
    return Readiness(
        ready=is_ready,
        percent=percent,
        tracks=tuple(summaries),
        blocking=tuple(blocking),
        ignored=tuple(ignored),
        summary=summary,
    )
