"""Who a reminder stage goes to, on which channels, and when: a pure plan, no I/O.

``send_reminder`` (``activities.assignment``) reads the directory and the preferences, calls
:func:`plan_delivery` and carries the plan out through the ledger. Every policy decision of a
stage lives here:

* the pinned pack's stage for the workflow's stage label (its recipients and channels; the
  built-in ladder and one-off notices use the request's);
* the stage's ``unless`` condition, on the facts of the one fact builder
  (:func:`rules.obligation_facts.build_facts`): when it holds nothing is sent;
* a learner who has left: nobody is notified about them (every send recorded ``skipped``);
* quiet hours and weekends (``business_days_only`` policies) in each recipient's time zone: a
  recipient is deferred to the next allowed instant, except a due-today or overdue notice,
  which never waits past its own local day;
* digest folding: a learner's early reminders (before the due day, not an event notice) on
  email, SMS and Slack wait for the day's digest; in-app is a feed and never folds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from domain.contracts.obligation import ReminderRequest
from notifications.delivery import Recipient, allowed
from notifications.preferences import next_allowed
from notifications.recipients import PassedOver, Resolved, stage_skip
from rules.model import Pack, Stage, parse_offset
from rules.obligation_facts import PersonAttributes, build_facts, local_today

#: Channels whose early reminders are folded into a daily digest (in-app is a feed: never).
FOLDABLE = frozenset({"email", "sms", "slack"})


@dataclass(frozen=True)
class Preference:
    """A person's delivery preferences as plain data (no preference row: the defaults)."""

    #: IANA time zone quiet hours and digest days are counted in.
    time_zone: str = "UTC"
    #: Quiet hours, "HH:MM" local (None: none).
    quiet_start: str | None = None
    quiet_end: str | None = None
    #: Channels they accept (None: every channel).
    channels: list[str] | None = None
    sms_opt_out: bool = False


@dataclass(frozen=True)
class Learner:
    """The person the obligation belongs to, as plain data."""

    external_id: str
    time_zone: str
    attributes: PersonAttributes

    @property
    def employment_status(self) -> str:
        """active, leave or terminated (from the directory at send time)."""
        return self.attributes.employment_status


@dataclass(frozen=True)
class Audience:
    """The recipients' roles and the channels of one stage."""

    #: The pinned pack's stage (None: the built-in ladder or a one-off notice).
    stage: Stage | None
    roles: list[str]
    channels: list[str]


@dataclass(frozen=True)
class RecipientPlan:
    """What to do for one recipient."""

    recipient: Recipient
    #: Not now (quiet hours or a weekend): the workflow runs the stage again at this instant.
    deferred_until: datetime | None = None
    #: Channels queued for the digest of ``digest_day`` (the recipient's local day).
    folded: list[str] = field(default_factory=list)
    #: Channels sent now.
    direct: list[str] = field(default_factory=list)
    digest_day: date | None = None


@dataclass(frozen=True)
class DeliveryPlan:
    """The plan of one stage: skip it, or who gets what when."""

    audience: Audience
    #: The stage's ``unless`` condition, when it holds: nothing is sent or recorded.
    unless: str | None = None
    #: (code, reason) when the learner has left: every send is recorded ``skipped`` (each
    #: recipient's plan is then empty).
    gone: tuple[str, str] | None = None
    #: Roles nobody could be found for.
    missing: list[str] = field(default_factory=list)
    #: People not notified for their employment status (recorded ``skipped``).
    passed_over: list[PassedOver] = field(default_factory=list)
    recipients: list[RecipientPlan] = field(default_factory=list)


def pack_stage(pack: Pack | None, requirement_id: str | None, stage: str) -> Stage | None:
    """The pack stage a workflow stage label (``-30d``, ``0d``, ``+7d``) stands for."""
    if pack is None or requirement_id is None:
        return None
    requirement = pack.requirement(requirement_id)
    policy = pack.policy_for(requirement) if requirement else None
    if policy is None:
        return None
    try:
        offset = parse_offset(stage)
    except ValueError:
        return None
    return next((s for s in policy.stages if s.offset_days == offset), None)


def business_days_only(pack: Pack | None, requirement_id: str | None) -> bool:
    """Whether the requirement's escalation policy sends on weekdays only."""
    requirement = pack.requirement(requirement_id) if pack and requirement_id else None
    policy = pack.policy_for(requirement) if pack and requirement else None
    return bool(policy and policy.business_days_only)


def audience(request: ReminderRequest, pack: Pack | None) -> Audience:
    """Who a stage notifies and on which channels: the pack's stage, else the request's.

    The built-in ladder reminds the learner by email; a one-off notice (suspension,
    revocation) names its own recipients and channels in the request.
    """
    stage = pack_stage(pack, request.requirement_id, request.stage)
    if stage is not None:
        return Audience(stage, [r.value for r in stage.notify], [c.value for c in stage.channels])
    return Audience(None, request.notify or ["learner"], request.channels or [request.channel])


