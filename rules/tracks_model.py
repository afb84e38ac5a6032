"""Tracks and learning paths: the ``tracks:`` section of a rules pack.

Pure pydantic models, importing nothing of Duly's but :mod:`rules.audience` (the one
``applies_to`` model, which ``auto_enrol`` reuses): the pack model (:mod:`rules.model`), the
progress maths (:mod:`rules.tracks`) and, later, the track workflow's contracts can all build on
them.

A **track** is an ordered list of courses (each a requirement of the pack), some required, some
optional, some with an exam and its passing score; a project's go-live can depend on it. A
**learning path** is a track people are enrolled in automatically by role (and department,
location or employer, like a requirement's ``applies_to``), with milestones: each course due
``days_to_complete`` days after enrolment.

The section (``types`` is optional; these are the defaults)::

    tracks:
      types: [internal, client_admin, client_investigator, client_employee]
      tracks:
        - id: site-investigator
          name: Site investigator
          description: What an investigator completes before the site opens.
          type: client_investigator
          active: true                 # false: nobody new is enrolled (soft deactivation)
          required_for_go_live: true
          estimated_hours: 6.5
          days_to_complete: 60         # the whole track, from enrolment (optional)
          courses:
            - {requirement: human-subjects-protection, order: 1, exam: true, passing_score: 80}
            - {requirement: ich-gcp, order: 2, exam: true, days_to_complete: 30}
            - {requirement: osha-bloodborne-pathogens, order: 3, required: false}
          auto_enrol: {roles: [physician]}   # a learning path (optional)

What needs the rest of the pack (unknown requirement ids, an exam without a passing score) is
checked by :meth:`TracksSection.problems`, which the loader calls with the requirements.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.audience import AppliesTo, Audience

__all__ = [
    "DEFAULT_TRACK_TYPES",
    "EnrolAudience",
    "EnrolSelector",
    "Track",
    "TrackCourse",
    "TracksSection",
]

#: Track types every pack may use when its section declares none.
DEFAULT_TRACK_TYPES: tuple[str, ...] = (
    "internal",
    "client_admin",
    "client_investigator",
    "client_employee",
)

_ID = r"^[a-z0-9][a-z0-9_.-]*$"

#: The same identifiers as the rest of the pack (requirement and policy ids).
TrackId = Annotated[str, Field(pattern=_ID, min_length=1, max_length=80)]
Percent = Annotated[float, Field(ge=0, le=100)]
Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class EnrolAudience(Audience):
    """People by role, department, location or employer: every listed dimension must match."""

    # Bounded, unlike a requirement's audience: the same dimensions with capped lengths.
    roles: Names = Field(default_factory=list)
    departments: Names = Field(default_factory=list)
    locations: Names = Field(default_factory=list)
    employers: Names = Field(default_factory=list)


class EnrolSelector(EnrolAudience, AppliesTo):
    """Who a learning path enrols automatically: a requirement's ``applies_to``, bounded."""

    missing_message: ClassVar[str] = (
        "say who is enrolled: 'all: true', or list roles, departments, locations or employers"
    )

    except_: EnrolAudience | None = Field(default=None, alias="except")

    def selects(self, roles: list[str], department: str, location: str, employer: str) -> bool:
        """Whether a person with these attributes is enrolled automatically."""
        return self.applies(roles, department, location, employer)


class TrackCourse(_Strict):
    """One course of a track: a requirement of the pack, in its place.

    Attributes:
        requirement: The requirement id the course completes.
        order: Its place in the track (1 first); unique within the track.
        required: Whether the track (and a go-live) waits for it; optional courses are offered
            and tracked but never block.
        exam: Whether the course ends with an exam whose score decides completion.
        passing_score: The exam's passing score in percent, when it differs from the
            requirement's ``passing_score`` (only with ``exam: true``).
        days_to_complete: A milestone: due this many days after enrolment (None: no milestone).
    """

    requirement: TrackId
    order: int = Field(ge=1, le=1000)
    required: bool = True
    exam: bool = False
    passing_score: Percent | None = None
    days_to_complete: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _score_needs_exam(self) -> Self:
        if self.passing_score is not None and not self.exam:
            raise ValueError(
                f"passing_score {self.passing_score:g} is set but exam is false; add"
                " 'exam: true' or remove passing_score"
            )
        return self


