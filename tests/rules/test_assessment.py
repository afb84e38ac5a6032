"""Assessment gates (rules.assessment): hand-computed decisions and xAPI score mapping."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from rules.assessment import (
    Attempt,
    Evidence,
    Gate,
    ScoreReading,
    Verdict,
    decide,
    score_percent,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GATE = Gate(passing_score=80, max_attempts=3, retake_after_days=2)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def test_a_score_at_the_pass_mark_completes_on_the_first_attempt() -> None:
    decision = decide(GATE, [], Evidence(at=T0, score=80))
    assert decision.verdict is Verdict.COMPLETED
    assert (decision.status, decision.counted, decision.attempt) == ("completed", True, 1)
    assert (decision.attempts_used, decision.attempts_left) == (0, 3)
    assert decision.reason == "completed on attempt 1: score 80 % is at or above the pass mark 80 %"


def test_a_score_just_below_the_pass_mark_is_a_failed_attempt_with_the_retake_date() -> None:
    decision = decide(GATE, [], Evidence(at=T0, score=79.99))
    assert decision.verdict is Verdict.FAILED_ATTEMPT
    assert (decision.status, decision.attempt, decision.attempts_used) == ("in_progress", 1, 1)
    assert decision.attempts_left == 2
    # 2 days after 2026-03-02 09:00 UTC.
    assert decision.retake_opens_at == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    assert decision.reason == (
        "failed attempt 1: score 79.99 % is below the pass mark 80 %; 2 attempt(s) left;"
        " retakes open at 2026-03-04T09:00:00+00:00"
    )


def test_failing_twice_then_passing_completes_on_the_third_attempt() -> None:
    first = Attempt(at=T0, score=55)
    second = Attempt(at=T0 + days(3), score=70)
    decision = decide(GATE, [second, first], Evidence(at=T0 + days(6), score=85))
    assert (decision.verdict, decision.attempt, decision.attempts_left) == (
        Verdict.COMPLETED,
        3,
        1,
    )


def test_the_third_failure_of_three_fails_the_obligation() -> None:
    attempts = [Attempt(at=T0, score=40), Attempt(at=T0 + days(2), score=60)]
    decision = decide(GATE, attempts, Evidence(at=T0 + days(4), score=79))
    assert decision.verdict is Verdict.FAILED
    assert (decision.status, decision.attempt, decision.attempts_used) == ("failed", 3, 3)
    assert decision.attempts_left == 0 and decision.retake_opens_at is None
    assert "attempt 3 of 3" in decision.reason and "HR can grant another attempt" in decision.reason


def test_evidence_after_the_attempts_are_exhausted_is_not_counted_even_a_pass() -> None:
    attempts = [Attempt(at=T0 + days(i * 2), score=50) for i in range(3)]
    decision = decide(GATE, attempts, Evidence(at=T0 + days(30), score=100))
    assert decision.verdict is Verdict.ATTEMPTS_EXHAUSTED
    assert (decision.status, decision.counted, decision.attempt) == ("failed", False, None)
    assert decision.attempts_used == 3


def test_an_extra_attempt_granted_by_hr_lets_the_learner_pass() -> None:
    attempts = [Attempt(at=T0 + days(i * 2), score=50) for i in range(3)]
    decision = decide(GATE, attempts, Evidence(at=T0 + days(30), score=90), extra_attempts=1)
    assert (decision.verdict, decision.attempt, decision.attempts_allowed) == (
        Verdict.COMPLETED,
        4,
        4,
    )


def test_failing_the_hr_granted_attempt_fails_again_and_says_so() -> None:
    attempts = [Attempt(at=T0 + days(i * 2), score=50) for i in range(3)]
    decision = decide(GATE, attempts, Evidence(at=T0 + days(30), score=60), extra_attempts=1)
    assert decision.verdict is Verdict.FAILED
    assert "attempt 4 of 4, 1 of them granted by HR" in decision.reason


def test_an_attempt_inside_the_cool_down_is_not_counted_and_says_when_retakes_open() -> None:
    attempts = [Attempt(at=T0, score=50)]
    # One hour short of the two days: 2026-03-04 08:00 < 09:00.
    decision = decide(GATE, attempts, Evidence(at=T0 + days(2) - timedelta(hours=1), score=95))
    assert decision.verdict is Verdict.RETAKE_NOT_YET
    assert (decision.status, decision.counted, decision.attempts_used) == ("in_progress", False, 1)
    assert decision.retake_opens_at == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    assert "within 2 days of the last failed attempt" in decision.reason
    # Exactly when it opens, the retake counts.
    assert decide(GATE, attempts, Evidence(at=T0 + days(2), score=95)).verdict is (
        Verdict.COMPLETED
    )


def test_the_cool_down_counts_from_the_latest_attempt_whatever_the_order() -> None:
    attempts = [Attempt(at=T0 + days(5), score=50), Attempt(at=T0, score=50)]
    decision = decide(GATE, attempts, Evidence(at=T0 + days(6), score=95))
    assert decision.verdict is Verdict.RETAKE_NOT_YET
    assert decision.retake_opens_at == T0 + days(7)


def test_evidence_dated_before_the_last_attempt_is_refused_in_plain_words() -> None:
    decision = decide(GATE, [Attempt(at=T0, score=50)], Evidence(at=T0 - days(1), score=95))
    assert decision.verdict is Verdict.RETAKE_NOT_YET
    assert "dated before the last counted attempt" in decision.reason


def test_a_missing_score_is_neither_a_completion_nor_an_attempt() -> None:
    decision = decide(GATE, [], Evidence(at=T0, score=None, lms_passed=True))
    assert decision.verdict is Verdict.NO_SCORE
    assert (decision.counted, decision.attempts_used, decision.status) == (False, 0, "in_progress")
    assert "no score (the LMS said passed)" in decision.reason


def test_a_failure_without_a_score_still_counts_as_an_attempt() -> None:
    decision = decide(GATE, [], Evidence(at=T0, score=None, lms_passed=False))
    assert (decision.verdict, decision.attempts_used) == (Verdict.FAILED_ATTEMPT, 1)


def test_the_pass_mark_overrules_the_lms_flag_and_the_disagreement_is_noted() -> None:
    failed = decide(GATE, [], Evidence(at=T0, score=75, lms_passed=True))
    assert failed.verdict is Verdict.FAILED_ATTEMPT
    assert failed.notes == ("the LMS reported it passed; the pass mark 80 % decides",)
    passed = decide(GATE, [], Evidence(at=T0, score=90, lms_passed=False))
    assert passed.verdict is Verdict.COMPLETED
    assert passed.notes == ("the LMS reported it failed; the pass mark 80 % decides",)
    agreed = decide(GATE, [], Evidence(at=T0, score=90, lms_passed=True))
    assert agreed.notes == ()


def test_without_a_pass_mark_the_lms_flag_decides_and_attempts_are_still_limited() -> None:
    gate = Gate(max_attempts=2)
    assert decide(gate, [], Evidence(at=T0, score=10)).verdict is Verdict.COMPLETED
    assert decide(gate, [], Evidence(at=T0, lms_passed=False)).verdict is Verdict.FAILED_ATTEMPT
    last = decide(gate, [Attempt(at=T0)], Evidence(at=T0 + days(1), lms_passed=False))
    assert last.verdict is Verdict.FAILED


def test_unlimited_attempts_never_fail() -> None:
    gate = Gate(passing_score=70)
    attempts = [Attempt(at=T0 + days(i), score=10) for i in range(50)]
    decision = decide(gate, attempts, Evidence(at=T0 + days(60), score=69))
    assert (decision.verdict, decision.attempt, decision.attempts_left) == (
        Verdict.FAILED_ATTEMPT,
        51,
        None,
    )
    assert "unlimited attempts" in decision.reason and decision.retake_opens_at is None


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        (lambda: Gate(passing_score=101), "passing_score must be a percentage"),
        (lambda: Gate(passing_score=math.nan), "passing_score must be a percentage"),
        (lambda: Gate(max_attempts=0), "max_attempts must be at least 1"),
        (lambda: Gate(retake_after_days=-1), "retake_after_days must be 0 or more"),
        (lambda: Evidence(at=T0, score=-5), "score must be a percentage"),
    ],
)
def test_bad_gate_input_is_refused(gate: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gate()  # type: ignore[operator]


def test_negative_extra_attempts_are_refused() -> None:
    with pytest.raises(ValueError, match="extra_attempts must be 0 or more"):
        decide(GATE, [], Evidence(at=T0, score=90), extra_attempts=-1)


# ----------------------------------------------------------------------------------------
# xAPI score → percent


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        ({"scaled": 0.8}, ScoreReading(80.0, "scaled")),
        # 0.57 × 100 is 56.99999999999999 in floating point; rounded, it passes a 57 % gate.
        ({"scaled": 0.57}, ScoreReading(57.0, "scaled")),
        ({"scaled": 1.0}, ScoreReading(100.0, "scaled")),
        ({"scaled": -0.2}, ScoreReading(0.0, "scaled", "a negative score.scaled counts as 0 %")),
        # raw 18 of 20 → 90 %; raw 45 on 20..60 → (45 - 20) / 40 = 62.5 %.
        ({"raw": 18, "maximum": 20}, ScoreReading(90.0, "raw")),
        ({"raw": 45, "minimum": 20, "maximum": 60}, ScoreReading(62.5, "raw")),
        # Scaled and raw agree within half a point: no problem.
        ({"scaled": 0.9, "raw": 18.05, "maximum": 20}, ScoreReading(90.0, "scaled")),
        (
            {"scaled": 0.9, "raw": 12, "maximum": 20},
            ScoreReading(
                90.0,
                "scaled",
                "score.scaled gives 90 % but score.raw/max give 60 %; score.scaled is used",
            ),
        ),
        # Scaled wins even when raw is unusable.
        ({"scaled": 0.75, "raw": 7}, ScoreReading(75.0, "scaled")),
        (
            {"raw": 7},
            ScoreReading(None, "none", "score.raw 7 has no score.max, so its scale is unknown"),
        ),
        (
            {"raw": 25, "maximum": 20},
            ScoreReading(None, "none", "score.raw 25 is outside score.min 0 .. score.max 20"),
        ),
        (
            {"raw": 5, "minimum": 10, "maximum": 10},
            ScoreReading(None, "none", "score.max 10 is not above score.min 10"),
        ),
        ({"scaled": 1.5}, ScoreReading(None, "none", "score.scaled 1.5 is outside -1 .. 1")),
        (
            {"scaled": math.inf},
            ScoreReading(None, "none", "score.scaled is not a finite number (inf)"),
        ),
        ({}, ScoreReading(None, "none", "no score was sent")),
    ],
)
def test_xapi_scores_map_to_a_percentage(score: dict[str, float], expected: ScoreReading) -> None:
    assert score_percent(**score) == expected


def test_a_mapped_score_feeds_the_gate() -> None:
    reading = score_percent(raw=14, maximum=20)  # 70 %
    gate = Gate(passing_score=70, max_attempts=3)
    assert decide(gate, [], Evidence(at=T0, score=reading.percent)).verdict is Verdict.COMPLETED
    below = score_percent(raw=13.9, maximum=20)  # 69.5 %
    assert decide(gate, [], Evidence(at=T0, score=below.percent)).verdict is (
        Verdict.FAILED_ATTEMPT
    )
