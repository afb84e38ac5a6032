"""The rules pack: what HR writes, as pydantic models.

A pack is a directory of YAML files. Each file holds any of the top-level sections below; the
loader (:mod:`rules.loader`) merges the files, so HR can keep requirements, policies, rules and
tests apart. Every model forbids unknown keys: a typo such as ``grace_day`` is an error, never a
silently ignored setting.

Example (one file)::

    pack:
      name: medical-practice
      description: HIPAA, OSHA and life-support certifications for a clinic
      statuses: [renewal_due]
      contacts: {hr_mailbox: compliance@clinic.example}
    requirements:
      - id: hipaa
        title: HIPAA Privacy and Security
        kind: training
        applies_to: {all: true}
        due_in_days: 30
        recurrence: {every: 12 months, basis: from_completion}
        escalation: training-default
    escalation_policies:
      - id: training-default
        stages:
          - {at: -30d, notify: [learner], channels: [email]}
          - {at: +7d, notify: [learner, manager], channels: [email, slack],
             unless: acknowledged and started}
    status_rules:
      - {name: exempt, when: exempt, status: exempt}
      - {name: done, when: completed, status: compliant}
      - {name: past_due, when: "days_until_due < 0", status: overdue}
      - {name: catch_all, when: "true", status: compliant}
    tests:
      - name: overdue nurse
        facts: {days_until_due: -3, roles: [nurse]}
        expect: {status: overdue, rule: past_due}
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.kinds import ObligationKind
from domain.statuses import STATUS_MAX_CHARS
from rules.apprenticeship_model import Program
from rules.audience import AppliesTo
from rules.audience import Audience as Audience  # re-exported: it was defined here
from rules.conditions import Condition, ConditionError, compile_condition
from rules.facts import FACTS, FactType
from rules.mentorship_model import MentorshipCondition, MentorshipPolicy
from rules.tracks_model import TracksSection

#: Statuses every pack may use without declaring them.
BUILTIN_STATUSES: tuple[str, ...] = (
    "compliant",
    "due_soon",
    "overdue",
    "grace_period",
    "non_compliant",
    "exempt",
)

_ID = r"^[a-z0-9][a-z0-9_.-]*$"
_ID_HELP = "lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"

Identifier = Annotated[str, Field(pattern=_ID, min_length=1, max_length=80)]


def _status_fits(value: str) -> str:
    if len(value) > STATUS_MAX_CHARS:
        raise ValueError(
            f"status {value!r} has {len(value)} characters; a status may have at most"
            f" {STATUS_MAX_CHARS} (the obligation and apprenticeship read models hold no more):"
            " use a shorter name"
        )
    return value


#: A status a rule gives (or a pack declares): an identifier the read models can hold.
StatusName = Annotated[Identifier, AfterValidator(_status_fits)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


#: What an obligation is (the same kinds the workflows carry).
Kind = ObligationKind


class Basis(StrEnum):
    """Where the next cycle's due date is counted from."""

    FROM_COMPLETION = "from_completion"
    FROM_PREVIOUS_DUE = "from_previous_due"
    FIXED_ANNIVERSARY = "fixed_anniversary"


class RenewalBasis(StrEnum):
    """How a renewed certificate's expiry date is counted when the renewal does not give one."""

    #: From the renewal (issue) date: renewing early shortens the overall coverage.
    FROM_RENEWAL = "from_renewal"
    #: From the previous expiry date when renewed before it (no validity is lost by renewing
    #: early); from the renewal date once expired.
    FROM_PREVIOUS_EXPIRY = "from_previous_expiry"


class NoLongerApplicable(StrEnum):
    """What happens to a mover's open obligation when its requirement stops applying."""

    #: Closed as ``not_applicable`` (the reason recorded in its history).
    CLOSE = "close"
    #: Left running: the person still finishes it.
    KEEP = "keep"


class Recipient(StrEnum):
    """Who a stage notifies. Managers are resolved from the directory at send time."""

    LEARNER = "learner"
    MANAGER = "manager"
    MANAGERS_MANAGER = "managers_manager"
    HR = "hr"
    EMPLOYER_CONTACT = "employer_contact"
    SLACK_CHANNEL = "slack_channel"


class Channel(StrEnum):
    """How a stage notifies."""

    EMAIL = "email"
    SMS = "sms"
    SLACK = "slack"
    IN_APP = "in_app"


