"""Lint for assessment gates and the ``tracks:`` section (called by :func:`rules.lint.lint`).

Each finding is plain data, ``(code, is_error, message, key, value)``; :mod:`rules.lint` locates
``key: value`` in the pack's files and turns it into a ``Finding``. Kept apart so the sections
other families add to :mod:`rules.lint` do not collide.
"""

from __future__ import annotations

from collections.abc import Iterator

from rules.model import Pack

__all__ = ["RawFinding", "lint_gates", "lint_tracks"]

#: ``(code, is_error, message, key, value)``: where ``key: value`` is written locates it.
RawFinding = tuple[str, bool, str, str, str]


def lint_gates(pack: Pack) -> Iterator[RawFinding]:
    """Assessment-gate settings that load but would surprise HR."""
    for requirement in pack.requirements:
        rid = requirement.id
        limits = [
            key
            for key in ("max_attempts", "retake_after_days")
            if getattr(requirement, key) is not None
        ]
        if requirement.passing_score is None and limits:
            yield (
                "gate-without-score",
                False,
                f"requirement '{rid}' sets {' and '.join(limits)} but no passing_score: attempts"
                " would be judged by the LMS's own passed flag, not by Duly; add passing_score"
                " (percent) or remove them",
                "id",
                rid,
            )
        if requirement.passing_score == 0:
            yield (
                "gate-always-passes",
                False,
                f"requirement '{rid}' has passing_score 0: any score completes it; raise it or"
                " remove it",
                "id",
                rid,
            )
        if requirement.max_attempts == 1 and requirement.retake_after_days:
            yield (
                "retake-never-used",
                False,
                f"requirement '{rid}' allows one attempt, so retake_after_days"
                f" ({requirement.retake_after_days}) only matters once HR grants an extra"
                " attempt; allow more attempts or remove it",
                "id",
                rid,
            )


def lint_tracks(pack: Pack) -> Iterator[RawFinding]:
    """Tracks and learning paths that load but would surprise HR."""
    for track in pack.tracks.tracks:
        tid = track.id
        if not track.active and track.required_for_go_live:
            yield (
                "inactive-go-live-track",
                False,
                f"track '{tid}' is inactive but required for go-live: nobody new can be"
                " enrolled, so a project needing more people could never be ready; reactivate"
                " it or set required_for_go_live: false",
                "id",
                tid,
            )
        milestones = [track.days_to_complete, *(c.days_to_complete for c in track.courses)]
        if track.is_learning_path and all(days is None for days in milestones):
            yield (
                "no-milestones",
                False,
                f"learning path '{tid}' has no days_to_complete (neither the track nor any"
                " course): enrolled people are never due nor overdue; add milestones",
                "id",
                tid,
            )
        for course in track.ordered_courses:
            requirement = pack.requirement(course.requirement)
            if requirement is None:
                continue  # the loader reports it
            own = requirement.passing_score
            if (
                course.exam
                and course.passing_score is not None
                and own is not None
                and course.passing_score != own
            ):
                yield (
                    "two-passing-scores",
                    False,
                    f"track '{tid}': course '{course.requirement}' passes at"
                    f" {course.passing_score:g} % but the requirement's own passing_score is"
                    f" {own:g} %; one exam result could complete the requirement and not the"
                    " course (or the reverse); use one score",
                    "id",
                    tid,
                )
            if not course.exam and own is not None:
                yield (
                    "exam-not-marked",
                    False,
                    f"track '{tid}': course '{course.requirement}' is not marked 'exam: true'"
                    f" but its requirement is completed only at {own:g} %; mark it so the"
                    " track shows the exam",
                    "id",
                    tid,
                )
