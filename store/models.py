"""SQLAlchemy 2 models for Duly's tables.

Temporal holds each obligation's truth; these tables are the directory, read models, the
notification ledger, the audit log, API tokens and rules pack versions. Every JSON column is
:class:`~store.types.StrictJSON`: no NaN or infinity is ever written.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from domain.contracts.obligation import ObligationFacts
from domain.kinds import ObligationKind
from store.types import StrictJSON, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with deterministic constraint names (Alembic needs them on SQLite)."""

    metadata = MetaData(naming_convention=NAMING)


class Person(Base):
    """A person from the HRIS directory, keyed by their external id."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    slack_user_id: Mapped[str | None] = mapped_column(String(32))
    roles: Mapped[list[str]] = mapped_column(StrictJSON, default=list)
    department: Mapped[str | None] = mapped_column(String(100))
    location: Mapped[str | None] = mapped_column(String(100))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    employer: Mapped[str | None] = mapped_column(String(200))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    employment_status: Mapped[str] = mapped_column(String(16), default="active")
    #: Hire or start date (the joiner automation counts due dates from it).
    start_date: Mapped[date | None] = mapped_column(Date)
    #: The identity provider's SCIM ``userName`` when it is not the external id (an email, say).
    user_name: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    manager: Mapped[Person | None] = relationship(remote_side=[id], lazy="joined", join_depth=1)

    __table_args__ = (Index("ix_people_manager_id", "manager_id"),)


class Obligation(Base):
    """Read model of one obligation workflow (what dashboards and lists read)."""

    __tablename__ = "obligations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    requirement_id: Mapped[str] = mapped_column(String(64))
    requirement_title: Mapped[str] = mapped_column(String(200))
    cycle: Mapped[int] = mapped_column(Integer, default=1)
    due_date: Mapped[date | None] = mapped_column(Date)
    expiry_date: Mapped[date | None] = mapped_column(Date)
    stage: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    pack_hash: Mapped[str] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The other facts the workflow decides with (see domain.contracts.obligation.ObligationFacts),
    # so the sweep and `rules preview` decide from what the workflow knows, not a subset of it.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exempt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The exemption's last day (None: until revoked).
    exempt_until: Mapped[date | None] = mapped_column(Date)
    ce_credits_short: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The workflow holds this status itself (a suspended certification): sweeps leave it.
    suspended: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The IANA zone the workflow planned its stages in (None: a fixed offset, older workflows).
    time_zone: Mapped[str | None] = mapped_column(String(64))
    #: Incremented by every write; the sweep updates a row only at the version it read.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: Workflow time of the update this row reflects; older updates never overwrite newer ones.
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    person: Mapped[Person] = relationship(lazy="joined")

    __table_args__ = (
        Index("ix_obligations_person_id", "person_id"),
        # Leads with status (every "WHERE status IN …"); kind and due_date make the breakdown
        # by category a streaming pass of the index (migration 0023).
        Index("ix_obligations_status_kind", "status", "kind", "due_date"),
        # The compliance dashboards' aggregates (migration 0014a, services.compliance).
        Index("ix_obligations_person_status", "person_id", "status", "due_date"),
        Index("ix_obligations_due", "due_date", "status", "person_id"),
        Index("ix_obligations_expiry", "kind", "expiry_date", "status", "person_id"),
        Index("ix_obligations_requirement", "requirement_id", "status", "due_date"),
    )

    def facts(self) -> ObligationFacts:
        """The obligation facts this row recorded from its workflow."""
        return ObligationFacts(
            kind=ObligationKind(self.kind),
            requirement_id=self.requirement_id,
            due_date=self.due_date,
            expiry_date=self.expiry_date,
            completed=self.completed_at is not None,
            acknowledged=self.acknowledged_at is not None,
            started=self.started_at is not None,
            exempt=bool(self.exempt),
            exempt_until=self.exempt_until,
            ce_credits_short=self.ce_credits_short or 0,
        )


class DecisionRecord(Base):
    """One status decision as it was made: the status, the rule, the pack and the facts.

    Written by the ``decide_status`` activity (a pack's rules), by ``record_obligation`` for a
    status the workflow decided itself (built-in rules, cancelled, held) and by the sweep. As-of
    answers and the compliance trend read these rows; nothing is ever re-decided for them.
    ``request_key`` makes a retried activity write the same row once.
    """

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: SHA-256 of what was decided on (workflow, instant, pack, facts, status): retries dedupe.
    request_key: Mapped[str] = mapped_column(String(64), unique=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    requirement_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str | None] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(200))
    pack_hash: Mapped[str] = mapped_column(String(64))
    facts: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    #: The workflow event that led to the decision (a signal, a stage, a timer), if known.
    trigger: Mapped[str | None] = mapped_column(String(300))
    #: ``rules`` (decide_status), ``workflow`` (decided in the workflow) or ``sweep``.
    source: Mapped[str] = mapped_column(String(16))
    #: Workflow time of the decision: the instant the status took effect.
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When the workflow's next decision took over (None: still in force). Kept by
    #: ``store.decisions.record_decision`` so an as-of count reads each row once, with no
    #: window over the workflow's other decisions (migration 0019 backfilled older rows).
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_decisions_workflow_decided", "workflow_id", "decided_at"),
        # As-of counts and the trend: two range reads of this index alone (in force, ended);
        # requirement_id so a month snapshot (DecisionSnapshot) is built from it alone too.
        Index(
            "ix_decisions_interval",
            "superseded_at",
            "decided_at",
            "status",
            "person_id",
            "requirement_id",
        ),
        Index(
            "ix_decisions_person_requirement_decided", "person_id", "requirement_id", "decided_at"
        ),
        # What changed since a snapshot: a range read on decided_at that covers the rest of
        # the count (migration 0020; it replaced the plain ix_decisions_decided_at).
        Index(
            "ix_decisions_decided_cover", "decided_at", "superseded_at", "status", "requirement_id"
        ),
    )


class DecisionSnapshot(Base):
    """Organisation-wide counts of the decisions in force at the end of a month.

    A cache of :func:`store.decisions.status_counts_at` for the whole organisation, per
    requirement and status, so the 12-month trend and as-of counts read a few hundred rows plus
    the decisions recorded since the month's end instead of every decision.
    ``store.decisions.record_decision`` deletes the snapshots of every month ending at or after
    the decision's ``decided_at`` (the only months it changes); readers rebuild a missing month
    (and the daily sweep warms the last 13). Each built month has a marker row
    (``requirement_id`` and ``status`` empty, ``obligations``: the month's total).
    """

    __tablename__ = "decision_snapshots"

    #: YYYY-MM: counted at the month's last microsecond (UTC).
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    requirement_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32), primary_key=True)
    obligations: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(Base):
    """The notification ledger: one row per (workflow, pack, stage, recipient, channel).

    ``status``: ``pending`` (claimed, provider not yet answered), ``sent``/``delivered``,
    ``retrying`` (transient failure), ``failed`` (permanent: the next channel was tried),
    ``held`` (Duly's own provider credentials or configuration were refused: retried until
    fixed, never a fallback), ``skipped`` (deliberately not sent: the person left or is on
    leave; ``error_code``/``error_reason`` say why), ``queued``/``folded`` (digests).
    """

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(400), unique=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    recipient_address: Mapped[str | None] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(16))
    pack_hash: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    error_code: Mapped[str | None] = mapped_column(String(64))
    #: PII-free reason of the last failure (provider error text without addresses).
    error_reason: Mapped[str | None] = mapped_column(String(300))
    #: learner, manager, managers_manager, hr, employer_contact or slack_channel.
    recipient_role: Mapped[str | None] = mapped_column(String(32))
    #: Slack: the channel id the message was posted to (to update it on acknowledgement).
    channel_ref: Mapped[str | None] = mapped_column(String(64))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The ledger row this one replaces after a permanent failure on another channel.
    fallback_of: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, onupdate=utcnow)
    #: A queued message's rendered HTML and Slack blocks, so it can be released as rendered.
    payload: Mapped[dict[str, Any] | None] = mapped_column(StrictJSON)
    #: Workflow time at which the stage fired (simulated time in tests, real time in production).
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The activity attempt that holds the right to call the provider for this row, and until
    #: when: another attempt never sends while the lease is live (see notifications.delivery).
    claim_token: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_notifications_workflow_id", "workflow_id"),
        Index("ix_notifications_person_id", "person_id"),
    )


class AuditEntry(Base):
    """Append-only, hash-chained record of every API action (database triggers forbid edits)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    before: Mapped[dict[str, Any] | None] = mapped_column(StrictJSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(StrictJSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(32))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: None: never expires (only an integration token created with ``--no-expiry``).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Integration tokens: what they may do (``xapi:write`` …); None for person tokens.
    scopes: Mapped[list[str] | None] = mapped_column(StrictJSON)

    person: Mapped[Person | None] = relationship(lazy="joined")


class UsedSignInLink(Base):
    """A one-time sign-in link that has been redeemed (its nonce), so it cannot be used twice.

    Links themselves are never stored: they are signed (``store.signin``) and carry their own
    expiry; only the fact of their use is kept.
    """

    __tablename__ = "used_sign_in_links"

    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the link would have expired anyway (rows older than this can be pruned).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NotificationPreference(Base):
    """How a person wants to be reached (absent row: every channel, no quiet hours)."""

    __tablename__ = "notification_preferences"

    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    )
    #: Allowed channels (None: all of email, sms, slack, in_app).
    channels: Mapped[list[str] | None] = mapped_column(StrictJSON)
    #: Replied STOP to an SMS: never text them until they reply START.
    sms_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Quiet hours in the person's time zone, "HH:MM" (start may be after end: overnight).
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class DeadLetter(Base):
    """A completion Duly could not match (unknown actor or activity), kept for HR to resolve."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: "xapi" or "completion-webhook".
    source: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(300))
    payload: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    #: e.g. the xAPI statement id: the same statement posted twice is stored once.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RulesPackVersion(Base):
    """A deployed rules pack, identified by the hash of its content."""

    __tablename__ = "rules_pack_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    migration: Mapped[str] = mapped_column(String(16), default="grandfather")
    content: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("name", "deployed_at"),)


class Certificate(Base):
    """One issued certificate (a cycle of a held certification) and its verification code.

    ``GET /verify/{code}`` reads this table only: holder, certification, status, valid until.
    """

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verification_code: Mapped[str] = mapped_column(String(40), unique=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    certification_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    cycle: Mapped[int] = mapped_column(Integer)
    certificate_number: Mapped[str | None] = mapped_column(String(120))
    issuer: Mapped[str | None] = mapped_column(String(200))
    issued_on: Mapped[date] = mapped_column(Date)
    expires_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(32))
    #: Workflow time of the update this row reflects; older updates never overwrite newer ones.
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    person: Mapped[Person] = relationship(lazy="joined")

    __table_args__ = (Index("ix_certificates_workflow_id", "workflow_id"),)


class MentorProfileRow(Base):
    """A mentor's profile (``rules.mentorship_model.MentorProfile`` without what is computed).

    Certifications come from the certificates table, the track record from ``mentorships``;
    ``active_mentees`` is the one counter a slot is claimed on (a conditional UPDATE), so two
    acceptances of the last slot cannot both win.
    """

    __tablename__ = "mentor_profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), unique=True)
    #: The profile's other fields as the API accepted them (JSON of the pydantic model).
    profile: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    accepting_mentees: Mapped[bool] = mapped_column(Boolean, default=True)
    max_mentees: Mapped[int] = mapped_column(Integer, default=2)
    active_mentees: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: One more at every write (the profile, a slot claimed or given back): the cache of
    #: prepared profiles is keyed by the table's sum of versions.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    person: Mapped[Person] = relationship(lazy="joined")


class MenteeProfileRow(Base):
    """A mentee's profile (``rules.mentorship_model.MenteeProfile`` as JSON)."""

    __tablename__ = "mentee_profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), unique=True)
    profile: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: One more at every write: the cache of prepared mentees is keyed by the sum of versions.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    person: Mapped[Person] = relationship(lazy="joined")


class Mentorship(Base):
    """One relationship's read model, written by ``MentorshipWorkflow`` (its truth)."""

    __tablename__ = "mentorships"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255), unique=True)
    mentee_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    mentor_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(32))
    goals: Mapped[list[str]] = mapped_column(StrictJSON, default=list)
    milestones: Mapped[list[str]] = mapped_column(StrictJSON, default=list)
    duration_months: Mapped[int] = mapped_column(Integer)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    #: Whether this relationship holds one of the mentor's slots (claimed, not yet released).
    holds_slot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)

    mentee: Mapped[Person] = relationship(foreign_keys=[mentee_id], lazy="joined")
    mentor: Mapped[Person] = relationship(foreign_keys=[mentor_id], lazy="joined")

    __table_args__ = (
        Index("ix_mentorships_mentee_id", "mentee_id"),
        Index("ix_mentorships_mentor_id", "mentor_id"),
    )


