"""Mentor matching: hand-computed scores per factor, who is a candidate, ranking, explanations.

The baseline pair below scores 30 + 20 + 15 + 15 + 10 + 5 = 95 with the default weights; each
test changes one thing and says what that factor should give.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path
from typing import Any

import pytest

from rules.matching import (
    Factor,
    FactorScore,
    Match,
    PastRelationship,
    exclusion,
    explain,
    find_mentees,
    find_mentors,
    prepare_mentees,
    prepare_mentors,
    track_record,
)
from rules.mentorship_model import (
    CommunicationStyle,
    ExperienceGap,
    MatchingWeights,
    MenteeProfile,
    MentorProfile,
    PreferredTime,
    TrackRecord,
)


def mentee(**changes: Any) -> MenteeProfile:
    """An apprentice in Denver, 1 year in, wanting hydraulic elevators, 4 h/month, weekends."""
    data: dict[str, Any] = {
        "person_id": "apprentice-1",
        "level": "apprentice",
        "years_experience": 1,
        "specialization_interests": ["hydraulic elevators"],
        "communication_preferences": ["video"],
        "availability": {"hours_per_month": 4, "preferred_times": ["weekends"]},
        "city": "Denver",
        "region": "Colorado",
    }
    return MenteeProfile.model_validate(data | changes)


def mentor(**changes: Any) -> MentorProfile:
    """A Denver mechanic with 7 years (gap 6), hydraulic elevators, 8 h/month, no record yet."""
    data: dict[str, Any] = {
        "person_id": "mentor-1",
        "years_experience": 7,
        "specializations": ["hydraulic elevators"],
        "communication_preferences": ["video"],
        "availability": {"hours_per_month": 8, "preferred_times": ["weekends"]},
        "city": "Denver",
        "region": "Colorado",
    }
    return MentorProfile.model_validate(data | changes)


def factor(match: Match, which: Factor) -> FactorScore:
    return next(f for f in match.factors if f.factor is which)


def only(mentee_profile: MenteeProfile, mentor_profile: MentorProfile) -> Match:
    """The pair through find_mentors (the fast path), checked against explain."""
    (found,) = find_mentors(mentee_profile, [mentor_profile])
    assert found == explain(mentee_profile, mentor_profile)
    return found


def test_the_baseline_pair_scores_95_with_every_reason() -> None:
    match = only(mentee(), mentor())
    assert (match.person_id, match.score, match.remote) == ("mentor-1", 95.0, False)
    assert match.explanations == [
        "same specialization: hydraulic elevators (+30)",
        "same city: Denver, Colorado (+20)",
        "experience gap 6 years, within the ideal 2–10 (+15)",
        "both free weekends; 4 of 4 hours a month wanted (+15)",
        "both prefer video (+10)",
        "no past mentees yet, neutral (+5)",
    ]
    assert [f.weight for f in match.factors] == [30, 20, 15, 15, 10, 10]


# --- specialization (30) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interests", "specializations", "points", "text"),
    [
        (
            ["hydraulic elevators", "escalators"],
            ["hydraulic elevators"],
            15.0,
            "same specialization: hydraulic elevators (1 of 2 interests) (+15)",
        ),
        (
            ["Hydraulic  Elevators", "escalators", "mrl elevators"],
            ["escalators", "hydraulic elevators", "chillers"],
            20.0,
            "same specialization: hydraulic elevators, escalators (2 of 3 interests) (+20)",
        ),
        (["escalators"], ["hydraulic elevators"], 0.0, "no shared specialization (wants"),
        ([], ["hydraulic elevators"], 0.0, "no specialization interests given (+0)"),
    ],
)
def test_specialization_is_the_share_of_the_mentees_interests(
    interests: list[str], specializations: list[str], points: float, text: str
) -> None:
    match = only(
        mentee(specialization_interests=interests), mentor(specializations=specializations)
    )
    got = factor(match, Factor.SPECIALIZATION)
    assert got.points == points and got.explanation.startswith(text)
    assert match.score == 65 + points


def test_an_interest_no_mentor_has_still_counts_in_the_share() -> None:
    # "rope grippers" is in no mentor's vocabulary: the fast path must still divide by 2.
    seeker = mentee(specialization_interests=["hydraulic elevators", "rope grippers"])
    (match,) = find_mentors(seeker, prepare_mentors([mentor()]))
    assert factor(match, Factor.SPECIALIZATION).points == 15.0 and match.score == 80.0


# --- geographic (20) and remote ------------------------------------------------------------


def test_same_region_another_city_gives_half() -> None:
    match = only(mentee(city="Boulder"), mentor())
    got = factor(match, Factor.GEOGRAPHIC)
    assert got.points == 10.0 and not match.remote
    assert got.explanation == "same region: Colorado (Boulder and Denver) (+10)"
    assert match.score == 85.0


def test_same_city_with_one_region_unknown_is_the_same_city() -> None:
    match = only(mentee(region=None), mentor())
    assert factor(match, Factor.GEOGRAPHIC).points == 20.0 and match.score == 95.0


def test_a_city_of_the_same_name_in_another_region_is_remote() -> None:
    seeker = mentee(city="Portland", region="Maine", open_to_remote=True)
    offer = mentor(city="Portland", region="Oregon", willing_remote=True)
    match = only(seeker, offer)
    got = factor(match, Factor.GEOGRAPHIC)
    assert got.points == 0.0 and match.remote and match.score == 75.0
    assert got.explanation == (
        "different places, remote mentoring (Portland, Maine and Portland, Oregon) (+0)"
    )
    assert find_mentors(seeker.model_copy(update={"open_to_remote": False}), [offer]) == []


def test_a_missing_location_can_only_be_a_remote_match() -> None:
    nowhere = mentor(city=None, region=None)
    assert find_mentors(mentee(), [nowhere]) == []
    assert find_mentors(mentee(open_to_remote=True), [nowhere]) == []
    remote = nowhere.model_copy(update={"willing_remote": True})
    match = only(mentee(open_to_remote=True), remote)
    got = factor(match, Factor.GEOGRAPHIC)
    assert got.points == 0.0 and match.remote
    assert got.explanation == "location unknown, remote mentoring (+0)"
    # A blank city is unknown too, not a city called "".
    assert mentor(city="  ").city is None


@pytest.mark.parametrize(
    ("willing_remote", "open_to_remote", "candidate"),
    [(False, False, False), (True, False, False), (False, True, False), (True, True, True)],
)
def test_remote_needs_both_sides_willing(
    willing_remote: bool, open_to_remote: bool, candidate: bool
) -> None:
    offer = mentor(city="Austin", region="Texas", willing_remote=willing_remote)
    found = find_mentors(mentee(open_to_remote=open_to_remote), [offer])
    assert bool(found) is candidate
    if candidate:
        assert found[0].remote and found[0].score == 75.0


# --- experience gap (15, ideal 2–10) -------------------------------------------------------


@pytest.mark.parametrize(
    ("mentor_years", "points", "words"),
    [
        (3, 15.0, "experience gap 2 years, within the ideal 2–10 (+15)"),
        (11, 15.0, "experience gap 10 years, within the ideal 2–10 (+15)"),
        (2, 7.5, "experience gap 1 year, below the ideal 2–10 (+7.5)"),
        (16, 7.5, "experience gap 15 years, above the ideal 2–10 (+7.5)"),
        (19, 3.0, "experience gap 18 years, above the ideal 2–10 (+3)"),
        (21, 0.0, "experience gap 20 years, above the ideal 2–10 (+0)"),
        (1, 0.0, "mentor and mentee have the same experience (+0)"),
        (0, 0.0, "mentor has 1 year less experience than the mentee (+0)"),
    ],
)
def test_experience_gap(mentor_years: int, points: float, words: str) -> None:
    match = only(mentee(), mentor(years_experience=mentor_years))
    got = factor(match, Factor.EXPERIENCE_GAP)
    assert got.points == pytest.approx(points) and got.explanation == words
    assert match.score == pytest.approx(80 + points)


def test_the_ideal_gap_comes_from_the_pack() -> None:
    ideal = ExperienceGap(min_years=4, max_years=8)
    match = explain(mentee(), mentor(years_experience=3), ideal_gap=ideal)  # gap 2 of 4
    assert factor(match, Factor.EXPERIENCE_GAP).points == 7.5
    assert "below the ideal 4–8" in factor(match, Factor.EXPERIENCE_GAP).explanation
    (found,) = find_mentors(mentee(), [mentor(years_experience=3)], ideal_gap=ideal)
    assert found == match


# --- availability (15) ---------------------------------------------------------------------


def times(*values: str) -> list[PreferredTime]:
    return [PreferredTime(v) for v in values]


@pytest.mark.parametrize(
    ("wanted", "offered", "points"),
    [
        # One of the mentee's two preferred times, enough hours: 15 × ½ × 1.
        ((4, times("weekends", "weekday_evenings")), (8, times("weekends")), 7.5),
        # Every time shared, half the hours: 15 × 1 × ½.
        ((4, times("weekends")), (2, times("weekends", "weekday_mornings")), 7.5),
        # One of three times and 3 of 4 hours: 15 × ⅓ × ¾.
        (
            (4, times("weekends", "weekday_evenings", "weekday_mornings")),
            (3, times("weekends")),
            3.75,
        ),
        # No shared time at all: nothing, whatever the hours.
        ((4, times("weekday_evenings")), (20, times("weekday_mornings")), 0.0),
        # The mentee can meet any time: only the hours count.
        ((6, []), (3, times("weekday_mornings")), 7.5),
    ],
)
def test_availability_is_shared_times_times_hours(
    wanted: tuple[int, list[PreferredTime]], offered: tuple[int, list[PreferredTime]], points: float
) -> None:
    seeker = mentee(availability={"hours_per_month": wanted[0], "preferred_times": wanted[1]})
    offer = mentor(availability={"hours_per_month": offered[0], "preferred_times": offered[1]})
    match = only(seeker, offer)
    assert factor(match, Factor.AVAILABILITY).points == pytest.approx(points)
    assert match.score == round(80 + points, 1)


def test_no_shared_time_is_explained() -> None:
    seeker = mentee(availability={"hours_per_month": 4, "preferred_times": ["weekday_evenings"]})
    offer = mentor(availability={"hours_per_month": 4, "preferred_times": ["weekday_mornings"]})
    assert factor(only(seeker, offer), Factor.AVAILABILITY).explanation == (
        "no shared times (mentee weekday evenings, mentor weekday mornings);"
        " 4 of 4 hours a month wanted (+0)"
    )


# --- communication (10) --------------------------------------------------------------------


def test_one_shared_style_is_enough_and_none_gives_nothing() -> None:
    shared = only(
        mentee(communication_preferences=["text", "in_person"]),
        mentor(communication_preferences=["in_person", "phone"]),
    )
    assert factor(shared, Factor.COMMUNICATION).explanation == "both prefer in person (+10)"
    apart = only(mentee(communication_preferences=["text"]), mentor())
    got = factor(apart, Factor.COMMUNICATION)
    assert got.points == 0.0 and apart.score == 85.0
    assert got.explanation == "no shared communication style (mentee text, mentor video) (+0)"


# --- past success (10) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "points", "words"),
    [
        (TrackRecord(), 5.0, "no past mentees yet, neutral (+5)"),
        # ½ × ¾ completed + ½ × (4.5 − 1) / 4 = 0.8125 → 8.125
        (
            TrackRecord(mentees=4, completions=3, average_rating=4.5),
            8.125,
            "3 of 4 past mentees completed, average rating 4.5/5 (+8.1)",
        ),
        (TrackRecord(mentees=4, completions=2), 5.0, "2 of 4 past mentees completed (+5)"),
        (
            TrackRecord(mentees=2, completions=0, average_rating=1),
            0.0,
            "0 of 2 past mentees completed, average rating 1/5 (+0)",
        ),
        (
            TrackRecord(mentees=5, completions=5, average_rating=5),
            10.0,
            "5 of 5 past mentees completed, average rating 5/5 (+10)",
        ),
    ],
)
def test_past_success(record: TrackRecord, points: float, words: str) -> None:
    match = only(mentee(), mentor(track_record=record))
    got = factor(match, Factor.PAST_SUCCESS)
    assert got.points == points and got.explanation == words


def test_a_track_record_counts_only_relationships_that_ended() -> None:
    record = track_record(
        [
            PastRelationship("completed", 5),
            PastRelationship("completed", 4),
            PastRelationship("cancelled"),
            PastRelationship("active", 1),  # no outcome yet
            PastRelationship("declined"),
            PastRelationship("expired"),
        ]
    )
    assert record == TrackRecord(mentees=3, completions=2, average_rating=4.5)
    assert track_record([]) == TrackRecord()


def test_a_track_record_cannot_complete_more_than_it_had() -> None:
    with pytest.raises(ValueError, match="completions"):
        TrackRecord(mentees=1, completions=2)


# --- who is a candidate --------------------------------------------------------------------


def test_only_mentors_accepting_and_under_capacity() -> None:
    pool = [
        mentor(person_id="not-accepting", accepting_mentees=False),
        mentor(person_id="full", max_mentees=2, active_mentees=2),
        mentor(person_id="one-slot-left", max_mentees=2, active_mentees=1),
    ]
    assert [m.person_id for m in find_mentors(mentee(), pool)] == ["one-slot-left"]


@pytest.mark.parametrize(
    ("offer", "seeker", "reason"),
    [
        (mentor(accepting_mentees=False), mentee(), "the mentor is not accepting mentees"),
        (mentor(active_mentees=3, max_mentees=3), mentee(), "the mentor has no free slot (3 of 3)"),
        (
            mentor(city="Austin", region="Texas"),
            mentee(),
            "they could only meet remotely and the mentor is not willing and the mentee is not"
            " open to that",
        ),
        (
            mentor(city=None, region=None, willing_remote=True),
            mentee(),
            "they could only meet remotely and the mentee is not open to that",
        ),
        (mentor(person_id="apprentice-1"), mentee(), "a mentee cannot be their own mentor"),
        (mentor(city="Boulder"), mentee(), None),
    ],
)
def test_exclusion_says_why_a_mentor_is_not_suggested(
    offer: MentorProfile, seeker: MenteeProfile, reason: str | None
) -> None:
    assert exclusion(seeker, offer) == reason
    assert bool(find_mentors(seeker, [offer])) is (reason is None)


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit must be 0 or more, not -1"):
        find_mentors(mentee(), [mentor()], limit=-1)
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        find_mentees(mentor(), [mentee()], limit=-1)


OURS = ("duly", "workflows", "activities", "rules", "api", "notifications", "store", "domain")


@pytest.mark.parametrize(
    ("module", "allowed"),
    [("rules/mentorship_model.py", set()), ("rules/matching.py", {"rules.mentorship_model"})],
)
def test_matching_is_pure(module: str, allowed: set[str]) -> None:
    # Floor 2 (rules) and below only, and no I/O libraries: profiles in, ranking out.
    tree = ast.parse((Path(__file__).resolve().parents[2] / module).read_text(encoding="utf-8"))
    imported = {
        name
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    # The domain (floor 1) is below the rules and pure: any of it may be used.
    ours = {m for m in imported if m.split(".")[0] in OURS and m.split(".")[0] != "domain"}
    assert ours == allowed
    assert not imported & {"sqlalchemy", "temporalio", "durable", "httpx", "os", "time"}


def test_the_mentee_is_never_their_own_mentor() -> None:
    pool = [mentor(person_id="apprentice-1"), mentor(person_id="mentor-2")]
    assert [m.person_id for m in find_mentors(mentee(), pool)] == ["mentor-2"]


# --- ranking -------------------------------------------------------------------------------


def test_ranked_best_first_then_by_person_id_and_limited() -> None:
    pool = [
        mentor(person_id="c-far", city="Boulder"),  # 85
        mentor(person_id="b-best"),  # 95
        mentor(person_id="a-best"),  # 95
        mentor(person_id="d-no-style", communication_preferences=["phone"]),  # 85
        mentor(person_id="e-low", specializations=["escalators"]),  # 65
    ]
    ranked = find_mentors(mentee(), pool, limit=10)
    assert [(m.person_id, m.score) for m in ranked] == [
        ("a-best", 95.0),
        ("b-best", 95.0),
        ("c-far", 85.0),
        ("d-no-style", 85.0),
        ("e-low", 65.0),
    ]
    assert [m.person_id for m in find_mentors(mentee(), pool, limit=2)] == ["a-best", "b-best"]
    assert find_mentors(mentee(), pool, limit=0) == []
    prepared = prepare_mentors(pool)
    assert find_mentors(mentee(), prepared, limit=3) == ranked[:3]


def test_the_packs_weights_change_the_ranking() -> None:
    pool = [
        mentor(person_id="nearby", specializations=["escalators"]),
        mentor(person_id="expert", city="Boulder"),
    ]
    assert [m.person_id for m in find_mentors(mentee(), pool)] == ["expert", "nearby"]
    local_first = MatchingWeights(specialization=5, geographic=45)
    ranked = find_mentors(mentee(), pool, local_first)
    # nearby: 0 + 45 + 15 + 15 + 10 + 5 = 90; expert: 5 + 22.5 + 15 + 15 + 10 + 5 = 72.5
    assert [(m.person_id, m.score) for m in ranked] == [("nearby", 90.0), ("expert", 72.5)]
    assert factor(ranked[1], Factor.SPECIALIZATION).explanation == (
        "same specialization: hydraulic elevators (+5)"
    )


def test_find_mentees_ranks_mentees_for_a_mentor() -> None:
    pool = [
        mentee(person_id="wants-escalators", specialization_interests=["escalators"]),
        mentee(person_id="wants-hydraulic"),
        mentee(person_id="too-senior", years_experience=9),  # gap -2: 0 of 15
        mentee(person_id="far-away", city="Austin", region="Texas"),  # not open to remote
    ]
    ranked = find_mentees(mentor(), pool)
    assert [(m.person_id, m.score) for m in ranked] == [
        ("wants-hydraulic", 95.0),
        ("too-senior", 80.0),
        ("wants-escalators", 65.0),
    ]
    assert ranked[0].explanations[0] == "same specialization: hydraulic elevators (+30)"
    assert find_mentees(mentor(), prepare_mentees(pool), limit=1) == ranked[:1]
    assert find_mentees(mentor(active_mentees=2, max_mentees=2), pool) == []
    assert find_mentees(mentor(accepting_mentees=False), pool) == []


# --- the fast path agrees with the explanations --------------------------------------------

SPECIALIZATIONS = ["hydraulic elevators", "traction elevators", "escalators", "chillers", "boilers"]
PLACES = [("Denver", "Colorado"), ("Boulder", "Colorado"), ("Austin", "Texas"), (None, None)]


def random_mentor(rng: random.Random, index: int) -> MentorProfile:
    city, region = rng.choice(PLACES)
    mentees = rng.randint(0, 5)
    return MentorProfile(
        person_id=f"m{index:04d}",
        years_experience=rng.randint(0, 30),
        specializations=rng.sample(SPECIALIZATIONS, rng.randint(0, 3)),
        accepting_mentees=rng.random() < 0.9,
        max_mentees=rng.randint(1, 3),
        active_mentees=rng.randint(0, 2),
        communication_preferences=rng.sample(list(CommunicationStyle), rng.randint(1, 3)),
        availability={
            "hours_per_month": rng.randint(1, 10),
            "preferred_times": rng.sample(list(PreferredTime), rng.randint(0, 3)),
        },
        city=city,
        region=region,
        willing_remote=rng.random() < 0.5,
        track_record=TrackRecord(
            mentees=mentees,
            completions=rng.randint(0, mentees),
            average_rating=rng.choice([None, 1.0, 3.5, 5.0]) if mentees else None,
        ),
    )


@pytest.mark.parametrize("seed", range(5))
def test_the_fast_ranking_equals_scoring_every_pair_with_explanations(seed: int) -> None:
    rng = random.Random(seed)
    pool = [random_mentor(rng, i) for i in range(300)]
    city, region = rng.choice(PLACES)
    seeker = mentee(
        years_experience=rng.randint(0, 5),
        specialization_interests=rng.sample([*SPECIALIZATIONS, "rope grippers"], 2),
        communication_preferences=rng.sample(list(CommunicationStyle), 2),
        availability={"hours_per_month": rng.randint(1, 8), "preferred_times": ["weekends"]},
        city=city,
        region=region,
        open_to_remote=rng.random() < 0.5,
    )
    weights = MatchingWeights(specialization=25, geographic=25, availability=10, past_success=15)

    def candidate(m: MentorProfile) -> bool:
        return exclusion(seeker, m) is None

    slow = sorted(
        (explain(seeker, m, weights) for m in pool if candidate(m)),
        key=lambda match: (-sum(f.points for f in match.factors), match.person_id),
    )
    assert slow, "the random pool should hold some candidates"
    assert find_mentors(seeker, pool, weights, limit=len(pool)) == slow
    assert find_mentors(seeker, prepare_mentors(pool), weights, limit=7) == slow[:7]
