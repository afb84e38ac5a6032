"""Apprenticeship progress maths (rules.apprenticeship): hand-computed cases and edges.

The program below is small enough to compute by hand: one year (2025 has 365 days), 1,000 work
and 100 classroom hours, period 1 needs 400 + 40 hours and two skills, period 2 600 + 60 and one.
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from rules.apprenticeship import (
    EnrollmentStatus,
    Enrolment,
    EntryStatus,
    Evaluation,
    HoursEntry,
    HoursKind,
    add_years,
    apprenticeship_facts,
    check_entry,
    progress,
)
from rules.apprenticeship_model import Program
from rules.engine import PythonEvaluator, engine_for
from rules.lint import lint
from rules.loader import PackInvalid, load_pack

PACKS = Path(__file__).resolve().parents[2] / "rules" / "packs"
ENROLLED = date(2025, 1, 1)
APPROVED, PENDING, REJECTED = EntryStatus.APPROVED, EntryStatus.PENDING, EntryStatus.REJECTED
WORK, CLASSROOM = HoursKind.WORK, HoursKind.CLASSROOM

PROGRAM = Program.model_validate(
    {
        "id": "hvac-tech",
        "name": "HVAC Technician",
        "sponsor": {"type": "employer", "name": "Cool Air", "contact": "t@coolair.example"},
        "duration_years": 1,
        "work_hours": 1000,
        "classroom_hours": 100,
        "periods": [
            {
                "number": 1,
                "name": "First",
                "work_hours": 400,
                "classroom_hours": 40,
                "wage_percentage": 50,
                "skills": ["Brazing", "Refrigerant recovery"],
            },
            {
                "number": 2,
                "name": "Second",
                "work_hours": 600,
                "classroom_hours": 60,
                "wage_percentage": 75,
                "skills": ["Heat pump diagnostics"],
            },
        ],
        "evaluations": {"every_days": 90, "at_period_end": True, "grace_days": 14},
        "stall": {"after_days": 30},
        "graduation": {"final_evaluation_min_score": 80, "required_certifications": ["epa-608"]},
    }
)


def days(
    first: date, count: int, kind: HoursKind, status: EntryStatus, hours: float = 8, tag: str = ""
) -> list[HoursEntry]:
    """``count`` consecutive days of ``hours`` from ``first``."""
    return [
        HoursEntry(
            id=f"{tag or kind.value}-{status.value}-{(first + timedelta(n)).isoformat()}",
            day=first + timedelta(n),
            kind=kind,
            hours=hours,
            status=status,
        )
        for n in range(count)
    ]


def evaluation(day: date, score: int = 85, *skills: str, final: bool = False) -> Evaluation:
    return Evaluation(day=day, score=score, skills_signed_off=list(skills), final=final)


# Period 1's hours: 55 approved work days (440 h: 400 fill period 1 on the 50th day, 2025-02-20;
# 40 go to period 2), 3 pending work days (24 h, landing in period 2), 6 approved classroom days
# from 2025-03-01 (48 h: 40 fill period 1 on 2025-03-05, 8 go to period 2), one rejected day.
ENTRIES = [
    *days(date(2025, 1, 2), 55, WORK, APPROVED),
    *days(date(2025, 3, 20), 3, WORK, PENDING),
    *days(date(2025, 3, 1), 6, CLASSROOM, APPROVED),
    *days(date(2025, 3, 25), 1, WORK, REJECTED),
]
SIGNED = [evaluation(date(2025, 3, 10), 85, "Brazing", "Refrigerant recovery")]


def test_hours_fill_the_periods_in_order_and_the_period_completes_on_its_last_need() -> None:
    done = progress(
        PROGRAM, Enrolment(enrolled_on=ENROLLED), ENTRIES, SIGNED, today=date(2025, 4, 1)
    )
    first, second = done.periods
    assert (first.work_approved, first.classroom_approved) == (400, 40)
    assert (second.work_approved, second.classroom_approved) == (40, 8)
    assert (first.work_pending, second.work_pending) == (0, 24)
    assert (done.work_approved, done.classroom_approved, done.work_pending) == (440, 48, 24)
    assert done.classroom_pending == 0  # the rejected day counts nowhere
    # Work met 2025-02-20, classroom 2025-03-05, skills signed off 2025-03-10.
    assert first.hours_met_on == date(2025, 3, 5)
    assert first.completed_on == date(2025, 3, 10) and first.complete
    assert not second.complete and second.skills_pending == ["Heat pump diagnostics"]
    assert (done.period, done.period_reached, done.advancement_due) == (1, 2, True)


def test_expected_hours_are_linear_over_the_duration() -> None:
    done = progress(
        PROGRAM, Enrolment(enrolled_on=ENROLLED), ENTRIES, SIGNED, today=date(2025, 4, 1)
    )
    # 90 of 365 days: 1,000 x 90/365 = 246.58 work hours, 100 x 90/365 = 24.66 classroom hours.
    assert math.isclose(done.work_expected, 1000 * 90 / 365)
    assert math.isclose(done.classroom_expected, 100 * 90 / 365)
    assert done.expected_completion == date(2026, 1, 1)
    # Last approved day: the classroom day 2025-03-06, 26 days before 2025-04-01.
    assert (done.last_approved_on, done.days_since_approved_hours) == (date(2025, 3, 6), 26)
    assert not done.stalled
    # The period-end evaluation is the one that signed the skills off (2025-03-10): the next is
    # due 90 days later, 2025-06-08.
    assert done.evaluation_due_on == date(2025, 6, 8)
    assert not done.evaluation_due and not done.evaluation_overdue


def test_the_facts_of_that_case() -> None:
    today = date(2025, 4, 1)
    done = progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), ENTRIES, SIGNED, today=today)
    facts = apprenticeship_facts(PROGRAM, done, {"roles": ["apprentice"]})
    assert {k: facts[k] for k in FACT_NAMES} == {
        "kind": "apprenticeship",
        "requirement": "hvac-tech",
        "program": "hvac-tech",
        "apprenticeship_status": "active",
        "completed": False,
        "days_until_due": 275,  # 2026-01-01 - 2025-04-01
        "period": 1,
        "hours_logged": 488,
        "hours_expected": 271,  # floor(246.58 + 24.66)
        "hours_behind": 0,
        "days_since_approved_hours": 26,
        "evaluation_overdue": False,
        "last_evaluation_score": 85,
        "below_minimum_score": False,
        "advancement_due": True,
        "graduation_ready": False,
    }
    assert facts["roles"] == ["apprentice"] and facts["exempt"] is False


FACT_NAMES = (
    "kind",
    "requirement",
    "program",
    "apprenticeship_status",
    "completed",
    "days_until_due",
    "period",
    "hours_logged",
    "hours_expected",
    "hours_behind",
    "days_since_approved_hours",
    "evaluation_overdue",
    "last_evaluation_score",
    "below_minimum_score",
    "advancement_due",
    "graduation_ready",
)


def test_nothing_logged_for_sixty_days_is_stalled_and_behind() -> None:
    done = progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), [], [], today=date(2025, 3, 2))
    # 60 days: 1,100 x 60/365 = 180.8 hours expected.
    facts = apprenticeship_facts(PROGRAM, done)
    assert (facts["hours_expected"], facts["hours_logged"], facts["hours_behind"]) == (180, 0, 180)
    assert (done.days_since_approved_hours, done.stalled) == (60, True)
    assert done.last_approved_on is None


@pytest.mark.parametrize(
    ("today", "stalled"), [(date(2025, 1, 30), False), (date(2025, 1, 31), True)]
)
def test_stalled_from_the_stall_days_on(today: date, stalled: bool) -> None:
    # after_days 30: 2025-01-01 + 30 days = 2025-01-31.
    done = progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), [], [], today=today)
    assert done.stalled is stalled


def test_pending_hours_do_not_stop_a_stall() -> None:
    entries = days(date(2025, 2, 20), 5, WORK, PENDING)
    done = progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), entries, [], today=date(2025, 3, 1))
    assert done.stalled and done.work_pending == 40 and done.work_approved == 0


@pytest.mark.parametrize(
    ("today", "due", "overdue"),
    [
        (date(2025, 3, 31), False, False),
        (date(2025, 4, 1), True, False),  # due: enrolment + 90 days
        (date(2025, 4, 15), True, False),  # last day of the 14 grace days
        (date(2025, 4, 16), True, True),
    ],
)
def test_an_evaluation_is_due_every_90_days_and_overdue_after_its_grace(
    today: date, due: bool, overdue: bool
) -> None:
    done = progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), [], [], today=today)
    assert done.evaluation_due_on == date(2025, 4, 1)
    assert (done.evaluation_due, done.evaluation_overdue) == (due, overdue)


def test_a_period_end_evaluation_is_due_when_the_period_completes() -> None:
    # Skills signed off first (2025-02-01), hours met later (classroom, 2025-03-05): the
    # period completes on 2025-03-05 and no evaluation has been done since.
    early = [evaluation(date(2025, 2, 1), 90, "Brazing", "refrigerant  RECOVERY")]
    done = progress(
        PROGRAM, Enrolment(enrolled_on=ENROLLED), ENTRIES, early, today=date(2025, 3, 19)
    )
    assert done.periods[0].completed_on == date(2025, 3, 5)
    assert done.evaluation_due_on == date(2025, 3, 5)
    assert done.evaluation_due and not done.evaluation_overdue
    later = progress(
        PROGRAM, Enrolment(enrolled_on=ENROLLED), ENTRIES, early, today=date(2025, 3, 20)
    )
    assert later.evaluation_overdue
    # Without at_period_end only the cadence counts: 2025-02-01 + 90 days.
    cadence_only = PROGRAM.model_copy(
        update={"evaluations": PROGRAM.evaluations.model_copy(update={"at_period_end": False})}
    )
    plain = progress(
        cadence_only, Enrolment(enrolled_on=ENROLLED), ENTRIES, early, today=date(2025, 3, 20)
    )
    assert plain.evaluation_due_on == date(2025, 5, 2) and not plain.evaluation_due


def test_skills_are_signed_off_case_insensitively_and_unknown_ones_are_reported() -> None:
    signed = [evaluation(date(2025, 2, 1), 90, "  BRAZING ", "Welding")]
    done = progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), [], signed, today=date(2025, 2, 2))
    assert done.periods[0].skills_signed_off == ["Brazing"]
    assert done.periods[0].skills_pending == ["Refrigerant recovery"]
    assert done.unknown_skills == ["Welding"]


def test_skills_signed_off_outside_evaluations_count_from_their_day() -> None:
    # A summary carried over: Brazing on 2025-01-20. Refrigerant recovery is signed off on
    # 2025-02-01 and Brazing again on 2025-03-12; the first sign-off counts, so the period
    # completes when its classroom hours are met, 2025-03-05 (not 2025-03-12).
    carried = {"brazing": date(2025, 1, 20)}
    signed = [
        evaluation(date(2025, 2, 1), 85, "Refrigerant recovery"),
        evaluation(date(2025, 3, 12), 85, "Brazing"),
    ]
    enrolment = Enrolment(enrolled_on=ENROLLED)
    today = date(2025, 4, 1)
    done = progress(PROGRAM, enrolment, ENTRIES, signed, today=today, signed_off=carried)
    assert done.periods[0].skills_signed_off == ["Brazing", "Refrigerant recovery"]
    assert done.periods[0].completed_on == date(2025, 3, 5)
    alone = progress(PROGRAM, enrolment, ENTRIES, [], today=today, signed_off=carried)
    assert alone.periods[0].skills_pending == ["Refrigerant recovery"]


def test_periods_are_reached_in_order() -> None:
    # Period 2's skill is signed off but period 1's are not: still period 1.
    signed = [evaluation(date(2025, 3, 10), 85, "Heat pump diagnostics")]
    all_hours = [
        *days(date(2025, 1, 2), 125, WORK, APPROVED),
        *days(date(2025, 5, 8), 13, CLASSROOM, APPROVED, 7.7),
    ]
    done = progress(
        PROGRAM, Enrolment(enrolled_on=ENROLLED), all_hours, signed, today=date(2025, 6, 1)
    )
    assert not done.periods[0].complete and done.periods[1].hours_met_on is not None
    assert (done.period_reached, done.advancement_due) == (1, False)


def test_fractions_of_hours_add_up_to_the_need() -> None:
    # 100 entries of 0.4 classroom hours add up to 39.99999999999992 in binary floating point:
    # still period 1's 40 hours, met on the 100th day (2025-04-11).
    assert sum(0.4 for _ in range(100)) < 40  # the case this test is about
    tenths = days(date(2025, 1, 2), 100, CLASSROOM, APPROVED, 0.4)
    work = days(date(2025, 1, 2), 50, WORK, APPROVED)  # period 1's 400 work hours
    done = progress(
        PROGRAM, Enrolment(enrolled_on=ENROLLED), work + tenths, [], today=date(2025, 5, 1)
    )
    assert done.periods[0].hours_met_on == date(2025, 4, 11)
    assert done.periods[1].classroom_approved < 1e-6


def test_hours_beyond_the_program_stay_in_the_last_period() -> None:
    entries = days(date(2025, 1, 2), 130, WORK, APPROVED)  # 1,040 hours
    done = progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), entries, [], today=date(2025, 6, 1))
    assert [p.work_approved for p in done.periods] == [400, 640]


def test_no_advancement_is_due_once_recorded() -> None:
    enrolment = Enrolment(enrolled_on=ENROLLED, period=2)
    done = progress(PROGRAM, enrolment, ENTRIES, SIGNED, today=date(2025, 4, 1))
    assert (done.period, done.period_reached, done.advancement_due) == (2, 2, False)


def test_a_suspension_pauses_the_clock() -> None:
    suspended = Enrolment(
        enrolled_on=ENROLLED, status=EnrollmentStatus.SUSPENDED, suspended_on=date(2025, 3, 2)
    )
    done = progress(PROGRAM, suspended, [], [], today=date(2025, 4, 1))
    # 90 days since enrolment, 30 of them suspended: 60 days of pace.
    assert math.isclose(done.hours_expected, 1100 * 60 / 365)
    assert done.expected_completion == date(2026, 1, 31)
    assert not done.stalled and done.evaluation_due_on is None and not done.evaluation_overdue
    assert done.unmet[0] == "the apprenticeship is suspended, not active"
    # Reinstated on 2025-04-01: the stall and evaluation clocks restart there.
    back = Enrolment(enrolled_on=ENROLLED, active_since=date(2025, 4, 1), paused_days=30)
    later = progress(PROGRAM, back, [], [], today=date(2025, 4, 20))
    assert (later.days_since_approved_hours, later.stalled) == (19, False)
    assert later.evaluation_due_on == date(2025, 6, 30)
    assert math.isclose(later.hours_expected, 1100 * 79 / 365)


def test_expected_hours_stop_at_the_total() -> None:
    done = progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), [], [], today=date(2027, 1, 1))
    assert done.hours_expected == 1100
    assert apprenticeship_facts(PROGRAM, done)["days_until_due"] == -365


def test_a_leap_day_enrolment_ends_on_28_february() -> None:
    assert add_years(date(2024, 2, 29), 1) == date(2025, 2, 28)
    assert add_years(date(2024, 2, 29), 4) == date(2028, 2, 29)


GRADUATE = [
    *days(date(2025, 1, 2), 125, WORK, APPROVED),  # 1,000 hours
    *days(date(2025, 6, 1), 10, CLASSROOM, APPROVED, 10),  # 100 hours
]
ALL_SKILLS = evaluation(
    date(2025, 6, 20), 90, "Brazing", "Refrigerant recovery", "Heat pump diagnostics"
)


def test_graduation_ready_when_everything_is_met() -> None:
    final = evaluation(date(2025, 12, 1), 80, final=True)
    done = progress(
        PROGRAM,
        Enrolment(enrolled_on=ENROLLED, period=2),
        GRADUATE,
        [ALL_SKILLS, final],
        today=date(2025, 12, 2),
        certifications_held={"epa-608"},
    )
    assert done.unmet == [] and done.graduation_ready


def test_graduation_lists_what_is_unmet_in_plain_words() -> None:
    entries = [
        *days(date(2025, 1, 2), 100, WORK, APPROVED),
        *days(date(2025, 6, 1), 10, CLASSROOM, APPROVED, 7.5),
    ]
    final = evaluation(date(2025, 12, 1), 79, "Brazing", final=True)
    done = progress(
        PROGRAM, Enrolment(enrolled_on=ENROLLED), entries, [final], today=date(2025, 12, 2)
    )
    assert done.unmet == [
        "work hours: 800 of 1,000 approved (200 to go)",
        "classroom hours: 75 of 100 approved (25 to go)",
        "skills of period 1 not signed off: Refrigerant recovery",
        "skills of period 2 not signed off: Heat pump diagnostics",
        "the final evaluation on 2025-12-01 scored 79, below the 80 needed",
        "certification 'epa-608' is not held",
    ]
    assert not done.graduation_ready
    none_yet = progress(
        PROGRAM,
        Enrolment(enrolled_on=ENROLLED),
        GRADUATE,
        [ALL_SKILLS],
        today=date(2025, 12, 2),
        certifications_held={"epa-608"},
    )
    assert none_yet.unmet == ["no final evaluation yet (it needs a score of 80 or more)"]


def test_a_withdrawn_apprentice_is_not_ready_even_with_everything_met() -> None:
    final = evaluation(date(2025, 12, 1), 95, final=True)
    withdrawn = Enrolment(enrolled_on=ENROLLED, status=EnrollmentStatus.WITHDRAWN)
    done = progress(
        PROGRAM,
        withdrawn,
        GRADUATE,
        [ALL_SKILLS, final],
        today=date(2025, 12, 2),
        certifications_held={"epa-608"},
    )
    assert done.unmet == ["the apprenticeship is withdrawn, not active"]
    assert not done.graduation_ready and not done.advancement_due


def test_a_low_score_is_below_the_minimum() -> None:
    done = progress(
        PROGRAM,
        Enrolment(enrolled_on=ENROLLED),
        [],
        [evaluation(date(2025, 2, 1), 69)],
        today=date(2025, 2, 2),
    )
    assert done.below_minimum
    facts = apprenticeship_facts(PROGRAM, done)
    assert (facts["last_evaluation_score"], facts["below_minimum_score"]) == (69, True)
    done = progress(
        PROGRAM,
        Enrolment(enrolled_on=ENROLLED),
        [],
        [evaluation(date(2025, 2, 1), 70)],
        today=date(2025, 2, 2),
    )
    assert not done.below_minimum
    facts = apprenticeship_facts(PROGRAM, done)
    assert (facts["last_evaluation_score"], facts["below_minimum_score"]) == (70, False)
    nothing_yet = apprenticeship_facts(
        PROGRAM, progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), [], [], today=date(2025, 2, 2))
    )
    assert (nothing_yet["last_evaluation_score"], nothing_yet["below_minimum_score"]) == (0, False)


SCORE_PACK = """\
pack:
  name: scores
  statuses: [needs_support_after_evaluation, on_track]