class Severity(StrEnum):
    """How serious a status is, for dashboards and sorting."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


_MONTHS = re.compile(r"^\s*(\d+)\s*(month|months|year|years)\s*$")
_OFFSET = re.compile(r"^\s*([+-]?)(\d+)\s*(d|w)\s*$")


def parse_months(value: Any) -> int:
    """``"12 months"`` / ``"1 year"`` → 12. Raises ValueError with the allowed forms."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"write a period such as '12 months' or '2 years', not {value!r}")
    match = _MONTHS.match(str(value))
    if not match:
        raise ValueError(f"write a period such as '12 months' or '2 years', not {value!r}")
    number = int(match.group(1))
    months = number * 12 if match.group(2).startswith("year") else number
    if months < 1 or months > 240:
        raise ValueError(f"a period must be between 1 month and 20 years, not {value!r}")
    return months


def parse_offset(value: Any) -> int:
    """``"-30d"`` → -30, ``"+2w"`` → 14, ``"0d"`` → 0 (days relative to the due/expiry date)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"write an offset such as -30d, 0d or +14d, not {value!r}")
    if isinstance(value, int):
        raise ValueError(f"write an offset with its unit, such as {value:+d}d, not {value!r}")
    match = _OFFSET.match(value)
    if not match:
        raise ValueError(f"write an offset such as -30d, 0d or +14d (days or weeks), not {value!r}")
    days = int(match.group(2)) * (7 if match.group(3) == "w" else 1)
    days = -days if match.group(1) == "-" else days
    if abs(days) > 3650:
        raise ValueError(f"an offset must be within ten years of the date, not {value!r}")
    return days


def _condition(value: Any) -> Condition:
    if isinstance(value, bool):
        # YAML turns an unquoted `true` into a bool; accept it as the condition it means.
        value = "true" if value else "false"
    if not isinstance(value, str):
        raise ValueError(f"a condition must be text such as 'days_until_due < 0', not {value!r}")
    try:
        return compile_condition(value)
    except ConditionError as error:
        # The loader turns the offset into a line:column inside the YAML file.
        raise ValueError(f"{error.message} [at character {error.offset + 1}]") from None


class Recurrence(_Strict):
    """How a requirement repeats."""

    every: str
    basis: Basis = Basis.FROM_COMPLETION
    anniversary: str | None = Field(
        default=None, description="MM-DD, required with basis fixed_anniversary"
    )

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        parse_months(value)
        return value

    @field_validator("anniversary")
    @classmethod
    def _anniversary(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = re.fullmatch(r"(\d\d)-(\d\d)", value)
        if not match or not (1 <= int(match.group(1)) <= 12 and 1 <= int(match.group(2)) <= 31):
            raise ValueError(f"write the anniversary as MM-DD, such as 01-15, not {value!r}")
        return value

    @model_validator(mode="after")
    def _needs_anniversary(self) -> Self:
        if self.basis is Basis.FIXED_ANNIVERSARY and self.anniversary is None:
            raise ValueError("basis fixed_anniversary needs 'anniversary: MM-DD'")
        if self.basis is not Basis.FIXED_ANNIVERSARY and self.anniversary is not None:
            raise ValueError("'anniversary' is only used with basis fixed_anniversary")
        return self

    @property
    def months(self) -> int:
        """The period in months."""
        return parse_months(self.every)


class Cmi5Satisfied(StrEnum):
    """What a cmi5 ``satisfied`` statement for a requirement's activity does."""

    #: Ignored (the default): cmi5 LMSs send ``satisfied`` for every block; ``completed`` or
    #: ``passed`` is the evidence.
    IGNORE = "ignore"
    #: Completes the requirement, as ``completed`` would (the course's moveOn criteria are met).
    COMPLETES = "completes"