class MentorshipSession(Base):
    """One logged session; ``notes`` is shown to its author and HR only."""

    __tablename__ = "mentorship_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mentorship_id: Mapped[int] = mapped_column(ForeignKey("mentorships.id", ondelete="CASCADE"))
    #: Who logged it; None for HR without a person (then only HR sees the notes).
    author_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    held_on: Mapped[date] = mapped_column(Date)
    duration_minutes: Mapped[int] = mapped_column(Integer)
    #: format, location, topics, skills_practiced, resources, action_items, rating.
    details: Mapped[dict[str, Any]] = mapped_column(StrictJSON)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_mentorship_sessions_mentorship_id", "mentorship_id"),)


class MentorshipFulfilment(Base):
    """A ``kind: mentorship`` obligation a relationship completed, and its re-opening.

    Written when an active mentorship completes the mentee's open mentorship obligations; when
    the mentorship ends before its planned end, the requirement is assigned again and the new
    obligation, the time and the reason are written here.
    """

    __tablename__ = "mentorship_fulfilments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mentorship_id: Mapped[int] = mapped_column(ForeignKey("mentorships.id", ondelete="CASCADE"))
    obligation_workflow_id: Mapped[str] = mapped_column(String(255))
    requirement_id: Mapped[str] = mapped_column(String(64))
    fulfilled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The obligation that re-opened the requirement (None: not re-opened).
    reopened_as: Mapped[str | None] = mapped_column(String(255))
    reopened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reopened_reason: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (UniqueConstraint("mentorship_id", "obligation_workflow_id"),)


