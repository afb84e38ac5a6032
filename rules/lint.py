"""Lint a loaded pack: the mistakes that load fine but would surprise HR in production.

Errors make ``duly rules lint`` (and a deploy) fail; warnings are shown and allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from rules.apprenticeship_model import StallRecipient
from rules.coverage import OTHER, analyse
from rules.mentorship_model import NudgeRecipient
from rules.model import Cmi5Satisfied, Kind, Pack, Recipient
from rules.tracks_lint import lint_gates, lint_tracks


class Level(StrEnum):
    """How serious a finding is."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One lint finding, located in the pack's files where possible."""

    level: Level
    code: str
    message: str
    file: str = ""
    line: int = 0

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        return f"{where}{self.level.value} [{self.code}] {self.message}"


class DirectoryPerson(Protocol):
    """The directory attributes lint needs (``store.models.Person`` fits)."""

    roles: list[str]
    department: str | None
    location: str | None
    employer: str | None
    employment_status: str


def locate(pack: Pack, key: str, value: str) -> tuple[str, int]:
    """The file and line where ``key: value`` is written (``("", 0)`` when not found)."""
    pattern = re.compile(
        rf"^\s*(-\s*)?{re.escape(key)}\s*:\s*[\"']?{re.escape(value)}[\"']?\s*(#.*)?$"
    )
    for path in sorted(pack.files):
        if path.startswith("templates/"):
            continue
        for number, line in enumerate(pack.files[path].splitlines(), start=1):
            if pattern.match(line) or (
                line.lstrip().startswith(("-", "{")) and f"{key}: {value}" in line
            ):
                return path, number
    return "", 0


def _show(point: dict[str, object]) -> str:
    parts = []
    for name, value in sorted(point.items()):
        if value == OTHER or value == [OTHER]:
            value = "any other value"
        parts.append(f"{name}={value}")
    return ", ".join(parts)


#: Checks of a pack's message templates (``notifications.messages.lint_templates``): the
#: templates belong to the notifications layer, above this one, so the caller passes them in.
TemplateCheck = Callable[[Pack], Iterable[Finding]]


def lint(
    pack: Pack,
    people: Sequence[DirectoryPerson] | None = None,
    *,
    templates: TemplateCheck | None = None,
) -> list[Finding]:
    """Every finding for ``pack``.

    Args:
        pack: A pack that loaded (see :func:`rules.loader.load_pack`).
        people: The current directory, to find requirements that apply to nobody (skipped when
            None).
        templates: The template checks (None: templates are not checked; the CLI, the API
            and deploys pass ``notifications.messages.lint_templates``).

    Returns:
        Findings, errors first.
    """
    findings = [
        *_status_rules(pack),
        *_policies(pack),
        *_requirements(pack, people),
        *_tests(pack),
        *(templates(pack) if templates is not None else ()),
        *_mentorship(pack),
        *_mentorship_conditions(pack),
        *_gates_and_tracks(pack),
        *_programs(pack),
    ]
    return sorted(findings, key=lambda f: (f.level is not Level.ERROR, f.file, f.line))


def _status_rules(pack: Pack) -> Iterable[Finding]:
    coverage = analyse([(rule.name, rule.condition) for rule in pack.status_rules])
    for name, beaten in coverage.unreachable.items():
        file, line = locate(pack, "name", name)
        if not beaten:
            why = "its condition can never be true"
        elif len(beaten) == 1:
            why = f"rule '{beaten[0]}' above it matches every case it would"
        else:
            why = f"rules {', '.join(repr(b) for b in beaten)} above it match every case it would"
        yield Finding(
            Level.ERROR,
            "unreachable-rule",
            f"status rule '{name}' can never decide: {why}; move it up or narrow the earlier"
            " rule(s)",
            file,
            line,
        )
    for point in coverage.uncovered:
        yield Finding(
            Level.ERROR,
            "uncovered-facts",
            f'no status rule matches {_show(point)}; add a last rule with when: "true"',
            *locate(pack, "name", pack.status_rules[-1].name),
        )
    if not coverage.exhaustive:
        yield Finding(
            Level.WARNING,
            "sampled-coverage",
            f"the rules read many facts: coverage was checked on {coverage.points:,} sampled"
            " combinations, not all of them",
        )


