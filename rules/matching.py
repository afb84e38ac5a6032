"""Mentor matching: a 0–100 score from weighted factors, with a plain-language reason for each.

Pure: profiles and the pack's weights in, a ranked list out; no database, no clock, no Temporal.

Each factor gives ``weight × fraction`` points, the fraction between 0 and 1:

==================  =========================================================================
factor              fraction
==================  =========================================================================
specialization      share of the mentee's interests among the mentor's specializations
                    (no interests given: 0)
geographic          same city (and not different regions): 1; same region: ½; else 0 (remote)
experience_gap      mentor's minus mentee's years: 1 within the ideal gap; below it, gap ÷
                    min_years (0 when the mentor has no more experience); above it, falling
                    linearly to 0 at twice max_years
availability        shared preferred times ÷ the mentee's (either side lists none: any time,
                    1), times min(mentor's, mentee's hours a month) ÷ the mentee's hours
communication       1 when they share a communication style, else 0
past_success        no past mentees: ½ (neutral); else the completion rate, averaged with the
                    rating mapped from 1–5 onto 0–1 when there are ratings
==================  =========================================================================

Only mentors who accept mentees and have a free slot are candidates. A pair that is not in the
same city or region (or whose location is unknown on either side) can only meet remotely: it is
a candidate only when the mentor is ``willing_remote`` and the mentee ``open_to_remote``.

Ranking 10,000 mentors for one mentee is the hot path (``bench/matching.py``): profiles are
reduced once to tuples of bit masks and numbers (:func:`prepare_mentors`, reusable across
requests), one loop computes each total without building any object, :func:`heapq.nsmallest`
keeps the best ``limit``, and only those get their explanations, computed again from the
profiles by separate code, so the two implementations check each other in the tests.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, NamedTuple, TypeVar

from rules.mentorship_model import (
    CommunicationStyle,
    ExperienceGap,
    MatchingWeights,
    MenteeProfile,
    MentorProfile,
    PreferredTime,
    TrackRecord,
)

__all__ = [
    "Factor",
    "FactorScore",
    "Match",
    "PastRelationship",
    "Prepared",
    "exclusion",
    "explain",
    "find_mentees",
    "find_mentors",
    "prepare_mentees",
    "prepare_mentors",
    "track_record",
]

_DEFAULT_WEIGHTS = MatchingWeights()
_DEFAULT_GAP = ExperienceGap()
_TIME_BITS = {time: 1 << i for i, time in enumerate(PreferredTime)}
_STYLE_BITS = {style: 1 << i for i, style in enumerate(CommunicationStyle)}
_WORDS = {style: style.value.replace("_", " ") for style in CommunicationStyle} | {
    time: time.value.replace("_", " ") for time in PreferredTime
}
#: Relationship statuses that make a track record (an active one has no outcome yet).
_ENDED = frozenset({"completed", "cancelled"})


class Factor(StrEnum):
    """A matching factor (the keys of the pack's ``mentorship.weights``)."""

    SPECIALIZATION = "specialization"
    GEOGRAPHIC = "geographic"
    EXPERIENCE_GAP = "experience_gap"
    AVAILABILITY = "availability"
    COMMUNICATION = "communication"
    PAST_SUCCESS = "past_success"


@dataclass(frozen=True, slots=True)
class FactorScore:
    """One factor's contribution to a match.

    Attributes:
        factor: Which factor.
        points: Points given (0 to ``weight``).
        weight: The most it could give (the pack's weight).
        explanation: Why, in plain language, ending with the points: ``same specialization:
            hydraulic elevators (+30)``.
    """

    factor: Factor
    points: float
    weight: int
    explanation: str


@dataclass(frozen=True, slots=True)
class Match:
    """A ranked candidate.

    Attributes:
        person_id: The candidate (a mentor for :func:`find_mentors`, a mentee for
            :func:`find_mentees`).
        score: 0–100, rounded to one decimal (ranking uses the exact sum).
        remote: Whether the pair can only meet remotely.
        factors: Every factor's contribution, in the weights' order.
    """

    person_id: str
    score: float
    remote: bool
    factors: tuple[FactorScore, ...]

    @property
    def explanations(self) -> list[str]:
        """Each factor's explanation, in order."""
        return [factor.explanation for factor in self.factors]


class PastRelationship(NamedTuple):
    """One past mentorship of a mentor, as plain data.

    Attributes:
        status: The relationship's status (``completed``, ``cancelled``, ``active``, …).
        rating: The mentee's rating of it (1–5), None when not given.
    """

    status: str
    rating: float | None = None


def track_record(relationships: Iterable[PastRelationship]) -> TrackRecord:
    """A mentor's track record from their relationships.

    Only relationships that ended (completed or cancelled) count; ratings of those are averaged.

    Args:
        relationships: The mentor's relationships, any status.

    Returns:
        Mentees (ended relationships), completions and the average rating (None without any).
    """
    mentees = completions = 0
    ratings: list[float] = []
    for relationship in relationships:
        if relationship.status not in _ENDED:
            continue
        mentees += 1
        completions += relationship.status == "completed"
        if relationship.rating is not None:
            ratings.append(relationship.rating)
    average = round(sum(ratings) / len(ratings), 2) if ratings else None
    return TrackRecord(mentees=mentees, completions=completions, average_rating=average)


# --------------------------------------------------------------------------------------------
# Fractions, shared by the fast path and the explanations (plain numbers in)


def _gap_fraction(gap: int, gap_min: int, gap_max: int) -> float:
    if gap <= 0:
        return 0.0
    if gap < gap_min:
        return gap / gap_min
    if gap <= gap_max:
        return 1.0
    return max(0.0, 1.0 - (gap - gap_max) / gap_max)


def _success_fraction(mentees: int, completions: int, rating: float | None) -> float:
    if mentees == 0:
        return 0.5
    completion = completions / mentees
    if rating is None:
        return completion
    return 0.5 * completion + 0.5 * (rating - 1) / 4


def _key(value: str | None) -> str:
    return value.casefold() if value else ""


def _proximity(city_a: str, region_a: str, city_b: str, region_b: str) -> float:
    """1 same city, 0.5 same region, 0 otherwise (remote); arguments are casefolded keys."""
    if city_a and city_a == city_b and (not region_a or not region_b or region_a == region_b):
        return 1.0
    if region_a and region_a == region_b:
        return 0.5
    return 0.0


# --------------------------------------------------------------------------------------------
# The fast path


class _Side(NamedTuple):
    """A profile reduced to what scoring reads."""

    topics: int  # bit mask over the collection's vocabulary
    topic_count: int  # distinct topics, including ones the vocabulary lacks
    years: int
    times: int
    hours: int
    styles: int
    city: str
    region: str
    remote_ok: bool
    success: float  # mentors: the past-success fraction
    open: bool  # mentors: accepting and under capacity


P = TypeVar("P", MentorProfile, MenteeProfile)


class Prepared(Generic[P]):
    """Profiles reduced once for fast ranking; reuse it while the profiles do not change.

    Capacity is read here: after a mentor accepts a mentee (or stops accepting), prepare again.

    Attributes:
        profiles: The profiles, in the order given.
    """

    __slots__ = ("_sides", "_vocabulary", "profiles")

    def __init__(self, profiles: Sequence[P]) -> None:
        self.profiles: tuple[P, ...] = tuple(profiles)
        self._vocabulary: dict[str, int] = {}
        # Mentors who cannot take a mentee are never candidates: leave them out of the loop.
        self._sides = [
            (index, self._side(profile))
            for index, profile in enumerate(self.profiles)
            if not isinstance(profile, MentorProfile) or profile.has_capacity
        ]

    def _side(self, profile: MentorProfile | MenteeProfile, *, grow: bool = True) -> _Side:
        # Called once per profile per preparation: locals and positional fields on purpose.
        if isinstance(profile, MentorProfile):
            topics = profile.specializations
            record = profile.track_record
            success = _success_fraction(record.mentees, record.completions, record.average_rating)
            remote_ok, open_ = profile.willing_remote, profile.has_capacity
        else:
            topics = profile.specialization_interests
            success, remote_ok, open_ = 0.0, profile.open_to_remote, True
        vocabulary, mask = self._vocabulary, 0
        for topic in topics:
            bit = vocabulary.get(topic)
            if bit is None:
                if not grow:
                    continue  # nobody in the collection has it: no bit, still in topic_count
                bit = vocabulary[topic] = 1 << len(vocabulary)
            mask |= bit
        times = 0
        for time in profile.availability.preferred_times:
            times |= _TIME_BITS[time]
        styles = 0
        for style in profile.communication_preferences:
            styles |= _STYLE_BITS[style]
        city, region = profile.city, profile.region
        return _Side(
            mask,
            len(topics),
            profile.years_experience,
            times,
            profile.availability.hours_per_month,
            styles,
            city.casefold() if city else "",
            region.casefold() if region else "",
            remote_ok,
            success,
            open_,
        )

    def __len__(self) -> int:
        return len(self.profiles)


def prepare_mentors(mentors: Sequence[MentorProfile]) -> Prepared[MentorProfile]:
    """Reduce mentor profiles once, for :func:`find_mentors` over many mentees."""
    return Prepared(mentors)


def prepare_mentees(mentees: Sequence[MenteeProfile]) -> Prepared[MenteeProfile]:
    """Reduce mentee profiles once, for :func:`find_mentees` over many mentors."""
    return Prepared(mentees)


def _total(
    mentee: _Side, mentor: _Side, w: MatchingWeights, gap_min: int, gap_max: int
) -> float | None:
    """The exact score of a pair, None when the pair is not a candidate."""
    if not mentor.open:
        return None
    place = _proximity(mentee.city, mentee.region, mentor.city, mentor.region)
    if place == 0.0 and not (mentor.remote_ok and mentee.remote_ok):
        return None
    specialization = (
        (mentee.topics & mentor.topics).bit_count() / mentee.topic_count
        if mentee.topic_count
        else 0.0
    )
    if mentee.times and mentor.times:
        times = (mentee.times & mentor.times).bit_count() / mentee.times.bit_count()
    else:
        times = 1.0
    hours = min(mentor.hours, mentee.hours) / mentee.hours
    return (
        w.specialization * specialization
        + w.geographic * place
        + w.experience_gap * _gap_fraction(mentor.years - mentee.years, gap_min, gap_max)
        + w.availability * (times * hours)
        + w.communication * (1.0 if mentee.styles & mentor.styles else 0.0)
        + w.past_success * mentor.success
    )


def find_mentors(
    mentee: MenteeProfile,
    mentors: Sequence[MentorProfile] | Prepared[MentorProfile],
    weights: MatchingWeights | None = None,
    limit: int = 10,
    *,
    ideal_gap: ExperienceGap | None = None,
) -> list[Match]:
    """The best mentors for a mentee, best first.

    Args:
        mentee: Who is looking.
        mentors: Candidate profiles, or the same prepared once with :func:`prepare_mentors`.
            The mentee's own profile, if among them, is skipped.
        weights: The pack's ``mentorship.weights`` (default: 30/20/15/15/10/10).
        limit: How many to return (at most).
        ideal_gap: The pack's ``mentorship.ideal_experience_gap`` (default 2–10 years).

    Returns:
        Up to ``limit`` matches, highest score first; equal scores by person id.

    Raises:
        ValueError: ``limit`` is negative.
    """
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    prepared = mentors if isinstance(mentors, Prepared) else Prepared(mentors)
    w, gap = weights or _DEFAULT_WEIGHTS, ideal_gap or _DEFAULT_GAP
    # Interests no mentor lists get no bit, but still count in topic_count (the denominator).
    seeker = prepared._side(mentee, grow=False)
    profiles = prepared.profiles
    scored: list[tuple[float, str, int]] = []
    append = scored.append
    lo, hi = gap.min_years, gap.max_years
    for index, side in prepared._sides:
        total = _total(seeker, side, w, lo, hi)
        if total is not None:
            person = profiles[index].person_id
            if person != mentee.person_id:
                append((-total, person, index))
    best = heapq.nsmallest(limit, scored) if limit < len(scored) else sorted(scored)
    return [explain(mentee, profiles[index], w, ideal_gap=gap) for _, _, index in best]


def find_mentees(
    mentor: MentorProfile,
    mentees: Sequence[MenteeProfile] | Prepared[MenteeProfile],
    weights: MatchingWeights | None = None,
    limit: int = 10,
    *,
    ideal_gap: ExperienceGap | None = None,
) -> list[Match]:
    """The mentees a mentor would suit best, best first (for mentors looking for mentees).

    A mentor who is not accepting mentees or has no free slot gets an empty list.

    Args:
        mentor: Who is looking.
        mentees: Candidate profiles, or the same prepared with :func:`prepare_mentees`.
        weights: The pack's ``mentorship.weights``.
        limit: How many to return (at most).
        ideal_gap: The pack's ``mentorship.ideal_experience_gap``.

    Returns:
        Up to ``limit`` matches (``person_id`` is the mentee's), highest score first.

    Raises:
        ValueError: ``limit`` is negative.
    """
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    prepared = mentees if isinstance(mentees, Prepared) else Prepared(mentees)
    w, gap = weights or _DEFAULT_WEIGHTS, ideal_gap or _DEFAULT_GAP
    offer = prepared._side(mentor, grow=False)
    profiles = prepared.profiles
    scored: list[tuple[float, str, int]] = []
    lo, hi = gap.min_years, gap.max_years
    for index, side in prepared._sides:
        total = _total(side, offer, w, lo, hi)
        if total is not None:
            person = profiles[index].person_id
            if person != mentor.person_id:
                scored.append((-total, person, index))
    best = heapq.nsmallest(limit, scored) if limit < len(scored) else sorted(scored)
    matches = []
    for _, person, index in best:
        match = explain(profiles[index], mentor, w, ideal_gap=gap)
        matches.append(Match(person, match.score, match.remote, match.factors))
    return matches


def exclusion(mentee: MenteeProfile, mentor: MentorProfile) -> str | None:
    """Why a mentor is not a candidate for a mentee, in plain language; None when they are.

    The same rules :func:`find_mentors` applies, written from the profiles (for telling a
    mentee why someone they looked for is not suggested).

    Args:
        mentee: The mentee.
        mentor: The mentor.

    Returns:
        The reason, or None.
    """
    if mentor.person_id == mentee.person_id:
        return "a mentee cannot be their own mentor"
    if not mentor.accepting_mentees:
        return "the mentor is not accepting mentees"
    if mentor.active_mentees >= mentor.max_mentees:
        return f"the mentor has no free slot ({mentor.active_mentees} of {mentor.max_mentees})"
    place = _proximity(
        _key(mentee.city), _key(mentee.region), _key(mentor.city), _key(mentor.region)
    )
    if place == 0.0:
        unwilling = [
            who
            for who, willing in (
                ("the mentor is not willing", mentor.willing_remote),
                ("the mentee is not open", mentee.open_to_remote),
            )
            if not willing
        ]
        if unwilling:
            return f"they could only meet remotely and {' and '.join(unwilling)} to that"
    return None


# --------------------------------------------------------------------------------------------
# Explanations (from the profiles, independently of the fast path)


def _points(value: float) -> str:
    rounded = round(value, 1)
    return f"(+{rounded:g})"


def _listed(values: Iterable[str]) -> str:
    return ", ".join(values) or "none"


def _years(value: int) -> str:
    return f"{value} year" if abs(value) == 1 else f"{value} years"


def _where(city: str | None, region: str | None) -> str:
    return ", ".join(part for part in (city, region) if part) or "unknown"


def explain(
    mentee: MenteeProfile,
    mentor: MentorProfile,
    weights: MatchingWeights | None = None,
    *,
    ideal_gap: ExperienceGap | None = None,
) -> Match:
    """Score one pair with every factor's explanation (whether or not it is a candidate).

    Args:
        mentee: The mentee.
        mentor: The mentor.
        weights: The pack's weights.
        ideal_gap: The pack's ideal experience gap.

    Returns:
        The match; ``person_id`` is the mentor's.
    """
    w, gap = weights or _DEFAULT_WEIGHTS, ideal_gap or _DEFAULT_GAP
    factors = (
        _specialization(mentee, mentor, w.specialization),
        _geographic(mentee, mentor, w.geographic),
        _experience(mentee, mentor, w.experience_gap, gap),
        _availability(mentee, mentor, w.availability),
        _communication(mentee, mentor, w.communication),
        _past_success(mentor.track_record, w.past_success),
    )
    remote = (
        _proximity(_key(mentee.city), _key(mentee.region), _key(mentor.city), _key(mentor.region))
        == 0.0
    )
    total = sum(factor.points for factor in factors)
    return Match(mentor.person_id, round(total, 1), remote, factors)


def _specialization(mentee: MenteeProfile, mentor: MentorProfile, weight: int) -> FactorScore:
    wanted = mentee.specialization_interests
    shared = [topic for topic in wanted if topic in mentor.specializations]
    points = weight * (len(shared) / len(wanted)) if wanted else 0.0
    if not wanted:
        text = "no specialization interests given"
    elif not shared:
        text = f"no shared specialization (wants {_listed(wanted)})"
    elif len(shared) == len(wanted):
        text = f"same specialization: {_listed(shared)}"
    else:
        text = f"same specialization: {_listed(shared)} ({len(shared)} of {len(wanted)} interests)"
    return FactorScore(Factor.SPECIALIZATION, points, weight, f"{text} {_points(points)}")


def _geographic(mentee: MenteeProfile, mentor: MentorProfile, weight: int) -> FactorScore:
    place = _proximity(
        _key(mentee.city), _key(mentee.region), _key(mentor.city), _key(mentor.region)
    )
    points = weight * place
    if place == 1.0:
        text = f"same city: {_where(mentor.city, mentor.region)}"
    elif place == 0.5:
        text = f"same region: {mentor.region} ({mentee.city or 'city unknown'} and"
        text += f" {mentor.city or 'city unknown'})"
    elif not (mentee.city or mentee.region) or not (mentor.city or mentor.region):
        text = "location unknown, remote mentoring"
    else:
        text = (
            f"different places, remote mentoring ({_where(mentee.city, mentee.region)} and"
            f" {_where(mentor.city, mentor.region)})"
        )
    return FactorScore(Factor.GEOGRAPHIC, points, weight, f"{text} {_points(points)}")


def _experience(
    mentee: MenteeProfile, mentor: MentorProfile, weight: int, ideal: ExperienceGap
) -> FactorScore:
    gap = mentor.years_experience - mentee.years_experience
    points = weight * _gap_fraction(gap, ideal.min_years, ideal.max_years)
    span = f"{ideal.min_years}–{ideal.max_years}"
    if gap == 0:
        text = "mentor and mentee have the same experience"
    elif gap < 0:
        text = f"mentor has {_years(-gap)} less experience than the mentee"
    elif gap < ideal.min_years:
        text = f"experience gap {_years(gap)}, below the ideal {span}"
    elif gap <= ideal.max_years:
        text = f"experience gap {_years(gap)}, within the ideal {span}"
    else:
        text = f"experience gap {_years(gap)}, above the ideal {span}"
    return FactorScore(Factor.EXPERIENCE_GAP, points, weight, f"{text} {_points(points)}")


def _availability(mentee: MenteeProfile, mentor: MentorProfile, weight: int) -> FactorScore:
    wanted, offered = mentee.availability, mentor.availability
    if wanted.preferred_times and offered.preferred_times:
        shared = [t for t in wanted.preferred_times if t in offered.preferred_times]
        times = len(shared) / len(wanted.preferred_times)
        if shared:
            when = f"both free {_listed(_WORDS[t] for t in shared)}"
            if len(shared) < len(wanted.preferred_times):
                when += f" ({len(shared)} of {len(wanted.preferred_times)} preferred times)"
        else:
            when = (
                f"no shared times (mentee {_listed(_WORDS[t] for t in wanted.preferred_times)},"
                f" mentor {_listed(_WORDS[t] for t in offered.preferred_times)})"
            )
    else:
        times, when = 1.0, "any time suits one of them"
    hours_offered = min(offered.hours_per_month, wanted.hours_per_month)
    hours = hours_offered / wanted.hours_per_month
    points = weight * (times * hours)
    text = f"{when}; {hours_offered} of {wanted.hours_per_month} hours a month wanted"
    return FactorScore(Factor.AVAILABILITY, points, weight, f"{text} {_points(points)}")


def _communication(mentee: MenteeProfile, mentor: MentorProfile, weight: int) -> FactorScore:
    shared = [s for s in mentee.communication_preferences if s in mentor.communication_preferences]
    points = float(weight) if shared else 0.0
    if shared:
        text = f"both prefer {_listed(_WORDS[s] for s in shared)}"
    else:
        text = (
            f"no shared communication style (mentee"
            f" {_listed(_WORDS[s] for s in mentee.communication_preferences)}, mentor"
            f" {_listed(_WORDS[s] for s in mentor.communication_preferences)})"
        )
    return FactorScore(Factor.COMMUNICATION, points, weight, f"{text} {_points(points)}")


def _past_success(record: TrackRecord, weight: int) -> FactorScore:
    points = weight * _success_fraction(record.mentees, record.completions, record.average_rating)
    if record.mentees == 0:
        text = "no past mentees yet, neutral"
    else:
        text = f"{record.completions} of {record.mentees} past mentees completed"
        if record.average_rating is not None:
            text += f", average rating {record.average_rating:g}/5"
    return FactorScore(Factor.PAST_SUCCESS, points, weight, f"{text} {_points(points)}")
