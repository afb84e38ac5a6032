"""Track progress and go-live readiness (rules.tracks): hand-computed cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from rules.assessment import Gate
from rules.tracks import (
    CourseRecord,
    CourseStatus,
    TeamMember,
    TrackProgress,
    TrackStatus,
    auto_enrolments,
    course_gate,
    readiness,
    track_progress,
)
from rules.tracks_model import Track, TracksSection

ENROLLED = date(2026, 3, 2)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(day: int, hour: int = 9) -> datetime:
    """An instant ``day`` days after enrolment."""
    return T0 + timedelta(days=day, hours=hour - 9)


INVESTIGATOR = Track.model_validate(
    {
        "id": "site-investigator",
        "name": "Site investigator",
        "type": "client_investigator",
        "required_for_go_live": True,
        "days_to_complete": 45,
        "courses": [
            # Listed out of order on purpose: progress follows `order`.
            {"requirement": "ich-gcp", "order": 2, "exam": True, "days_to_complete": 30},
            {"requirement": "hsp", "order": 1, "exam": True, "days_to_complete": 14},
            {"requirement": "bls", "order": 3, "days_to_complete": 45},
            {"requirement": "osha", "order": 4, "required": False, "days_to_complete": 45},
        ],
    }
)
ADMIN = Track.model_validate(
    {
        "id": "site-admin",
        "name": "Site administrator",
        "type": "client_admin",
        "required_for_go_live": True,
        "courses": [
            {"requirement": "hipaa", "order": 1},
            {"requirement": "systems", "order": 2, "exam": True, "passing_score": 70},
        ],
    }
)
PATH = Track.model_validate(
    {
        "id": "nurse-path",
        "name": "Research nurse path",
        "type": "client_employee",
        "auto_enrol": {"roles": ["nurse"]},
        "courses": [{"requirement": "hipaa", "order": 1, "days_to_complete": 14}],
    }
)


def progress(track: Track, *records: CourseRecord, as_of: datetime) -> TrackProgress:
    return track_progress(track, enrolled_on=ENROLLED, records=records, as_of=as_of)


def test_nothing_recorded_is_not_started_with_milestones_from_enrolment() -> None:
    p = progress(INVESTIGATOR, as_of=at(1))
    assert (p.status, p.percent, p.required_done, p.required_total) == (
        TrackStatus.NOT_STARTED,
        0,
        0,
        3,
    )
    assert [c.requirement_id for c in p.courses] == ["hsp", "ich-gcp", "bls", "osha"]
    # 2026-03-02 + 14, 30, 45 and 45 days.
    assert [c.due_on for c in p.courses] == [
        date(2026, 3, 16),
        date(2026, 4, 1),
        date(2026, 4, 16),
        date(2026, 4, 16),
    ]
    assert p.due_on == date(2026, 4, 16) and p.next_course == "hsp"
    assert not p.overdue and not any(c.overdue for c in p.courses)


def test_each_course_status_and_the_percentage_of_required_courses() -> None:
    p = progress(
        INVESTIGATOR,
        CourseRecord("hsp", started_at=at(1), completed_at=at(3), score=92, attempts=1),
        CourseRecord("ich-gcp", started_at=at(4), score=64, attempts=1),
        CourseRecord("osha", completed_at=at(2)),
        as_of=at(5),
    )
    statuses = {c.requirement_id: c.status for c in p.courses}
    assert statuses == {
        "hsp": CourseStatus.COMPLETED,
        "ich-gcp": CourseStatus.IN_PROGRESS,
        "bls": CourseStatus.NOT_STARTED,
        "osha": CourseStatus.COMPLETED,
    }
    # One of three required courses: 33 % (rounded down); the optional one does not count.
    assert (p.status, p.percent, p.required_done, p.optional_done) == (
        TrackStatus.IN_PROGRESS,
        33,
        1,
        1,
    )
    hsp, gcp = p.courses[0], p.courses[1]
    assert (hsp.score, hsp.attempts, hsp.started_at, hsp.completed_at) == (92, 1, at(1), at(3))
    assert (gcp.score, gcp.attempts, gcp.completed_at) == (64, 1, None)
    # A completion without a recorded start started when it completed.
    assert p.courses[3].started_at == at(2)
    assert p.next_course == "ich-gcp"


def test_two_of_three_is_66_percent_never_rounded_up() -> None:
    p = progress(
        INVESTIGATOR,
        CourseRecord("hsp", completed_at=at(1)),
        CourseRecord("ich-gcp", completed_at=at(2)),
        as_of=at(3),
    )
    assert p.percent == 66 and p.status is TrackStatus.IN_PROGRESS


def test_every_required_course_completes_the_track_without_the_optional_one() -> None:
    p = progress(
        INVESTIGATOR,
        CourseRecord("hsp", completed_at=at(1)),
        CourseRecord("ich-gcp", completed_at=at(9)),
        CourseRecord("bls", completed_at=at(5)),
        as_of=at(10),
    )
    assert (p.status, p.percent, p.completed_at, p.next_course) == (
        TrackStatus.COMPLETED,
        100,
        at(9),
        None,
    )
    assert p.missing == ()


def test_a_failed_required_course_fails_the_track() -> None:
    p = progress(
        INVESTIGATOR,
        CourseRecord("hsp", started_at=at(1), failed_at=at(6), score=50, attempts=3),
        as_of=at(7),
    )
    assert p.courses[0].status is CourseStatus.FAILED
    assert p.status is TrackStatus.FAILED


def test_a_failed_optional_course_does_not_fail_the_track() -> None:
    p = progress(INVESTIGATOR, CourseRecord("osha", failed_at=at(1)), as_of=at(2))
    assert p.status is TrackStatus.IN_PROGRESS


def test_attempts_without_a_recorded_start_mean_in_progress() -> None:
    p = progress(INVESTIGATOR, CourseRecord("hsp", score=40, attempts=1), as_of=at(2))
    assert p.courses[0].status is CourseStatus.IN_PROGRESS


def test_a_required_course_is_overdue_from_the_day_after_its_milestone() -> None:
    on_the_day = progress(INVESTIGATOR, as_of=datetime(2026, 3, 16, 23, 59, tzinfo=UTC))
    assert not on_the_day.courses[0].overdue and not on_the_day.overdue
    next_day = progress(INVESTIGATOR, as_of=datetime(2026, 3, 17, 0, 1, tzinfo=UTC))
    hsp = next_day.courses[0]
    assert (hsp.overdue, hsp.days_overdue) == (True, 1) and next_day.overdue
    # The optional course's milestone (2026-04-16) passes without it being overdue.
    late = progress(INVESTIGATOR, as_of=datetime(2026, 4, 21, tzinfo=UTC))
    assert [c.overdue for c in late.courses] == [True, True, True, False]
    # 2026-03-16 → 2026-04-21: 15 days of March and 21 of April.
    assert [c.days_overdue for c in late.courses] == [36, 20, 5, 0]


def test_completing_after_the_milestone_is_flagged_late_but_not_overdue() -> None:
    p = progress(INVESTIGATOR, CourseRecord("hsp", completed_at=at(20)), as_of=at(21))
    assert (p.courses[0].overdue, p.courses[0].completed_late) == (False, True)
    on_time = progress(INVESTIGATOR, CourseRecord("hsp", completed_at=at(14)), as_of=at(21))
    assert on_time.courses[0].completed_late is False


def test_the_track_window_makes_it_overdue_even_without_course_milestones() -> None:
    windowed = ADMIN.model_copy(update={"days_to_complete": 10})
    assert not progress(windowed, as_of=at(10)).overdue
    assert progress(windowed, as_of=at(11)).overdue
    done = progress(
        windowed,
        CourseRecord("hipaa", completed_at=at(3)),
        CourseRecord("systems", completed_at=at(4)),
        as_of=at(30),
    )
    assert done.status is TrackStatus.COMPLETED and not done.overdue


def test_as_of_a_past_instant_ignores_what_was_recorded_after_it() -> None:
    records = [
        CourseRecord("hsp", started_at=at(1), completed_at=at(5)),
        CourseRecord("ich-gcp", started_at=at(6), failed_at=at(12)),
    ]
    before = track_progress(INVESTIGATOR, enrolled_on=ENROLLED, records=records, as_of=at(4))
    assert [c.status for c in before.courses[:2]] == [
        CourseStatus.IN_PROGRESS,
        CourseStatus.NOT_STARTED,
    ]
    assert before.courses[0].completed_at is None and before.status is TrackStatus.IN_PROGRESS
    after = track_progress(INVESTIGATOR, enrolled_on=ENROLLED, records=records, as_of=at(12))
    assert after.status is TrackStatus.FAILED


def test_records_can_be_a_mapping_and_unrelated_records_are_ignored() -> None:
    records = {
        "hipaa": CourseRecord("hipaa", completed_at=at(1)),
        "fire": CourseRecord("fire", completed_at=at(1)),
    }
    p = track_progress(PATH, enrolled_on=ENROLLED, records=records, as_of=at(2))
    assert (p.status, p.percent, len(p.courses)) == (TrackStatus.COMPLETED, 100, 1)


# ----------------------------------------------------------------------------------------
# Go-live readiness

TITLES = {"hsp": "Human Subjects Protection", "ich-gcp": "ICH GCP", "systems": "Site systems"}
TRACKS = [INVESTIGATOR, ADMIN, PATH]


def member(person: str, name: str, **progress: TrackProgress) -> TeamMember:
    tracks = [track_id.replace("_", "-") for track_id in progress]
    return TeamMember(person, name, tracks, {k.replace("_", "-"): v for k, v in progress.items()})


def all_done(track: Track, day: int = 3) -> TrackProgress:
    return progress(
        track,
        *(CourseRecord(c.requirement, completed_at=at(day)) for c in track.courses),
        as_of=at(day + 1),
    )


def test_a_team_that_completed_every_go_live_track_is_ready() -> None:
    team = [
        member("p-1", "Ana Ruiz", site_investigator=all_done(INVESTIGATOR)),
        member("p-2", "Bo Chen", site_admin=all_done(ADMIN)),
    ]
    result = readiness(team, TRACKS, as_of=at(10), titles=TITLES)
    assert (result.ready, result.percent, result.blocking) == (True, 100, ())
    assert result.summary == "ready as of 2026-03-12: every go-live track is complete"
    assert [(t.track_id, t.required, t.completed, t.ready) for t in result.tracks] == [
        ("site-investigator", 1, 1, True),
        ("site-admin", 1, 1, True),
    ]


def test_blocking_people_and_courses_are_named_with_the_percentage() -> None:
    halfway = progress(
        INVESTIGATOR,
        CourseRecord("hsp", completed_at=at(2)),
        CourseRecord("ich-gcp", started_at=at(3), score=60, attempts=2),
        as_of=at(31),
    )
    team = [
        member("p-1", "Ana Ruiz", site_investigator=halfway),
        member("p-2", "Bo Chen", site_investigator=all_done(INVESTIGATOR)),
        TeamMember("p-3", "Cy Diaz", ["site-admin"], {}),  # not enrolled
    ]
    result = readiness(team, TRACKS, as_of=at(31), titles=TITLES)
    assert not result.ready
    # Investigator: 1 + 3 of 2 × 3 courses; admin: 0 of 1 × 2 → 4 of 8 = 50 %.
    assert result.percent == 50
    investigator, admin = result.tracks
    assert (investigator.required, investigator.completed, investigator.in_progress) == (2, 1, 1)
    assert (admin.required, admin.completed, admin.not_started) == (1, 0, 1)
    assert [gap.explanation for gap in result.blocking] == [
        # ICH GCP is due 30 days after 2026-03-02, i.e. 2026-04-01; at day 31 it is one day late.
        "Ana Ruiz, Site investigator: 1 of 3 required courses done; left: ICH GCP (in progress,"
        " 2 attempt(s), 1 day(s) overdue since 2026-04-01); bls (not started, due 2026-04-16)",
        "Cy Diaz is not enrolled in Site administrator (2 required course(s) to do)",
    ]
    assert result.blocking[1].status == "not_enrolled"
    assert result.blocking[1].missing == ("hipaa", "systems")
    assert result.summary == (
        "not ready as of 2026-04-02 (50 %): 2 track(s) block go-live: Site investigator: 1 of 2"
        " needed completed (blocking); waiting for Ana Ruiz; Site administrator: 0 of 1 needed"
        " completed (blocking); waiting for Cy Diaz"
    )


def test_a_failed_person_is_shown_with_no_attempt_left() -> None:
    failed = progress(
        ADMIN,
        CourseRecord("hipaa", completed_at=at(1)),
        CourseRecord("systems", started_at=at(1), failed_at=at(5), attempts=3),
        as_of=at(6),
    )
    result = readiness([member("p-1", "Ana Ruiz", site_admin=failed)], TRACKS, as_of=at(6))
    assert result.tracks[0].failed == 1
    assert "systems (failed, no attempt left)" in result.blocking[0].explanation
    # 1 of 2 courses.
    assert result.percent == 50


def test_needing_fewer_people_than_the_team_holds_counts_the_most_advanced() -> None:
    started = progress(INVESTIGATOR, CourseRecord("hsp", completed_at=at(1)), as_of=at(2))
    # The least advanced first: the most advanced count, not the first listed.
    team = [
        member("p-3", "Cy Diaz", site_investigator=progress(INVESTIGATOR, as_of=at(2))),
        member("p-2", "Bo Chen", site_investigator=started),
        member("p-1", "Ana Ruiz", site_investigator=all_done(INVESTIGATOR)),
    ]
    one = readiness(team, TRACKS, as_of=at(2), needed={"site-investigator": 1})
    assert (one.ready, one.percent, one.blocking) == (True, 100, ())
    # Still listed as not done, but not blocking.
    assert [g.person_id for g in one.tracks[0].waiting_for] == ["p-3", "p-2"]
    two = readiness(team, TRACKS, as_of=at(2), needed={"site-investigator": 2})
    # The two most advanced: 3 + 1 of 2 × 3 = 4 of 6 → 66 %.
    assert (two.ready, two.percent) == (False, 66)
    assert [g.person_id for g in two.blocking] == ["p-3", "p-2"]


def test_needing_more_people_than_the_team_holds_is_never_ready_nor_100_percent() -> None:
    team = [member("p-1", "Ana Ruiz", site_admin=all_done(ADMIN))]
    result = readiness(team, TRACKS, as_of=at(5), needed={"site-admin": 2})
    assert (result.ready, result.percent) == (False, 50)
    assert "Site administrator: 1 of 2 needed completed (blocking)" in result.summary


def test_tracks_not_required_for_go_live_or_unknown_are_ignored_and_said_so() -> None:
    team = [
        TeamMember("p-1", "Ana Ruiz", ["nurse-path", "no-such-track"], {}),
    ]
    result = readiness(team, TRACKS, as_of=at(1))
    assert (result.ready, result.percent, result.tracks) == (True, 100, ())
    assert result.ignored == (
        "nurse-path: not required for go-live",
        "no-such-track: not a track of the pack",
    )
    assert result.summary == "ready as of 2026-03-03: no go-live track is needed"


@pytest.mark.parametrize("needed", [0, 1])
def test_a_track_needing_nobody_or_one_completed_person_is_ready(needed: int) -> None:
    team = [member("p-1", "Ana Ruiz", site_admin=all_done(ADMIN))]
    assert readiness(team, TRACKS, as_of=at(5), needed={"site-admin": needed}).ready


# ----------------------------------------------------------------------------------------
# Reordering, deactivation, auto-enrolment and course gates


def test_reordering_courses_keeps_progress_and_moves_the_next_course() -> None:
    records = [CourseRecord("systems", completed_at=at(2))]
    before = track_progress(ADMIN, enrolled_on=ENROLLED, records=records, as_of=at(3))
    assert [c.requirement_id for c in before.courses] == ["hipaa", "systems"]
    assert (before.next_course, before.required_done) == ("hipaa", 1)
    data = ADMIN.model_dump(by_alias=True)
    data["courses"][0]["order"], data["courses"][1]["order"] = 2, 1
    swapped = Track.model_validate(data)  # what a pack edit would load
    after = track_progress(swapped, enrolled_on=ENROLLED, records=records, as_of=at(3))
    # Progress is kept by requirement, not by place: the completed course stays completed.
    assert [c.requirement_id for c in after.courses] == ["systems", "hipaa"]
    assert (after.next_course, after.required_done, after.percent) == ("hipaa", 1, 50)


def test_a_deactivated_track_still_reports_the_progress_of_people_mid_track() -> None:
    inactive = INVESTIGATOR.model_copy(update={"active": False})
    records = [CourseRecord("hsp", completed_at=at(2))]
    active = track_progress(INVESTIGATOR, enrolled_on=ENROLLED, records=records, as_of=at(3))
    assert track_progress(inactive, enrolled_on=ENROLLED, records=records, as_of=at(3)) == active


def test_auto_enrolment_selects_active_learning_paths_only() -> None:
    section = TracksSection(tracks=[INVESTIGATOR, PATH, ADMIN])
    nurse = {"roles": ["nurse"], "department": "Nursing", "location": "Boston", "employer": "X"}
    assert [t.id for t in auto_enrolments(section, **nurse)] == ["nurse-path"]
    tech = {**nurse, "roles": ["technician"]}
    assert auto_enrolments(section, **tech) == []
    retired = TracksSection(tracks=[PATH.model_copy(update={"active": False})])
    assert auto_enrolments(retired, **nurse) == []


def test_a_course_gate_is_the_requirements_with_the_courses_pass_mark() -> None:
    systems = ADMIN.courses[1]  # exam, passing_score 70
    assert course_gate(systems, passing_score=80, max_attempts=3, retake_after_days=2) == Gate(
        passing_score=70, max_attempts=3, retake_after_days=2
    )
    hipaa = ADMIN.courses[0]  # no exam of its own
    assert course_gate(hipaa, passing_score=None, max_attempts=None, retake_after_days=None) == (
        Gate()
    )
    gcp = INVESTIGATOR.courses[0]  # exam, no pass mark of its own
    assert course_gate(gcp, passing_score=80, max_attempts=3, retake_after_days=None) == Gate(
        passing_score=80, max_attempts=3
    )