def _policies(pack: Pack) -> Iterable[Finding]:
    used = {r.escalation for r in pack.requirements if r.escalation}
    for policy in pack.escalation_policies:
        file, line = locate(pack, "id", policy.id)
        if policy.id not in used:
            yield Finding(
                Level.WARNING,
                "unused-policy",
                f"escalation policy '{policy.id}' is not used by any requirement",
                file,
                line,
            )
        for stage in policy.stages:
            missing = [
                what
                for what, values in (
                    ("recipients (notify)", stage.notify),
                    ("channels", stage.channels),
                )
                if not values
            ]
            if missing:
                yield Finding(
                    Level.ERROR,
                    "empty-stage",
                    f"stage {stage.name} of policy '{policy.id}' has no {' and no '.join(missing)};"
                    " it would send nothing",
                    *locate(pack, "at", stage.at),
                )
            if Recipient.HR in stage.notify and not pack.info.contacts.hr_mailbox:
                yield Finding(
                    Level.WARNING,
                    "no-hr-mailbox",
                    f"stage {stage.name} of policy '{policy.id}' notifies hr but pack.contacts"
                    " has no hr_mailbox",
                    file,
                    line,
                )
            if (
                Recipient.EMPLOYER_CONTACT in stage.notify
                and not pack.info.contacts.employer_contacts
            ):
                yield Finding(
                    Level.WARNING,
                    "no-employer-contacts",
                    f"stage {stage.name} of policy '{policy.id}' notifies employer_contact but"
                    " pack.contacts has no employer_contacts",
                    file,
                    line,
                )


def _requirements(pack: Pack, people: Sequence[DirectoryPerson] | None) -> Iterable[Finding]:
    seen_xapi: dict[str, str] = {}
    seen_moodle: dict[int, str] = {}
    for requirement in pack.requirements:
        file, line = locate(pack, "id", requirement.id)
        if requirement.escalation is None:
            yield Finding(
                Level.WARNING,
                "no-escalation",
                f"requirement '{requirement.id}' has no escalation policy: nobody is reminded",
                file,
                line,
            )
        activity = requirement.xapi_activity_id
        if activity:
            if activity in seen_xapi:
                yield Finding(
                    Level.ERROR,
                    "duplicate-xapi-activity",
                    f"requirements '{seen_xapi[activity]}' and '{requirement.id}' map the same"
                    f" LMS activity {activity}; a completion could not tell them apart",
                    file,
                    line,
                )
            seen_xapi.setdefault(activity, requirement.id)
        course = requirement.moodle_course_id
        if course is not None:
            if course in seen_moodle:
                yield Finding(
                    Level.ERROR,
                    "duplicate-moodle-course",
                    f"requirements '{seen_moodle[course]}' and '{requirement.id}' map the same"
                    f" Moodle course {course}; a completion could not tell them apart",
                    file,
                    line,
                )
            seen_moodle.setdefault(course, requirement.id)
        if requirement.cmi5_satisfied is Cmi5Satisfied.COMPLETES and not activity:
            yield Finding(
                Level.ERROR,
                "cmi5-satisfied-without-activity",
                f"requirement '{requirement.id}' says cmi5 'satisfied' completes it but maps no"
                " xapi_activity_id",
                file,
                line,
            )
        if people is None:
            continue
        covered = sum(
            1
            for p in people
            if p.employment_status != "terminated"
            and requirement.applies_to.applies(
                list(p.roles or []), p.department or "", p.location or "", p.employer or ""
            )
        )
        if covered == 0:
            yield Finding(
                Level.WARNING,
                "applies-to-nobody",
                f"requirement '{requirement.id}' applies to nobody in the current directory"
                f" ({len(people)} people); check applies_to against the imported roles,"
                " departments, locations and employers",
                file,
                line,
            )


def _tests(pack: Pack) -> Iterable[Finding]:
    if not pack.tests:
        yield Finding(
            Level.WARNING,
            "no-tests",
            "the pack has no tests; add cases under 'tests:' so changes can be checked",
        )
        return
    tested = {t.expect.rule for t in pack.tests if t.expect.rule}
    for rule in pack.status_rules:
        if rule.name not in tested:
            yield Finding(
                Level.WARNING,
                "untested-rule",
                f"no test expects status rule '{rule.name}'",
                *locate(pack, "name", rule.name),
            )


def _mentorship(pack: Pack) -> Iterable[Finding]:
    section = pack.mentorship
    for step in section.nudges:
        where = locate(pack, "notify", step.notify.value)
        if step.notify is NudgeRecipient.COORDINATOR and not pack.info.contacts.hr_mailbox:
            yield Finding(
                Level.WARNING,
                "no-hr-mailbox",
                "the mentorship nudge to the coordinator goes to pack.contacts.hr_mailbox,"
                " which is not set",
                *where,
            )
        if step.after_days >= section.session_cadence_days:
            yield Finding(
                Level.WARNING,
                "late-nudge",
                f"the mentorship nudge to the {step.notify.value} comes {step.after_days} days"
                f" after a missed session, when the next session (every"
                f" {section.session_cadence_days} days) is already due too; nudge sooner or"
                " lengthen session_cadence_days",
                *where,
            )