class Requirement(_Strict):
    """Something people owe: a training or a certification to hold."""

    id: Identifier
    title: str = Field(min_length=1, max_length=200)
    kind: Kind
    applies_to: AppliesTo
    due_in_days: int | None = Field(default=None, ge=0, le=3650)
    recurrence: Recurrence | None = None
    validity: str | None = None
    grace_days: int = Field(default=0, ge=0, le=365)
    ce_credits: float = Field(default=0, ge=0, le=1000)
    escalation: Identifier | None = None
    xapi_activity_id: str | None = None
    #: What cmi5's ``satisfied`` verb for ``xapi_activity_id`` does (``ignore`` | ``completes``).
    cmi5_satisfied: Cmi5Satisfied = Cmi5Satisfied.IGNORE
    #: The Moodle course whose completion completes this requirement (Moodle connector).
    moodle_course_id: int | None = Field(default=None, ge=1)
    max_extension_days: int = Field(default=30, ge=0, le=365)
    renewal_window_days: int | None = Field(default=None, ge=0, le=730)
    renewal_basis: RenewalBasis = RenewalBasis.FROM_RENEWAL
    issuing_body: str | None = None
    code: str | None = None
    #: Assessment gate (see rules.assessment): the exam score, in percent, that completes it.
    passing_score: float | None = Field(default=None, ge=0, le=100)
    #: Failed attempts allowed before the obligation is ``failed`` (HR may grant more).
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    #: Days to wait after a failed attempt before the next one counts.
    retake_after_days: int | None = Field(default=None, ge=0, le=365)
    #: A mover this no longer applies to: close their open obligation or keep it.
    on_no_longer_applicable: NoLongerApplicable = NoLongerApplicable.CLOSE
    #: A leave of absence moves the due date later by the leave's length (reminders pause
    #: either way).
    extend_due_on_leave: bool = True
    #: ``kind: mentorship`` only: which mentorships satisfy it (type, the mentor's
    #: certifications; see :class:`rules.mentorship_model.MentorshipCondition`).
    mentorship: MentorshipCondition | None = None

    @field_validator("validity")
    @classmethod
    def _validity(cls, value: str | None) -> str | None:
        if value is not None:
            parse_months(value)
        return value

    @field_validator("xapi_activity_id")
    @classmethod
    def _iri(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value):
            raise ValueError(
                f"an xAPI activity id is an IRI such as https://lms.example.com/course/1,"
                f" not {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> Self:
        if self.kind is Kind.CERTIFICATION:
            if self.validity is None:
                raise ValueError("a certification needs 'validity', such as '24 months'")
        else:
            if self.due_in_days is None:
                raise ValueError(f"a {self.kind.value} needs 'due_in_days' (days from assignment)")
            for key in ("ce_credits", "validity", "renewal_window_days"):
                if getattr(self, key):
                    raise ValueError(f"'{key}' only applies to certifications")
        if self.mentorship is not None and self.kind is not Kind.MENTORSHIP:
            raise ValueError(
                f"'mentorship' (conditions on the mentorship) only applies to a requirement of"
                f" kind mentorship, not {self.kind.value}"
            )
        return self

    @property
    def validity_months(self) -> int | None:
        """The certification's validity in months."""
        return parse_months(self.validity) if self.validity else None


class Stage(_Strict):
    """One step of an escalation ladder."""

    at: str
    notify: list[Recipient] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=list)
    slack_channel: str | None = None
    unless: str | None = None
    label: str | None = Field(default=None, max_length=40)

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: Any) -> str:
        parse_offset(value)
        return str(value)

    @field_validator("unless", mode="before")
    @classmethod
    def _unless(cls, value: Any) -> str | None:
        if value is None:
            return None
        return _condition(value).text

    @field_validator("slack_channel")
    @classmethod
    def _slack(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"#[a-z0-9][a-z0-9_-]{0,79}", value):
            raise ValueError(
                f"a Slack channel is written like #compliance-alerts (lowercase), not {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _slack_needs_channel(self) -> Self:
        if Recipient.SLACK_CHANNEL in self.notify and self.slack_channel is None:
            raise ValueError("notify includes slack_channel: name it with 'slack_channel: #name'")
        if Recipient.SLACK_CHANNEL in self.notify and Channel.SLACK not in self.channels:
            raise ValueError("notify includes slack_channel but channels does not include slack")
        return self

    @property
    def offset_days(self) -> int:
        """Days relative to the due/expiry date (negative before it)."""
        return parse_offset(self.at)

    @property
    def name(self) -> str:
        """The stage's name in messages and the history (``-30d``, ``0d``, ``+7d``)."""
        if self.label:
            return self.label
        days = self.offset_days
        return f"{days:+d}d" if days else "0d"

    @property
    def condition(self) -> Condition | None:
        """The compiled ``unless`` condition."""
        return compile_condition(self.unless) if self.unless is not None else None


class EscalationPolicy(_Strict):
    """A named ladder of stages."""

    id: Identifier
    description: str | None = None
    business_days_only: bool = False
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct_offsets(self) -> Self:
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(
                    f"two stages are named {stage.name}; give them different 'at' or 'label'"
                )
            seen.add(stage.name)
        return self

    def ordered(self) -> list[Stage]:
        """Stages in time order."""
        return sorted(self.stages, key=lambda s: s.offset_days)


class StatusRule(_Strict):
    """One status rule: the first rule whose condition holds decides."""

    name: Identifier
    when: str
    status: StatusName
    severity: Severity | None = None
    description: str | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: Any) -> str:
        return _condition(value).text

    @property
    def condition(self) -> Condition:
        """The compiled condition."""
        return compile_condition(self.when)


class Expectation(_Strict):
    """What a test case expects."""

    status: Identifier
    rule: Identifier | None = None


_KIND_WORDS = {
    FactType.INT: "a whole number such as -3 or 30",
    FactType.BOOL: "true or false",
    FactType.STR: 'text such as "Nursing"',
    FactType.STR_LIST: "a list of text such as [nurse, manager]",
}


