"""Mentorship: the profiles matching reads and the ``mentorship:`` section of a rules pack.

Pure pydantic models, importing nothing of Duly's but the domain: the matching
(:mod:`rules.matching`) and the pack model (:mod:`rules.model`) build on them.

The pack section (every key optional; these are the defaults)::

    mentorship:
      weights:                    # points per factor; must add up to 100
        specialization: 30
        geographic: 20
        experience_gap: 15
        availability: 15
        communication: 10
        past_success: 10
      ideal_experience_gap: {min_years: 2, max_years: 10}
      request_expiry_days: 7      # a request nobody answers expires after this many days
      session_cadence_days: 14    # a session is expected at least this often
      nudges:                     # days after a missed session, in order
        - {after_days: 0, notify: mentee, channels: [email, in_app]}
        - {after_days: 3, notify: mentor, channels: [email, in_app]}
        - {after_days: 7, notify: coordinator, channels: [email]}
      feedback: {midpoint: true, end: true, due_within_days: 7}
"""

from __future__ import annotations

import itertools
import re
from enum import StrEnum
from typing import Annotated, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.contracts.mentorship import MentorshipType

__all__ = [
    "Availability",
    "CommunicationStyle",
    "ExperienceGap",
    "FeedbackPolicy",
    "MatchingWeights",
    "MenteeLevel",
    "MenteeProfile",
    "MentorProfile",
    "MentorshipCondition",
    "MentorshipPolicy",
    "NudgeChannel",
    "NudgeRecipient",
    "NudgeStep",
    "PreferredTime",
    "TrackRecord",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --------------------------------------------------------------------------------------------
# Vocabularies


class CommunicationStyle(StrEnum):
    """How a mentor or mentee prefers to meet."""

    IN_PERSON = "in_person"
    VIDEO = "video"
    PHONE = "phone"
    TEXT = "text"


class MenteeLevel(StrEnum):
    """Where a mentee is in their career."""

    STUDENT = "student"
    APPRENTICE = "apprentice"
    JUNIOR = "junior"
    TRANSITIONING = "transitioning"


class PreferredTime(StrEnum):
    """When someone can usually meet."""

    WEEKDAY_MORNINGS = "weekday_mornings"
    WEEKDAY_AFTERNOONS = "weekday_afternoons"
    WEEKDAY_EVENINGS = "weekday_evenings"
    WEEKENDS = "weekends"


_SPACES = re.compile(r"\s+")
_T = TypeVar("_T")


def _topics(values: list[str]) -> list[str]:
    """Topics compared case-insensitively: lower case, single spaces, no duplicates, in order."""
    out: list[str] = []
    for value in values:
        topic = _SPACES.sub(" ", value).strip().lower()
        if not topic:
            raise ValueError("an entry is empty; remove it or write the topic")
        if topic not in out:
            out.append(topic)
    return out


def _place(value: str | None) -> str | None:
    """A city or region with single spaces; empty means unknown."""
    if value is None:
        return None
    return _SPACES.sub(" ", value).strip() or None


def _distinct(values: list[_T]) -> list[_T]:
    return list(dict.fromkeys(values))


#: Topics (specializations, interests, skills, certifications, equipment): compared
#: case-insensitively, so they are stored in lower case.
Topics = Annotated[
    list[Annotated[str, Field(max_length=80)]],
    Field(max_length=50),
    AfterValidator(_topics),
]
Place = Annotated[str | None, Field(max_length=100), AfterValidator(_place)]
Styles = Annotated[
    list[CommunicationStyle], Field(min_length=1, max_length=4), AfterValidator(_distinct)
]
PersonId = Annotated[str, Field(min_length=1, max_length=80)]


# --------------------------------------------------------------------------------------------
# Profiles


class Availability(_Strict):
    """How much time someone offers (mentor) or wants (mentee), and when.

    Attributes:
        hours_per_month: Hours a month for mentoring.
        preferred_times: When they can meet; empty means any time.
    """

    hours_per_month: int = Field(ge=1, le=200)
    preferred_times: Annotated[
        list[PreferredTime], Field(default_factory=list, max_length=4), AfterValidator(_distinct)
    ]


class TrackRecord(_Strict):
    """A mentor's past relationships, computed from them (see :func:`rules.matching.track_record`).

    Attributes:
        mentees: Relationships that ended (completed or cancelled); an active one is not yet a
            record.
        completions: How many of those were completed.
        average_rating: The mentees' average rating (1–5) of the relationship, None without any.
    """

    mentees: int = Field(default=0, ge=0, le=100_000)
    completions: int = Field(default=0, ge=0, le=100_000)
    average_rating: float | None = Field(default=None, ge=1, le=5)

    @model_validator(mode="after")
    def _completions_within(self) -> Self:
        if self.completions > self.mentees:
            raise ValueError(
                f"completions ({self.completions}) cannot exceed mentees ({self.mentees})"
            )
        return self


class MentorProfile(_Strict):
    """What a mentor offers.

    Attributes:
        person_id: The mentor's person id in the directory.
        years_experience: Years in the trade.
        specializations: What they can teach, such as ``hydraulic elevators``.
        certifications: Held certifications, filled from Duly's certification records (never
            typed in by the mentor).
        equipment_expertise: Equipment they know, such as ``otis gen2``.
        accepting_mentees: Whether they take new mentees now.
        max_mentees: How many active mentees they can have at once.
        active_mentees: How many they have now (counted from active relationships).
        communication_preferences: How they like to meet.
        availability: Hours a month and preferred times.
        city: Where they work; None when unknown.
        region: The region (state, province) of ``city``; None when unknown.
        willing_remote: Whether they mentor someone they cannot meet in person.
        track_record: Their past relationships.
    """

    person_id: PersonId
    years_experience: int = Field(ge=0, le=70)
    specializations: Topics = Field(default_factory=list)
    certifications: Topics = Field(default_factory=list)
    equipment_expertise: Topics = Field(default_factory=list)
    accepting_mentees: bool = True
    max_mentees: int = Field(default=2, ge=1, le=50)
    active_mentees: int = Field(default=0, ge=0, le=1000)
    communication_preferences: Styles
    availability: Availability
    city: Place = None
    region: Place = None
    willing_remote: bool = False
    track_record: TrackRecord = Field(default_factory=TrackRecord)

    @property
    def has_capacity(self) -> bool:
        """Whether they accept mentees and have a free slot."""
        return self.accepting_mentees and self.active_mentees < self.max_mentees


class MenteeProfile(_Strict):
    """What a mentee is looking for.

    Attributes:
        person_id: The mentee's person id in the directory.
        level: Student, apprentice, junior or transitioning.
        years_experience: Years in the trade.
        certifications: Held certifications (from Duly's records).
        career_goal: In their own words.
        specialization_interests: What they want to learn, such as ``hydraulic elevators``.
        skills_to_develop: Skills they want to practise.
        timeline_months: How long they want the mentorship to last.
        communication_preferences: How they like to meet.
        availability: Hours a month and preferred times.
        city: Where they work; None when unknown.
        region: The region of ``city``; None when unknown.
        open_to_remote: Whether a mentor they cannot meet in person is acceptable.
    """

    person_id: PersonId
    level: MenteeLevel
    years_experience: int = Field(default=0, ge=0, le=70)
    certifications: Topics = Field(default_factory=list)
    career_goal: str | None = Field(default=None, max_length=500)
    specialization_interests: Topics = Field(default_factory=list)
    skills_to_develop: Topics = Field(default_factory=list)
    timeline_months: int = Field(default=6, ge=1, le=60)
    communication_preferences: Styles
    availability: Availability
    city: Place = None
    region: Place = None
    open_to_remote: bool = False


# --------------------------------------------------------------------------------------------
# The pack section


Weight = Annotated[int, Field(ge=0, le=100)]


class MatchingWeights(_Strict):
    """Points each matching factor can give; they must add up to 100."""

    specialization: Weight = 30
    geographic: Weight = 20
    experience_gap: Weight = 15
    availability: Weight = 15
    communication: Weight = 10
    past_success: Weight = 10

    @model_validator(mode="after")
    def _hundred(self) -> Self:
        values = self.model_dump()
        total = sum(values.values())
        if total != 100:
            parts = " + ".join(f"{name} {points}" for name, points in values.items())
            raise ValueError(
                f"the weights add up to {total} ({parts}); they must add up to 100,"
                f" so {'remove' if total > 100 else 'add'} {abs(total - 100)} point(s)"
            )
        return self


class ExperienceGap(_Strict):
    """The ideal difference, in years, between a mentor's and a mentee's experience."""

    min_years: int = Field(default=2, ge=1, le=40)
    max_years: int = Field(default=10, ge=1, le=40)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_years > self.max_years:
            raise ValueError(
                f"min_years ({self.min_years}) is more than max_years ({self.max_years}); swap them"
            )
        return self


class NudgeRecipient(StrEnum):
    """Who a missed-session nudge goes to (the coordinator is the pack's HR mailbox)."""

    MENTEE = "mentee"
    MENTOR = "mentor"
    COORDINATOR = "coordinator"


class NudgeChannel(StrEnum):
    """How a nudge is sent: the same values as :class:`rules.model.Channel`.

    Repeated here so this module imports nothing of ours; a test keeps the two in step.
    """

    EMAIL = "email"
    SMS = "sms"
    SLACK = "slack"
    IN_APP = "in_app"


class NudgeStep(_Strict):
    """One rung of the missed-session ladder."""

    after_days: int = Field(ge=0, le=365)
    notify: NudgeRecipient
    channels: Annotated[
        list[NudgeChannel],
        Field(default_factory=lambda: [NudgeChannel.EMAIL], min_length=1, max_length=4),
        AfterValidator(_distinct),
    ]


def _default_nudges() -> list[NudgeStep]:
    email, in_app = NudgeChannel.EMAIL, NudgeChannel.IN_APP
    return [
        NudgeStep(after_days=0, notify=NudgeRecipient.MENTEE, channels=[email, in_app]),
        NudgeStep(after_days=3, notify=NudgeRecipient.MENTOR, channels=[email, in_app]),
        NudgeStep(after_days=7, notify=NudgeRecipient.COORDINATOR, channels=[email]),
    ]


class FeedbackPolicy(_Strict):
    """When both sides are asked for feedback."""

    midpoint: bool = True
    end: bool = True
    due_within_days: int = Field(default=7, ge=1, le=90)


class MentorshipPolicy(_Strict):
    """The ``mentorship:`` section of a rules pack (every key optional)."""

    weights: MatchingWeights = Field(default_factory=MatchingWeights)
    ideal_experience_gap: ExperienceGap = Field(default_factory=ExperienceGap)
    request_expiry_days: int = Field(default=7, ge=1, le=90)
    session_cadence_days: int = Field(default=14, ge=1, le=180)
    nudges: list[NudgeStep] = Field(default_factory=_default_nudges, min_length=1, max_length=10)
    feedback: FeedbackPolicy = Field(default_factory=FeedbackPolicy)

    @field_validator("nudges")
    @classmethod
    def _ladder_in_order(cls, nudges: list[NudgeStep]) -> list[NudgeStep]:
        days = [step.after_days for step in nudges]
        for before, after in itertools.pairwise(days):
            if after <= before:
                raise ValueError(
                    "list the nudges in order of after_days, each later than the one before;"
                    f" found {after} after {before}"
                )
        return nudges


class MentorshipCondition(_Strict):
    """When a mentorship satisfies a ``kind: mentorship`` requirement (its ``mentorship:`` key).

    Every key is optional; an empty condition (or none) admits any active mentorship::

        requirements:
          - id: cert-prep-mentor
            kind: mentorship
            due_in_days: 30
            mentorship:
              types: [certification_prep]          # the relationship's type is one of these
              mentor_certifications: [EPA 608]     # the mentor holds every one of these

    A certification is named by its title or by the id of the pack's certification requirement
    (compared case-insensitively with the mentor's certifications, which come from Duly's
    certificate records: revoked, suspended, superseded or expired ones do not count).
    """

    types: list[MentorshipType] | None = Field(default=None, min_length=1, max_length=4)
    mentor_certifications: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=20
    )

    def refusal(
        self,
        *,
        type: str,
        mentor_certifications: list[str],
        titles: dict[str, str] | None = None,
    ) -> str | None:
        """Why a mentorship does not satisfy the requirement (None: it does).

        Args:
            type: The relationship's type (``general``, ``certification_prep``...).
            mentor_certifications: The mentor's held certifications (titles).
            titles: Certification requirement id → title, to read names given as ids.
        """
        if self.types is not None and type not in {t.value for t in self.types}:
            wanted = " or ".join(t.value for t in self.types)
            return f"its type is {type}, and the requirement needs {wanted}"
        held = {c.strip().lower() for c in mentor_certifications}
        lookup = {k.lower(): v.lower() for k, v in (titles or {}).items()}
        missing = [
            name
            for name in self.mentor_certifications
            if name.lower() not in held and lookup.get(name.lower()) not in held
        ]
        if missing:
            return f"the mentor does not hold {', '.join(missing)}"
        return None
