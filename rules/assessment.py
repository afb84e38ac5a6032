"""Assessment gates: whether completion evidence with a score completes an obligation.

Pure functions over plain data, importing nothing of Duly's: a workflow (or the sweep) passes the
gate (a requirement's ``passing_score``, ``max_attempts``, ``retake_after_days``, or a track
course's own passing score), the failed attempts counted so far and the new evidence, and gets a
decision with its reason in plain language.

The rules, in the order they are applied to new evidence:

1. **Attempts exhausted.** When the failed attempts already counted reach ``max_attempts`` plus
   the extra attempts HR granted, the evidence is not counted (whatever its score) and the
   obligation stays ``failed`` until HR grants more.
2. **Cool-down.** Evidence dated before ``retake_after_days`` have passed since the last failed
   attempt is not counted (pass or fail) and the decision says when retakes open; the LMS should
   not have offered the retake.
3. **Score.** With a passing score, the score decides: at or above it completes, below it is a
   failed attempt (the last allowed one makes the obligation ``failed``). The LMS's own
   passed/failed flag never overrides the score; when they disagree the decision notes it.
   Evidence without a score completes nothing and is not an attempt, unless the LMS says it
   failed (a failed attempt without a score). Without a passing score, the LMS's flag decides
   (``passed: false`` is a failed attempt; anything else completes).

:func:`score_percent` turns an xAPI ``result.score`` into the percentage the gate compares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "STATUS_AFTER",
    "Attempt",
    "Evidence",
    "Gate",
    "GateDecision",
    "ScoreReading",
    "Verdict",
    "decide",
    "score_percent",
]

# Percentages are rounded to this many decimals, so 0.57 scaled is 57 %, not 56.99999999999999.
_DECIMALS = 6


class Verdict(StrEnum):
    """What new evidence does to an obligation with a gate."""

    #: Passed: the obligation is complete.
    COMPLETED = "completed"
    #: Below the passing score, with attempts left: recorded, not a completion.
    FAILED_ATTEMPT = "failed_attempt"
    #: Below the passing score on the last allowed attempt: the obligation is ``failed``.
    FAILED = "failed"
    #: Every allowed attempt was already used: not counted; HR can grant more.
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    #: Inside the cool-down after a failed attempt: not counted.
    RETAKE_NOT_YET = "retake_not_yet"
    #: No score where the gate needs one: not counted.
    NO_SCORE = "no_score"


#: The obligation's (or track course's) status after each verdict.
STATUS_AFTER: dict[Verdict, str] = {
    Verdict.COMPLETED: "completed",
    Verdict.FAILED_ATTEMPT: "in_progress",
    Verdict.FAILED: "failed",
    Verdict.ATTEMPTS_EXHAUSTED: "failed",
    Verdict.RETAKE_NOT_YET: "in_progress",
    Verdict.NO_SCORE: "in_progress",
}


def _percent(value: float | None, what: str) -> None:
    if value is not None and not (math.isfinite(value) and 0 <= value <= 100):
        raise ValueError(f"{what} must be a percentage from 0 to 100, not {value!r}")


@dataclass(frozen=True)
class Gate:
    """A requirement's (or track course's) assessment gate.

    Attributes:
        passing_score: The score, in percent, that completes; None: the LMS's passed flag
            decides.
        max_attempts: Failed attempts allowed before ``failed``; None: unlimited.
        retake_after_days: Days after a failed attempt before the next one counts.
    """

    passing_score: float | None = None
    max_attempts: int | None = None
    retake_after_days: int = 0

    def __post_init__(self) -> None:
        _percent(self.passing_score, "passing_score")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.retake_after_days < 0:
            raise ValueError(f"retake_after_days must be 0 or more, not {self.retake_after_days}")


@dataclass(frozen=True)
class Attempt:
    """A failed attempt already counted against the gate.

    Attributes:
        at: When it was made (as the evidence said).
        score: Its score in percent, if it had one.
    """

    at: datetime
    score: float | None = None


@dataclass(frozen=True)
class Evidence:
    """New completion evidence.

    Attributes:
        at: When the attempt was made.
        score: The score in percent (see :func:`score_percent`); None when the LMS sent none.
        lms_passed: The LMS's own verdict (xAPI ``passed``/``failed`` or ``result.success``);
            None when it gave none.
    """

    at: datetime
    score: float | None = None
    lms_passed: bool | None = None

    def __post_init__(self) -> None:
        _percent(self.score, "score")


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for new evidence.

    Attributes:
        verdict: Completed, failed attempt, failed, attempts exhausted, retake not yet or no
            score.
        status: The status after it: ``completed``, ``in_progress`` or ``failed``.
        counted: Whether the evidence counts as an attempt (completed or failed).
        attempt: Its attempt number when counted (1 = first).
        attempts_used: Failed attempts counted, this one included.
        attempts_allowed: ``max_attempts`` plus extra attempts; None: unlimited.
        retake_opens_at: When the next attempt counts (after a failed attempt or inside the
            cool-down); None when immediately, or when no retake is possible.
        reason: The decision in one plain sentence.
        notes: Anything else worth recording (the LMS disagreeing with the score, ...).
    """

    verdict: Verdict
    status: str
    counted: bool
    attempt: int | None
    attempts_used: int
    attempts_allowed: int | None
    retake_opens_at: datetime | None
    reason: str
    notes: tuple[str, ...] = field(default=())

    @property
    def attempts_left(self) -> int | None:
        """Attempts still allowed after this decision; None: unlimited."""
        if self.attempts_allowed is None:
            return None
        return max(self.attempts_allowed - self.attempts_used, 0)