class RuleTest(_Strict):
    """A named case: these facts must give this status (and rule)."""

    name: str = Field(min_length=1, max_length=200)
    facts: dict[str, Any] = Field(default_factory=dict)
    expect: Expectation

    @field_validator("facts")
    @classmethod
    def _facts(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, fact in value.items():
            kind = FACTS.get(name, (None, ""))[0]
            if kind is None:
                raise ValueError(f"unknown fact {name!r}; known facts: {', '.join(FACTS)}")
            ok = {
                FactType.INT: isinstance(fact, int) and not isinstance(fact, bool),
                FactType.BOOL: isinstance(fact, bool),
                FactType.STR: isinstance(fact, str),
                FactType.STR_LIST: isinstance(fact, list) and all(isinstance(x, str) for x in fact),
            }[kind]
            if not ok:
                raise ValueError(f"fact {name!r} must be {_KIND_WORDS[kind]}, not {fact!r}")
        return value


class Contacts(_Strict):
    """Where HR and employer notifications go."""

    hr_mailbox: str | None = None
    employer_contacts: dict[str, str] = Field(default_factory=dict)


class PackInfo(_Strict):
    """The ``pack`` section."""

    name: Identifier
    description: str | None = None
    statuses: list[StatusName] = Field(default_factory=list)
    contacts: Contacts = Field(default_factory=Contacts)


class PackFile(_Strict):
    """What one YAML file of a pack may contain (every section optional)."""

    pack: PackInfo | None = None
    requirements: list[Requirement] = Field(default_factory=list)
    escalation_policies: list[EscalationPolicy] = Field(default_factory=list)
    status_rules: list[StatusRule] = Field(default_factory=list)
    tests: list[RuleTest] = Field(default_factory=list)
    mentorship: MentorshipPolicy | None = None
    tracks: TracksSection | None = None
    programs: list[Program] = Field(default_factory=list)


class Pack(_Strict):
    """A whole, cross-checked pack (built by :func:`rules.loader.load_pack`).

    Attributes:
        info: The ``pack`` section.
        requirements: Every requirement, in file order.
        escalation_policies: Every policy.
        status_rules: The ordered status rules.
        tests: The pack's own test cases.
        mentorship: The ``mentorship`` section (matching weights, request expiry, session
            cadence, nudges, feedback); its defaults when the pack has none.
        tracks: The ``tracks`` section (track types, tracks and learning paths); no tracks
            when the pack has none.
        programs: The apprenticeship programs (``programs`` sections), in file order.
        templates: Message template overrides: path under ``templates/`` → Jinja2 source.
        content_hash: SHA-256 over every file of the pack (names and bytes).
        files: The pack's files: relative path → text (what a deploy stores).
    """

    # No whitespace stripping here: files and templates must stay byte-exact (content hash).
    model_config = ConfigDict(extra="forbid", frozen=True)

    info: PackInfo
    requirements: list[Requirement]
    escalation_policies: list[EscalationPolicy]
    status_rules: list[StatusRule]
    tests: list[RuleTest]
    mentorship: MentorshipPolicy = Field(default_factory=MentorshipPolicy)
    tracks: TracksSection = Field(default_factory=TracksSection)
    programs: list[Program] = Field(default_factory=list)
    templates: dict[str, str] = Field(default_factory=dict)
    content_hash: str
    files: dict[str, str] = Field(default_factory=dict)

    @property
    def statuses(self) -> tuple[str, ...]:
        """Every status a rule may decide."""
        return BUILTIN_STATUSES + tuple(s for s in self.info.statuses if s not in BUILTIN_STATUSES)

    def requirement(self, requirement_id: str) -> Requirement | None:
        """The requirement with this id, if any."""
        return next((r for r in self.requirements if r.id == requirement_id), None)

    def policy(self, policy_id: str) -> EscalationPolicy | None:
        """The escalation policy with this id, if any."""
        return next((p for p in self.escalation_policies if p.id == policy_id), None)

    def policy_for(self, requirement: Requirement) -> EscalationPolicy | None:
        """The ladder a requirement follows (None: no reminders)."""
        return self.policy(requirement.escalation) if requirement.escalation else None

    def program(self, program_id: str) -> Program | None:
        """The apprenticeship program with this id, if any."""
        return next((p for p in self.programs if p.id == program_id), None)

    def by_xapi_activity(self, activity_id: str) -> Requirement | None:
        """The requirement an LMS activity completes, if mapped."""
        return next((r for r in self.requirements if r.xapi_activity_id == activity_id), None)

    def by_moodle_course(self, course_id: int) -> Requirement | None:
        """The requirement a Moodle course's completion completes, if mapped."""
        return next((r for r in self.requirements if r.moodle_course_id == course_id), None)