status_rules:
  - name: low_score
    when: 'program != "" and below_minimum_score and last_evaluation_score < 50'
    status: needs_support_after_evaluation
  - {name: fine, when: "true", status: on_track}
"""


def test_a_pack_rule_decides_on_the_last_evaluation_score(tmp_path: Path) -> None:
    (tmp_path / "pack.yaml").write_text(SCORE_PACK, encoding="utf-8")
    pack = load_pack(tmp_path)
    for score, status in ((40, "needs_support_after_evaluation"), (60, "on_track")):
        done = progress(
            PROGRAM,
            Enrolment(enrolled_on=ENROLLED),
            [],
            [evaluation(date(2025, 2, 1), score)],
            today=date(2025, 2, 2),
        )
        assert engine_for(pack).evaluate(apprenticeship_facts(PROGRAM, done)).status == status


def test_a_status_too_long_for_the_read_models_is_refused_at_load(tmp_path: Path) -> None:
    long = "needs_support_after_the_evaluation"  # 34 characters
    text = SCORE_PACK.replace("needs_support_after_evaluation", long)
    (tmp_path / "pack.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PackInvalid) as raised:
        load_pack(tmp_path)
    found = [str(issue) for issue in raised.value.issues]
    assert any(
        f.startswith("pack.yaml:3:")
        and f"status {long!r} has 34 characters" in f
        and "at most 32" in f
        for f in found
    ), found
    assert any(f.startswith("pack.yaml:7:") for f in found), found


# --------------------------------------------------------------------------------------------
# New hours entries

TODAY = date(2025, 3, 10)


def entry(
    entry_id: str = "e1", day: date = date(2025, 3, 9), hours: float = 8, **more: Any
) -> HoursEntry:
    return HoursEntry(id=entry_id, day=day, kind=more.pop("kind", WORK), hours=hours, **more)


def errors(new: HoursEntry, existing: list[HoursEntry] | None = None, **kwargs: Any) -> list[str]:
    options: dict[str, Any] = {"status": EnrollmentStatus.ACTIVE, "today": TODAY, **kwargs}
    return check_entry(new, existing or [], **options).errors


def test_a_good_entry_passes() -> None:
    result = check_entry(entry(), [], status=EnrollmentStatus.ACTIVE, today=TODAY)
    assert result.ok and not result.duplicate and result.errors == []


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        (-2, "hours must be more than 0, not -2"),
        (0, "hours must be more than 0, not 0"),
        (float("nan"), "hours must be more than 0, not nan"),
        (24.5, "24.5 hours is more than a day holds (24); split it over the days it was worked"),
    ],
)
def test_impossible_hours_are_refused(hours: float, message: str) -> None:
    assert errors(entry(hours=hours)) == [message]


def test_a_day_holds_at_most_24_hours_across_entries() -> None:
    existing = [
        entry("a", hours=10),
        entry("b", hours=8, status=APPROVED, kind=CLASSROOM),
        entry("c", hours=8, status=REJECTED),  # does not count
        entry("d", day=date(2025, 3, 8), hours=8),  # another day
    ]
    assert errors(entry("new", hours=6), existing) == []  # exactly 24
    assert errors(entry("new", hours=6.5), existing) == [
        "2025-03-09 would have 24.5 hours logged (18 already, in a, b); a day holds at most 24"
    ]


def test_future_dates_are_refused_and_today_is_fine() -> None:
    assert errors(entry(day=TODAY)) == []
    assert errors(entry(day=date(2025, 3, 11))) == [
        "2025-03-11 is in the future (today is 2025-03-10); log hours on or after the day they"
        " were worked"
    ]


def test_hours_before_enrolment_are_refused() -> None:
    assert errors(entry(day=date(2024, 12, 31)), enrolled_on=ENROLLED) == [
        "2024-12-31 is before the enrolment on 2025-01-01; hours before enrolment do not count"
    ]
    assert errors(entry(day=ENROLLED), enrolled_on=ENROLLED) == []


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (
            "suspended",
            "the apprenticeship is suspended: hours cannot be logged until it is reinstated",
        ),
        ("withdrawn", "the apprenticeship is withdrawn: hours cannot be logged"),
        ("completed", "the apprenticeship is completed: hours cannot be logged"),
    ],
)
def test_no_hours_while_not_active(status: str, message: str) -> None:
    assert errors(entry(), status=EnrollmentStatus(status)) == [message]


def test_the_same_entry_twice_is_idempotent() -> None:
    recorded = entry(status=APPROVED, skills=["Brazing"])
    again = entry(skills=[" brazing"])  # resent as logged: pending, same content
    result = check_entry(again, [recorded], status=EnrollmentStatus.ACTIVE, today=TODAY)
    assert result.ok and result.duplicate
    # Even when its day is now full or the program suspended: nothing new is recorded.
    result = check_entry(again, [recorded], status=EnrollmentStatus.SUSPENDED, today=TODAY)
    assert result.ok and result.duplicate


def test_the_same_id_with_different_content_is_refused() -> None:
    recorded = entry(hours=8)
    assert errors(entry(hours=7.5, description="fixed"), [recorded]) == [
        "entry 'e1' is already recorded with different content (hours 8 -> 7.5, description"
        " changed); to correct it, log a new entry id with a reason, or resend the same content"
    ]


def test_every_problem_is_reported_at_once() -> None:
    found = errors(entry(day=date(2025, 4, 1), hours=-1), status=EnrollmentStatus.SUSPENDED)
    assert len(found) == 3, found


# --------------------------------------------------------------------------------------------
# The status rules can decide on these facts

RULES_PACK = """\
pack:
  name: apprenticeships
  statuses: [on_track, behind, stalled, inactive]