def _score(value: float) -> str:
    return f"{round(value, 2):g} %"


def decide(
    gate: Gate,
    attempts: Sequence[Attempt],
    evidence: Evidence,
    *,
    extra_attempts: int = 0,
) -> GateDecision:
    """Decide what new evidence does (see the module docstring for the rules).

    Args:
        gate: The gate.
        attempts: The failed attempts counted so far (a passed one would have completed the
            obligation), in any order.
        evidence: The new evidence.
        extra_attempts: Attempts HR granted beyond ``max_attempts`` (0 or more).

    Returns:
        The decision.

    Raises:
        ValueError: ``extra_attempts`` is negative.
    """
    if extra_attempts < 0:
        raise ValueError(f"extra_attempts must be 0 or more, not {extra_attempts}")
    used = len(attempts)
    allowed = None if gate.max_attempts is None else gate.max_attempts + extra_attempts
    granted = f", {extra_attempts} of them granted by HR" if extra_attempts else ""

    def decision(
        verdict: Verdict, reason: str, *, opens: datetime | None = None, notes: tuple[str, ...] = ()
    ) -> GateDecision:
        counted = verdict in (Verdict.COMPLETED, Verdict.FAILED_ATTEMPT, Verdict.FAILED)
        failed = verdict in (Verdict.FAILED_ATTEMPT, Verdict.FAILED)
        return GateDecision(
            verdict=verdict,
            status=STATUS_AFTER[verdict],
            counted=counted,
            attempt=used + 1 if counted else None,
            attempts_used=used + 1 if failed else used,
            attempts_allowed=allowed,
            retake_opens_at=opens,
            reason=reason,
            notes=notes,
        )

    if allowed is not None and used >= allowed:
        return decision(
            Verdict.ATTEMPTS_EXHAUSTED,
            f"not counted: all {allowed} attempts are used{granted}; the obligation stays"
            " failed until HR grants another attempt",
        )
    last = max((a.at for a in attempts), default=None)
    if last is not None and gate.retake_after_days:
        opens = last + timedelta(days=gate.retake_after_days)
        if evidence.at < opens:
            when = (
                "is dated before the last counted attempt"
                if evidence.at < last
                else f"came within {gate.retake_after_days} days of the last failed attempt"
            )
            return decision(
                Verdict.RETAKE_NOT_YET,
                f"not counted: the attempt {when}; retakes open at {opens.isoformat()}",
                opens=opens,
            )

    notes: tuple[str, ...] = ()
    if gate.passing_score is None:
        passed = evidence.lms_passed is not False
        judged = "the LMS reported it passed" if passed else "the LMS reported it failed"
        if evidence.lms_passed is None and passed:
            judged = "no pass mark is set and the LMS did not report a failure"
    elif evidence.score is None:
        if evidence.lms_passed is not False:
            said = "passed" if evidence.lms_passed else "nothing"
            return decision(
                Verdict.NO_SCORE,
                f"not counted: the pass mark is {_score(gate.passing_score)} but the evidence"
                f" has no score (the LMS said {said}); send the score or record it by hand",
            )
        passed = False
        judged = "the LMS reported it failed, without a score"
    else:
        passed = evidence.score >= gate.passing_score
        relation = "at or above" if passed else "below"
        judged = (
            f"score {_score(evidence.score)} is {relation} the pass mark"
            f" {_score(gate.passing_score)}"
        )
        if evidence.lms_passed is not None and evidence.lms_passed != passed:
            lms = "passed" if evidence.lms_passed else "failed"
            notes = (
                f"the LMS reported it {lms}; the pass mark {_score(gate.passing_score)} decides",
            )

    if passed:
        return decision(
            Verdict.COMPLETED, f"completed on attempt {used + 1}: {judged}", notes=notes
        )
    number = used + 1
    if allowed is not None and number >= allowed:
        return decision(
            Verdict.FAILED,
            f"failed: {judged} on attempt {number} of {allowed}{granted}; no attempt is left,"
            " so the learner, their manager and HR are told; HR can grant another attempt",
            notes=notes,
        )
    reopens = evidence.at + timedelta(days=gate.retake_after_days)
    retake_at = reopens if gate.retake_after_days else None
    left = "unlimited attempts" if allowed is None else f"{allowed - number} attempt(s) left"
    retake = f"; retakes open at {reopens.isoformat()}" if retake_at is not None else ""
    return decision(
        Verdict.FAILED_ATTEMPT,
        f"failed attempt {number}: {judged}; {left}{retake}",
        opens=retake_at,
        notes=notes,
    )