class Track(_Strict):
    """A certification track or, with ``auto_enrol``, a learning path.

    Attributes:
        id: Unique within the pack.
        name: What people see.
        description: What the track is for.
        type: One of the section's ``types``.
        active: False: soft-deactivated; nobody new is enrolled, people mid-track keep their
            progress and can finish.
        required_for_go_live: Whether a client project's go-live waits for it.
        estimated_hours: How long the whole track takes, for planning.
        days_to_complete: The track's window from enrolment (None: no window).
        courses: The courses; listed in any order, taken in ``order``.
        auto_enrol: Who is enrolled automatically (a learning path); None: enrolled by HR or a
            manager.
    """

    id: TrackId
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    type: TrackId
    active: bool = True
    required_for_go_live: bool = False
    estimated_hours: float | None = Field(default=None, gt=0, le=10_000)
    days_to_complete: int | None = Field(default=None, ge=1, le=3650)
    courses: list[TrackCourse] = Field(min_length=1, max_length=200)
    auto_enrol: EnrolSelector | None = None

    @field_validator("courses")
    @classmethod
    def _courses(cls, courses: list[TrackCourse]) -> list[TrackCourse]:
        orders: dict[int, str] = {}
        requirements: dict[str, int] = {}
        for course in courses:
            if course.order in orders:
                raise ValueError(
                    f"courses '{orders[course.order]}' and '{course.requirement}' both have order"
                    f" {course.order}; give each course its own place"
                )
            if course.requirement in requirements:
                raise ValueError(
                    f"requirement '{course.requirement}' is listed twice (orders"
                    f" {requirements[course.requirement]} and {course.order}); keep one"
                )
            orders[course.order] = course.requirement
            requirements[course.requirement] = course.order
        if not any(course.required for course in courses):
            raise ValueError(
                "no course is required, so the track could never complete; mark at least one"
                " course 'required: true'"
            )
        return courses

    @model_validator(mode="after")
    def _milestones_reachable(self) -> Self:
        latest: TrackCourse | None = None
        for course in self.ordered_courses:
            days = course.days_to_complete
            if days is None:
                continue
            if self.days_to_complete is not None and days > self.days_to_complete:
                raise ValueError(
                    f"course '{course.requirement}' is due {days} days after enrolment, after the"
                    f" track's own window of {self.days_to_complete} days; shorten its"
                    " days_to_complete or lengthen the track's"
                )
            if latest is not None and days < (latest.days_to_complete or 0):
                raise ValueError(
                    f"course '{course.requirement}' (order {course.order}) is due {days} days"
                    f" after enrolment, before '{latest.requirement}' (order {latest.order}) that"
                    f" comes first, due at {latest.days_to_complete} days; reorder the courses"
                    " or move the milestones"
                )
            latest = course
        return self

    @property
    def ordered_courses(self) -> list[TrackCourse]:
        """The courses in ``order``."""
        return sorted(self.courses, key=lambda c: c.order)

    @property
    def required_courses(self) -> list[TrackCourse]:
        """The required courses in ``order``."""
        return [c for c in self.ordered_courses if c.required]

    @property
    def is_learning_path(self) -> bool:
        """Whether people are enrolled automatically."""
        return self.auto_enrol is not None


class TracksSection(_Strict):
    """The ``tracks:`` section of a rules pack (empty when the pack has none)."""

    types: list[TrackId] = Field(
        default_factory=lambda: list(DEFAULT_TRACK_TYPES), min_length=1, max_length=50
    )
    tracks: list[Track] = Field(default_factory=list, max_length=500)

    @field_validator("types")
    @classmethod
    def _distinct_types(cls, types: list[str]) -> list[str]:
        for a, b in itertools.combinations(types, 2):
            if a == b:
                raise ValueError(f"type '{a}' is listed twice; keep one")
        return types

    @field_validator("tracks")
    @classmethod
    def _distinct_ids(cls, tracks: list[Track]) -> list[Track]:
        seen: set[str] = set()
        for track in tracks:
            if track.id in seen:
                raise ValueError(f"two tracks have the id '{track.id}'; make each id unique")
            seen.add(track.id)
        return tracks

    def track(self, track_id: str) -> Track | None:
        """The track with this id, if any."""
        return next((t for t in self.tracks if t.id == track_id), None)

    def problems(
        self, requirements: Mapping[str, float | None]
    ) -> list[tuple[tuple[int | str, ...], str]]:
        """What is wrong given the pack's requirements (the loader locates each in the YAML).

        Args:
            requirements: Every requirement id of the pack → its ``passing_score`` (None
                without one).

        Returns:
            ``(location inside the section, message)`` pairs; empty when all is well.
        """
        import difflib  # only when checking a pack

        out: list[tuple[tuple[int | str, ...], str]] = []
        known = list(requirements)
        for t, track in enumerate(self.tracks):
            if track.type not in self.types:
                close = difflib.get_close_matches(track.type, self.types, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                out.append(
                    (
                        ("tracks", t, "type"),
                        f"unknown track type '{track.type}'{hint}; use one of"
                        f" {', '.join(self.types)}, or declare it under tracks: types",
                    )
                )
            for c, course in enumerate(track.courses):
                where: tuple[int | str, ...] = ("tracks", t, "courses", c, "requirement")
                if course.requirement not in requirements:
                    close = difflib.get_close_matches(course.requirement, known, n=1, cutoff=0.6)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    out.append(
                        (
                            where,
                            f"unknown requirement '{course.requirement}'{hint}; a course is a"
                            " requirement of this pack: add it under 'requirements' or fix the id",
                        )
                    )
                elif (
                    course.exam
                    and course.passing_score is None
                    and requirements[course.requirement] is None
                ):
                    out.append(
                        (
                            ("tracks", t, "courses", c, "exam"),
                            f"course '{course.requirement}' has an exam but no passing score;"
                            " give the course a passing_score or the requirement one",
                        )
                    )
        return out