def unless_holds(
    stage: Stage | None, request: ReminderRequest, learner: Learner, pack: Pack | None
) -> str | None:
    """The stage's ``unless`` condition when it holds for this obligation now (skip the stage).

    Facts come from the one fact builder, as for status rules: the learner's local today at
    the instant the stage fires, the requirement's grace period.
    """
    condition = stage.condition if stage is not None else None
    if condition is None:
        return None
    requirement = (
        pack.requirement(request.requirement_id) if pack and request.requirement_id else None
    )
    facts = build_facts(
        request.facts(),
        learner.attributes,
        today=local_today(learner.time_zone, request.fired_at),
        grace_days=requirement.grace_days if requirement else 0,
    )
    return condition.text if condition.evaluate(facts) else None


def defer_until(
    request: ReminderRequest, preference: Preference | None, *, business_days: bool
) -> datetime | None:
    """When a message to a person may go out, if not now (None: now).

    Quiet hours come from the person's preferences, weekends from the policy; both in the
    person's time zone. A due-today or overdue notice is never deferred past its own day:
    if the next allowed moment is on a later local day, it goes out now.

    Args:
        request: The stage (its instant, and how far from the due date it is).
        preference: The recipient's preferences (None: a mailbox or a Slack channel, which
            have no quiet hours).
        business_days: The policy sends on weekdays only.
    """
    if preference is None:
        return None
    allowed_at = next_allowed(
        request.fired_at,
        preference.time_zone,
        quiet_start=preference.quiet_start,
        quiet_end=preference.quiet_end,
        business_days_only=business_days,
    )
    if allowed_at <= request.fired_at:
        return None
    if request.days_before_due <= 0:
        zone = preference.time_zone
        if local_today(zone, allowed_at) != local_today(zone, request.fired_at):
            return None
    return allowed_at


def foldable(request: ReminderRequest, recipient: Recipient, *, digest: bool) -> bool:
    """Early reminders to a learner wait for the day's digest; due-day and overdue never."""
    return (
        digest
        and recipient.role == "learner"
        and recipient.person is not None
        and request.days_before_due > 0
        and request.event is None  # a suspension or revocation notice goes out at once
    )


def plan_delivery(
    *,
    request: ReminderRequest,
    pack: Pack | None,
    audience: Audience,
    learner: Learner,
    resolved: Resolved,
    preferences: Mapping[str, Preference],
    digest: bool,
) -> DeliveryPlan:
    """Plan one stage: skip it, or who is sent what on which channel, now, later or folded.

    Args:
        request: The stage as the workflow fired it.
        pack: The pinned pack (None: the built-in ladder).
        audience: :func:`audience` of ``request`` under ``pack``.
        learner: The person the obligation belongs to.
        resolved: ``audience.roles`` resolved against the directory
            (:func:`notifications.recipients.resolve`).
        preferences: Each person recipient's preferences by recipient key (the learner's
            too); a person without an entry has the defaults in UTC.
        digest: Whether daily digests run (folding needs them).

    Returns:
        The plan; the caller records and sends it through the ledger.
    """
    skip = unless_holds(audience.stage, request, learner, pack)
    if skip is not None:
        return DeliveryPlan(audience, unless=skip)
    plan = DeliveryPlan(
        audience,
        gone=stage_skip(learner),
        missing=list(resolved.missing),
        passed_over=list(resolved.passed_over),
    )
    if plan.gone is not None:
        # Recorded ``skipped`` for everyone, on every channel of the stage.
        plan.recipients.extend(RecipientPlan(r) for r in resolved.recipients)
        return plan
    business_days = business_days_only(pack, request.requirement_id)
    learner_preference = preferences.get(learner.external_id)
    plan.recipients.extend(
        _plan_recipient(
            request,
            recipient,
            audience.channels,
            preferences.get(recipient.key, Preference()) if recipient.person else None,
            learner_preference,
            business_days=business_days,
            digest=digest,
        )
        for recipient in resolved.recipients
    )
    return plan


def _plan_recipient(
    request: ReminderRequest,
    recipient: Recipient,
    channels: Sequence[str],
    preference: Preference | None,
    learner_preference: Preference | None,
    *,
    business_days: bool,
    digest: bool,
) -> RecipientPlan:
    until = defer_until(request, preference, business_days=business_days)
    if until is not None:
        return RecipientPlan(recipient, deferred_until=until)
    if not foldable(request, recipient, digest=digest):
        return RecipientPlan(recipient, direct=list(channels))
    # The learner's own channel choices decide what folds (a channel they refused is not
    # queued: delivery falls back from it at once).
    folded = [c for c in channels if c in FOLDABLE and allowed(learner_preference, recipient, c)]
    return RecipientPlan(
        recipient,
        folded=folded,
        direct=[c for c in channels if c not in folded],
        digest_day=local_today(preference.time_zone if preference else "UTC", request.fired_at),
    )