@dataclass(frozen=True)
class ScoreReading:
    """A percentage read from an xAPI score, and how.

    Attributes:
        percent: 0–100 (rounded to 6 decimals); None when no percentage can be told.
        source: ``scaled``, ``raw`` (with min/max) or ``none``.
        problem: Why there is no percentage, or what was set aside (None when all is well).
    """

    percent: float | None
    source: str
    problem: str | None = None


def score_percent(
    scaled: float | None = None,
    raw: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> ScoreReading:
    """The percentage an xAPI ``result.score`` stands for.

    ``scaled`` (-1..1) is used when given: ``scaled × 100``, a negative score counting as 0 %.
    Otherwise ``raw`` within ``[min, max]`` (``min`` defaults to 0) gives
    ``(raw − min) / (max − min) × 100``. A raw score without ``max`` has no percentage (the LMS's
    scale is unknown). When ``scaled`` and ``raw``/``max`` disagree by more than half a point,
    ``scaled`` is used (xAPI makes it the normalised score) and ``problem`` says so.

    Args:
        scaled: ``result.score.scaled``.
        raw: ``result.score.raw``.
        minimum: ``result.score.min``.
        maximum: ``result.score.max``.

    Returns:
        The reading; ``percent`` None when the values do not give one.
    """
    for name, value in (("scaled", scaled), ("raw", raw), ("min", minimum), ("max", maximum)):
        if value is not None and not math.isfinite(value):
            return ScoreReading(None, "none", f"score.{name} is not a finite number ({value!r})")
    from_raw: float | None = None
    raw_problem: str | None = None
    if raw is not None:
        low = 0.0 if minimum is None else minimum
        if maximum is None:
            raw_problem = f"score.raw {raw:g} has no score.max, so its scale is unknown"
        elif maximum <= low:
            raw_problem = f"score.max {maximum:g} is not above score.min {low:g}"
        elif not low <= raw <= maximum:
            raw_problem = f"score.raw {raw:g} is outside score.min {low:g} .. score.max {maximum:g}"
        else:
            from_raw = round((raw - low) / (maximum - low) * 100, _DECIMALS)
    if scaled is not None:
        if not -1 <= scaled <= 1:
            return ScoreReading(None, "none", f"score.scaled {scaled:g} is outside -1 .. 1")
        percent = round(max(scaled, 0.0) * 100, _DECIMALS)
        problem = "a negative score.scaled counts as 0 %" if scaled < 0 else None
        if from_raw is not None and abs(from_raw - percent) > 0.5:
            problem = (
                f"score.scaled gives {percent:g} % but score.raw/max give {from_raw:g} %;"
                " score.scaled is used"
            )
        return ScoreReading(percent, "scaled", problem)
    if from_raw is not None:
        return ScoreReading(from_raw, "raw", None)
    if raw_problem is not None:
        return ScoreReading(None, "none", raw_problem)
    return ScoreReading(None, "none", "no score was sent")