status_rules:
  - {name: graduated, when: completed, status: compliant}
  - name: inactive
    when: 'program != "" and apprenticeship_status in ["suspended", "withdrawn"]'
    status: inactive
  - {name: stalled, when: 'program != "" and days_since_approved_hours >= 30', status: stalled}
  - name: behind
    when: 'program != "" and (hours_behind >= 160 or evaluation_overdue)'
    status: behind
  - {name: on_track, when: 'program != ""', status: on_track}
  - {name: other, when: "true", status: compliant}
tests:
  - name: a month without approved hours is stalled
    facts: {program: hvac-tech, days_since_approved_hours: 30, hours_behind: 500}
    expect: {status: stalled, rule: stalled}
  - name: 160 hours behind
    facts: {program: hvac-tech, days_since_approved_hours: 29, hours_behind: 160}
    expect: {status: behind, rule: behind}
  - name: late evaluation
    facts: {program: hvac-tech, evaluation_overdue: true}
    expect: {status: behind, rule: behind}
  - name: fine
    facts: {program: hvac-tech, hours_behind: 159}
    expect: {status: on_track, rule: on_track}
  - name: suspended
    facts: {program: hvac-tech, apprenticeship_status: suspended, days_since_approved_hours: 90}
    expect: {status: inactive, rule: inactive}
  - name: graduated
    facts: {program: hvac-tech, completed: true}
    expect: {status: compliant, rule: graduated}
  - name: another obligation
    facts: {kind: training}
    expect: {status: compliant, rule: other}