def _mentorship_conditions(pack: Pack) -> Iterable[Finding]:
    """A requirement's mentorship conditions that name a certification the pack does not hold.

    A name is matched against the mentor's certificates by title; one that is neither the id
    nor the title of a certification requirement of the pack is likely a typo (a certificate
    registered outside the pack still counts, hence a warning).
    """
    known = {
        name.lower()
        for r in pack.requirements
        if r.kind is Kind.CERTIFICATION
        for name in (r.id, r.title)
    }
    for requirement in pack.requirements:
        condition = requirement.mentorship
        if condition is None:
            continue
        where = locate(pack, "id", requirement.id)
        for name in condition.mentor_certifications:
            if name.lower() not in known:
                yield Finding(
                    Level.WARNING,
                    "unknown-mentor-certification",
                    f"requirement '{requirement.id}' asks for a mentor holding '{name}', which"
                    " is neither the id nor the title of a certification in this pack; only a"
                    " certificate with exactly that title would count",
                    *where,
                )


def _gates_and_tracks(pack: Pack) -> Iterable[Finding]:
    for code, error, message, key, value in [*lint_gates(pack), *lint_tracks(pack)]:
        level = Level.ERROR if error else Level.WARNING
        yield Finding(level, code, message, *locate(pack, key, value))


#: Work hours a year beyond which a program's pace is more than full time (40 h x 52 weeks,
#: plus a quarter for overtime).
_MAX_WORK_HOURS_A_YEAR = 2_600


def _located(pack: Pack, key: str, value: str, fallback: tuple[str, int]) -> tuple[str, int]:
    """Where ``key: value`` is written, else ``fallback`` (a quoted inline value, say)."""
    found = locate(pack, key, value)
    return found if found[0] else fallback


def _programs(pack: Pack) -> Iterable[Finding]:
    requirement_of = {r.xapi_activity_id: r.id for r in pack.requirements if r.xapi_activity_id}
    for program in pack.programs:
        where = locate(pack, "id", program.id)
        for course in program.classroom_from_lms.courses:
            if course.activity_id in requirement_of:
                yield Finding(
                    Level.ERROR,
                    "duplicate-xapi-activity",
                    f"program '{program.id}' counts LMS activity {course.activity_id} as"
                    f" classroom hours, and requirement '{requirement_of[course.activity_id]}'"
                    " maps it too; a statement could not tell them apart",
                    *_located(pack, "activity_id", course.activity_id, where),
                )
        notified = {step.notify for step in program.stall.ladder}
        if StallRecipient.HR in notified and not pack.info.contacts.hr_mailbox:
            yield Finding(
                Level.WARNING,
                "no-hr-mailbox",
                f"the stall ladder of program '{program.id}' notifies hr, but pack.contacts has"
                " no hr_mailbox",
                *where,
            )
        pace = program.work_hours / program.duration_years
        if pace > _MAX_WORK_HOURS_A_YEAR:
            yield Finding(
                Level.WARNING,
                "implausible-pace",
                f"program '{program.id}' needs {pace:,.0f} work hours a year"
                f" ({program.work_hours:,} over {program.duration_years} years), more than"
                f" {_MAX_WORK_HOURS_A_YEAR:,}; check work_hours and duration_years",
                *where,
            )
        for period in program.periods:
            if not period.skills:
                yield Finding(
                    Level.WARNING,
                    "period-without-skills",
                    f"period {period.number} ({period.name}) of program '{program.id}' lists no"
                    " skills: apprentices advance on hours alone; list the skills a supervisor"
                    " signs off",
                    *where,
                )
        final = program.graduation.final_evaluation_min_score
        if final is not None and final < program.evaluations.minimum_score:
            yield Finding(
                Level.WARNING,
                "final-score-below-minimum",
                f"program '{program.id}' graduates on a final evaluation of {final}, below the"
                f" minimum score of every evaluation ({program.evaluations.minimum_score})",
                *where,
            )
        first_rung = program.stall.ladder[0].after_days
        if program.stall.after_days + first_rung > program.evaluations.every_days:
            yield Finding(
                Level.WARNING,
                "late-stall-notice",
                f"program '{program.id}' first tells anyone of a stall"
                f" {program.stall.after_days + first_rung} days after the last approved hours,"
                f" later than the next evaluation (every {program.evaluations.every_days} days)"
                " would notice; shorten stall.after_days",
                *where,
            )