class MentorshipFeedback(Base):
    """One side's feedback at the midpoint or the end (the mentee's ratings feed matching)."""

    __tablename__ = "mentorship_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mentorship_id: Mapped[int] = mapped_column(ForeignKey("mentorships.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    #: ``mentee`` or ``mentor``.
    side: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16))
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("mentorship_id", "side", "phase"),)


class TrackEnrolment(Base):
    """One person enrolled in one track of the rules pack (issue 17).

    The track's courses are ordinary assignments (one ``AssignmentWorkflow`` per course); the
    progress is computed from their obligations (``rules.tracks.track_progress``).
    ``completed_at`` is written when every required course is complete, and with it the
    track's completion certificate: a verification code (``GET /verify/{code}``, like a
    certification's), the track's name as it was then, and the day it was issued.
    """

    __tablename__ = "track_enrolments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    track_id: Mapped[str] = mapped_column(String(80))
    pack_hash: Mapped[str] = mapped_column(String(64))
    enrolled_on: Mapped[date] = mapped_column(Date)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: hr, manager or auto (a learning path by role).
    source: Mapped[str] = mapped_column(String(16))
    enrolled_by: Mapped[str] = mapped_column(String(128))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The completion certificate (None until the track completes); codes are unique across
    #: this table and ``certificates`` (``store.certificates.unused_code``).
    certificate_code: Mapped[str | None] = mapped_column(String(40), unique=True)
    certificate_title: Mapped[str | None] = mapped_column(String(200))
    certificate_issued_on: Mapped[date | None] = mapped_column(Date)
    #: Withdrawn (a leaver, or HR): the row stays, with when and why; its open courses were
    #: closed. Enrolling again (a rehire, HR) clears both.
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    withdrawn_reason: Mapped[str | None] = mapped_column(String(500))

    person: Mapped[Person] = relationship(lazy="joined")

    __table_args__ = (UniqueConstraint("person_id", "track_id"),)


class Project(Base):
    """A client project whose go-live depends on tracks (readiness)."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    client: Mapped[str] = mapped_column(String(200))
    go_live: Mapped[date] = mapped_column(Date)
    manager_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    manager: Mapped[Person] = relationship(lazy="joined")


class ProjectTrack(Base):
    """A track a project needs: people with ``target_role`` (``people_needed`` of them)."""

    __tablename__ = "project_tracks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    track_id: Mapped[str] = mapped_column(String(80))
    target_role: Mapped[str | None] = mapped_column(String(100))
    people_needed: Mapped[int] = mapped_column(Integer)
    due_date: Mapped[date] = mapped_column(Date)

    __table_args__ = (UniqueConstraint("project_id", "track_id"),)


# Tables of their own modules, registered on Base.metadata here so migrations and the
# models-agree check see them wherever the models are imported from.
from store import apprenticeships as _apprenticeships  # noqa: E402, F401
from store import integrations as _integrations  # noqa: E402, F401