"""


@pytest.fixture(scope="module")
def rules_pack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("apprenticeships")
    (directory / "pack.yaml").write_text(RULES_PACK, encoding="utf-8")
    return load_pack(directory)


def test_a_pack_can_write_on_track_behind_and_stalled(rules_pack: Any) -> None:
    assert [f for f in lint(rules_pack) if f.level.value == "error"] == []
    evaluator = PythonEvaluator(rules_pack.content_hash, rules_pack.status_rules)
    for case in rules_pack.tests:
        decided = evaluator.evaluate(case.facts)
        assert (decided.status, decided.rule) == (case.expect.status, case.expect.rule), case.name


@pytest.mark.parametrize(
    ("entries", "evaluations", "today", "status"),
    [
        (ENTRIES, SIGNED, date(2025, 4, 1), "on_track"),  # 488 logged, 271 expected
        ([], [], date(2025, 3, 2), "stalled"),  # 60 days without approved hours
        # 88 hours up to 2025-03-06, then nothing: 2025-03-20 is 14 days on (not stalled) and
        # 1,100 x 78/365 = 235 expected: 147 behind (on track); on 2025-04-04 (29 days on)
        # 1,100 x 93/365 = 280 expected: 192 behind.
        (days(date(2025, 2, 24), 11, WORK, APPROVED), [], date(2025, 3, 20), "on_track"),
        (days(date(2025, 2, 24), 11, WORK, APPROVED), [], date(2025, 4, 4), "behind"),
        # Evaluation due 2025-04-01, overdue from 2025-04-16; hours are fine.
        (days(date(2025, 1, 2), 100, WORK, APPROVED), [], date(2025, 4, 16), "behind"),
    ],
)
def test_durable_rules_decide_from_the_fact_builder(
    rules_pack: Any,
    entries: list[HoursEntry],
    evaluations: list[Evaluation],
    today: date,
    status: str,
) -> None:
    done = progress(PROGRAM, Enrolment(enrolled_on=ENROLLED), entries, evaluations, today=today)
    facts = apprenticeship_facts(PROGRAM, done, {"roles": ["apprentice"]})
    assert engine_for(rules_pack).evaluate(facts).status == status, facts


def test_the_module_is_pure() -> None:
    source = (PACKS.parent / "apprenticeship.py").read_text(encoding="utf-8")
    imports = set(re.findall(r"^(?:from|import) (\S+)", source, re.M))
    assert imports == {
        "__future__",
        "collections.abc",
        "dataclasses",
        "datetime",
        "enum",
        "math",
        "pydantic",
        "re",  # ISO 8601 durations of LMS statements
        "typing",
        "domain.contracts.apprenticeship",  # the entry and evaluation types (floor 1)
        "rules.apprenticeship_model",
        "rules.facts",
    }
    assert "today()" not in source and "now(" not in source


def test_compliance_status_from_the_progress_maths() -> None:
    """on_track, behind (hours, overdue evaluation, low score), stalled, inactive: with rules."""
    from dataclasses import replace

    from rules.apprenticeship import Progress, compliance_status

    base = Progress(
        today=date(2026, 6, 1),
        status=EnrollmentStatus.ACTIVE,
        periods=[],
        period=1,
        period_reached=1,
        advancement_due=False,
        work_approved=950.0,
        classroom_approved=60.0,
        work_pending=0.0,
        classroom_pending=0.0,
        work_expected=1000.0,
        classroom_expected=70.0,
        expected_completion=date(2030, 1, 1),
        last_approved_on=date(2026, 5, 30),
        days_since_approved_hours=2,
        stalled=False,
        evaluation_due_on=None,
        evaluation_due=False,
        evaluation_overdue=False,
        last_evaluation=None,
        below_minimum=False,
    )
    assert compliance_status(base) == (
        "on_track",
        "apprenticeship:on_track",
    )  # 60 h behind: within 10 %
    assert compliance_status(replace(base, work_approved=700.0))[0] == "behind"
    assert compliance_status(replace(base, evaluation_overdue=True)) == (
        "behind",
        "apprenticeship:evaluation_overdue",
    )
    assert compliance_status(replace(base, below_minimum=True))[0] == "behind"
    assert compliance_status(replace(base, stalled=True))[0] == "stalled"
    assert compliance_status(replace(base, status=EnrollmentStatus.SUSPENDED))[0] == "inactive"


# -- classroom hours from the LMS --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hours"),
    [("PT3H30M", 3.5), ("PT45M", 0.75), ("PT1.5H", 1.5), ("P1DT2H", 26.0), ("PT5400S", 1.5)],
)
def test_iso_8601_durations_in_hours(text: str, hours: float) -> None:
    from rules.apprenticeship import duration_hours

    assert duration_hours(text) == hours


@pytest.mark.parametrize("text", ["P", "PT", "P1Y", "P2M", "3h", "PT3H30", "P1DT", "-PT1H"])
def test_durations_that_are_not_weeks_days_hours_minutes_seconds_are_refused(text: str) -> None:
    from rules.apprenticeship import duration_hours

    with pytest.raises(ValueError, match="not an ISO 8601 duration"):
        duration_hours(text)


def test_an_lms_statement_becomes_a_pending_classroom_entry() -> None:
    from rules.apprenticeship import lms_auto_approved, lms_classroom_entry
    from rules.apprenticeship_model import ClassroomFromLms, LmsCourse

    program = PROGRAM.model_copy(
        update={
            "classroom_from_lms": ClassroomFromLms(
                courses=[
                    LmsCourse(activity_id="urn:unit-1", name="Unit 1", hours=8),
                    LmsCourse(activity_id="urn:lab"),
                ]
            )
        }
    )
    day = date(2025, 3, 3)
    unit = lms_classroom_entry(
        program, activity_id="urn:unit-1", entry_id="xapi-1", day=day, duration="PT1H"
    )
    # The course's hours win over the time the statement says was spent.
    assert unit == HoursEntry(
        id="xapi-1", day=day, kind=CLASSROOM, hours=8, description="LMS: Unit 1"
    )
    lab = lms_classroom_entry(
        program, activity_id="urn:lab", entry_id="xapi-2", day=day, duration="PT2H15M"
    )
    assert lab is not None and lab.hours == 2.25 and lab.status is EntryStatus.PENDING
    assert lab.description == "LMS: urn:lab"
    assert (
        lms_classroom_entry(program, activity_id="urn:x", entry_id="x", day=day, duration=None)
        is None
    )
    with pytest.raises(ValueError, match=r"no result\.duration"):
        lms_classroom_entry(program, activity_id="urn:lab", entry_id="x", day=day, duration=None)
    assert not lms_auto_approved(program)
